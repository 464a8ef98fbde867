// The checkpoint cadence on a virtual clock: `now` is whatever the test says it is.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import { checkpointDigest, checkpointProblem, generateSigningKey } from "../../model/ledger/core/checkpoint";
import { merkleRoot } from "../../model/ledger/core/merkle";
import { CheckpointCadence } from "./writer-cadence";

const keys = generateSigningKey();
const T0 = Date.parse("2026-11-22T23:42:35.000Z");
const hash = (seq: number) => crypto.createHash("sha256").update(`entry ${seq}`).digest();
const hashes = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => hash(from + i));

/** A cadence with `head` entries committed at T0 (in one batch) and nothing cut yet. */
function cadence(every = { entries: 10, ms: 1000 }, head = 0, key: crypto.KeyObject | null = keys.privateKey) {
    const c = new CheckpointCadence("network", every, key ?? undefined, T0);
    if (head) c.committed(hashes(1, head), head);
    return c;
}

test("every N entries: due once N wait, cut at multiples of N, the rest waits for the clock", () => {
    const c = cadence();
    c.committed(hashes(1, 9), 9);
    assert.equal(c.isDue, false, "9 of 10");
    assert.deepEqual(c.cut(9, T0), [], "nothing is cut when nothing is due");
    c.committed(hashes(10, 25), 25);
    assert.equal(c.isDue, true);
    const cut = c.cut(25, T0 + 1);
    assert.equal(c.isDue, false, "cut() clears it");
    assert.deepEqual(cut.map((p) => [p.signed.checkpoint.from, p.signed.checkpoint.seq]), [[1, 10], [11, 20]]);
    assert.equal(c.lastSeq, 20);
    assert.deepEqual(c.cut(25, T0 + 2), [], "21..25 wait");
});

test("what a cut signs: head, Merkle root over its leaves, the chain of prev digests, the time, a valid signature", () => {
    const c = cadence({ entries: 10, ms: 1000 }, 20);
    const [a, b] = c.cut(20, T0 + 5);
    for (const [cp, from, to] of [[a, 1, 10], [b, 11, 20]] as const) {
        assert.equal(checkpointProblem(cp.signed, keys.publicKey), undefined);
        assert.deepEqual(cp.leaves, hashes(from, to).map((h) => h.toString("hex")));
        assert.equal(cp.signed.checkpoint.head, hash(to).toString("hex"));
        assert.equal(cp.signed.checkpoint.root, merkleRoot(hashes(from, to)).toString("hex"));
        assert.equal(cp.signed.checkpoint.shard, "network");
        assert.equal(cp.signed.checkpoint.time, new Date(T0 + 5).toISOString());
    }
    assert.equal(a.signed.checkpoint.prev, null, "the first one");
    assert.equal(b.signed.checkpoint.prev, checkpointDigest(a.signed.checkpoint));
    // The next cut continues the chain from b.
    c.committed(hashes(21, 30), 30);
    const [next] = c.cut(30, T0 + 6);
    assert.equal(next.signed.checkpoint.from, 21);
    assert.equal(next.signed.checkpoint.prev, checkpointDigest(b.signed.checkpoint));
});

test("every T ms: the clock makes the tail due, counted from the last checkpoint, only when entries wait", () => {
    const c = cadence({ entries: 100, ms: 1000 }, 5);
    assert.equal(c.tick(5, T0 + 999), false);
    assert.equal(c.isDue, false);
    assert.equal(c.tick(5, T0 + 1000), true);
    assert.equal(c.isDue, true);
    const [cp] = c.cut(5, T0 + 1000);
    assert.deepEqual([cp.signed.checkpoint.from, cp.signed.checkpoint.seq], [1, 5], "cut at the head, short of N");
    assert.equal(c.tick(5, T0 + 5000), false, "nothing new since");
    c.committed(hashes(6, 7), 7);
    assert.equal(c.isDue, false, "2 of 100");
    assert.equal(c.tick(7, T0 + 1999), false, "1000 ms after the last cut, not after the start");
    assert.equal(c.tick(7, T0 + 2000), true);
    assert.deepEqual(c.cut(7, T0 + 2000).map((p) => [p.signed.checkpoint.from, p.signed.checkpoint.seq]), [[6, 7]]);
});

