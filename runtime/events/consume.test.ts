// The consume loop's rules for a sink that fails (deliverBatch), its supervisor, and the crash
// guard, without a broker (test/events/poison.test.ts has them against a real one):
//   - an event the sink refuses for a reason of its own is given up on after a bounded number of
//     tries, and every other event goes through, once, in offset order;
//   - a sink that is down is retried without limit, and nothing is given up;
//   - a consumer that breaks or crashes is started again, with backoff, and the others go on.
import { test as nodeTest } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { deliverBatch, guardCrashes, SinkRefusal, superviseConsumer, type ConsumerStats, type Delivered, type RunningConsumer } from "./consume";
import { ledgerSink } from "./ledger-sink";
import type { NublarEvent } from "../../model/events/schema";

// In the crash guard's child (below), this file registers no tests: it only runs the child.
const test = (process.env.NUBLAR_GUARD_CHILD ? () => undefined : nodeTest) as typeof nodeTest;

const T = 1_795_400_000_000_000;
function batchOf(n: number, topic = "nublar.sensors"): Delivered[] {
    return Array.from({ length: n }, (_, i) => ({
        topic, partition: 0, offset: BigInt(100 + i),
        event: { id: `sensor/s-${i}/${i}`, site: "lab", source: "sensor-gateway", time: T + i, type: "sensor-reading", payload: { sensor: `s-${i}`, kind: "temperature", value: i, unit: "C", seq: i, receivedAt: T, address: "::1" } } as NublarEvent,
    }));
}
const fast = { wait: () => 1 };

/** A sink that remembers what it acknowledged, in order, and fails as `fail` says. */
function fakeSink(fail: (part: Delivered[], call: number) => Error | undefined) {
    const acked: string[] = [];
    let calls = 0;
    return {
        acked, get calls() {
            return calls;
        },
        async handle(part: Delivered[]) {
            const err = fail(part, ++calls);
            if (err) throw err;
            acked.push(...part.map((d) => d.event.id));
        },
    };
}

test("an event the sink refuses is given up on after 3 refusals alone; the other 999 go through once, in offset order", async () => {
    const batch = batchOf(1000);
    const poison = batch[613].event.id;
    const sink = fakeSink((part) => (part.some((d) => d.event.id === poison) ? new SinkRefusal(`entry: ${poison} is not acceptable`) : undefined));
    let retries = 0;
    const refused = await deliverBatch(batch, { handle: sink.handle, ...fast, onRetry: () => retries++ });
    assert.deepEqual(refused.map((r) => r.delivered.event.id), [poison]);
    assert.match(refused[0].reason, /^refused by the sink 3 times: entry: sensor\/s-613\/613 is not acceptable/);
    assert.deepEqual(sink.acked, batch.map((d) => d.event.id).filter((id) => id !== poison), "every other event, once, in order");
    // 1 whole, 2 per level down to the one (10 levels), then 2 more tries of it alone.
    assert.ok(sink.calls <= 1 + 2 * Math.ceil(Math.log2(1000)) + 2, `${sink.calls} calls`);
    assert.equal(retries, 2, "two waits before it is given up on");
});

test("several refused events in one batch, and one refused only once: only the ones refused every time are given up on", async () => {
    const batch = batchOf(64);
    const bad = new Set([batch[0].event.id, batch[31].event.id, batch[63].event.id]);
    const flaky = batch[40].event.id;
    let flakyFailed = false;
    const sink = fakeSink((part) => {
        if (part.some((d) => bad.has(d.event.id))) return new SinkRefusal("refused");
        if (part.length === 1 && part[0].event.id === flaky && !flakyFailed) {
            flakyFailed = true;
            return new SinkRefusal("refused once");
        }
        return undefined;
    });
    const refused = await deliverBatch(batch, { handle: sink.handle, ...fast });
    assert.deepEqual(refused.map((r) => r.delivered.event.id).sort(), [...bad].sort());
    assert.deepEqual(sink.acked, batch.map((d) => d.event.id).filter((id) => !bad.has(id)));
});

test("a sink that is down (any error but a refusal) is retried until it is back: nothing is given up, nothing is lost", async () => {
    const batch = batchOf(500);
    const downUntil = Date.now() + 400;
    const sink = fakeSink(() => (Date.now() < downUntil ? Object.assign(new Error("connect ECONNREFUSED /run/ledger.sock"), { code: "ECONNREFUSED" }) : undefined));
    let retries = 0;
    const refused = await deliverBatch(batch, { handle: sink.handle, wait: () => 20, onRetry: () => retries++ });
    assert.deepEqual(refused, []);
    assert.deepEqual(sink.acked, batch.map((d) => d.event.id));
    assert.ok(retries >= 10, `${retries} retries while down`);
});

