// The verifier on an in-memory chain: each tampering the auditor must catch, at its exact seq.
// (test/ledger/tamper.test.ts does the same against a real PostgreSQL.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { chainEntry, genesisHash, genesisHead, hashInput, type LedgerEntry } from "./encoding";
import { generateSigningKey, signCheckpoint, checkpointDigest, type SignedCheckpoint } from "./checkpoint";
import { merkleRoot, inclusionPath } from "./merkle";
import { ChainVerifier, mergeCheckpoints, type CheckpointRecord } from "./verify";
import { checkProof, type InclusionProof } from "./proof";

const SHARD = "network";
const keys = generateSigningKey();

function build(n: number, every: number): { entries: LedgerEntry[]; checkpoints: { signed: SignedCheckpoint; leaves: string[] }[] } {
    const entries: LedgerEntry[] = [];
    let head = genesisHead(SHARD);
    const checkpoints: { signed: SignedCheckpoint; leaves: string[] }[] = [];
    let from = 1;
    for (let i = 1; i <= n; i++) {
        const e = chainEntry(head, 1_700_000_000_000_000 + i, `node-${i % 3}`, JSON.stringify({ i }));
        entries.push(e);
        head = e;
        if (i % every === 0) {
            const range = entries.slice(from - 1, i).map((x) => x.hash);
            const prev = checkpoints.at(-1);
            const signed = signCheckpoint({ shard: SHARD, from, seq: i, head: e.hash.toString("hex"), root: merkleRoot(range).toString("hex"), prev: prev ? checkpointDigest(prev.signed.checkpoint) : null, time: new Date(0).toISOString() }, keys.privateKey);
            checkpoints.push({ signed, leaves: range.map((h) => h.toString("hex")) });
            from = i + 1;
        }
    }
    return { entries, checkpoints };
}

function verify(entries: LedgerEntry[], cps: CheckpointRecord[], opts: { from?: number; publicKey?: boolean; roots?: boolean } = {}) {
    const from = opts.from ?? 1;
    const v = new ChainVerifier({ shard: SHARD, from, checkRoots: opts.roots, anchor: from === 1 ? genesisHash(SHARD) : entries.find((e) => e.seq === from - 1)!.hash, checkpoints: cps, publicKey: opts.publicKey === false ? undefined : keys.publicKey });
    for (const e of entries) if (e.seq >= from) v.push({ seq: e.seq, input: hashInput(e.prevHash, e.seq, e.timeUs, e.source, e.payload), hash: e.hash });
    return v.finish();
}

const lake = (cps: { signed: SignedCheckpoint; leaves: string[] }[], withLeaves = true): CheckpointRecord[] => cps.map((c) => ({ signed: c.signed, leaves: withLeaves ? c.leaves : undefined, origin: "both" }));

test("an untouched chain verifies, with every checkpoint checked", () => {
    const { entries, checkpoints } = build(95, 10);
    const r = verify(entries, lake(checkpoints));
    assert.equal(r.ok, true, JSON.stringify(r.findings));
    assert.equal(r.checkpoints.checked, 9);
    assert.equal(r.entries, 95);
    assert.match(r.warnings.join(), /91\.\.95 are not yet covered/);
});

test("an edited payload is 'altered' at its seq", () => {
    const { entries, checkpoints } = build(50, 10);
    entries[22] = { ...entries[22], payload: '{"i":999}' };
    const r = verify(entries, lake(checkpoints));
    assert.equal(r.firstDivergentSeq, 23);
    assert.deepEqual(r.findings.map((f) => f.kind), ["altered"]);
});

test("a deleted entry is 'missing' at its seq", () => {
    const { entries, checkpoints } = build(50, 10);
    entries.splice(30, 1); // seq 31
    const r = verify(entries, lake(checkpoints));
    assert.equal(r.firstDivergentSeq, 31);
    assert.equal(r.findings[0].kind, "missing");
});

test("two swapped entries diverge at the lower seq", () => {
    const { entries, checkpoints } = build(50, 10);
    const a = entries[11], b = entries[37];
    entries[11] = { ...b, seq: 12 };
    entries[37] = { ...a, seq: 38 };
    const r = verify(entries, lake(checkpoints));
    assert.equal(r.firstDivergentSeq, 12);
    assert.ok(r.findings.some((f) => f.seq === 38));
});

test("a truncated tail is caught through the checkpoint that signed it", () => {
    const { entries, checkpoints } = build(50, 10);
    const r = verify(entries.slice(0, 43), lake(checkpoints));
    assert.equal(r.firstDivergentSeq, 44);
    assert.match(r.findings[0].message, /entries 44\.\.50 were removed/);
});

