// The ingest service over its unix socket, and the agent-event collector, against a real ledger.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { execFile } from "node:child_process";
import { writeServiceConfig, type ServiceConfig } from "../../runtime/ledger/config";
import { generateSigningKey } from "../../model/ledger/core/checkpoint";
import { EventCollector } from "../../runtime/ledger/collect";
import { IngestService } from "../../runtime/ledger/service";
import { ShardWriter } from "../../runtime/ledger/writer";
import { ROLES } from "../../runtime/ledger/pg/schema";
import { LOOPBACK, type LedgerCluster } from "../../lab/ledger/cluster";
import { verifyShard } from "../../runtime/ledger/verify-shard";
import { LakeDirectorySink } from "../../runtime/ledger/sinks";
import { auditorAccess, ingestAccess, startTestCluster } from "./fixture";

let cluster: LedgerCluster;
let svc: IngestService;
let socket: string;
let config: ServiceConfig;
const keys = generateSigningKey();

before(async () => {
    cluster = await startTestCluster(["network", "habitat", "collect"]);
    const dir = cluster.layout.dir;
    fs.writeFileSync(path.join(dir, "sign.key"), keys.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, "sign.pub"), keys.publicKey.export({ type: "spki", format: "pem" }));
    socket = path.join(dir, "ingest.sock");
    const p = cluster.layout.passwords;
    config = {
        site: "test", shards: ["network", "habitat"], endpoints: cluster.layout.pgPorts.map((port) => ({ host: LOOPBACK, port })),
        ingest: { user: ROLES.ingest, password: p.ingest }, auditor: { user: ROLES.auditor, password: p.auditor },
        redis: { host: LOOPBACK, port: cluster.layout.redisPort, password: p.redis },
        checkpoint: { entries: 100, ms: 1000 }, signingKeyFile: path.join(dir, "sign.key"), publicKeyFile: path.join(dir, "sign.pub"),
        lakeDir: path.join(dir, "lake"), listen: { socket }, maxBatch: 1000,
    };
    svc = new IngestService(config, () => undefined);
    await svc.start();
});
after(async () => {
    await svc?.stop();
    await cluster?.destroy();
});

function call(method: string, urlPath: string, body?: string): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ socketPath: socket, method, path: urlPath, headers: body ? { "content-type": "application/json" } : {} }, (res) => {
            let data = "";
            res.on("data", (c) => (data += c));
            res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
        });
        req.on("error", reject);
        req.end(body);
    });
}

test("POST appends and answers with seqs once committed; GET reads back; bad requests are refused and write nothing", async () => {
    const ok = await call("POST", "/v1/shards/habitat/entries", JSON.stringify({ entries: [{ source: "paddock-7", payload: { c: 24.5 }, key: "k1" }, { source: "paddock-7", payload: { c: 24.6 } }] }));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body.results.map((r: { seq: number }) => r.seq), [1, 2]);
    const again = await call("POST", "/v1/shards/habitat/entries", JSON.stringify({ entries: [{ source: "paddock-7", payload: { c: 24.5 }, key: "k1" }] }));
    assert.deepEqual([again.body.results[0].seq, again.body.results[0].duplicate], [1, true]);
    for (const [body, code, why] of [
        ["{not json", 400, /not JSON/],
        [JSON.stringify({ nope: 1 }), 400, /"entries"/],
        [JSON.stringify({ entries: [{ source: "x" }] }), 400, /entry 0: payload is missing/],
        [JSON.stringify({ entries: [{ source: "x", payload: 1, time: "yesterday" }] }), 400, /entry 0: time/],
    ] as const) {
        const r = await call("POST", "/v1/shards/habitat/entries", body);
        assert.equal(r.status, code, JSON.stringify(r.body));
        assert.match(r.body.error, why);
    }
    assert.equal((await call("POST", "/v1/shards/nope/entries", JSON.stringify({ entries: [] }))).status, 404);
    assert.equal((await call("GET", "/v1/nothing")).status, 404);
    assert.equal((await call("DELETE", "/v1/shards/habitat/entries")).status, 405);
    const read = await call("GET", "/v1/shards/habitat/entries?from=1&limit=10");
    assert.deepEqual(read.body.entries.map((e: { payload: unknown }) => e.payload), [{ c: 24.5 }, { c: 24.6 }], "nothing from the refused requests");
    assert.equal((await call("GET", "/v1/shards/habitat/entries?from=0")).status, 400);
    const status = await call("GET", "/v1/status");
    assert.equal(status.body.shards.habitat.head, 2);
    assert.equal(fs.statSync(socket).mode & 0o777, 0o660);
});