test("an outage in the middle of isolating a refused event: the outage is waited out, and only the refused event is given up on", async () => {
    const batch = batchOf(100);
    const poison = batch[70].event.id;
    let downFrom = 0;
    const sink = fakeSink((part, call) => {
        if (call === 3) downFrom = Date.now(); // down for 300 ms, from the third call, while halving
        if (downFrom && Date.now() - downFrom < 300) return new Error("503: no primary reachable");
        return part.some((d) => d.event.id === poison) ? new SinkRefusal("400: entry 0: payload is not JSON data") : undefined;
    });
    const refused = await deliverBatch(batch, { handle: sink.handle, wait: () => 10 });
    assert.deepEqual(refused.map((r) => r.delivered.event.id), [poison]);
    assert.deepEqual(sink.acked, batch.map((d) => d.event.id).filter((id) => id !== poison));
});

test("one event that fails alone with an error that is not a refusal is never given up on: it is retried until the consumer stops", async () => {
    const batch = batchOf(8);
    const stuck = batch[5].event.id;
    const sink = fakeSink((part) => (part.some((d) => d.event.id === stuck) ? new Error("socket hang up") : undefined));
    let running = true;
    const done = deliverBatch(batch, { handle: sink.handle, wait: () => 5, running: () => running });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(sink.acked, [], "the whole batch is retried: without a refusal, nothing says the sink is up");
    running = false;
    await assert.rejects(done, /socket hang up/);
});

