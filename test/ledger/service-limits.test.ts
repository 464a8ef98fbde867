// The ingest service under hostile clients, against a real ledger: a flood of concurrent 16 MiB
// bodies is held to SERVICE_LIMITS.maxBodyBytes (the rest get 503 with Retry-After before a
// byte of their body is kept), and slowloris connections (silent, headers or body trickled) are
// closed by the header and request timeouts, giving back what they held.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import type { ServiceConfig } from "../../runtime/ledger/config";
import { generateSigningKey } from "../../model/ledger/core/checkpoint";
import { IngestService, SERVICE_LIMITS } from "../../runtime/ledger/service";
import { ROLES } from "../../runtime/ledger/pg/schema";
import { LOOPBACK, type LedgerCluster } from "../../lab/ledger/cluster";
import { startTestCluster } from "./fixture";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const MiB = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Short timeouts, so the test does not wait out the real ones (10 s and 30 s); every other bound is SERVICE_LIMITS',
// written out here (and checked against it last), so that what is measured is measured first.
const TIMEOUTS = { headersTimeoutMs: 1000, requestTimeoutMs: 4000, checkIntervalMs: 100 };
const L = { maxBody: 16 << 20, maxBodiesReading: 32, maxBodyBytes: 64 << 20, retryAfterSeconds: 1 };

let cluster: LedgerCluster;
let svc: IngestService;
let socket: string;

before(async () => {
    cluster = await startTestCluster(["limits"]);
    const dir = cluster.layout.dir;
    const keys = generateSigningKey();
    fs.writeFileSync(path.join(dir, "sign.key"), keys.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, "sign.pub"), keys.publicKey.export({ type: "spki", format: "pem" }));
    socket = path.join(dir, "ingest.sock");
    const p = cluster.layout.passwords;
    const config: ServiceConfig = {
        site: "test", shards: ["limits"], endpoints: cluster.layout.pgPorts.map((port) => ({ host: LOOPBACK, port })),
        ingest: { user: ROLES.ingest, password: p.ingest }, auditor: { user: ROLES.auditor, password: p.auditor },
        checkpoint: { entries: 100, ms: 1000 }, signingKeyFile: path.join(dir, "sign.key"), publicKeyFile: path.join(dir, "sign.pub"),
        lakeDir: path.join(dir, "lake"), listen: { socket }, maxBatch: 1000,
    };
    svc = new IngestService(config, () => undefined, TIMEOUTS);
    await svc.start();
});
after(async () => {
    await svc?.stop();
    await cluster?.destroy();
});

function post(body: string): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ socketPath: socket, method: "POST", path: "/v1/shards/limits/entries", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
            let data = "";
            res.on("data", (c) => (data += c));
            res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
        });
        req.on("error", reject);
        req.end(body);
    });
}

const status = async () => {
    const r = await new Promise<any>((resolve, reject) => http.get({ socketPath: socket, path: "/v1/status" }, (res) => {
        let d = "";
        res.on("data", (c) => (d += c)).on("end", () => resolve(JSON.parse(d)));
    }).on("error", reject));
    return r;
};

test("a flood of concurrent 16 MiB bodies: at most maxBodyBytes are held, the rest get 503 with Retry-After; memory stays under the bound", async (t) => {
    const CLIENTS = 12;
    const declared = L.maxBody - 1;
    const sent = L.maxBody - (1 << 20); // all but the last MiB, then nothing more: a client that stalls
    const chunk = Buffer.alloc(1 << 20, 0x20); // one buffer, written again and again: the clients hold almost nothing
    gc();
    const base = process.memoryUsage();
    let peak = { arrayBuffers: 0, rss: 0 };
    const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peak = { arrayBuffers: Math.max(peak.arrayBuffers, m.arrayBuffers - base.arrayBuffers), rss: Math.max(peak.rss, m.rss - base.rss) };
    }, 20);
    // Raw sockets: a hostile client sends its whole body whatever the answer (Node's own client stops at an early answer).
    const clients = Array.from({ length: CLIENTS }, () => {
        const c = net.connect(socket);
        c.on("error", () => undefined); // cut off by the request timeout, in the end
        let answer = "";
        c.setEncoding("latin1");
        c.on("data", (d: string) => (answer += d));
        c.write(`POST /v1/shards/limits/entries HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`);
        let written = 0;
        const written$ = new Promise<void>((resolve) => {
            const more = () => {
                while (written < sent) {
                    written += chunk.length;
                    if (!c.write(chunk)) return void c.once("drain", more);
                }
                resolve();
            };
            more();
        });
        return { c, written$, answer: () => answer };
    });
    // Every byte handed over, and read by the service: kept, or (refused) discarded.
    const t0 = Date.now();
    await Promise.race([Promise.all(clients.map((c) => c.written$)), sleep(20_000)]);
    const sendMs = Date.now() - t0;
    await sleep(300);
    clearInterval(sampler);
    gc();
    const held = process.memoryUsage().arrayBuffers - base.arrayBuffers;
    const s = (await status()).bodies;
    const answers = clients.map((c) => ({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(c.answer())?.[1] ?? 0), retryAfter: /\r\nretry-after: *(\S+)/i.exec(c.answer())?.[1] }));
    const refused = answers.filter((a) => a.status === 503);
    t.diagnostic(`${CLIENTS} clients x ${MiB(sent)} sent (${MiB(CLIENTS * sent)}) in ${sendMs} ms; bound ${MiB(L.maxBodyBytes)} of bodies held, ${L.maxBodiesReading} read at once; ` +
        `service: peak ${MiB(s?.peakBytes ?? NaN)} reserved, ${s?.peakReading} read at once, ${s?.refused} refused; ` +
        `process: ${MiB(held)} of buffers held while the clients stall, peak ${MiB(peak.arrayBuffers)} buffers / ${MiB(peak.rss)} RSS over the start`);
    assert.ok(held <= L.maxBodyBytes + (8 << 20), `${MiB(held)} of request bodies held`);
    assert.ok(peak.arrayBuffers <= L.maxBodyBytes + (32 << 20), `peak ${MiB(peak.arrayBuffers)} of buffers`);
    const fits = Math.floor(L.maxBodyBytes / declared);
    assert.equal(refused.length, CLIENTS - fits, JSON.stringify(answers));
    assert.ok(refused.every((a) => a.retryAfter === String(L.retryAfterSeconds)));
    assert.deepEqual([s.reading, s.bytes, s.peakBytes], [fits, fits * declared, fits * declared]);
    assert.deepEqual(Object.fromEntries(Object.keys(L).map((k) => [k, SERVICE_LIMITS[k as keyof typeof L]])), L);

    // The stalled ones are cut off by the request timeout, and what they held is given back.
    const until = Date.now() + TIMEOUTS.requestTimeoutMs + 3000;
    while (Date.now() < until && (await status()).bodies.bytes > 0) await sleep(100);
    assert.deepEqual([(await status()).bodies.reading, (await status()).bodies.bytes], [0, 0]);
    for (const c of clients) c.c.destroy();
    // And the service appends as before.
    const ok = await post(JSON.stringify({ entries: [{ source: "after-the-flood", payload: { ok: true } }] }));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    // The body limit itself is kept: declared too large, 413 at once.
    const big = await new Promise<number>((resolve, reject) => {
        const req = http.request({ socketPath: socket, method: "POST", path: "/v1/shards/limits/entries", headers: { "content-length": L.maxBody + 1 } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
            req.destroy();
        });
        req.on("error", (e) => (e.message.includes("socket hang up") ? undefined : reject(e)));
        req.write("{");
    });
    assert.equal(big, 413);
});

