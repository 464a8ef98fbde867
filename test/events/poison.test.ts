// Poison on the bus (security review, item 1), against a real KRaft broker and a real ledger:
//   - a fuzz of 100,000 mutated events interleaved with 20,000 valid ones, produced to every topic
//     the pipeline reads, through the pipeline daemon (gateway, ledger, lake and alerts in one
//     process, with a 512 MB heap): it stays up, its memory stays bounded, every poison message is
//     in the dead-letter topic with a reason (once per consumer group that reads its topic), and
//     every valid event is in the ledger and in the lake exactly once;
//   - a message the sink refuses is dead-lettered after a bounded number of tries and the
//     offsets move past it, while a sink outage is retried and loses nothing;
//   - a crash in one consumer restarts that one, and the process and the others go on;
//   - a broker outage breaks every consumer's stream: each is started again and delivers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BrokerLayout } from "../../lab/kafka-broker";
import { startBroker, stopBroker } from "../../lab/kafka-broker";
import { ensureTopics, eventConsumer, eventProducer, publishEvents, type EventProducer } from "../../runtime/events/kafka";
import { runConsumer, SinkRefusal, type Delivered } from "../../runtime/events/consume";
import { readAvroFile } from "../../runtime/events/lake-sink";
import type { PipelineConfig } from "../../runtime/events/pipeline";
import { decodeEvent, encodeEvent, ENVELOPE_TYPE, nowUs, toAvro, type NublarEvent } from "../../model/events/schema";
import { DEAD_LETTER_TOPIC, TOPICS } from "../../model/events/topics";
import { getJson, missingKafka, PipelineProcess, shardEntries, startTestBroker, startTestLedger, stopTestBroker, testPipelineConfig, waitFor, type TestLedger } from "./fixture";
import { avroLong, ENVELOPE_HEADER, POISON_41 } from "../helpers/avro-bytes";
import { prng } from "../../model/testing/prng";

const skip = missingKafka();
const POISON = 100_000;
const VALID = 20_000;
/** The pipeline daemon's heap, as in the review (V8 aborted after about 6 s at this heap). */
const HEAP_MB = 512;
/** What the daemon's resident memory must stay under, all the fuzz long (heap limit + code, buffers, the Kafka clients). */
const RSS_BOUND_MB = 400;
const SEED = Number(process.env.NUBLAR_FUZZ_SEED ?? 20_260_517);
const RUN = `fz${Date.now().toString(36)}`;
const ALL_PARTS = "gateway,ledger,lake,alerts";

let broker: BrokerLayout | undefined;
let ledger: TestLedger | undefined;
let dir: string;
let cfg: PipelineConfig;
let configFile: string;
let producer: EventProducer;
let daemon: PipelineProcess | undefined;

/** Which consumer groups read a topic: each dead-letters what it cannot decode. */
const GROUPS_OF: Record<string, string[]> = {
    [TOPICS.sensors.name]: ["nublar-ledger", "nublar-lake"],
    [TOPICS.network.name]: ["nublar-ledger", "nublar-lake", "nublar-alerts"],
    [TOPICS.telemetry.name]: ["nublar-lake", "nublar-alerts"],
    [TOPICS.deploys.name]: ["nublar-ledger", "nublar-lake"],
    [TOPICS.audits.name]: ["nublar-lake"],
    [TOPICS.alerts.name]: ["nublar-lake"],
};
const TOPIC_NAMES = Object.keys(GROUPS_OF);

const mulberry32 = prng;
const long = avroLong;
const HEADER = ENVELOPE_HEADER;

