// The sensor gateway over real HTTP on ::1, with an in-memory stand-in for the bus (the real
// broker is in test/events/pipeline.test.ts): what a sensor gets back, what is published, what
// goes to the dead-letter topic, who may send (a signed request of the sensor itself, from the
// allowed prefixes, not from a web page), and what a hostile client can cost the process.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { DEAD_LETTER_TOPIC } from "../../model/events/topics";
import { decodeEvent } from "../../model/events/schema";
import { readingEnvelope, SIGNATURE_HEADERS, signReadings, startGateway, type GatewayOptions } from "./gateway";
import type { EventProducer } from "./kafka";

const sent: { topic: string; key?: string; value?: Buffer; headers?: Record<string, string> }[] = [];
let busDown = false;
const producer: EventProducer = {
    async send(o) {
        if (busDown) throw new Error("broker unreachable");
        sent.push(...(o.messages as typeof sent));
        return {};
    },
    async close() {},
};
const key = () => crypto.randomBytes(32).toString("hex");
const KEYS: Record<string, string> = Object.fromEntries(["paddock-9/co2", "gate-0", "fence-1", "x", "s", "fence-07"].map((s) => [s, key()]));
const OLD = key();
const NEW = key();
const logged: string[] = [];
let gw: Awaited<ReturnType<typeof startGateway>>;
let url: string;

const start = (o: Partial<GatewayOptions> = {}) => startGateway({ site: "lab", producer, listen: [{ host: "::1", port: 0 }], allow: ["::1/128"], sensorKeys: { ...KEYS, rotating: [OLD, NEW] }, log: (m) => logged.push(m), ...o });

before(async () => {
    gw = await start();
    url = `http://${gw.addresses[0]}/v1/readings`;
});
after(() => gw.close());

const answer = async (res: Response) => ({ status: res.status, headers: res.headers, body: await res.json() as any });
/** POSTs a body signed by `sensor` (its own key unless given). */
const post = async (body: string, sensor: string, o: { target?: string; key?: string; headers?: Record<string, string>; nowMs?: number } = {}) => {
    const headers = { ...signReadings(o.key ?? KEYS[sensor], sensor, body, o.nowMs), ...o.headers };
    return answer(await fetch(o.target ?? url, { method: "POST", body, headers }));
};
const reading = (sensor: string, seq: number) => JSON.stringify({ sensor, kind: "fence-voltage", value: 9.7, unit: "kV", seq });

test("a signed reading is answered 202 with its id only after the bus took it; the sensor's own clock is the event's time", async () => {
    sent.length = 0;
    const r = await post(JSON.stringify({ sensor: "paddock-9/co2", kind: "co2", value: 412, unit: "ppm", seq: 7, boot: 3, time: "2026-11-20T09:00:00.250Z" }), "paddock-9/co2");
    assert.equal(r.status, 202);
    assert.deepEqual(r.body.ids, ["sensor/paddock-9/co2#3/7"]);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].topic, "nublar.sensors");
    assert.equal(sent[0].key, "paddock-9/co2");
    const v = decodeEvent(sent[0].value);
    assert.ok(v.ok && v.event.type === "sensor-reading");
    assert.equal(v.event.time, Date.parse("2026-11-20T09:00:00.250Z") * 1000);
    assert.equal(v.event.payload.address, "::1");
    assert.ok(v.event.payload.receivedAt > v.event.time);
});

test("many readings in one request, or in many requests at once, go out in few sends", async () => {
    sent.length = 0;
    const many = Array.from({ length: 500 }, (_, i) => ({ sensor: "gate-0", kind: "gate-count", value: i, seq: i }));
    const r = await post(JSON.stringify({ readings: many }), "gate-0");
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted, 500);
    assert.equal(new Set(sent.map((m) => m.topic)).size, 1);
});

