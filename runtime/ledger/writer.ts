// The single writer of one shard: it batches appends (group commit: whatever queued while the
// previous transaction was in flight goes into the next one), extends the hash chain, commits each
// batch as one transaction that PostgreSQL acknowledges only once a quorum holds it, and signs a
// checkpoint every N entries or T ms. It survives a failover: it finds the new primary, checks
// whether its in-flight batch made it, and carries on from the ledger's real head.
//
// Commits are pipelined over two connections to the primary: batch N+1 is planned on N's
// (speculative) head and COPYed inside its own transaction while N commits, but it COMMITs only
// after N has committed. So the insert work of two batches overlaps, and the chain in the
// database never has a gap: if N fails, N+1 rolls back and is planned again. Signed checkpoints
// ride in the next batch's transaction (or commit alone when the shard is idle), so they cost no
// quorum round of their own.
import type { KeyObject } from "node:crypto";
import { EntryError, canonicalPayload, chainEntry, checkSource, type LedgerEntry } from "../../model/ledger/core/encoding";
import { checkpointBytes, checkpointDigest, signCheckpoint, type SignedCheckpoint } from "../../model/ledger/core/checkpoint";
import { merkleRoot } from "../../model/ledger/core/merkle";
import { ShardStore, LedgerUnavailableError, isConnectionError, type ShardAccess } from "./pg/store";
import type { LedgerCache } from "./cache";
import type { CheckpointSink } from "./sinks";

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

export interface WriterOptions {
    access: ShardAccess;
    signingKey?: KeyObject;
    checkpointEvery?: { entries: number; ms: number };
    sinks?: CheckpointSink[];
    cache?: LedgerCache;
    maxBatch?: number;
    /** How long to look for a new primary before failing queued appends. */
    failoverTimeoutMs?: number;
    log?: (msg: string) => void;
}

interface Prepared {
    timeUs: number;
    source: string;
    payload: string;
    key?: string;
}

interface Pending {
    items: Prepared[];
    resolve: (r: AppendResult[]) => void;
    reject: (err: Error) => void;
}

interface Planned {
    results: AppendResult[];
    fresh: (LedgerEntry & { key?: string })[];
    /** The head after this batch. */
    head: { seq: number; hash: Buffer };
    /** This batch's new keyed entries, for batches planned while it is in flight. */
    keys: Map<string, AppendResult>;
}

interface CutCheckpoint {
    signed: SignedCheckpoint;
    leaves: string[];
}

/** A batch on its way: COPYed in its own transaction, committing after the one before it. */
interface Inflight {
    batch: Pending[];
    planned: Planned;
    conn: ShardStore;
    checkpoints: CutCheckpoint[];
    done: Promise<void>;
    error?: Error;
}

/** Entries per transaction at most, unless a config says otherwise. */
export const DEFAULT_MAX_BATCH = 5000;

/** Queued entries that justify a second batch in flight (see drain). */
const PIPELINE_MIN_ITEMS = 500;

/** The batch before this one failed, so this one rolled back; it is planned again. */
class Superseded extends Error {}

export class WriterError extends Error {
    override name = "WriterError";
}

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

export class ShardWriter {
    /** Holds the writer lock. */
    private store!: ShardStore;
    /** The second connection to the same primary, for pipelined commits. */
    private second!: ShardStore;
    private inflight: Inflight[] = [];
    /** Signed, not yet committed: they go with the next transaction. */
    private pendingCheckpoints: CutCheckpoint[] = [];
    private shardId = "";
    private head!: { seq: number; hash: Buffer };
    private queue: Pending[] = [];
    private busy = false;
    private closed = false;
    /** Hashes of the entries after the last checkpoint, in seq order. */
    private window: Buffer[] = [];
    private lastCheckpoint: { seq: number; digest: string | null; at: number } = { seq: 0, digest: null, at: Date.now() };
    private unpublished: CutCheckpoint[] = [];
    private timer?: NodeJS.Timeout;
    private checkpointDue = false;
    readonly stats = { batches: 0, entries: 0, duplicates: 0, failovers: 0, checkpoints: 0, publishErrors: 0, lastBatch: 0 };
    private readonly maxBatch: number;
    private readonly log: (msg: string) => void;

    private constructor(readonly shard: string, private readonly opts: WriterOptions) {
        this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
        this.log = opts.log ?? (() => undefined);
    }