test("the collector appends agent events exactly once, across restarts and re-reads, and keeps malformed lines", async () => {
    const dir = cluster.layout.dir;
    const events = path.join(dir, "gate-events.jsonl");
    const state = path.join(dir, "collect-offsets.json");
    const line = (seq: number) => JSON.stringify({ at: 1_795_000_000_000 + seq + 0.25, seq, node: "gate", type: "bfd", session: "path/x", to: seq % 2 ? "down" : "up" });
    fs.writeFileSync(events, `${line(1)}\n${line(2)}\nthis is not json\n${line(3)}\n{"partial":`);
    const writer = await ShardWriter.open({ access: ingestAccess(cluster, "collect"), signingKey: keys.privateKey, checkpointEvery: { entries: 100, ms: 60_000 }, sinks: [new LakeDirectorySink(path.join(dir, "lake"))] });
    try {
        const c1 = new EventCollector(writer, [{ node: "gate", file: events }, { node: "absent", file: path.join(dir, "none.jsonl") }], state);
        await c1.poll();
        assert.deepEqual(c1.stats, { appended: 4, duplicates: 0, malformed: 1, errors: 0 }, "the partial last line waits");
        fs.appendFileSync(events, `"line"}\n${line(4)}\n`);
        await c1.poll();
        assert.equal(c1.stats.appended, 6);
        // A crash before the offsets were saved: a new collector re-reads everything, appends nothing new.
        fs.rmSync(state);
        const c2 = new EventCollector(writer, [{ node: "gate", file: events }], state);
        await c2.poll();
        assert.deepEqual([c2.stats.appended, c2.stats.duplicates], [0, 6]);
        // A restarted collector with its offsets reads only what is new.
        fs.appendFileSync(events, `${line(5)}\n`);
        const c3 = new EventCollector(writer, [{ node: "gate", file: events }], state);
        await c3.poll();
        assert.deepEqual([c3.stats.appended, c3.stats.duplicates], [1, 0]);
    } finally {
        await writer.close();
    }
    const report = await verifyShard({ access: auditorAccess(cluster, "collect") });
    assert.equal(report.entries, 7);
    assert.ok(report.ok);
});

test("the CLI as an auditor runs it: verify's exit codes, proof and check-proof, append and read through the service", async () => {
    const dir = cluster.layout.dir;
    const file = path.join(dir, "cli.json");
    writeServiceConfig(file, config);
    // Asynchronous: the service answering the CLI runs in this process.
    const nublar = (...args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [path.resolve(__dirname, "../../cli/nublar.js"), ...args], { encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
            resolve({ status: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
        });
    });
    const appended = await nublar("ledger", "append", "--config", file, "--shard", "network", "--source", "cli", "--key", "cli-1", "--json", '{"hello":"park"}');
    assert.equal(appended.status, 0, appended.stderr);
    const seq = JSON.parse(appended.stdout).seq;
    assert.match((await nublar("ledger", "read", "--config", file, "--shard", "network", "--from", String(seq), "--limit", "1")).stdout, /"hello":"park"/);
    await new Promise((r) => setTimeout(r, 1500)); // the 1 s timer cuts a checkpoint
    const ok = await nublar("ledger", "verify", "--config", file, "--shard", "network", "--json");
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal(JSON.parse(ok.stdout).ok, true);
    const keyless = path.join(dir, "keyless.json");
    writeServiceConfig(keyless, { ...config, publicKeyFile: path.join(dir, "no-such.pub") });
    assert.equal((await nublar("ledger", "verify", "--config", keyless, "--shard", "network")).status, 4, "consistent, but nothing proven without a key");
    assert.equal((await nublar("ledger", "verify", "--config", file, "--shard", "security")).status, 1, "not a shard of this ledger");
    assert.equal((await nublar("ledger", "verify", "--config", file)).status, 2, "usage");
    assert.equal((await nublar("ledger", "verify", "--config", file, "--shard", "network", "--from", "x")).status, 2);
    const proofFile = path.join(dir, "proof.json");
    const proof = await nublar("ledger", "proof", "--config", file, "--shard", "network", "--seq", String(seq), "--out", proofFile);
    assert.equal(proof.status, 0, proof.stderr);
    assert.equal((await nublar("ledger", "check-proof", proofFile, "--public-key", config.publicKeyFile)).status, 0);
    const forged = JSON.parse(fs.readFileSync(proofFile, "utf8"));
    forged.entry.payload = '{"hello":"forged"}';
    fs.writeFileSync(proofFile, JSON.stringify(forged));
    const bad = await nublar("ledger", "check-proof", proofFile, "--public-key", config.publicKeyFile);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /INVALID: entry \d+ does not hash/);
    // Tampering as a superuser makes verify exit 1 and name the seq.
    const primary = (await cluster.primary())!;
    await primary.superuser("unicorn_network", async (c) => {
        await c.query("SET session_replication_role = replica");
        await c.query(`UPDATE ledger.entries SET payload = '{"hello":"edited"}' WHERE seq = ${seq}`);
    });
    const tampered = await nublar("ledger", "verify", "--config", file, "--shard", "network");
    assert.equal(tampered.status, 1);
    assert.match(tampered.stdout, new RegExp(`TAMPERED: first divergent seq ${seq}`));
    // Unreachable: every endpoint refuses.
    const dead = path.join(dir, "dead.json");
    writeServiceConfig(dead, { ...config, endpoints: [{ host: "::1", port: 1 }] });
    const unreachable = await nublar("ledger", "verify", "--config", dead, "--shard", "network");
    assert.equal(unreachable.status, 3, unreachable.stderr);
    assert.match(unreachable.stderr, /no instance reachable/);
});
