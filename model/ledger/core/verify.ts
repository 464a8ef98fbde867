// The auditor's check of one shard, as a pure streaming computation: feed it the stored rows in
// seq order and the signed checkpoints, and it reports every place where the history is not what
// was signed, with the first divergent seq. The I/O around it (PostgreSQL COPY, the data lake)
// lives in ledger/verify-shard.ts.
//
// What each tampering looks like here:
//   a payload (or time, source) edited        -> "altered" at that seq (its hash no longer matches)
//   an entry deleted                          -> "missing" at that seq
//   two entries swapped                       -> "altered" at the lower seq (seq is hashed)
//   the tail cut off                          -> "missing" from the new end, through a checkpoint
//                                                that signed the lost entries
//   an edit with the whole chain recomputed   -> "rewritten": internally consistent, so only a
//                                                checkpoint's signed root catches it; with the
//                                                signed leaves from the lake, at the exact seq
import type { KeyObject } from "node:crypto";
import { HASH_BYTES, sha256Latin1 } from "./encoding";
import { checkpointDigest, checkpointProblem, type SignedCheckpoint } from "./checkpoint";
import { merkleRoot } from "./merkle";

/** A stored row, as the verifier needs it: the hash input rebuilt from the stored fields. */
export interface VerifyRow {
    seq: number;
    /** stored prev hash || encoding(stored seq, time, source, payload) */
    input: Buffer;
    /** the stored hash */
    hash: Buffer;
}

export interface CheckpointRecord {
    signed: SignedCheckpoint;
    /** The entry hashes the checkpoint's root covers, when the lake holds them (hex, in order). */
    leaves?: string[];
    /** Where it was found. */
    origin: "db" | "lake" | "both";
}

export type FindingKind =
    | "altered" | "broken-link" | "missing" | "rewritten"
    | "checkpoint-signature" | "checkpoint-chain" | "checkpoint-conflict" | "checkpoint-deleted" | "checkpoint-root";

export interface Finding {
    seq: number;
    kind: FindingKind;
    message: string;
}

export interface VerifyReport {
    shard: string;
    from: number;
    to: number | null;
    entries: number;
    lastSeq: number | null;
    checkpoints: { total: number; checked: number; signedLeaves: number };
    ok: boolean;
    firstDivergentSeq: number | null;
    findings: Finding[];
    /** Findings beyond the ones listed (the list is capped). */
    moreFindings: number;
    warnings: string[];
}

export interface VerifyOptions {
    shard: string;
    /** First seq to check (the anchor is the stored hash of from - 1, or the genesis hash). */
    from: number;
    to?: number;
    anchor: Buffer;
    /** Every checkpoint known for the shard (any order). */
    checkpoints: CheckpointRecord[];
    /** Without it, checkpoints cannot be trusted and are not used (a warning says so). */
    publicKey?: KeyObject;
    maxFindings?: number;
    /**
     * Also recompute every checkpoint's Merkle root. Not needed to prove the entries: once every
     * hash and link in a range checks out, a stored head equal to the signed head proves every
     * entry before it (each hash covers the one before). The root matters for inclusion proofs;
     * this checks that the writer signed the right one. It costs two more hashes per entry.
     */
    checkRoots?: boolean;
    /** Findings made before the rows are read (mergeCheckpoints'), reported like the rest. */
    findings?: Finding[];
}

const hex = (b: Buffer) => b.toString("hex");

/**
 * Merges the checkpoints found in the database with those published to the lake. The lake copy
 * is the one an attacker with only database access cannot change.
 */
export function mergeCheckpoints(db: SignedCheckpoint[], lake: { signed: SignedCheckpoint; leaves?: string[] }[]): { records: CheckpointRecord[]; findings: Finding[] } {
    const bySeq = new Map<number, CheckpointRecord>();
    const findings: Finding[] = [];
    for (const l of lake) bySeq.set(l.signed.checkpoint.seq, { signed: l.signed, leaves: l.leaves, origin: "lake" });
    for (const d of db) {
        const seq = d.checkpoint.seq;
        const l = bySeq.get(seq);
        if (!l) {
            bySeq.set(seq, { signed: d, origin: "db" });
        } else if (l.signed.signature !== d.signature || checkpointDigest(l.signed.checkpoint) !== checkpointDigest(d.checkpoint)) {
            findings.push({ seq, kind: "checkpoint-conflict", message: `the database's checkpoint at seq ${seq} differs from the one published to the lake` });
        } else {
            l.origin = "both";
        }
    }
    return { records: [...bySeq.values()].sort((a, b) => a.signed.checkpoint.seq - b.signed.checkpoint.seq), findings };
}

