import { test } from "node:test";
import assert from "node:assert/strict";
import { EntryError, chainEntry, genesisHead } from "../../model/ledger/core/encoding";
import { PIPELINE_MIN_ITEMS, batchKeys, batchSize, nextStep, planBatch, prepareItem, prepareItems, type AppendResult, type Prepared } from "./writer-batch";

const req = (n: number) => ({ items: Array.from({ length: n }, () => 0) });
const item = (payload: unknown, key?: string): Prepared => ({ timeUs: 1_000_000, source: "s", payload: JSON.stringify(payload), key });

test("nextStep: idle with nothing to do; a batch when nothing is in flight", () => {
    assert.deepEqual(nextStep(0, [], 100), { kind: "idle" });
    assert.deepEqual(nextStep(0, [req(1)], 100), { kind: "batch", take: 1 });
    assert.deepEqual(nextStep(0, [req(1), req(2), req(3)], 100), { kind: "batch", take: 3 });
});

test("nextStep: group commit waits for the batch in flight unless enough has queued to pipeline a second one", () => {
    assert.deepEqual(nextStep(1, [], 5000), { kind: "settle" });
    assert.deepEqual(nextStep(1, [req(PIPELINE_MIN_ITEMS - 1)], 5000), { kind: "settle" });
    assert.deepEqual(nextStep(1, [req(PIPELINE_MIN_ITEMS - 2), req(1)], 5000), { kind: "settle" });
    assert.deepEqual(nextStep(1, [req(PIPELINE_MIN_ITEMS - 1), req(1)], 5000), { kind: "batch", take: 2 });
    assert.deepEqual(nextStep(1, [req(PIPELINE_MIN_ITEMS)], 5000), { kind: "batch", take: 1 });
    assert.deepEqual(nextStep(2, [req(10_000)], 5000), { kind: "settle" }, "two in flight at most");
    assert.deepEqual(nextStep(2, [], 5000), { kind: "settle" });
});

test("batchSize: whole requests up to maxBatch items; one oversized request goes alone", () => {
    assert.equal(batchSize([req(3), req(3), req(3)], 6), 2);
    assert.equal(batchSize([req(3), req(3), req(3)], 9), 3);
    assert.equal(batchSize([req(3), req(4)], 6), 1, "a request is never split");
    assert.equal(batchSize([req(50), req(1)], 6), 1, "oversized, alone");
    assert.equal(batchSize([], 6), 0);
});

test("planBatch chains new entries onto the given head", () => {
    const genesis = genesisHead("network");
    const p = planBatch([item({ a: 1 }), item({ a: 2 })], genesis, new Map(), []);
    const e1 = chainEntry(genesis, 1_000_000, "s", '{"a":1}');
    const e2 = chainEntry(e1, 1_000_000, "s", '{"a":2}');
    assert.deepEqual(p.results, [{ seq: 1, hash: e1.hash.toString("hex"), duplicate: false }, { seq: 2, hash: e2.hash.toString("hex"), duplicate: false }]);
    assert.deepEqual(p.fresh.map((e) => e.seq), [1, 2]);
    assert.ok(p.fresh[1].prevHash.equals(e1.hash));
    assert.deepEqual(p.head, { seq: 2, hash: e2.hash });
    // A batch planned while this one is in flight continues from its head.
    const q = planBatch([item({ a: 3 })], p.head, new Map(), [p.keys]);
    assert.equal(q.fresh[0].seq, 3);
    assert.ok(q.fresh[0].prevHash.equals(e2.hash));
});

test("planBatch: a key in the ledger, in a batch in flight or earlier in this batch returns the first entry", () => {
    const head = { seq: 41, hash: Buffer.alloc(32, 7) };
    const existing = new Map([["old", { seq: 3, hash: Buffer.alloc(32, 3) }]]);
    const inflight = new Map<string, AppendResult>([["flying", { seq: 40, hash: "ab", duplicate: false }]]);
    const p = planBatch([item(1, "old"), item(2, "new"), item(3, "new"), item(4, "flying"), item(5), item(6, "other")], head, existing, [new Map(), inflight]);
    assert.deepEqual(p.results.map((r) => [r.seq, r.duplicate]), [[3, true], [42, false], [42, true], [40, true], [43, false], [44, false]]);
    assert.equal(p.results[0].hash, Buffer.alloc(32, 3).toString("hex"));
    assert.equal(p.results[2].hash, p.results[1].hash);
    assert.equal(p.results[3].hash, "ab");
    assert.deepEqual(p.fresh.map((e) => [e.seq, e.key]), [[42, "new"], [43, undefined], [44, "other"]]);
    assert.deepEqual([...p.keys.keys()], ["new", "other"], "only this batch's new keys");
    assert.equal(p.head.seq, 44);
});

test("planBatch: a batch of duplicates only writes nothing and leaves the head", () => {
    const head = { seq: 9, hash: Buffer.alloc(32, 9) };
    const p = planBatch([item(1, "k")], head, new Map([["k", { seq: 2, hash: Buffer.alloc(32, 2) }]]), []);
    assert.deepEqual(p.fresh, []);
    assert.deepEqual(p.head, head);
    assert.deepEqual(p.results, [{ seq: 2, hash: Buffer.alloc(32, 2).toString("hex"), duplicate: true }]);
});

test("batchKeys: each key once", () => {
    assert.deepEqual(batchKeys([item(1, "a"), item(2), item(3, "b"), item(4, "a")]), ["a", "b"]);
});

test("prepareItem: times, canonical payloads, keys; errors name the entry", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.deepEqual(prepareItem({ source: "s", payload: { b: 1, a: 2 } }, now), { timeUs: now * 1000, source: "s", payload: '{"a":2,"b":1}', key: undefined });
    assert.equal(prepareItem({ source: "s", payload: 1, time: 1.5 }, now).timeUs, 1500);
    assert.equal(prepareItem({ source: "s", payload: 1, time: "1970-01-01T00:00:01Z" }, now).timeUs, 1_000_000);
    assert.equal(prepareItem({ source: "s", payload: 1, key: "k" }, now).key, "k");
    assert.throws(() => prepareItem({ source: "s", payload: undefined }), /payload is missing/);
    assert.throws(() => prepareItem({ source: "s", payload: 1, time: "soon" }), /neither milliseconds/);
    assert.throws(() => prepareItem({ source: "s", payload: 1, time: -1 }), /out of range/);
    assert.throws(() => prepareItem({ source: "s", payload: 1, key: "" }), /key must be/);
    assert.throws(() => prepareItem({ source: "s", payload: 1, key: "x".repeat(201) }), /key must be/);
    assert.throws(() => prepareItems([{ source: "s", payload: 1 }, { source: "", payload: 1 }], now), (err: Error) => err instanceof EntryError && /^entry 1: /.test(err.message));
});