test("the ledger sink: a 400 (an entry the ledger refuses) is a refusal, isolated and given up on; a 503 (no primary) is an outage, retried", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-consume-"));
    const socket = path.join(dir, "ingest.sock");
    let unavailable = 0;
    const appended: string[] = [];
    const server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
            const { entries } = JSON.parse(body) as { entries: { key: string; payload: { value: number } }[] };
            if (unavailable > 0) {
                unavailable--;
                return res.writeHead(503).end(JSON.stringify({ error: "no primary reachable" }));
            }
            const bad = entries.findIndex((e) => e.payload.value === 13);
            if (bad >= 0) return res.writeHead(400).end(JSON.stringify({ error: `entry ${bad}: payload is not JSON data` }));
            appended.push(...entries.map((e) => e.key));
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ results: entries.map((_, i) => ({ seq: appended.length + i, hash: "00", duplicate: false })) }));
        });
    });
    await new Promise<void>((r) => server.listen(socket, () => r()));
    try {
        const handle = ledgerSink({ socket });
        const batch = batchOf(40);
        const refused = await deliverBatch(batch, { handle, wait: () => 5 });
        assert.deepEqual(refused.map((r) => r.delivered.event.id), ["sensor/s-13/13"]);
        assert.match(refused[0].reason, /the ledger refused shard habitat's batch \(400\): .*entry 0: payload is not JSON data/);
        assert.deepEqual(appended, batch.map((d) => d.event.id).filter((id) => id !== "sensor/s-13/13"));

        appended.length = 0;
        unavailable = 5;
        let retries = 0;
        const again = await deliverBatch(batchOf(3), { handle, wait: () => 5, onRetry: () => retries++ });
        assert.deepEqual(again, [], "a 503 is never a refusal");
        assert.equal(retries, 5);
        assert.equal(appended.length, 3);
    } finally {
        server.close();
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

/** A consumer without a broker: `failed` when told to. */
function fakeConsumer(stats: ConsumerStats) {
    let fail!: (e: Error) => void;
    const c: RunningConsumer & { fail(e: Error): void; closed: boolean } = {
        stats, closed: false,
        failed: new Promise<Error>((r) => (fail = r)),
        fail: (e) => fail(e),
        async close() {
            c.closed = true;
        },
    };
    return c;
}

test("superviseConsumer: a consumer that breaks is closed, counted and started again with backoff, and a start that fails is retried", async () => {
    const made: ReturnType<typeof fakeConsumer>[] = [];
    let refuseStarts = 0;
    const log: string[] = [];
    const sup = await superviseConsumer("lake", async (stats) => {
        if (made.length && refuseStarts-- > 0) throw new Error("broker unreachable");
        const c = fakeConsumer(stats);
        made.push(c);
        return c;
    }, { minBackoffMs: 20, maxBackoffMs: 80, log: (m) => log.push(m) });
    made[0].fail(new Error("the consumer's stream failed: fetch failed"));
    await waitUntil(() => made.length === 2);
    assert.equal(made[0].closed, true);
    assert.equal(sup.stats.crashes, 1);
    assert.equal(sup.stats.restarts, 1);
    assert.match(sup.stats.lastCrash!, /fetch failed/);

    refuseStarts = 2;
    const t = Date.now();
    made[1].fail(new Error("committing offsets failed 6 times"));
    await waitUntil(() => made.length === 3);
    assert.ok(Date.now() - t >= 40 + 80, "backoff doubled across the failed starts");
    assert.equal(sup.stats.restarts, 2);
    assert.ok(log.some((l) => /could not start again: broker unreachable/.test(l)));
    // A late failure from an instance already replaced restarts nothing.
    made[0].fail(new Error("late"));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(made.length, 3);
    await sup.close();
    assert.equal(made[2].closed, true);
});

async function waitUntil(fn: () => boolean, ms = 5000) {
    const deadline = Date.now() + ms;
    while (!fn()) {
        assert.ok(Date.now() < deadline, "timed out");
        await new Promise((r) => setTimeout(r, 5));
    }
}

// The crash guard runs in a child process of this file: the test runner has its own handlers
// for uncaught exceptions, and one from outside a consumer must end the process.
async function guardChild(mode: string): Promise<never> {
    const log = (m: string) => process.stderr.write(`${m}\n`);
    guardCrashes(log);
    let beats = 0;
    const starts: Record<string, number> = { lake: 0, ledger: 0 };
    const start = (name: string, crash: boolean) => async (stats: ConsumerStats) => {
        starts[name]++;
        if (crash && starts[name] === 1) {
            // Bugs in a sink's callbacks, after it started: a throw in a timer, a rejection nobody awaits.
            setTimeout(() => {
                throw new Error("a bug in the lake's timer");
            }, 20);
        }
        if (crash && starts[name] === 2) setTimeout(() => void Promise.reject(new Error("a rejection in the lake")), 20);
        const timer = setInterval(() => beats++, 5);
        const c = fakeConsumer(stats);
        c.close = async () => clearInterval(timer);
        return c;
    };
    const lake = await superviseConsumer("lake", start("lake", true), { minBackoffMs: 10, log });
    const ledger = await superviseConsumer("ledger", start("ledger", false), { minBackoffMs: 10, log });
    if (mode === "outside") setTimeout(() => {
        throw new Error("a bug outside any consumer");
    }, 50);
    await new Promise((r) => setTimeout(r, 400));
    process.stdout.write(`${JSON.stringify({ starts, lake: lake.stats, ledger: ledger.stats, beats })}\n`);
    process.exit(0);
}

if (process.env.NUBLAR_GUARD_CHILD) void guardChild(process.env.NUBLAR_GUARD_CHILD);

function runGuardChild(mode: string) {
    const env: NodeJS.ProcessEnv = { ...process.env, NUBLAR_GUARD_CHILD: mode };
    delete env.NODE_TEST_CONTEXT;
    return spawnSync(process.execPath, ["--import", "tsx", __filename], { env, encoding: "utf8", timeout: 60_000 });
}

test("guardCrashes: an uncaught exception and an unhandled rejection in one consumer restart that one; the process and the other go on", () => {
    const r = runGuardChild("consumer");
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assert.deepEqual(out.starts, { lake: 3, ledger: 1 }, "the lake started again twice; the ledger never");
    assert.equal(out.lake.crashes, 2);
    assert.equal(out.lake.restarts, 2);
    assert.match(out.lake.lastCrash, /a rejection in the lake/);
    assert.equal(out.ledger.crashes, 0);
    assert.ok(out.beats > 20, "the consumers' timers kept running");
    assert.match(r.stderr, /lake: crashed: Error: a bug in the lake's timer/);
});

test("guardCrashes: an uncaught exception outside any consumer still ends the process, as Node would", () => {
    const r = runGuardChild("outside");
    assert.equal(r.status, 1);
    assert.match(r.stderr, /uncaught exception outside any consumer, exiting: Error: a bug outside any consumer/);
});