export class ChainVerifier {
    private readonly findings: Finding[] = [];
    private findingCount = 0;
    private readonly warnings: string[] = [];
    private readonly maxFindings: number;
    /** Checkpoints whose range lies inside [from, to], in seq order, with valid signatures. */
    private readonly due: CheckpointRecord[] = [];
    private dueIndex = 0;
    /** Stored hashes since the current due checkpoint's `from`. */
    private window: Buffer[] = [];
    private windowBroken = false;
    private expected: number;
    private prevStored: Buffer;
    private entries = 0;
    private lastSeq: number | null = null;
    private checked = 0;
    private signedLeaves = 0;
    private readonly total: number;
    private readonly lastCheckpointSeq: number;

    constructor(private readonly opts: VerifyOptions) {
        this.maxFindings = opts.maxFindings ?? 50;
        for (const f of opts.findings ?? []) this.find(f);
        this.expected = opts.from;
        this.prevStored = opts.anchor;
        const sorted = [...opts.checkpoints].sort((a, b) => a.signed.checkpoint.seq - b.signed.checkpoint.seq);
        this.total = sorted.length;
        this.lastCheckpointSeq = 0;
        if (!opts.publicKey) {
            if (sorted.length) this.warnings.push(`${sorted.length} checkpoints not checked: no public key given`);
            return;
        }
        let prev: SignedCheckpoint | undefined;
        for (const rec of sorted) {
            const cp = rec.signed.checkpoint;
            const problem = checkpointProblem(rec.signed, opts.publicKey);
            if (problem) {
                this.find({ seq: cp?.seq ?? 0, kind: "checkpoint-signature", message: `checkpoint at seq ${cp?.seq}: ${problem}` });
                continue;
            }
            if (cp.shard !== opts.shard) {
                this.find({ seq: cp.seq, kind: "checkpoint-signature", message: `checkpoint at seq ${cp.seq} is for shard ${cp.shard}, not ${opts.shard}` });
                continue;
            }
            if (rec.origin === "db") this.warnings.push(`checkpoint at seq ${cp.seq} is in the database but not (yet) in the lake`);
            const wantPrev = prev ? checkpointDigest(prev.checkpoint) : null;
            const wantFrom = prev ? prev.checkpoint.seq + 1 : 1;
            if (cp.prev !== wantPrev || cp.from !== wantFrom) {
                this.find({
                    seq: cp.seq, kind: prev ? "checkpoint-chain" : "checkpoint-deleted",
                    message: `checkpoint at seq ${cp.seq} does not follow ${prev ? `the checkpoint at seq ${prev.checkpoint.seq}` : "the start of the shard"}: a checkpoint between them was deleted or replaced`,
                });
            }
            prev = rec.signed;
            this.lastCheckpointSeq = cp.seq;
            if (cp.from >= opts.from && (opts.to === undefined || cp.seq <= opts.to)) this.due.push(rec);
        }
        const skipped = sorted.length - this.due.length;
        if (skipped && (opts.from > 1 || opts.to !== undefined)) this.warnings.push(`${skipped} checkpoints lie (partly) outside ${opts.from}..${opts.to ?? "head"} and were not checked against entries`);
    }

    private firstSeq: number | null = null;

    private find(f: Finding): void {
        this.findingCount++;
        if (this.firstSeq === null || f.seq < this.firstSeq) this.firstSeq = f.seq;
        if (this.findings.length < this.maxFindings) this.findings.push(f);
    }

    push(row: VerifyRow): void {
        const seq = row.seq;
        let linkBroken = false;
        if (seq !== this.expected) {
            if (seq > this.expected) {
                this.find({ seq: this.expected, kind: "missing", message: seq === this.expected + 1 ? `entry ${this.expected} is missing` : `entries ${this.expected}..${seq - 1} are missing` });
                const open = this.due[this.dueIndex]?.signed.checkpoint;
                if (open && open.from < seq) this.windowBroken = true;
            } else {
                this.find({ seq, kind: "altered", message: `seq ${seq} appears again after ${this.expected - 1}` });
                return;
            }
        } else {
            linkBroken = !row.input.subarray(0, HASH_BYTES).equals(this.prevStored);
        }
        // One finding per seq: a changed entry usually breaks its link too; say the stronger thing.
        if (sha256Latin1(row.input) !== row.hash.toString("latin1")) {
            this.find({ seq, kind: "altered", message: `entry ${seq} does not hash to its stored hash: its seq, time, source or payload was changed${linkBroken ? ", and its prev hash is not the hash of the entry before it (moved or replaced)" : ""}` });
            this.markWindow(seq);
        } else if (linkBroken) {
            this.find({ seq, kind: "broken-link", message: `prev hash of ${seq} is not the hash of entry ${seq - 1}: the entry before it was replaced or moved` });
            this.markWindow(seq);
        }
        this.entries++;
        this.lastSeq = seq;
        this.expected = seq + 1;
        this.prevStored = row.hash;
        let cp = this.due[this.dueIndex]?.signed.checkpoint;
        // A gap can skip past whole checkpoint ranges: those lost entries, already reported.
        while (cp && cp.seq < seq) {
            this.windowBroken = true;
            this.closeWindow();
            cp = this.due[this.dueIndex]?.signed.checkpoint;
            if (cp && cp.from < seq) this.windowBroken = true;
        }
        if (cp && seq >= cp.from) {
            this.window.push(row.hash);
            if (seq === cp.seq) this.closeWindow();
        }
    }