/** The n-th valid event of this run: its topic follows from its type; the ledger's payload tells n back. */
function validEvent(n: number, t0: number): NublarEvent {
    const base = { id: `fuzz/${RUN}/${n}`, site: "lab", source: "fuzz-test", time: t0 + n };
    switch (n % 10) {
        case 4: return { ...base, type: "agent-notice", payload: { node: "gate", kind: "agent", fields: JSON.stringify({ n }), seq: n } };
        case 5: return { ...base, type: "route-change", payload: { node: "gate", event: "route-added", route: `::/0 fz ${n}`, prefix: null, via: null, metric: null, reason: null, seq: n } };
        case 6: return { ...base, type: "deploy", payload: { stack: "lab", node: "gate", generation: n, outcome: "confirmed", message: `fz ${n}`, durationMs: 1000 } };
        case 7: return { ...base, type: "path-latency", payload: { node: "gate", session: "gw/a", peer: "::1", rttMs: null, maxGapMs: 10, detectionMs: 60, windowMs: 5000 } };
        case 8: return { ...base, type: "audit-result", payload: { stack: "lab", reportId: `fz-${n}`, verdict: "pass", contentSha256: "00".repeat(32), findings: 0, mandatory: 0, estimatedAvailability: null } };
        default: return { ...base, type: "sensor-reading", payload: { sensor: `fz-${n % 64}`, kind: "temperature", value: n, unit: "C", seq: n, receivedAt: t0, address: "::1" } };
    }
}

interface Poison {
    topic: string;
    key: string;
    value: Buffer | undefined;
    kind: string;
    /** What its refusal must say, for the crafted ones. */
    reason?: RegExp;
}

/** 100,000 messages the decoder refuses: mutations of valid envelopes, random bytes, and crafted ones. */
function poisons(bases: Buffer[], t0: number): { list: Poison[]; discarded: number; kinds: Record<string, number> } {
    const rnd = mulberry32(SEED);
    const int = (n: number) => Math.floor(rnd() * n);
    const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
    const list: Poison[] = [];
    const kinds: Record<string, number> = {};
    let discarded = 0;
    const add = (kind: string, value: Buffer | undefined, o: { topic?: string; reason?: RegExp; key?: string } = {}) => {
        const i = list.length;
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        list.push({ topic: o.topic ?? TOPIC_NAMES[i % TOPIC_NAMES.length], key: `poison/${RUN}/${i}/${o.key ?? ""}`, value, kind, reason: o.reason });
    };
    // Crafted: the review's message on every topic; a deploy whose duration is NaN (valid Avro,
    // which the ledger refuses: before, it held the ledger's consumer forever); messages over the
    // size bound; keys of 100 KB (their dead letters keep 1 KiB of them); empty and null values.
    for (let k = 0; k < 12; k++) add("41-byte", POISON_41, { topic: TOPIC_NAMES[k % TOPIC_NAMES.length], reason: /payload\.members \(IngressChange\): a list of 200000000 items, but only 0 bytes are left/ });
    for (let k = 0; k < 5; k++) {
        const nan = { ...validEvent(6, t0), id: `nan/${RUN}/${k}`, payload: { ...(validEvent(6, t0).payload as object), durationMs: Number.NaN } } as NublarEvent;
        add("nan-deploy", Buffer.concat([HEADER, ENVELOPE_TYPE.toBuffer(toAvro(nan))]), { topic: TOPICS.deploys.name, reason: /payload\.durationMs: NaN is not a finite number/ });
    }
    for (let k = 0; k < 12; k++) add("oversize", Buffer.concat([HEADER, randomBytes(200_000 + int(100_000))]), { reason: /too large: \d+ bytes/ });
    for (let k = 0; k < 5; k++) add("100-KB key", POISON_41, { key: "k".repeat(100_000), reason: /a list of 200000000 items/ });
    for (let k = 0; k < 10; k++) add("empty", k % 2 ? Buffer.alloc(0) : undefined, { reason: /too short to be an event \(0 bytes\)/ });
    while (list.length < POISON) {
        const base = bases[int(bases.length)];
        let b: Buffer;
        let kind: string;
        switch (int(6)) {
            case 0: {
                kind = "bit flips";
                b = Buffer.from(base);
                for (let f = 1 + int(8); f > 0; f--) b[2 + int(b.length - 2)] ^= 1 << int(8);
                break;
            }
            case 1:
                kind = "truncation";
                b = base.subarray(0, int(base.length));
                break;
            case 2: {
                kind = "length inflation";
                const at = 2 + int(base.length - 2);
                const big = [2n * 10n ** 8n, 1n << 31n, 1n << 40n, 1n << 62n, BigInt(1000 + int(1 << 30))][int(5)];
                b = Buffer.concat([base.subarray(0, at), long(rnd() < 0.2 ? -big : big), rnd() < 0.5 ? base.subarray(at + 1) : Buffer.alloc(0)]);
                break;
            }
            case 3:
                kind = "random after the header";
                b = Buffer.concat([HEADER, randomBytes(int(200))]);
                break;
            case 4:
                kind = "random bytes";
                b = randomBytes(int(120));
                break;
            default: {
                kind = "splice";
                const other = bases[int(bases.length)];
                b = Buffer.concat([base.subarray(0, int(base.length)), other.subarray(int(other.length))]);
            }
        }
        // Only what the decoder refuses is poison (a flipped bit in a number may still be a valid event).
        if (decodeEvent(b).ok) {
            discarded++;
            continue;
        }
        add(kind, b);
    }
    return { list, discarded, kinds };
}