test("slowloris: a silent connection, trickled headers and a trickled body are closed by the timeouts, and give back what they held", async (t) => {
    const closedAt = new Map<string, number>();
    const start = Date.now();
    const open = (name: string, trickle?: string) => {
        const c = net.connect(socket);
        c.on("error", () => undefined);
        c.on("data", () => undefined);
        c.on("close", () => closedAt.set(name, Date.now() - start));
        let i = 0;
        const timer = trickle === undefined ? undefined : setInterval(() => {
            if (c.destroyed) return clearInterval(timer);
            c.write(i < trickle.length ? trickle[i++] : "a");
        }, 50);
        return c;
    };
    open("silent");
    open("headers", "POST /v1/shards/limits/entries HTTP/1.1\r\nHost: ledger\r\nX-Slow: ");
    const body = open("body");
    body.write("POST /v1/shards/limits/entries HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
    const trickle = setInterval(() => (body.destroyed ? clearInterval(trickle) : body.write(" ")), 50);
    await sleep(300);
    const reading = (await status()).bodies?.reading;
    const limit = TIMEOUTS.requestTimeoutMs + 2000;
    while (closedAt.size < 3 && Date.now() - start < limit) await sleep(50);
    t.diagnostic(`closed after (ms): ${JSON.stringify(Object.fromEntries(closedAt))}; headers timeout ${TIMEOUTS.headersTimeoutMs}, request timeout ${TIMEOUTS.requestTimeoutMs} (in service: ${SERVICE_LIMITS?.headersTimeoutMs} and ${SERVICE_LIMITS?.requestTimeoutMs})`);
    assert.ok(closedAt.get("silent")! <= TIMEOUTS.headersTimeoutMs + 1000, "silent");
    assert.ok(closedAt.get("headers")! <= TIMEOUTS.headersTimeoutMs + 1000, "headers");
    assert.ok(closedAt.get("body")! <= TIMEOUTS.requestTimeoutMs + 1000, "body");
    assert.equal(reading, 1, "the trickled body was being read");
    const s = (await status()).bodies;
    assert.deepEqual([s.reading, s.bytes], [0, 0]);
});

test("many small bodies that never finish: at most maxBodiesReading are read at once, the rest get 503 with Retry-After", async (t) => {
    const CLIENTS = L.maxBodiesReading + 8;
    const clients = Array.from({ length: CLIENTS }, () => {
        const c = net.connect(socket);
        c.on("error", () => undefined);
        let answer = "";
        c.setEncoding("latin1");
        c.on("data", (d: string) => (answer += d));
        c.write(`POST /v1/shards/limits/entries HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"entries":`);
        return { c, answer: () => answer };
    });
    const until = Date.now() + 3000;
    while (Date.now() < until && clients.filter((c) => c.answer()).length < 8) await sleep(20);
    const s = (await status()).bodies ?? {};
    const refused = clients.filter((c) => /^HTTP\/1\.1 503 /.test(c.answer()) && /\r\nretry-after: 1\r\n/i.test(c.answer()));
    t.diagnostic(`${CLIENTS} stalled bodies: ${s.reading} being read (bound ${L.maxBodiesReading}), ${refused.length} refused with 503`);
    assert.equal(refused.length, 8);
    assert.equal(s.reading, L.maxBodiesReading);
    for (const c of clients) c.c.destroy();
    const gone = Date.now() + 3000;
    while (Date.now() < gone && (await status()).bodies.reading > 0) await sleep(20);
    assert.deepEqual([(await status()).bodies.reading, (await status()).bodies.bytes], [0, 0], "a client that goes gives back what it held");
});