    /** A finding inside the open checkpoint range already explains its mismatch: do not report it twice. */
    private markWindow(seq: number): void {
        const open = this.due[this.dueIndex]?.signed.checkpoint;
        if (open && seq >= open.from && seq <= open.seq) this.windowBroken = true;
    }

    /** The due checkpoint's range has been read (or skipped past): compare it with what was signed. */
    private closeWindow(): void {
        const rec = this.due[this.dueIndex];
        const cp = rec.signed.checkpoint;
        this.checked++;
        const window = this.window;
        this.window = [];
        const broken = this.windowBroken;
        this.windowBroken = false;
        this.dueIndex++;
        if (broken) return; // what is wrong inside it is already reported at its seq
        const headOk = window.length > 0 && hex(window[window.length - 1]) === cp.head && this.lastSeq === cp.seq;
        if (headOk && !this.opts.checkRoots) return;
        if (headOk) {
            if (hex(merkleRoot(window)) !== cp.root) {
                this.find({ seq: cp.seq, kind: "checkpoint-root", message: `the checkpoint at seq ${cp.seq} matches its entries' head but signs a Merkle root that is not theirs: inclusion proofs against it fail (a signer fault, not an edited entry)` });
            }
            return;
        }
        // The stored hashes are not what was signed. With the signed leaves we can say where.
        const leaves = rec.leaves;
        if (leaves && leaves.length === cp.seq - cp.from + 1 && hex(merkleRoot(leaves.map((l) => Buffer.from(l, "hex")))) === cp.root) {
            this.signedLeaves++;
            const j = window.findIndex((h, i) => hex(h) !== leaves[i]);
            const at = cp.from + (j < 0 ? window.length : j);
            this.find({ seq: at, kind: "rewritten", message: `entry ${at} is not the entry signed in the checkpoint at seq ${cp.seq}, yet the chain is consistent: the history was rewritten and its hashes recomputed from here` });
        } else {
            this.find({ seq: cp.from, kind: "rewritten", message: `entries ${cp.from}..${cp.seq} do not match the signed checkpoint at seq ${cp.seq} (its head hash differs); no signed leaves to pinpoint the entry` });
        }
    }

    finish(): VerifyReport {
        // Checkpoints past the last entry read: entries they signed are gone (a truncated tail).
        const end = this.lastSeq ?? this.opts.from - 1;
        while (this.dueIndex < this.due.length) {
            const cp = this.due[this.dueIndex].signed.checkpoint;
            if (cp.seq > end) {
                this.find({ seq: end + 1, kind: "missing", message: `the shard ends at seq ${end}, but the checkpoint at seq ${cp.seq} (signed ${cp.time}) covers entries up to ${cp.seq}: entries ${end + 1}..${cp.seq} were removed` });
                break;
            }
            this.closeWindow();
        }
        if (this.opts.publicKey && this.lastCheckpointSeq < end && this.opts.to === undefined) {
            this.warnings.push(`entries ${this.lastCheckpointSeq + 1}..${end} are not yet covered by a checkpoint; their hashes are checked but not signed`);
        }
        return {
            shard: this.opts.shard,
            from: this.opts.from,
            to: this.opts.to ?? null,
            entries: this.entries,
            lastSeq: this.lastSeq,
            checkpoints: { total: this.total, checked: this.checked, signedLeaves: this.signedLeaves },
            ok: this.findingCount === 0,
            firstDivergentSeq: this.firstSeq,
            findings: [...this.findings].sort((a, b) => a.seq - b.seq),
            moreFindings: this.findingCount - this.findings.length,
            warnings: this.warnings,
        };
    }
}