test("a recomputed chain passes the hash checks but not the checkpoints: exact seq with the signed leaves", () => {
    const { entries, checkpoints } = build(50, 10);
    // Edit 27 and recompute every hash after it, as an attacker with full access would.
    let head = entries[25];
    for (let i = 26; i < entries.length; i++) {
        const e = entries[i];
        head = chainEntry(head, e.timeUs, e.source, i === 26 ? '{"i":"forged"}' : e.payload);
        entries[i] = head;
    }
    const noKey = verify(entries, lake(checkpoints), { publicKey: false });
    assert.equal(noKey.ok, true, "without checkpoints the rewrite is undetectable: that is why they exist");
    const r = verify(entries, lake(checkpoints));
    assert.equal(r.firstDivergentSeq, 27);
    assert.equal(r.findings[0].kind, "rewritten");
    const withoutLeaves = verify(entries, lake(checkpoints, false));
    assert.equal(withoutLeaves.firstDivergentSeq, 21, "only the checkpoint's range, without leaves");
});

test("a forged, deleted or conflicting checkpoint is reported", () => {
    const { entries, checkpoints } = build(40, 10);
    const forged = structuredClone(checkpoints);
    forged[1].signed.checkpoint.head = "00".repeat(32);
    assert.equal(verify(entries, lake(forged)).findings[0].kind, "checkpoint-signature");
    const dropped = checkpoints.filter((_, i) => i !== 1);
    const r = verify(entries, lake(dropped));
    assert.ok(r.findings.some((f) => f.kind === "checkpoint-chain" && f.seq === 30), JSON.stringify(r.findings));
    const other = build(40, 10).checkpoints; // same entries? no: new times are equal, but signed at another moment is same; use another key
    const otherKey = generateSigningKey();
    const conflicting = { ...other[0].signed, signature: signCheckpoint({ ...other[0].signed.checkpoint, time: "2000-01-01T00:00:00.000Z" }, otherKey.privateKey).signature };
    const merged = mergeCheckpoints([conflicting], checkpoints);
    assert.equal(merged.findings[0].kind, "checkpoint-conflict");
});

test("verifying a range checks only what lies inside it", () => {
    const { entries, checkpoints } = build(60, 10);
    entries[4] = { ...entries[4], payload: "{}" }; // seq 5, outside the range
    const r = verify(entries, lake(checkpoints), { from: 21 });
    assert.equal(r.ok, true, JSON.stringify(r.findings));
    assert.equal(r.checkpoints.checked, 4);
});

test("an inclusion proof checks offline, and fails when anything in it changes", () => {
    const { entries, checkpoints } = build(30, 10);
    const cp = checkpoints[1];
    const e = entries[14]; // seq 15 in 11..20
    const proof: InclusionProof = {
        format: "unicorn/1", kind: "inclusion", shard: SHARD,
        entry: { seq: e.seq, timeUs: e.timeUs, time: new Date(e.timeUs / 1000).toISOString(), source: e.source, payload: e.payload, prevHash: e.prevHash.toString("hex"), hash: e.hash.toString("hex") },
        leafIndex: 4, treeSize: 10,
        path: inclusionPath(cp.leaves.map((l) => Buffer.from(l, "hex")), 4).map((b) => b.toString("hex")),
        checkpoint: cp.signed, publicKey: keys.publicKey.export({ type: "spki", format: "pem" }).toString(),
    };
    assert.deepEqual(checkProof(proof, keys.publicKey), { ok: true, problems: [] });
    const edited = structuredClone(proof);
    edited.entry.payload = '{"i":16}';
    assert.match(checkProof(edited, keys.publicKey).problems.join(), /does not hash/);
    const moved = structuredClone(proof);
    moved.leafIndex = 5;
    assert.equal(checkProof(moved, keys.publicKey).ok, false);
    assert.match(checkProof(proof, generateSigningKey().publicKey).problems.join(), /not with the given public key/);
    assert.equal(checkProof({ nonsense: true }, keys.publicKey).ok, false);
    assert.equal(checkProof(null, keys.publicKey).ok, false);
});

test("a checkpoint signing the right head but a wrong Merkle root is a signer fault, found with checkRoots", () => {
    const { entries, checkpoints } = build(30, 10);
    const bad = structuredClone(checkpoints);
    const cp = bad[1].signed.checkpoint;
    bad[1].signed = signCheckpoint({ shard: cp.shard, from: cp.from, seq: cp.seq, head: cp.head, root: "ab".repeat(32), prev: cp.prev, time: cp.time }, keys.privateKey);
    bad[2].signed = signCheckpoint({ ...bad[2].signed.checkpoint, prev: checkpointDigest(bad[1].signed.checkpoint) }, keys.privateKey);
    assert.equal(verify(entries, lake(bad)).ok, true, "the entries are proven by the heads alone");
    const deep = verify(entries, lake(bad), { roots: true });
    assert.deepEqual(deep.findings.map((f) => [f.seq, f.kind]), [[20, "checkpoint-root"]]);
    assert.equal(verify(entries, lake(checkpoints), { roots: true }).ok, true);
});