    static async open(opts: WriterOptions): Promise<ShardWriter> {
        const w = new ShardWriter(opts.access.shard, opts);
        await w.connect();
        const every = opts.checkpointEvery;
        if (opts.signingKey && every) {
            w.timer = setInterval(() => {
                if (w.unpublished.length) void w.publish(); // retries a lake that was unreachable
                if (Date.now() - w.lastCheckpoint.at >= every.ms && w.head.seq > w.lastCheckpoint.seq) {
                    w.checkpointDue = true;
                    w.kick();
                }
            }, Math.max(50, Math.min(every.ms / 4, 1000)));
            w.timer.unref();
        }
        return w;
    }

    get headSeq(): number {
        return this.head.seq;
    }

    get id(): string {
        return this.shardId;
    }

    get endpoint() {
        return this.store.endpoint;
    }

    /** Connects to the primary, takes the writer lock, and loads the head and checkpoint state. */
    private async connect(): Promise<void> {
        const store = await ShardStore.open(this.opts.access, "primary");
        let second: ShardStore | undefined;
        try {
            if (!(await store.lockWriter())) throw new WriterError(`shard ${this.shard} already has a writer (another ingest service holds its lock)`);
            this.shardId = (await store.shardInfo()).id;
            const head = await store.head();
            const cps = await store.checkpoints();
            const last = cps.at(-1);
            if (last) {
                const at = await store.entry(last.checkpoint.seq);
                if (!at || at.hash.toString("hex") !== last.checkpoint.head) {
                    throw new WriterError(`shard ${this.shard}: the entry at seq ${last.checkpoint.seq} does not match its signed checkpoint; refusing to append to a tampered ledger (run: nublar ledger verify --shard ${this.shard})`);
                }
            }
            this.lastCheckpoint = { seq: last?.checkpoint.seq ?? 0, digest: last ? checkpointDigest(last.checkpoint) : null, at: Date.now() };
            this.window = head.seq > this.lastCheckpoint.seq ? await store.hashes(this.lastCheckpoint.seq + 1, head.seq) : [];
            if (this.head && head.seq < this.head.seq) {
                // Only possible if an acknowledged commit was lost: a quorum misconfiguration.
                this.log(`shard ${this.shard}: LOST ACKNOWLEDGED ENTRIES: head was ${this.head.seq}, the new primary has ${head.seq}`);
            }
            // The second connection goes to the same instance, and must find it still primary.
            second = await ShardStore.open({ ...this.opts.access, endpoints: [store.endpoint] }, "primary");
            this.head = head;
            this.store = store;
            this.second = second;
            // Checkpoints signed but never committed are cut again from the reloaded window.
            this.pendingCheckpoints = [];
            await this.queueUnpublished(cps);
        } catch (err) {
            await store.close();
            await second?.close();
            throw err;
        }
    }

    /**
     * Checkpoints the sinks are missing (a crash between commit and publish) join the publish
     * queue, which retries on its own: an unreachable lake never holds up ingest.
     */
    private async queueUnpublished(cps: SignedCheckpoint[]): Promise<void> {
        const queued = new Set(this.unpublished.map((c) => c.signed.checkpoint.seq));
        for (const cp of cps) {
            if (queued.has(cp.checkpoint.seq)) continue;
            const missing = await Promise.all((this.opts.sinks ?? []).map((sink) => sink.has(this.shard, cp.checkpoint.seq).then((has) => !has, () => true)));
            if (!missing.some(Boolean)) continue;
            const leaves = (await this.store.hashes(cp.checkpoint.from, cp.checkpoint.seq)).map((h) => h.toString("hex"));
            this.unpublished.push({ signed: cp, leaves });
            this.log(`shard ${this.shard}: checkpoint ${cp.checkpoint.seq} is not published yet; queued`);
        }
        void this.publish();
    }

    /** Validates, queues, and resolves once the batch holding these items is quorum-committed. */
    append(items: AppendItem[]): Promise<AppendResult[]> {
        if (this.closed) return Promise.reject(new WriterError(`shard ${this.shard}: the writer is closed`));
        const now = Date.now();
        let prepared: Prepared[];
        try {
            prepared = items.map((it, i) => {
                try {
                    return prepareItem(it, now);
                } catch (err) {
                    throw new EntryError(`entry ${i}: ${(err as Error).message}`);
                }
            });
        } catch (err) {
            return Promise.reject(err);
        }
        if (!prepared.length) return Promise.resolve([]);
        return new Promise((resolve, reject) => {
            this.queue.push({ items: prepared, resolve, reject });
            this.kick();
        });
    }

