// Publishing to sinks held in memory: order, retries, one run at a time, what is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { SignedCheckpoint } from "../../model/ledger/core/checkpoint";
import type { CheckpointSink, PublishedCheckpoint } from "./sinks";
import { CheckpointPublisher } from "./writer-publish";

const signed = (from: number, seq: number) => ({ checkpoint: { from, seq }, signature: "sig" }) as unknown as SignedCheckpoint;
const cp = (from: number, seq: number): PublishedCheckpoint => ({ signed: signed(from, seq), leaves: [`leaves ${from}..${seq}`] });

class MemorySink implements CheckpointSink {
    readonly name = "memory";
    readonly published: number[] = [];
    fail = false;
    failHas = false;
    /** When set, publish waits for it. */
    gate?: Promise<void>;
    async has(_shard: string, seq: number): Promise<boolean> {
        if (this.failHas) throw new Error("unreachable");
        return this.published.includes(seq);
    }
    async publish(shard: string, p: PublishedCheckpoint): Promise<void> {
        assert.equal(shard, "network");
        await this.gate;
        if (this.fail) throw new Error("lake unreachable");
        this.published.push(p.signed.checkpoint.seq);
    }
}

/** Lets a run that add() started finish (the sinks here answer within microtasks). */
const settled = () => new Promise((r) => setImmediate(r));

function publisher(...sinks: CheckpointSink[]) {
    const logs: string[] = [];
    let failures = 0;
    const p = new CheckpointPublisher("network", sinks, { log: (m) => logs.push(m), failed: () => failures++ });
    return { p, logs, failures: () => failures };
}

test("checkpoints are published in order to every sink, and leave the queue", async () => {
    const a = new MemorySink();
    const b = new MemorySink();
    const { p } = publisher(a, b);
    p.add([cp(1, 10), cp(11, 20)]);
    p.add([]);
    await settled();
    assert.deepEqual(a.published, [10, 20]);
    assert.deepEqual(b.published, [10, 20]);
    assert.equal(p.pending, 0);
});

test("a failure stops the run with the checkpoint still first in line; the next call retries it", async () => {
    const sink = new MemorySink();
    sink.fail = true;
    const { p, logs, failures } = publisher(sink);
    p.add([cp(1, 10), cp(11, 20)]);
    await settled();
    assert.equal(p.pending, 2);
    assert.equal(failures(), 1, "one attempt, not a loop");
    assert.match(logs.at(-1)!, /publishing checkpoint 10 failed, will retry: lake unreachable/);
    sink.fail = false;
    await p.publish();
    assert.deepEqual(sink.published, [10, 20]);
    assert.equal(p.pending, 0);
});

test("one run at a time: a call during a run returns at once, and what was added meanwhile is published by the run", async () => {
    const sink = new MemorySink();
    let open!: () => void;
    sink.gate = new Promise((r) => (open = r));
    const { p } = publisher(sink);
    p.add([cp(1, 10)]); // starts a run, which waits at the gate
    await p.publish(); // returns without publishing anything
    assert.deepEqual(sink.published, []);
    p.add([cp(11, 20)]);
    open();
    await settled();
    assert.deepEqual(sink.published, [10, 20], "each once");
    assert.equal(p.pending, 0);
});

test("addMissing queues the stored checkpoints some sink lacks, with their leaves, and publishes them", async () => {
    const has = new MemorySink();
    has.published.push(10, 20);
    const lacks = new MemorySink();
    lacks.published.push(10);
    const { p, logs } = publisher(has, lacks);
    const asked: [number, number][] = [];
    await p.addMissing([signed(1, 10), signed(11, 20)], async (from, to) => {
        asked.push([from, to]);
        return [Buffer.from([from]), Buffer.from([to])];
    });
    assert.deepEqual(asked, [[11, 20]], "10 is everywhere already");
    assert.deepEqual(logs, ["shard network: checkpoint 20 is not published yet; queued"]);
    await settled();
    assert.deepEqual(lacks.published, [10, 20]);
});

test("addMissing: a sink that cannot answer counts as missing; a checkpoint already queued is not queued twice", async () => {
    const sink = new MemorySink();
    sink.failHas = true;
    sink.fail = true;
    const { p } = publisher(sink);
    await p.addMissing([signed(1, 10)], async () => [Buffer.alloc(1)]);
    assert.equal(p.pending, 1);
    await p.addMissing([signed(1, 10)], async () => [Buffer.alloc(1)]);
    assert.equal(p.pending, 1);
});