test("invalid readings get their reasons and go to the dead-letter topic; the valid ones of the request are accepted", async () => {
    sent.length = 0;
    const r = await post(JSON.stringify([{ sensor: "fence-1", kind: "fence-voltage", value: 9.9, seq: 1 }, { sensor: "fence-1", kind: "fence-voltage", value: 9.9 }, { sensor: "fence-1", kind: "Fence Voltage", value: 1, seq: 2 }, { sensor: "fence-1", kind: "x", value: 1, seq: 3, colour: "red" }]), "fence-1");
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted, 1);
    assert.deepEqual(r.body.rejected.map((x: { index: number }) => x.index), [1, 2, 3]);
    assert.match(r.body.rejected[0].reason, /seq is missing/);
    assert.match(r.body.rejected[1].reason, /payload\.kind: 'Fence Voltage'/);
    assert.match(r.body.rejected[2].reason, /unknown field\(s\) colour/);
    const dead = sent.filter((m) => m.topic === DEAD_LETTER_TOPIC);
    assert.equal(dead.length, 3);
    assert.match(dead[0].headers!["nublar-reason"], /seq is missing/);
    assert.equal(dead[0].headers!["nublar-origin"], "sensor-gateway [::1]");
    const all = await post(JSON.stringify({ sensor: "x" }), "x");
    assert.equal(all.status, 422, "nothing valid: 422");
    const notJson = await post("temperature=21", "x");
    assert.equal(notJson.status, 400);
    assert.equal(sent.filter((m) => m.topic === DEAD_LETTER_TOPIC).at(-1)!.value!.toString(), "temperature=21");
});

test("when the bus is down the sensor gets 503 (and sends again), never a 202", async () => {
    busDown = true;
    try {
        const r = await post(JSON.stringify({ sensor: "s", kind: "k", value: 1, seq: 1 }), "s");
        assert.equal(r.status, 503);
        assert.match(r.body.error, /broker unreachable/);
        assert.equal(gw.stats.busErrors >= 1, true);
    } finally {
        busDown = false;
    }
});

test("other paths, methods, oversized bodies and senders outside the allowed prefixes are refused", async () => {
    assert.equal((await fetch(url.replace("/v1/readings", "/v2"))).status, 404);
    assert.equal((await fetch(url)).status, 405);
    assert.equal((await post("x".repeat(1_100_000), "s")).status, 413);
    const strict = await start({ allow: ["2001:db8::/32"] });
    try {
        const r = await post("{}", "s", { target: `http://${strict.addresses[0]}/v1/readings` });
        assert.equal(r.status, 403);
        assert.match(r.body.error, /::1 may not send readings here/);
    } finally {
        await strict.close();
    }
});

/** Runs `fn`, and checks that the requests it made were refused with `status`, counted in `counter`, and that nothing reached the bus. */
async function refusedUnpublished(counter: keyof typeof gw.stats, fn: () => Promise<number[]>, status: number) {
    sent.length = 0;
    const before = gw.stats[counter];
    const statuses = await fn();
    assert.deepEqual(statuses, statuses.map(() => status));
    assert.equal(gw.stats[counter] - before, statuses.length, `each refusal counted in ${counter}`);
    assert.deepEqual(sent, [], "nothing published, not even a dead letter");
}

