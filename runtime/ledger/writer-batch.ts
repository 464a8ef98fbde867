// The shard writer's batching core, without I/O: what an append is once validated, when the
// writer puts another batch in flight or waits for the one it has (group commit, pipelining),
// which queued requests form that batch, and how a batch is chained onto a head with its
// idempotency keys resolved. The writer (writer.ts) does the waiting and the database work;
// everything here is a function of its arguments.
import { EntryError, canonicalPayload, chainEntry, checkSource, type LedgerEntry } from "../../model/ledger/core/encoding";

export interface AppendItem {
    source: string;
    payload: unknown;
    /** Event time: milliseconds since the epoch, or an ISO 8601 string. Default: now. */
    time?: number | string;
    /** Idempotency key: appending the same key again returns the first entry. */
    key?: string;
}

export interface AppendResult {
    seq: number;
    hash: string;
    /** True when the key was already in the ledger: nothing new was written. */
    duplicate: boolean;
}

/** An item once validated and canonicalized: what is hashed and stored. */
export interface Prepared {
    timeUs: number;
    source: string;
    payload: string;
    key?: string;
}

export interface Head {
    seq: number;
    hash: Buffer;
}

export interface Planned {
    results: AppendResult[];
    fresh: (LedgerEntry & { key?: string })[];
    /** The head after this batch. */
    head: Head;
    /** This batch's new keyed entries, for batches planned while it is in flight. */
    keys: Map<string, AppendResult>;
}

/** Entries per transaction at most, unless a config says otherwise. */
export const DEFAULT_MAX_BATCH = 5000;

/** Queued entries that justify a second batch in flight (see nextStep). */
export const PIPELINE_MIN_ITEMS = 500;

/** Batches in flight at most: one committing, the next COPYed behind it. */
export const PIPELINE_DEPTH = 2;

/** Validates and canonicalizes one item; throws EntryError naming what is wrong. */
export function prepareItem(item: AppendItem, now = Date.now()): Prepared {
    if (!item || typeof item !== "object") throw new EntryError("an entry must be an object with source and payload");
    const source = checkSource(item.source);
    if (item.payload === undefined) throw new EntryError("payload is missing");
    const payload = canonicalPayload(item.payload);
    let timeUs: number;
    if (item.time === undefined) timeUs = Math.round(now * 1000);
    else if (typeof item.time === "number" && Number.isFinite(item.time)) timeUs = Math.round(item.time * 1000);
    else if (typeof item.time === "string" && !Number.isNaN(Date.parse(item.time))) timeUs = Date.parse(item.time) * 1000;
    else throw new EntryError(`time ${JSON.stringify(item.time)} is neither milliseconds since the epoch nor an ISO 8601 time`);
    if (timeUs < 0 || timeUs > 8.64e18) throw new EntryError("time is out of range");
    let key: string | undefined;
    if (item.key !== undefined) {
        if (typeof item.key !== "string" || !item.key.length || Buffer.byteLength(item.key) > 200) throw new EntryError("key must be a non-empty string of at most 200 bytes");
        key = item.key;
    }
    return { timeUs, source, payload, key };
}

/** Validates a whole request; the error names the entry at fault. */
export function prepareItems(items: AppendItem[], now: number): Prepared[] {
    return items.map((it, i) => {
        try {
            return prepareItem(it, now);
        } catch (err) {
            throw new EntryError(`entry ${i}: ${(err as Error).message}`);
        }
    });
}

/**
 * What the writer does next, given how many batches are in flight and what has queued:
 *   - settle: wait for the oldest batch in flight;
 *   - batch: put the first `take` queued requests in flight as one batch;
 *   - idle: nothing in flight, nothing queued.
 */
export type Step = { kind: "settle" } | { kind: "batch"; take: number } | { kind: "idle" };

export function nextStep(inflight: number, queue: readonly { items: readonly unknown[] }[], maxBatch: number): Step {
    // A second batch goes in flight only when enough has queued to make it worth a transaction
    // of its own; otherwise waiting for the first one lets the queue grow into a bigger batch
    // (group commit), which is what small appends need.
    const pipelineFull = inflight >= PIPELINE_DEPTH || (inflight === 1 && !queuedAtLeast(queue, PIPELINE_MIN_ITEMS));
    if (pipelineFull || (!queue.length && inflight)) return { kind: "settle" };
    if (!queue.length) return { kind: "idle" };
    return { kind: "batch", take: batchSize(queue, maxBatch) };
}

/**
 * How many whole requests the next batch takes: up to maxBatch items, but at least one request
 * (one oversized request still goes alone).
 */
export function batchSize(queue: readonly { items: readonly unknown[] }[], maxBatch: number): number {
    let take = 0;
    let count = 0;
    while (take < queue.length && (take === 0 || count + queue[take].items.length <= maxBatch)) {
        count += queue[take].items.length;
        take++;
    }
    return take;
}

export function queuedAtLeast(queue: readonly { items: readonly unknown[] }[], n: number): boolean {
    let count = 0;
    for (const p of queue) if ((count += p.items.length) >= n) return true;
    return false;
}

/**
 * Assigns seqs and hashes from `head` (the head of the last batch in flight, or the committed
 * head). Duplicate keys get the first entry: keys already in the ledger (`existing`), keys of
 * the batches in flight (`inflight`, oldest first), and keys earlier in this batch.
 */
export function planBatch(items: readonly Prepared[], head: Head, existing: ReadonlyMap<string, Head>, inflight: readonly ReadonlyMap<string, AppendResult>[]): Planned {
    const inBatch = new Map<string, AppendResult>();
    const results: AppendResult[] = [];
    const fresh: (LedgerEntry & { key?: string })[] = [];
    let last = head;
    for (const it of items) {
        const known = it.key ? existing.get(it.key) : undefined;
        if (known) {
            results.push({ seq: known.seq, hash: known.hash.toString("hex"), duplicate: true });
            continue;
        }
        const again = it.key ? inBatch.get(it.key) ?? inflightKey(inflight, it.key) : undefined;
        if (again) {
            results.push({ ...again, duplicate: true });
            continue;
        }
        const e = chainEntry(last, it.timeUs, it.source, it.payload);
        last = e;
        const entry = e as LedgerEntry & { key?: string };
        entry.key = it.key;
        fresh.push(entry);
        const r = { seq: e.seq, hash: e.hash.toString("hex"), duplicate: false };
        if (it.key) inBatch.set(it.key, r);
        results.push(r);
    }
    return { results, fresh, head: { seq: last.seq, hash: last.hash }, keys: inBatch };
}

/** The distinct keys of a batch: what to look up in the ledger before planning it. */
export function batchKeys(items: readonly Prepared[]): string[] {
    return [...new Set(items.flatMap((it) => (it.key ? [it.key] : [])))];
}

function inflightKey(inflight: readonly ReadonlyMap<string, AppendResult>[], key: string): AppendResult | undefined {
    for (const keys of inflight) {
        const r = keys.get(key);
        if (r) return r;
    }
    return undefined;
}