    private kick(): void {
        if (this.busy) return;
        this.busy = true;
        void this.drain().finally(() => {
            this.busy = false;
            if ((this.queue.length || this.checkpointDue) && !this.closed) this.kick();
        });
    }

    private async drain(): Promise<void> {
        while (!this.closed) {
            // A second batch goes in flight only when enough has queued to make it worth a
            // transaction of its own; otherwise waiting for the first one lets the queue grow
            // into a bigger batch (group commit), which is what small appends need.
            const pipelineFull = this.inflight.length === 2 || (this.inflight.length === 1 && !this.queuedAtLeast(PIPELINE_MIN_ITEMS));
            if (pipelineFull || (!this.queue.length && this.inflight.length)) {
                await this.settle();
                continue;
            }
            if (!this.queue.length) break;
            this.cutCheckpoints();
            // Whole requests, up to maxBatch items (one oversized request still goes alone).
            // One splice per batch, not a shift per request: under a backlog of many small
            // requests, shifting one at a time is quadratic.
            let take = 0;
            let count = 0;
            while (take < this.queue.length && (take === 0 || count + this.queue[take].items.length <= this.maxBatch)) {
                count += this.queue[take].items.length;
                take++;
            }
            const batch = this.queue.splice(0, take);
            const before = this.inflight.at(-1);
            const conn = before?.conn === this.store ? this.second : this.store;
            let planned: Planned;
            try {
                planned = await this.plan(batch.flatMap((p) => p.items), conn);
            } catch (err) {
                if (!isConnectionError(err)) {
                    for (const p of batch) p.reject(err as Error);
                    continue;
                }
                this.queue.unshift(...batch);
                await this.recover(err as Error);
                continue;
            }
            const checkpoints = this.pendingCheckpoints.splice(0);
            const done = this.run(conn, planned, checkpoints, before?.done);
            done.catch(() => undefined); // settled in order by settle()
            this.inflight.push({ batch, planned, conn, checkpoints, done });
        }
        if (!this.closed && !this.queue.length && !this.inflight.length) await this.checkpointIdle();
    }

    private queuedAtLeast(n: number): boolean {
        let count = 0;
        for (const p of this.queue) if ((count += p.items.length) >= n) return true;
        return false;
    }

    /** One batch: COPY and its checkpoints in a transaction that commits only after the batch before it. */
    private async run(conn: ShardStore, planned: Planned, checkpoints: CutCheckpoint[], before?: Promise<void>): Promise<void> {
        if (!before && !checkpoints.length) {
            // Nothing to wait for and nothing to ride along: one COPY is its own transaction,
            // one round trip instead of three (BEGIN, COPY, COMMIT). The usual case at low rates.
            await conn.insertBatch(planned.fresh);
            return;
        }
        await conn.begin();
        try {
            await conn.insertBatch(planned.fresh);
            for (const cp of checkpoints) await conn.insertCheckpoint(cp.signed, checkpointBytes(cp.signed.checkpoint).toString("utf8"));
            if (before && !(await before.then(() => true, () => false))) throw new Superseded("the batch before it failed");
            await conn.commit();
        } catch (err) {
            await conn.rollback().catch(() => undefined);
            throw err;
        }
    }

    /** Waits for the oldest batch in flight; on success acknowledges it, on failure recovers. */
    private async settle(): Promise<void> {
        const f = this.inflight[0];
        try {
            await f.done;
        } catch (err) {
            await this.recover(err as Error);
            return;
        }
        this.inflight.shift();
        this.acknowledge(f);
    }

    private acknowledge(f: Inflight, windowLoaded = false): void {
        const results = this.committed(f.planned, windowLoaded);
        let i = 0;
        for (const p of f.batch) {
            p.resolve(results.slice(i, i + p.items.length));
            i += p.items.length;
        }
        if (f.checkpoints.length) {
            this.unpublished.push(...f.checkpoints);
            void this.publish();
        }
    }