test("a reading without a valid credential gets 401, is counted, and never reaches the bus", async () => {
    const body = reading("fence-07", 41);
    const signed = signReadings(KEYS["fence-07"], "fence-07", body);
    const send = async (headers: Record<string, string>, b = body) => (await fetch(url, { method: "POST", body: b, headers })).status;
    await refusedUnpublished("unauthorized", async () => [
        // No signature at all: what any host in the site could do before.
        await send({ "content-type": "application/json" }),
        // Each header missing in turn.
        ...await Promise.all(Object.values(SIGNATURE_HEADERS).map((h) => send(Object.fromEntries(Object.entries(signed).filter(([k]) => k !== h))))),
        // Another sensor's key; a key nobody has; a sensor with no key.
        (await post(body, "fence-07", { key: KEYS["fence-1"] })).status,
        (await post(body, "fence-07", { key: key() })).status,
        (await post(reading("fence-08", 1), "fence-08", { key: key() })).status,
        // The body changed after signing: another seq, to pre-empt the sensor's next readings.
        await send(signed, reading("fence-07", 4100)),
        // A malformed signature.
        await send({ ...signed, [SIGNATURE_HEADERS.signature]: signed[SIGNATURE_HEADERS.signature].slice(0, 40) }),
        // Signed by a sensor, but speaking for another one.
        (await post(reading("fence-07", 42), "fence-1")).status,
        (await post(JSON.stringify([JSON.parse(reading("fence-1", 9)), JSON.parse(reading("fence-07", 43))]), "fence-1")).status,
    ], 401);
    const r = await post(body, "fence-07", { key: KEYS["fence-1"] });
    assert.match(r.body.error, /signature does not match/);
    assert.match(r.headers.get("www-authenticate") ?? "", /Nublar-HMAC-SHA256/);
    assert.match((await post(reading("fence-07", 42), "fence-1")).body.error, /signed by fence-1: a sensor sends its own readings only/);
});

test("a stale or future timestamp is refused (401): an old signed body cannot be replayed later", async () => {
    const body = reading("fence-07", 50);
    await refusedUnpublished("unauthorized", async () => [
        // 10 s past the window: the timestamp is whole seconds (rounded down), and the request
        // takes a few ms to arrive, so 1 s past it could land inside (a flake seen in CI).
        (await post(body, "fence-07", { nowMs: Date.now() - 310_000 })).status,
        (await post(body, "fence-07", { nowMs: Date.now() + 310_000 })).status,
        (await post(body, "fence-07", { nowMs: Date.parse("2020-01-01T00:00:00Z") })).status,
    ], 401);
    assert.match((await post(body, "fence-07", { nowMs: Date.now() - 3_600_000 })).body.error, /x-nublar-timestamp is 360\d s old: at most 300 s either way/);
    // Within the window, the same signed request again is the same reading: one id, harmless downstream.
    const a = await post(body, "fence-07", { nowMs: Date.now() - 200_000 });
    const b = await post(body, "fence-07", { nowMs: Date.now() - 200_000 });
    assert.equal(a.status, 202);
    assert.deepEqual(b.body.ids, a.body.ids);
});

test("while a key is rotated, both the old and the new one are accepted", async () => {
    for (const k of [OLD, NEW]) assert.equal((await post(reading("rotating", k === OLD ? 1 : 2), "rotating", { key: k })).status, 202);
    assert.equal((await post(reading("rotating", 3), "rotating", { key: key() })).status, 401);
});

test("anything but application/json gets 415; any request with an Origin header (a web page) gets 403; neither reaches the bus", async () => {
    const body = reading("fence-07", 60);
    await refusedUnpublished("unsupportedType", async () => [
        (await post(body, "fence-07", { headers: { "content-type": "text/plain" } })).status,
        (await post(body, "fence-07", { headers: { "content-type": "application/x-www-form-urlencoded" } })).status,
        (await fetch(url, { method: "POST", body: Buffer.from(body), headers: { ...signReadings(KEYS["fence-07"], "fence-07", body), "content-type": "" } })).status,
    ], 415);
    assert.equal((await post(body, "fence-07", { headers: { "content-type": "application/json; charset=utf-8" } })).status, 202);
    await refusedUnpublished("forbiddenOrigin", async () => [
        (await post(body, "fence-07", { headers: { origin: "https://evil.example" } })).status,
        (await post(body, "fence-07", { headers: { origin: "null" } })).status,
        (await fetch(url, { method: "POST", body: "temperature=21", headers: { origin: "http://[::1]", "content-type": "text/plain" } })).status,
    ], 403);
});

