// The event pipeline end to end, against a real KRaft broker and a real ledger: a sensor reading
// goes in over HTTP and reaches the ledger and the lake exactly once, also when the consumer is
// killed mid-batch; invalid input reaches the dead-letter topic with its reason, and a reading
// without its sensor's signature reaches nothing; an id the ledger holds, sent again with another
// payload, is dead-lettered and raises an alert; a replay re-derives identical ledger heads, in
// the same ledger and in an empty one.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BrokerLayout } from "../../lab/kafka-broker";
import { eventConsumer, resetGroup } from "../../runtime/events/kafka";
import { readAvroFile } from "../../runtime/events/lake-sink";
import type { PipelineConfig } from "../../runtime/events/pipeline";
import { DEAD_LETTER_TOPIC } from "../../model/events/topics";
import { decodeEvent } from "../../model/events/schema";
import { getJson, missingKafka, PipelineProcess, shardEntries, signedHeaders, startTestBroker, startTestLedger, stopTestBroker, testPipelineConfig, waitFor, type TestLedger } from "./fixture";

const skip = missingKafka();
let broker: BrokerLayout | undefined;
let ledger: TestLedger | undefined;
let dir: string;
let cfg: PipelineConfig;
let configFile: string;
let gateway: PipelineProcess;
let sinks: PipelineProcess;
const others: { close(): Promise<void> }[] = [];

const SENSORS = ["raptor-pen/temp-1", "fence-07", "bulk-1", ...Array.from({ length: 7 }, (_, i) => `gate-counter-${i}`)];

/** POSTs readings signed by `sensor` (or with the headers given instead). */
async function post(body: unknown, sensor: string, headers?: Record<string, string>): Promise<{ status: number; body: any }> {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    const res = await fetch(`http://[::1]:${cfg.gateway.listen[0].port}/v1/readings`, { method: "POST", headers: headers ?? signedHeaders(cfg, sensor, text), body: text });
    return { status: res.status, body: await res.json() };
}

/** Everything on a topic from its start, until `enough` says so. */
async function readTopic<T>(topic: string, map: (m: any) => T, enough: (got: T[]) => boolean, what: string): Promise<T[]> {
    const consumer = eventConsumer({ brokers: cfg.brokers, clientId: "topic-test", groupId: `topic-test-${process.pid}-${Date.now()}` });
    const stream = await consumer.consume({ topics: [topic], mode: "earliest", autocommit: false });
    const got: T[] = [];
    stream.on("data", (m) => got.push(map(m)));
    try {
        await waitFor(what, () => (enough(got) ? true : undefined), 30_000, 20);
        await new Promise((r) => setTimeout(r, 500)); // anything more would show up now
    } finally {
        await stream.close();
        await consumer.close(true);
    }
    return got;
}
const deadLetter = (m: any) => ({ reason: m.headers.get("nublar-reason")! as string, origin: m.headers.get("nublar-origin")! as string, value: m.value.toString() as string });

async function lakeEvents(topic: string) {
    const root = path.join(cfg.lakeDir, "events", topic);
    if (!fs.existsSync(root)) return { files: [] as string[], events: [] as Awaited<ReturnType<typeof readAvroFile>> };
    const files = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith(".avro")).map((f) => path.join(root, f));
    const events = (await Promise.all(files.map((f) => readAvroFile(fs.readFileSync(f))))).flat();
    return { files, events };
}

const sensorEntries = async (socket: string) => (await shardEntries(socket, "habitat")).filter((e) => e.source === "sensor-gateway");

function startSinks(env: Record<string, string> = {}, configPath = configFile) {
    sinks = new PipelineProcess(configPath, "ledger,lake", cfg.socket, env);
    return sinks.start();
}