/** Resident memory of a process, in MB (Linux): now (VmRSS), or its peak so far (VmHWM, the kernel's high-water mark). */
function rssMb(pid: number, which: "VmRSS" | "VmHWM" = "VmRSS"): number | undefined {
    try {
        const m = new RegExp(`${which}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        return m ? Number(m[1]) / 1024 : undefined;
    } catch {
        return undefined;
    }
}

/** Every dead letter so far whose key starts with `prefix`. */
async function deadLetters(prefix: string, until: (n: number) => boolean, timeoutMs: number, progress?: () => void) {
    const consumer = eventConsumer({ brokers: cfg.brokers, clientId: "poison-dlq", groupId: `poison-dlq-${process.pid}-${Date.now()}`, maxWaitMs: 200 });
    const stream = await consumer.consume({ topics: [DEAD_LETTER_TOPIC], mode: "earliest", autocommit: false });
    const letters: { key: string; reason: string; origin: string; consumer: string; value: Buffer; truncatedFrom?: string; keyTruncatedFrom?: string }[] = [];
    stream.on("data", (m) => {
        if (!m.key?.startsWith(prefix)) return;
        letters.push({
            key: m.key, reason: m.headers.get("nublar-reason")!, origin: m.headers.get("nublar-origin")!, consumer: m.headers.get("nublar-consumer")!, value: m.value,
            truncatedFrom: m.headers.get("nublar-truncated-from"), keyTruncatedFrom: m.headers.get("nublar-key-truncated-from"),
        });
    });
    try {
        const deadline = Date.now() + timeoutMs;
        while (!until(letters.length)) {
            progress?.(); // may throw: the daemon died
            assert.ok(Date.now() < deadline, `timed out waiting for dead letters for ${prefix} (${letters.length} so far)`);
            await new Promise((r) => setTimeout(r, 250));
        }
    } finally {
        await stream.close().catch(() => undefined);
        await Promise.resolve(consumer.close(true)).catch(() => undefined);
    }
    return letters;
}

/** This run's valid events in the ledger, as n → how many times. */
async function ledgerCounts(): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    const bump = (n: number) => counts.set(n, (counts.get(n) ?? 0) + 1);
    for (const shard of ["habitat", "network", "security"]) {
        for (const e of await shardEntries(ledger!.socket, shard)) {
            if (e.source !== "fuzz-test") continue;
            const p = e.payload;
            if (p.type === "deploy") {
                if (p.message?.startsWith("fz ")) bump(p.generation);
            } else bump(p.seq);
        }
    }
    return counts;
}

/** Ids in the lake starting with `prefix`, as id → how many times. */
async function lakeIds(prefix: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const root = path.join(cfg.lakeDir, "events");
    if (!fs.existsSync(root)) return counts;
    for (const f of (fs.readdirSync(root, { recursive: true }) as string[]).filter((x) => x.endsWith(".avro"))) {
        for (const e of await readAvroFile(fs.readFileSync(path.join(root, f)))) if (e.id.startsWith(prefix)) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
    }
    return counts;
}

async function startDaemon(env: Record<string, string> = {}, parts = ALL_PARTS): Promise<PipelineProcess> {
    await daemon?.stop();
    daemon = new PipelineProcess(configFile, parts, cfg.socket, { NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}`, ...env });
    await daemon.start();
    // The alerts consumer starts at the end of its topics: wait until it holds a position.
    if (parts.includes("alerts")) {
        const marker = { ...validEvent(7, nowUs()), id: `marker/${RUN}/${Date.now()}` };
        await waitFor("the alerts consumer to read", async () => {
            await publishEvents(producer, [marker]);
            const s = await getJson(cfg.socket, "/stats");
            return s.consumers.alerts.delivered > 0 ? true : undefined;
        }, 60_000, 1000);
    }
    return daemon;
}