test("refusals are logged as one summary line per interval, with counts, however many there are", async () => {
    const mine: string[] = [];
    const g = await start({ refusalLogMs: 300, log: (m) => mine.push(m) });
    try {
        const target = `http://${g.addresses[0]}/v1/readings`;
        const t0 = Date.now();
        for (let i = 0; i < 10; i++) {
            await Promise.all(Array.from({ length: 50 }, () => fetch(target, { method: "POST", body: "{}", headers: { "content-type": "application/json" } }).then((r) => r.arrayBuffer())));
        }
        assert.equal(g.stats.unauthorized, 500);
        await new Promise((r) => setTimeout(r, 400));
        const most = Math.ceil((Date.now() - t0) / 300) + 1;
        assert.ok(mine.length >= 1 && mine.length <= most, `at most one line per 300 ms (${most}), not one per refusal: ${mine.length}`);
        const total = mine.reduce((n, l) => n + Number(/^refused (\d+) request/.exec(l)?.[1] ?? 0), 0);
        assert.equal(total, 500);
        assert.match(mine[0], /401 without a valid credential; from 1 address\(es\), e\.g\. ::1/);
    } finally {
        await g.close();
    }
});

test("connections over the cap are closed at once, and slow or idle ones time out", async () => {
    const g = await start({ maxConnections: 20, headersTimeoutMs: 1000, requestTimeoutMs: 2000 });
    const [host, port] = [g.addresses[0].slice(1, g.addresses[0].lastIndexOf("]")), Number(g.addresses[0].split(":").at(-1))];
    const sockets: net.Socket[] = [];
    try {
        const closed: Promise<void>[] = [];
        for (let i = 0; i < 60; i++) {
            const s = net.connect({ host, port });
            s.on("error", () => undefined);
            s.resume(); // read what the gateway answers (a 408), or 'close' never comes
            sockets.push(s);
            closed.push(new Promise((r) => s.once("close", () => r())));
            // Half of them a slow loris: a header line, then nothing.
            if (i % 2) s.write("POST /v1/readings HTTP/1.1\r\nhost: x\r\n");
        }
        const t0 = Date.now();
        await Promise.all(closed);
        assert.ok(g.stats.dropped >= 40, `at least 40 of 60 dropped at once (${g.stats.dropped})`);
        assert.ok(Date.now() - t0 < 6000, "the rest closed by the timeouts");
    } finally {
        sockets.forEach((s) => s.destroy());
        await g.close();
    }
});

