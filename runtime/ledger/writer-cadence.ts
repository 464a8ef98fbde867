// When the shard writer cuts a signed checkpoint, and what it signs, without I/O or a clock of
// its own: every `entries` entries (cut at multiples of N) or `ms` milliseconds, whichever comes
// first, over committed entries only. The caller passes the time (`now`, ms since the epoch) and
// the committed head; the state is the last checkpoint and the hashes of the entries after it.
// Signing is ed25519 through node:crypto, deterministic for a given key and input.
import type { KeyObject } from "node:crypto";
import { checkpointDigest, signCheckpoint } from "../../model/ledger/core/checkpoint";
import { merkleRoot } from "../../model/ledger/core/merkle";
import type { PublishedCheckpoint } from "./sinks";

export interface CheckpointEvery {
    entries: number;
    ms: number;
}

export interface LastCheckpoint {
    seq: number;
    /** checkpointDigest of it: the next one's `prev` (null before the first). */
    digest: string | null;
}

export class CheckpointCadence {
    /** Hashes of the entries after the last checkpoint, in seq order. */
    private window: Buffer[] = [];
    private last: LastCheckpoint & { at: number };
    private due = false;

    /** No checkpoint is ever cut without both `every` and `key`. */
    constructor(private readonly shard: string, private readonly every: CheckpointEvery | undefined, private readonly key: KeyObject | undefined, now: number) {
        this.last = { seq: 0, digest: null, at: now };
    }

    /** After (re)connecting: the last stored checkpoint and the hashes of the entries after it. The time rule counts from now. */
    reload(last: LastCheckpoint, window: Buffer[], now: number): void {
        this.last = { ...last, at: now };
        this.window = window;
    }

    get lastSeq(): number {
        return this.last.seq;
    }

    /** A cut is due: the writer should run (cut() clears it). */
    get isDue(): boolean {
        return this.due;
    }

    /**
     * A batch committed and the head is now `headSeq`. `hashes` are its new entries' hashes, to
     * append to the window (none when the window was reloaded with them already). Due once N
     * entries wait.
     */
    committed(hashes: readonly Buffer[], headSeq: number): void {
        for (const h of hashes) this.window.push(h);
        if (this.every && headSeq - this.last.seq >= this.every.entries) this.due = true;
    }

    /** The clock: due once `ms` have passed since the last checkpoint and entries wait. True when it made a cut due now. */
    tick(headSeq: number, now: number): boolean {
        if (!this.every || now - this.last.at < this.every.ms || headSeq <= this.last.seq) return false;
        this.due = true;
        return true;
    }

    /** Makes the next cut() take everything up to the head, whatever the time (checkpointNow). */
    force(): void {
        this.last.at = Number.NEGATIVE_INFINITY;
        this.due = true;
    }

    /**
     * Signs the checkpoints that are due, over the committed entries up to `headSeq`: at
     * multiples of N, and the rest up to the head when `ms` have passed. Clears the due flag,
     * even with no key (nothing is cut then). The result goes with the next transaction.
     */
    cut(headSeq: number, now: number): PublishedCheckpoint[] {
        if (!this.due) return [];
        this.due = false;
        const { key, every } = this;
        if (!key || !every) return [];
        const out: PublishedCheckpoint[] = [];
        while (headSeq > this.last.seq) {
            const pending = headSeq - this.last.seq;
            const timed = now - this.last.at >= every.ms;
            if (pending < every.entries && !timed) break;
            const n = Math.min(pending, every.entries);
            const leaves = this.window.slice(0, n);
            const from = this.last.seq + 1;
            const seq = this.last.seq + n;
            const signed = signCheckpoint({
                shard: this.shard, from, seq, head: leaves[n - 1].toString("hex"),
                root: merkleRoot(leaves).toString("hex"), prev: this.last.digest, time: new Date(now).toISOString(),
            }, key);
            this.window = this.window.slice(n);
            this.last = { seq, digest: checkpointDigest(signed.checkpoint), at: now };
            out.push({ signed, leaves: leaves.map((h) => h.toString("hex")) });
        }
        return out;
    }
}