test("a cut due by count and by time takes the multiples of N; each resets the clock, so the tail waits a period more", () => {
    const c = cadence({ entries: 10, ms: 1000 }, 23);
    assert.deepEqual(c.cut(23, T0 + 1000).map((p) => [p.signed.checkpoint.from, p.signed.checkpoint.seq]), [[1, 10], [11, 20]]);
    assert.equal(c.lastSeq, 20);
    assert.equal(c.tick(23, T0 + 1999), false);
    assert.equal(c.tick(23, T0 + 2000), true);
    assert.deepEqual(c.cut(23, T0 + 2000).map((p) => [p.signed.checkpoint.from, p.signed.checkpoint.seq]), [[21, 23]]);
});

test("a due flag raised by count before the time passed cuts only the multiples of N", () => {
    const c = cadence({ entries: 10, ms: 1000 }, 13);
    assert.deepEqual(c.cut(13, T0 + 999).map((p) => p.signed.checkpoint.seq), [10]);
    // The cut reset the clock: 11..13 wait a full period from T0 + 999.
    assert.equal(c.tick(13, T0 + 1500), false);
    assert.equal(c.tick(13, T0 + 1999), true);
});

test("force (checkpointNow) cuts everything up to the head at once, whatever the clock says", () => {
    const c = cadence({ entries: 100, ms: 60_000 }, 3);
    assert.equal(c.isDue, false);
    c.force();
    assert.equal(c.isDue, true);
    assert.deepEqual(c.cut(3, T0 + 1).map((p) => [p.signed.checkpoint.from, p.signed.checkpoint.seq]), [[1, 3]]);
    // Forcing with nothing new cuts nothing, and the clock then counts from a forced cut as usual.
    c.force();
    assert.deepEqual(c.cut(3, T0 + 2), []);
    assert.equal(c.isDue, false);
});

test("batches of duplicates only (no new hashes) still raise the count rule when N already wait", () => {
    const c = cadence({ entries: 10, ms: 60_000 });
    c.committed(hashes(1, 10), 10);
    c.cut(10, T0);
    c.committed(hashes(11, 20), 20);
    c.cut(10, T0); // a cut against an older head takes nothing past it
    assert.equal(c.lastSeq, 10);
    c.committed([], 20);
    assert.equal(c.isDue, true);
    assert.deepEqual(c.cut(20, T0).map((p) => p.signed.checkpoint.seq), [20]);
});

test("without a key (or without a cadence) nothing is cut, but the due flag is still cleared", () => {
    const c = cadence({ entries: 10, ms: 1000 }, 30, null);
    assert.equal(c.isDue, true);
    assert.deepEqual(c.cut(30, T0 + 5000), []);
    assert.equal(c.isDue, false, "or the writer would run again and again");
    assert.equal(c.lastSeq, 0);
    const none = new CheckpointCadence("network", undefined, keys.privateKey, T0);
    none.committed(hashes(1, 30), 30);
    assert.equal(none.isDue, false);
    assert.equal(none.tick(30, T0 + 1e9), false);
});

test("reload: after a reconnect the state is the stored one, and the clock restarts", () => {
    const c = cadence({ entries: 10, ms: 1000 }, 4);
    const stored = cadence({ entries: 10, ms: 1000 }, 10).cut(10, T0)[0];
    c.reload({ seq: 10, digest: checkpointDigest(stored.signed.checkpoint) }, hashes(11, 14), T0 + 5000);
    assert.equal(c.lastSeq, 10);
    assert.equal(c.tick(14, T0 + 5999), false);
    assert.equal(c.tick(14, T0 + 6000), true);
    const [cp] = c.cut(14, T0 + 6000);
    assert.deepEqual([cp.signed.checkpoint.from, cp.signed.checkpoint.seq, cp.signed.checkpoint.prev], [11, 14, checkpointDigest(stored.signed.checkpoint)]);
    assert.equal(cp.signed.checkpoint.root, merkleRoot(hashes(11, 14)).toString("hex"), "the window came from the reload, not from before it");
});