describe("poison on the bus", { skip }, () => {
    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-poison-"));
        [broker, ledger] = await Promise.all([startTestBroker(), startTestLedger()]);
        cfg = await testPipelineConfig(broker, ledger.socket, dir);
        configFile = path.join(dir, "pipeline.json");
        fs.writeFileSync(configFile, JSON.stringify(cfg), { mode: 0o600 });
        await ensureTopics({ brokers: cfg.brokers, clientId: "poison-test" }, cfg.topics);
        producer = eventProducer({ brokers: cfg.brokers, clientId: "poison-test", timeoutMs: 30_000 });
    });

    after(async () => {
        await daemon?.stop();
        await producer?.close().catch(() => undefined);
        await ledger?.close();
        await stopTestBroker(broker);
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test(`fuzz: ${POISON.toLocaleString("en")} poison messages among ${VALID.toLocaleString("en")} valid events, through the pipeline daemon: it stays up and bounded, every poison is dead-lettered, every valid event is delivered once`, { timeout: 600_000 }, async () => {
        const t0 = nowUs();
        const valid = Array.from({ length: VALID }, (_, n) => validEvent(n, t0));
        const bases = valid.slice(0, 2000).map(encodeEvent);
        const started = Date.now();
        const { list: poison, discarded, kinds } = poisons(bases, t0);
        console.log(`  ${poison.length} poison messages generated in ${Date.now() - started} ms (${discarded} mutants still valid, left out): ${JSON.stringify(kinds)}`);

        const d = await startDaemon();
        const pid = d.child!.pid!;
        let peak = 0;
        const samples: number[] = [];
        const sampler = setInterval(() => {
            const mb = rssMb(pid);
            if (mb === undefined) return;
            samples.push(mb);
            peak = Math.max(peak, mb);
        }, 100);
        const alive = () => {
            if (d.child!.exitCode !== null || d.child!.signalCode) assert.fail(`the daemon died (${d.child!.exitCode ?? d.child!.signalCode}):\n${d.tail()}`);
        };
        try {
            // Interleaved, in random order, in large sends (the producer splits them at 900 KB).
            const rnd = mulberry32(SEED + 1);
            const messages: { topic: string; key: string; value: Buffer | undefined }[] = [
                ...poison.map((p) => ({ topic: p.topic, key: p.key, value: p.value })),
                ...valid.map((e) => ({ topic: Object.values(TOPICS).find((t) => (t.carries as readonly string[]).includes(e.type))!.name, key: `valid/${e.id}`, value: encodeEvent(e) })),
            ];
            for (let i = messages.length - 1; i > 0; i--) {
                const j = Math.floor(rnd() * (i + 1));
                [messages[i], messages[j]] = [messages[j], messages[i]];
            }
            const sendStart = Date.now();
            for (let i = 0; i < messages.length; i += 10_000) await producer.send({ messages: messages.slice(i, i + 10_000) as never });
            console.log(`  produced ${messages.length} messages in ${Date.now() - sendStart} ms`);

            // Every poison message, dead-lettered by every group that reads its topic, with a reason.
            const expected = poison.reduce((s, p) => s + GROUPS_OF[p.topic].length, 0);
            const letters = await deadLetters(`poison/${RUN}/`, (n) => n >= expected, 400_000, alive);
            const byPoison = new Map<number, typeof letters>();
            for (const l of letters) {
                const i = Number(l.key.split("/")[2]);
                byPoison.set(i, [...(byPoison.get(i) ?? []), l]);
            }
            for (const [i, p] of poison.entries()) {
                const got = byPoison.get(i) ?? [];
                assert.deepEqual(got.map((l) => l.consumer).sort(), [...GROUPS_OF[p.topic]].sort(), `poison ${i} (${p.kind}, ${p.topic}): dead-lettered by ${got.map((l) => l.consumer).join(", ") || "nobody"}`);
                for (const l of got) {
                    assert.ok(l.reason?.length > 0, `poison ${i}: a reason`);
                    if (p.reason) assert.match(l.reason, p.reason, `poison ${i} (${p.kind})`);
                    assert.match(l.origin, new RegExp(`^${p.topic.replace(/\./g, "\\.")}/0@\\d+$`));
                    const sent = p.value ?? Buffer.alloc(0);
                    if (l.truncatedFrom) assert.ok(Number(l.truncatedFrom) === sent.length && sent.subarray(0, l.value.length).equals(l.value), `poison ${i}: truncated value`);
                    else assert.ok(l.value.equals(sent), `poison ${i} (${p.kind}): the bytes as sent`);
                    if (p.kind === "100-KB key") assert.equal(l.keyTruncatedFrom, String(p.key.length));
                }
            }
            assert.equal(letters.length, expected, "no poison message dead-lettered twice by one group");
            alive();

            // Every valid event, once in the ledger (sensors, network, deploys) and once in the lake (all).
            const ledgerExpected = valid.filter((e) => ["sensor-reading", "agent-notice", "route-change", "deploy"].includes(e.type)).map((e) => Number(e.id.split("/")[2]));
            const counts = await waitFor("the valid events in the ledger", async () => {
                const c = await ledgerCounts();
                return c.size >= ledgerExpected.length ? c : undefined;
            }, 180_000, 1000);
            const lake = await waitFor("the valid events in the lake", async () => {
                const l = await lakeIds(`fuzz/${RUN}/`);
                return l.size >= VALID ? l : undefined;
            }, 120_000, 1000);
            await new Promise((r) => setTimeout(r, 2000)); // anything extra would show up now
            const final = await ledgerCounts();
            assert.equal(final.size, ledgerExpected.length, "every valid ledger event is in the ledger");
            assert.ok(ledgerExpected.every((n) => final.get(n) === 1), "each exactly once");
            assert.equal([...final.values()].reduce((a, b) => a + b, 0), ledgerExpected.length, "and nothing else");
            assert.equal(counts.size, final.size);
            const lakeFinal = await lakeIds(`fuzz/${RUN}/`);
            assert.equal(lakeFinal.size, VALID, "every valid event is in the lake");
            assert.ok([...lakeFinal.values()].every((c) => c === 1), "each exactly once");
            assert.equal(lake.size, VALID);

            // Still up, nothing crashed, and the gateway in the same process still answers.
            alive();
            const stats = await getJson(cfg.socket, "/stats");
            for (const c of ["ledger", "lake", "alerts"]) assert.equal(stats.consumers[c].crashes, 0, `${c} never crashed`);
            const gw = await fetch(`http://[::1]:${cfg.gateway.listen[0].port}/v1/readings`, { method: "POST", headers: { "content-type": "application/json" }, body: "[]" });
            assert.ok(gw.status >= 200 && gw.status < 600, "the gateway answers");
            clearInterval(sampler);
            assert.ok(samples.length > 10, "RSS was sampled");
            // The samples may miss a short peak: the kernel's high-water mark does not.
            peak = Math.max(peak, rssMb(pid, "VmHWM")!);
            console.log(`  ${letters.length} dead letters (${expected} expected: each poison once per group reading its topic); ledger ${final.size} and lake ${lakeFinal.size} valid events, each once; daemon RSS peak ${peak.toFixed(0)} MB (VmHWM; ${samples.length} samples, median ${[...samples].sort((a, b) => a - b)[samples.length >> 1].toFixed(0)} MB) (bound ${RSS_BOUND_MB} MB, heap limit ${HEAP_MB} MB); ${(Date.now() - started) / 1000} s; consumers: ${JSON.stringify(stats.consumers)}`);
            assert.ok(peak < RSS_BOUND_MB, `RSS peaked at ${peak.toFixed(0)} MB, over the ${RSS_BOUND_MB} MB bound`);
        } finally {
            clearInterval(sampler);
        }
    });

    test("a message the sink refuses is dead-lettered after 3 tries and the offsets move past it; an outage of the sink is retried, and loses nothing", { timeout: 180_000 }, async () => {
        await daemon?.stop();
        const topic = `nublar-test.refusals-${RUN}`;
        await ensureTopics({ brokers: cfg.brokers, clientId: "poison-test" }, [{ name: topic, partitions: 1, replicas: 1 }]);
        const groupId = `refusal-test-${RUN}`;
        const t0 = nowUs();
        const events = Array.from({ length: 300 }, (_, n) => ({ ...validEvent(n * 10, t0), id: `refusal/${RUN}/${n}` }));
        const poisonId = events[137].id;
        const acked: string[] = [];
        let down = false;
        let calls = 0;
        const handle = async (batch: Delivered[]) => {
            calls++;
            if (down) throw new Error("connect ECONNREFUSED (the sink is down)");
            if (batch.some((d) => d.event.id === poisonId)) throw new SinkRefusal(`entry ${poisonId}: not acceptable here`);
            acked.push(...batch.map((d) => d.event.id));
        };
        const bus = { brokers: cfg.brokers, clientId: "refusal-test" };
        const dlq = eventProducer({ ...bus, clientId: "refusal-test-dlq" });
        const c = await runConsumer({ bus, groupId, topics: [topic], handle, deadLetters: dlq, maxBatch: 500 });
        try {
            await producer.send({ messages: events.map((e) => ({ topic, key: e.id, value: encodeEvent(e) })) });
            const [letter] = await deadLetters(poisonId, (n) => n >= 1, 60_000);
            assert.equal(letter.consumer, groupId);
            assert.match(letter.reason, /^refused by the sink 3 times: entry refusal\/.*: not acceptable here/);
            assert.match(letter.origin, new RegExp(`^${topic.replace(/\./g, "\\.")}/0@137$`));
            await waitFor("the rest acknowledged", () => (acked.length >= 299 ? true : undefined), 30_000, 50);
            assert.deepEqual(acked, events.map((e) => e.id).filter((id) => id !== poisonId), "every other event once, in order");
            assert.equal(c.stats.refusedBySink, 1);
            await waitFor("the commit", () => (c.stats.lastCommitAt ? true : undefined), 10_000, 50);

            // The sink goes down for 3 s while more arrive: retried, nothing dead-lettered, nothing lost.
            down = true;
            const more = Array.from({ length: 200 }, (_, n) => ({ ...validEvent(n * 10, t0), id: `refusal/${RUN}/more/${n}` }));
            await producer.send({ messages: more.map((e) => ({ topic, key: e.id, value: encodeEvent(e) })) });
            const callsBefore = calls;
            await new Promise((r) => setTimeout(r, 3000));
            assert.ok(calls - callsBefore >= 5, `retried while down (${calls - callsBefore} calls)`);
            down = false;
            await waitFor("the 200 after the outage", () => (acked.length >= 499 ? true : undefined), 30_000, 50);
            assert.deepEqual(acked.slice(299), more.map((e) => e.id));
            assert.equal(c.stats.refusedBySink, 1, "nothing refused in the outage");
            assert.equal(c.stats.deadLettered, 1);
        } finally {
            await c.close();
        }
        // The offsets moved past the refused message: a new member of the group reads nothing again.
        const again: string[] = [];
        const c2 = await runConsumer({ bus, groupId, topics: [topic], deadLetters: dlq, handle: async (b) => void again.push(...b.map((d) => d.event.id)) });
        await new Promise((r) => setTimeout(r, 4000));
        await c2.close();
        await dlq.close();
        assert.deepEqual(again, [], "nothing is read twice: the commit moved past the refused message");
    });

    test("a crash in one consumer (an uncaught exception in the lake's code) restarts the lake alone: the process, the ledger and the alerts go on, nothing is lost or doubled", { timeout: 180_000 }, async () => {
        const d = await startDaemon({ NUBLAR_FAULT: "nublar-lake:crash:2" });
        const t0 = nowUs();
        const base = 1_000_000;
        const events = Array.from({ length: 3000 }, (_, k) => {
            const n = base + k * 10; // sensor readings (n % 10 === 0)
            return validEvent(n, t0);
        });
        // In three sends, a second apart, so the lake sees several batches.
        for (let i = 0; i < 3; i++) {
            await publishEvents(producer, events.slice(i * 1000, (i + 1) * 1000));
            await new Promise((r) => setTimeout(r, 1000));
        }
        const stats = await waitFor("the lake started again", async () => {
            const s = await getJson(cfg.socket, "/stats");
            return s.consumers.lake.restarts >= 1 ? s : undefined;
        }, 60_000, 200);
        assert.ok(d.child!.exitCode === null && !d.child!.signalCode, "the process is up");
        assert.equal(stats.consumers.lake.crashes, 1);
        assert.match(stats.consumers.lake.lastCrash, /injected crash in nublar-lake/);
        assert.equal(stats.consumers.ledger.crashes, 0);
        assert.equal(stats.consumers.alerts.crashes, 0);
        const ids = new Set(events.map((e) => e.id));
        await waitFor("all in the ledger", async () => {
            const c = await ledgerCounts();
            return events.every((e) => c.get(Number(e.id.split("/")[2])) === 1) ? true : undefined;
        }, 60_000, 500);
        const lake = await waitFor("all in the lake", async () => {
            const l = await lakeIds(`fuzz/${RUN}/`);
            return [...ids].every((id) => l.has(id)) ? l : undefined;
        }, 60_000, 500);
        assert.ok([...ids].every((id) => lake.get(id) === 1), "each once in the lake, though the lake crashed mid-stream");
        assert.ok(d.tail().length >= 0);
        const log = fs.readFileSync(d.logFile, "utf8");
        assert.match(log, /lake: crashed: Error: injected crash in nublar-lake/);
        assert.match(log, /lake: started again \(restart 1\)/);
    });

    test("a broker outage breaks every consumer's stream (fetch failed): each is started again with backoff, and delivers what came after", { timeout: 300_000 }, async () => {
        const d = await startDaemon({}, "ledger,lake,alerts");
        await stopBroker(broker!);
        // The stream gives up after its fetch retries; the supervisor counts it and keeps trying.
        await waitFor("the consumers to break", async () => {
            const s = await getJson(cfg.socket, "/stats");
            return s.consumers.ledger.crashes >= 1 && s.consumers.lake.crashes >= 1 ? true : undefined;
        }, 120_000, 500);
        await startBroker(broker!);
        const t0 = nowUs();
        const events = Array.from({ length: 500 }, (_, k) => validEvent(2_000_000 + k * 10, t0));
        await waitFor("a send to the restarted broker", async () => {
            await publishEvents(producer, events);
            return true;
        }, 60_000, 1000);
        await waitFor("all in the ledger, after the outage", async () => {
            const c = await ledgerCounts();
            return events.every((e) => (c.get(Number(e.id.split("/")[2])) ?? 0) >= 1) ? true : undefined;
        }, 150_000, 1000);
        const c = await ledgerCounts();
        assert.ok(events.every((e) => c.get(Number(e.id.split("/")[2])) === 1), "once each");
        const s = await getJson(cfg.socket, "/stats");
        assert.ok(s.consumers.ledger.restarts >= 1 && s.consumers.lake.restarts >= 1, JSON.stringify(s.consumers));
        assert.ok(d.child!.exitCode === null && !d.child!.signalCode, "the process stayed up");
        console.log(`  after the outage: ${JSON.stringify(Object.fromEntries(Object.entries(s.consumers).map(([k, v]: [string, any]) => [k, { crashes: v.crashes, restarts: v.restarts }])))}`);
    });
});