    /**
     * Something failed (the oldest batch in flight, or planning). Wait for every batch in flight
     * to settle, then: after a connection error, find the primary again and ask the ledger which
     * batch committed (its last entry is there with the hash we computed, or absent); after any
     * other error, reject the batch that caused it. Everything not committed is planned again.
     */
    private async recover(err: Error): Promise<void> {
        const failed = this.inflight.splice(0);
        for (const f of failed) f.error = await f.done.then(() => undefined, (e: Error) => e);
        const cause = failed.find((f) => f.error && !(f.error instanceof Superseded))?.error ?? err;
        const requeue: Pending[] = [];
        if (isConnectionError(cause) || failed.some((f) => f.error && isConnectionError(f.error))) {
            this.log(`shard ${this.shard}: lost the primary (${cause.message}); looking for the new one`);
            this.stats.failovers++;
            await this.store.close();
            await this.second?.close();
            try {
                await this.reconnect(Date.now() + (this.opts.failoverTimeoutMs ?? 60_000));
            } catch (lost) {
                // No primary in time (or a ledger that contradicts its checkpoints): fail what
                // was waiting. Whether a batch in flight committed is unknown; the callers'
                // idempotency keys make their retries safe. The next append tries again.
                for (const p of [...failed.flatMap((f) => f.batch), ...this.queue.splice(0)]) p.reject(lost as Error);
                return;
            }
            for (const f of failed) {
                const last = f.planned.fresh.at(-1);
                const stored = last ? await this.store.entry(last.seq) : undefined;
                if (!f.error || (last && stored && stored.hash.equals(last.hash))) {
                    if (f.error) this.log(`shard ${this.shard}: the batch ending at ${last!.seq} had committed before the failover`);
                    // connect() loaded the head and window with this batch in them.
                    this.acknowledge(f, true);
                } else {
                    requeue.push(...f.batch);
                }
            }
        } else {
            for (const f of failed) {
                if (!f.error) {
                    this.acknowledge(f);
                } else if (f.error === cause) {
                    for (const p of f.batch) p.reject(cause);
                    this.pendingCheckpoints.unshift(...f.checkpoints);
                } else {
                    requeue.push(...f.batch);
                    this.pendingCheckpoints.unshift(...f.checkpoints);
                }
            }
        }
        this.queue.unshift(...requeue);
    }

    private async reconnect(deadline: number): Promise<void> {
        let lastErr: Error | undefined;
        while (Date.now() < deadline && !this.closed) {
            try {
                await this.connect();
                this.log(`shard ${this.shard}: writing to [${this.store.endpoint.host}]:${this.store.endpoint.port} from seq ${this.head.seq}`);
                return;
            } catch (err) {
                lastErr = err as Error;
                if (err instanceof WriterError) throw err;
                await new Promise((r) => setTimeout(r, 200));
            }
        }
        throw new LedgerUnavailableError(`shard ${this.shard}: no primary within the failover timeout (${lastErr?.message ?? "closed"})`);
    }

    /**
     * Assigns seqs and hashes from the head of the last batch in flight (or the committed head);
     * duplicate keys (in the ledger, in a batch in flight, or earlier in this batch) get the
     * first entry.
     */
    private async plan(items: Prepared[], conn: ShardStore): Promise<Planned> {
        const keys = items.flatMap((it) => (it.key ? [it.key] : []));
        const existing = await conn.findKeys([...new Set(keys)]);
        const inBatch = new Map<string, AppendResult>();
        const results: AppendResult[] = [];
        const fresh: (LedgerEntry & { key?: string })[] = [];
        let head = this.inflight.at(-1)?.planned.head ?? this.head;
        for (const it of items) {
            const known = it.key ? existing.get(it.key) : undefined;
            if (known) {
                results.push({ seq: known.seq, hash: known.hash.toString("hex"), duplicate: true });
                continue;
            }
            const again = it.key ? inBatch.get(it.key) ?? this.inflightKey(it.key) : undefined;
            if (again) {
                results.push({ ...again, duplicate: true });
                continue;
            }
            const e = chainEntry(head, it.timeUs, it.source, it.payload);
            head = e;
            const entry = e as LedgerEntry & { key?: string };
            entry.key = it.key;
            fresh.push(entry);
            const r = { seq: e.seq, hash: e.hash.toString("hex"), duplicate: false };
            if (it.key) inBatch.set(it.key, r);
            results.push(r);
        }
        return { results, fresh, head: { seq: head.seq, hash: head.hash }, keys: inBatch };
    }

    private inflightKey(key: string): AppendResult | undefined {
        for (const f of this.inflight) {
            const r = f.planned.keys.get(key);
            if (r) return r;
        }
        return undefined;
    }