describe("the event pipeline", { skip }, () => {
    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-pipeline-"));
        [broker, ledger] = await Promise.all([startTestBroker(), startTestLedger()]);
        cfg = await testPipelineConfig(broker, ledger.socket, dir, SENSORS);
        configFile = path.join(dir, "pipeline.json");
        fs.writeFileSync(configFile, JSON.stringify(cfg), { mode: 0o600 });
        // The gateway in its own process, with its own stats socket, so killing the sinks spares it.
        const gwConfig = path.join(dir, "gateway.json");
        fs.writeFileSync(gwConfig, JSON.stringify({ ...cfg, socket: path.join(dir, "gateway.sock") }), { mode: 0o600 });
        gateway = new PipelineProcess(gwConfig, "gateway", path.join(dir, "gateway.sock"));
        await gateway.start();
        await startSinks();
    });

    after(async () => {
        await gateway?.stop();
        await sinks?.stop();
        for (const o of others) await o.close().catch(() => undefined);
        await ledger?.close();
        await stopTestBroker(broker);
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test("a sensor reading posted to the gateway is in the ledger's habitat shard and in the lake, once", async () => {
        const r = await post({ sensor: "raptor-pen/temp-1", kind: "temperature", value: 24.5, unit: "C", seq: 1 }, "raptor-pen/temp-1");
        assert.equal(r.status, 202, JSON.stringify(r.body));
        assert.deepEqual(r.body.ids, ["sensor/raptor-pen/temp-1/1"]);
        const entries = await waitFor("the reading in the ledger", async () => {
            const e = await sensorEntries(ledger!.socket);
            return e.length ? e : undefined;
        }, 30_000);
        assert.equal(entries.length, 1);
        assert.equal(entries[0].payload.type, "sensor-reading");
        assert.equal(entries[0].payload.sensor, "raptor-pen/temp-1");
        assert.equal(entries[0].payload.value, 24.5);
        const lake = await waitFor("the reading in the lake", async () => {
            const l = await lakeEvents("nublar.sensors");
            return l.events.length ? l : undefined;
        }, 30_000);
        assert.deepEqual(lake.events.map((e) => e.id), ["sensor/raptor-pen/temp-1/1"]);
        assert.match(lake.files[0], /date=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/nublar\.sensors\+0\+0{20}\+0{20}\.avro$/);

        // The sensor resends (it never saw the 202): the same reading, so nothing new anywhere.
        assert.equal((await post({ sensor: "raptor-pen/temp-1", kind: "temperature", value: 24.5, unit: "C", seq: 1 }, "raptor-pen/temp-1")).status, 202);
        await waitFor("the resend consumed", async () => ((await getJson(cfg.socket, "/stats")).ledger.duplicates >= 1 ? true : undefined), 30_000);
        assert.equal((await sensorEntries(ledger!.socket)).length, 1, "the resend is not a second ledger entry");
        await waitFor("the resend seen by the lake", async () => ((await getJson(cfg.socket, "/stats")).lake.resends >= 1 ? true : undefined), 30_000);
        assert.deepEqual((await lakeEvents("nublar.sensors")).events.map((e) => e.id), ["sensor/raptor-pen/temp-1/1"], "nor a second lake record");
    });

    test("invalid readings are refused with their reason and land in the dead-letter topic with it; unsigned ones reach nothing", async () => {
        // Any host in the site, speaking for fence-07 without its key: refused, and not even dead-lettered.
        const forged = { sensor: "fence-07", kind: "fence-voltage", value: 0, unit: "kV", seq: 999_999 };
        assert.equal((await post(forged, "fence-07", { "content-type": "application/json" })).status, 401);
        assert.equal((await post(forged, "fence-07", signedHeaders(cfg, "bulk-1", JSON.stringify(forged)))).status, 401, "another sensor's key");
        assert.equal((await getJson(path.join(dir, "gateway.sock"), "/stats")).gateway.unauthorized, 2);
        const bad = await post([{ sensor: "fence-07", kind: "fence-voltage", value: "high", seq: 3 }, { sensor: "fence-07", kind: "Fence Voltage", value: 9.1, seq: 4 }], "fence-07");
        assert.equal(bad.status, 422);
        assert.deepEqual(bad.body.rejected.map((x: { index: number }) => x.index), [0, 1]);
        assert.match(bad.body.rejected[0].reason, /value: "high" is not a number/);
        assert.match(bad.body.rejected[1].reason, /payload\.kind: 'Fence Voltage' is not a reading kind/);
        const notJson = await post("{not json", "fence-07");
        assert.equal(notJson.status, 400);
        assert.match(notJson.body.error, /not JSON/);
        const mixed = await post([{ sensor: "fence-07", kind: "fence-voltage", value: 9.2, unit: "kV", seq: 5 }, { sensor: "fence-07", seq: 6 }], "fence-07");
        assert.equal(mixed.status, 202, "the valid one is accepted");
        assert.equal(mixed.body.accepted, 1);
        assert.match(mixed.body.rejected[0].reason, /kind is missing/);

        const letters = await readTopic(DEAD_LETTER_TOPIC, deadLetter, (l) => l.length >= 4, "4 dead letters");
        assert.deepEqual(letters.map((l) => l.origin), Array(4).fill("sensor-gateway [::1]"), "four, none of them the unsigned readings");
        assert.ok(!letters.some((l) => l.value.includes("999999")));
        assert.match(letters.find((l) => l.value === "{not json")!.reason, /not JSON/);
        assert.ok(letters.some((l) => /is not a number/.test(l.reason) && JSON.parse(l.value).value === "high"));
    });

    test("a request of 8,000 readings (over a megabyte on the bus, the broker's batch limit) is accepted: sends are split", async () => {
        const readings = Array.from({ length: 8000 }, (_, i) => ({ sensor: "bulk-1", kind: "gate-count", value: i, unit: "people", seq: 500_000 + i }));
        const r = await post(readings, "bulk-1");
        assert.equal(r.status, 202, JSON.stringify(r.body).slice(0, 300));
        assert.equal(r.body.accepted, 8000);
        await waitFor("all 8,000 in the ledger", async () => ((await sensorEntries(ledger!.socket)).filter((e) => e.payload.sensor.startsWith("bulk-")).length === 8000 ? true : undefined), 90_000, 200);
    });

    test("the same id with another payload is dead-lettered with its reason and raises an alert; the ledger keeps the first", async () => {
        const first = { sensor: "fence-07", kind: "fence-voltage", value: 9.7, unit: "kV", seq: 77 };
        assert.equal((await post(first, "fence-07")).status, 202);
        await waitFor("the first in the ledger", async () => ((await sensorEntries(ledger!.socket)).some((e) => e.payload.sensor === "fence-07" && e.payload.seq === 77) ? true : undefined), 30_000);
        // The same seq again with another value (a sensor restarted without a new boot, or a stolen key).
        const r = await post({ ...first, value: 0 }, "fence-07");
        assert.equal(r.status, 202, "the gateway cannot know; the ledger sink does");
        assert.deepEqual(r.body.ids, ["sensor/fence-07/77"]);
        const conflicts = await readTopic(DEAD_LETTER_TOPIC, deadLetter, (l) => l.some((x) => /id conflict/.test(x.reason)), "the conflict's dead letter");
        const c = conflicts.filter((l) => /id conflict/.test(l.reason));
        assert.equal(c.length, 1, "one conflict: the resend of an identical reading (first test) is none");
        assert.match(c[0].reason, /^id conflict: sensor\/fence-07\/77 is already in the ledger \(shard habitat, seq \d+\) with another payload: held .*"value":9\.7.*, refused .*"value":0/);
        assert.match(c[0].origin, /^nublar\.sensors\/0@\d+$/);
        const alerts = await readTopic("nublar.alerts", (m) => decodeEvent(m.value), (a) => a.length >= 1, "the id-conflict alert");
        const alert = alerts.find((a) => a.ok && a.event.type === "alert" && a.event.payload.class === "id-conflict");
        assert.ok(alert?.ok && alert.event.type === "alert", JSON.stringify(alerts));
        assert.equal(alert.event.payload.node, "fence-07");
        assert.equal(alert.event.payload.severity, "error");
        assert.match(alert.event.payload.summary, /sensor\/fence-07\/77: a sensor-reading whose id the ledger already holds/);
        const held = (await sensorEntries(ledger!.socket)).filter((e) => e.payload.sensor === "fence-07" && e.payload.seq === 77);
        assert.deepEqual(held.map((e) => e.payload.value), [9.7], "the ledger keeps the first");
    });

    test("killed right after the ledger acknowledged a batch, before committing: restarted, nothing is written twice or lost", async () => {
        await sinks.stop();
        const before = (await sensorEntries(ledger!.socket)).length;
        // Readings in many requests, so the consumer sees many batches.
        const N = 6000;
        const sends: Promise<{ status: number }>[] = [];
        for (let i = 0; i < N; i += 100) {
            const sensor = `gate-counter-${(i / 100) % 7}`;
            sends.push(post(Array.from({ length: 100 }, (_, k) => ({ sensor, kind: "gate-count", value: i + k, seq: 1000 + i + k })), sensor));
        }
        for (const s of await Promise.all(sends)) assert.equal(s.status, 202, `${JSON.stringify(s)}\n${gateway.tail()}`);
        // The consumer dies with SIGKILL after its first acknowledged batch, offsets uncommitted
        // (it may die before its stats socket is even up: the backlog is waiting for it).
        await startSinks({ NUBLAR_FAULT: "nublar-ledger:after-sink:1" }).catch((err: Error) => {
            if (!/exited/.test(err.message)) throw err;
        });
        await sinks.exited();
        assert.equal(sinks.child!.signalCode, "SIGKILL", "the fault killed the consumer mid-stream");
        const partial = (await sensorEntries(ledger!.socket)).length - before;
        assert.ok(partial > 0 && partial < N, `the ledger got part of the stream before the kill (${partial} of ${N})`);

        // And once more at a random moment, by us.
        await startSinks();
        await waitFor("more progress", async () => ((await sensorEntries(ledger!.socket)).length - before > partial ? true : undefined), 30_000, 20);
        await sinks.stop("SIGKILL");

        await startSinks();
        await waitFor("all readings in the ledger", async () => {
            const e = await sensorEntries(ledger!.socket);
            return e.length >= before + N ? e : undefined;
        }, 90_000, 200);
        await new Promise((r) => setTimeout(r, 1000)); // anything extra would show up now
        const all = await sensorEntries(ledger!.socket);
        assert.equal(all.length, before + N, "every reading exactly once");
        assert.equal(new Set(all.map((e) => `${e.payload.sensor}/${e.payload.seq}`)).size, all.length, "no reading twice");
        const stats = await getJson(cfg.socket, "/stats");
        console.log(`  after two kills: ledger ${all.length} entries; this run dropped ${stats.ledger.duplicates} re-read duplicates by key; lake ${stats.lake.files} files, ${stats.lake.skipped} re-read events skipped, ${stats.lake.resends} resends dropped`);

        const lake = await waitFor("all readings in the lake", async () => {
            const l = await lakeEvents("nublar.sensors");
            return l.events.length >= before + N ? l : undefined;
        }, 60_000, 200);
        const ids = lake.events.map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, "no event twice in the lake");
        assert.equal(ids.length, before + N);
    });

    test("a replay (the group reset to the start) re-derives identical heads: in the same ledger, and in an empty one", async () => {
        const headOf = async (socket: string) => {
            const e = await shardEntries(socket, "habitat");
            return { seq: e.length, hash: e[e.length - 1]?.hash };
        };
        const head = await headOf(ledger!.socket);
        await sinks.stop();
        await resetGroup({ brokers: cfg.brokers, clientId: "replay-test" }, "nublar-ledger");
        await startSinks();
        await waitFor("the replay to reach the end", async () => {
            const s = await getJson(cfg.socket, "/stats");
            return s.ledger.duplicates >= head.seq ? true : undefined;
        }, 90_000, 200);
        assert.deepEqual(await headOf(ledger!.socket), head, "the same ledger: nothing appended, same head");

        // An empty ledger, fed by the same topics from the start: the same chain, hash for hash.
        await sinks.stop();
        const fresh = await startTestLedger();
        others.push(fresh);
        const freshConfig = path.join(dir, "pipeline-fresh.json");
        fs.writeFileSync(freshConfig, JSON.stringify({ ...cfg, ledgerSocket: fresh.socket }), { mode: 0o600 });
        await resetGroup({ brokers: cfg.brokers, clientId: "replay-test" }, "nublar-ledger");
        await startSinks({}, freshConfig);
        const rebuilt = await waitFor("the empty ledger to catch up", async () => {
            const h = await headOf(fresh.socket);
            return h.seq >= head.seq ? h : undefined;
        }, 90_000, 200);
        assert.deepEqual(rebuilt, head, "identical head: same seq and hash");
        // Comparing every replayed duplicate with the ledger's entry found no conflict but the real one.
        const letters = await readTopic(DEAD_LETTER_TOPIC, deadLetter, (l) => l.some((x) => /id conflict/.test(x.reason)), "the dead letters");
        const conflicted = new Set(letters.filter((l) => /id conflict/.test(l.reason)).map((l) => /^id conflict: (\S+)/.exec(l.reason)![1]));
        assert.deepEqual([...conflicted], ["sensor/fence-07/77"]);
    });
});