test("a hostile client cannot push the gateway's memory past its bound: 1,000 connections sending 1 MB bodies, then 10,000 refused requests", { timeout: 240_000 }, async () => {
    // The gateway alone in a child process, so its memory is measured without the client's.
    // Bound: 256 connections, 8 MiB of bodies at once. Live memory is then about 8 MiB + 256 x
    // 100 KiB; the peak RSS also holds refused bodies the collector has not freed yet. Stated
    // bound on the peak RSS growth: 80 MiB (measured: 33 to 46 MiB; the gateway without these
    // bounds: about 450 MiB).
    const BOUND = 80 << 20;
    const sensorKey = key();
    const script = `
        const { startGateway } = require(${JSON.stringify(path.join(__dirname, "gateway.ts"))});
        startGateway({
            site: "lab", listen: [{ host: "::1", port: 0 }], allow: ["::1/128"], sensorKeys: { s1: ${JSON.stringify(sensorKey)} },
            producer: { async send() { return {}; }, async close() {} },
            maxConnections: 256, maxInflightBytes: 8 << 20, refusalLogMs: 1000, log: (m) => process.stderr.write(m + "\\n"),
        }).then((g) => process.stdout.write(JSON.stringify(g.addresses) + "\\n"));
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    try {
        const address: string = await new Promise((resolve, reject) => {
            child.stdout.once("data", (c) => resolve(JSON.parse(String(c))[0]));
            child.once("exit", (code) => reject(new Error(`the gateway exited (${code}): ${stderr}`)));
        });
        const port = Number(address.split(":").at(-1));
        const target = `http://${address}/v1/readings`;
        const mem = (field: "VmRSS" | "VmHWM") => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) * 1024;
        // Warm up: every path once, so what follows measures the flood, not the first use.
        const warm = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ sensor: "s1", kind: "k", value: i, seq: i })));
        for (let i = 0; i < 20; i++) {
            assert.equal((await fetch(target, { method: "POST", body: warm, headers: signReadings(sensorKey, "s1", warm) })).status, 202);
            await fetch(target, { method: "POST", body: warm, headers: { "content-type": "application/json" } }).then((r) => r.arrayBuffer());
        }
        await new Promise((r) => setTimeout(r, 1200));
        const base = mem("VmRSS");
        const linesBefore = stderr.split("\n").length;
        const t0 = Date.now();

        // 1,000 connections at once, each a well-formed signed request (a real sensor's id, a fresh
        // timestamp, a made-up MAC) with a 1 MB body: to check the MAC the gateway must read it.
        const body = Buffer.alloc(1_000_000, "x");
        const head = (n: number) => Buffer.from(`POST /v1/readings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${n}\r\n` +
            `${SIGNATURE_HEADERS.sensor}: s1\r\n${SIGNATURE_HEADERS.timestamp}: ${Math.floor(Date.now() / 1000)}\r\n${SIGNATURE_HEADERS.signature}: v1=${"ab".repeat(32)}\r\n\r\n`);
        const answers = await Promise.all(Array.from({ length: 1000 }, () => new Promise<string>((resolve) => {
            const s = net.connect({ host: "::1", port });
            let got = "";
            s.on("data", (c) => (got += c));
            s.on("error", () => undefined);
            s.on("close", () => resolve(got.slice(9, 12) || "closed"));
            s.write(head(body.length));
            s.write(body);
        })));
        const by = (code: string) => answers.filter((a) => a === code).length;
        // 10,000 refused requests: unsigned, and from a web page.
        for (let i = 0; i < 100; i++) {
            await Promise.all(Array.from({ length: 100 }, (_, k) => fetch(target, { method: "POST", body: "{}", headers: k % 2 ? { "content-type": "application/json" } : { "content-type": "application/json", origin: "https://evil.example" } }).then((r) => r.arrayBuffer())));
        }
        await new Promise((r) => setTimeout(r, 1200));
        const growth = mem("VmHWM") - base;
        const seconds = (Date.now() - t0) / 1000;
        const lines = stderr.split("\n").length - linesBefore;
        console.log(`  flood: ${by("401")} x 401, ${by("503")} x 503 busy, ${by("closed")} closed at the cap; peak RSS ${(base / 2 ** 20).toFixed(0)} MiB + ${(growth / 2 ** 20).toFixed(1)} MiB (bound ${BOUND / 2 ** 20} MiB); ${lines} log lines in ${seconds.toFixed(1)} s`);
        assert.equal(by("202"), 0);
        assert.ok(by("401") + by("503") + by("closed") === 1000);
        assert.ok(growth < BOUND, `peak RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB, over the ${BOUND / 2 ** 20} MiB bound`);
        assert.ok(lines <= Math.ceil(seconds) + 2, `one log line a second at most, not one per refusal: ${lines} in ${seconds.toFixed(1)} s`);
    } finally {
        child.kill("SIGKILL");
    }
});

test("readingEnvelope: the reading's identity makes a resend the same event", () => {
    const a = readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5 }, "::1", 1_795_400_000_000_000);
    const b = readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5 }, "::1", 1_795_400_000_900_000);
    assert.ok(a.ok && b.ok);
    assert.equal(a.event.id, b.event.id);
    assert.deepEqual(readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5, time: "yesterday" }, "::1", 1), { ok: false, reason: 'time: "yesterday" is neither ms since the epoch nor ISO 8601' });
});