    private committed(planned: Planned, windowLoaded = false): AppendResult[] {
        const { fresh, results } = planned;
        if (fresh.length) {
            this.head = planned.head;
            if (!windowLoaded) for (const e of fresh) this.window.push(e.hash);
        }
        this.stats.batches++;
        this.stats.entries += fresh.length;
        this.stats.duplicates += results.length - fresh.length;
        this.stats.lastBatch = results.length;
        const every = this.opts.checkpointEvery;
        if (every && this.head.seq - this.lastCheckpoint.seq >= every.entries) this.checkpointDue = true;
        if (this.opts.cache && fresh.length) void this.opts.cache.put(this.shardId, fresh, this.head);
        return results;
    }

    /**
     * Signs the checkpoints that are due, over committed entries only (cut at multiples of N; the
     * timer cuts at the head). They are stored with the next transaction.
     */
    private cutCheckpoints(): void {
        const key = this.opts.signingKey;
        const every = this.opts.checkpointEvery;
        if (!this.checkpointDue) return;
        this.checkpointDue = false; // cleared even with no key, or kick() would loop on it
        if (!key || !every) return;
        while (this.head.seq > this.lastCheckpoint.seq) {
            const pending = this.head.seq - this.lastCheckpoint.seq;
            const timed = Date.now() - this.lastCheckpoint.at >= every.ms;
            if (pending < every.entries && !timed) break;
            const n = Math.min(pending, every.entries);
            const leaves = this.window.slice(0, n);
            const from = this.lastCheckpoint.seq + 1;
            const seq = this.lastCheckpoint.seq + n;
            const signed = signCheckpoint({
                shard: this.shard, from, seq, head: leaves[n - 1].toString("hex"),
                root: merkleRoot(leaves).toString("hex"), prev: this.lastCheckpoint.digest, time: new Date().toISOString(),
            }, key);
            this.window = this.window.slice(n);
            this.lastCheckpoint = { seq, digest: checkpointDigest(signed.checkpoint), at: Date.now() };
            this.pendingCheckpoints.push({ signed, leaves: leaves.map((h) => h.toString("hex")) });
            this.stats.checkpoints++;
        }
    }

    /** With no batch to ride in, due checkpoints commit in a transaction of their own. */
    private async checkpointIdle(): Promise<void> {
        this.cutCheckpoints();
        if (!this.pendingCheckpoints.length) return;
        const checkpoints = this.pendingCheckpoints.splice(0);
        const f: Inflight = { batch: [], planned: { results: [], fresh: [], head: this.head, keys: new Map() }, conn: this.store, checkpoints, done: Promise.resolve() };
        f.done = this.run(this.store, f.planned, checkpoints);
        f.done.catch(() => undefined);
        this.inflight.push(f);
        await this.settle();
    }

    private publishing = false;

    /** Publishes queued checkpoints in order; one run at a time; what fails waits for the next call. */
    private async publish(): Promise<void> {
        if (this.publishing) return;
        this.publishing = true;
        try {
            await this.publishQueued();
        } finally {
            this.publishing = false;
        }
    }

    private async publishQueued(): Promise<void> {
        while (this.unpublished.length) {
            const cp = this.unpublished[0];
            try {
                for (const sink of this.opts.sinks ?? []) await sink.publish(this.shard, cp);
                this.unpublished.shift();
            } catch (err) {
                this.stats.publishErrors++;
                this.log(`shard ${this.shard}: publishing checkpoint ${cp.signed.checkpoint.seq} failed, will retry: ${(err as Error).message}`);
                return;
            }
        }
    }

    /** Forces a checkpoint of everything appended so far (used at shutdown and by tests). */
    async checkpointNow(): Promise<void> {
        if (!this.opts.checkpointEvery || !this.opts.signingKey) return;
        while (this.busy || this.queue.length) await new Promise((r) => setTimeout(r, 5));
        this.lastCheckpoint.at = 0;
        this.checkpointDue = true;
        this.busy = true;
        try {
            await this.checkpointIdle();
        } finally {
            this.busy = false;
        }
    }

    async close(): Promise<void> {
        if (this.timer) clearInterval(this.timer);
        while (this.busy || this.queue.length || this.inflight.length) await new Promise((r) => setTimeout(r, 5));
        this.closed = true;
        await this.store?.close();
        await this.second?.close();
    }
}
