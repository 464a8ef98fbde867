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
//
// This file runs the pipeline; the parts it drives are beside it:
//   writer-batch.ts    (pure) validation, when to batch or wait, which requests, chaining and keys
//   writer-cadence.ts  (pure) when a checkpoint is due and what it signs, on the caller's clock
//   writer-primary.ts  the two connections to the primary, loading the shard's state, failover
//   writer-publish.ts  publishing committed checkpoints to the sinks, with retries
import { checkpointBytes } from "../../model/ledger/core/checkpoint";
import { isConnectionError, type ShardAccess, type ShardStore } from "./pg/store";
import type { KeyObject } from "node:crypto";
import type { LedgerCache } from "./cache";
import type { CheckpointSink, PublishedCheckpoint } from "./sinks";
import { DEFAULT_MAX_BATCH, batchKeys, nextStep, planBatch, prepareItems, type AppendItem, type AppendResult, type Head, type Planned, type Prepared } from "./writer-batch";
import { CheckpointCadence } from "./writer-cadence";
import { CheckpointPublisher } from "./writer-publish";
import { WriterError, openPrimary, reconnectUntil, type PrimaryConnections } from "./writer-primary";

export { DEFAULT_MAX_BATCH, prepareItem, type AppendItem, type AppendResult } from "./writer-batch";
export { WriterError } from "./writer-primary";

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

interface Pending {
    items: Prepared[];
    resolve: (r: AppendResult[]) => void;
    reject: (err: Error) => void;
}

/** A batch on its way: COPYed in its own transaction, committing after the one before it. */
interface Inflight {
    batch: Pending[];
    planned: Planned;
    conn: ShardStore;
    checkpoints: PublishedCheckpoint[];
    done: Promise<void>;
    error?: Error;
}

/** The batch before this one failed, so this one rolled back; it is planned again. */
class Superseded extends Error {}

export class ShardWriter {
    private conns!: PrimaryConnections;
    private inflight: Inflight[] = [];
    /** Signed, not yet committed: they go with the next transaction. */
    private pendingCheckpoints: PublishedCheckpoint[] = [];
    private shardId = "";
    private head!: Head;
    private queue: Pending[] = [];
    /** A drain (or checkpointNow) is running; nothing else touches the pipeline meanwhile. */
    private busy = false;
    private closed = false;
    /** Waiting for the writer to stop being busy (close, checkpointNow); woken by idle(). */
    private idleWaiters: (() => void)[] = [];
    private timer?: NodeJS.Timeout;
    readonly stats = { batches: 0, entries: 0, duplicates: 0, failovers: 0, checkpoints: 0, publishErrors: 0, lastBatch: 0 };
    private readonly cadence: CheckpointCadence;
    private readonly publisher: CheckpointPublisher;
    private readonly maxBatch: number;
    private readonly log: (msg: string) => void;

    private constructor(readonly shard: string, private readonly opts: WriterOptions) {
        this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
        this.log = opts.log ?? (() => undefined);
        this.cadence = new CheckpointCadence(shard, opts.checkpointEvery, opts.signingKey, Date.now());
        this.publisher = new CheckpointPublisher(shard, opts.sinks ?? [], { log: this.log, failed: () => this.stats.publishErrors++ });
    }

    static async open(opts: WriterOptions): Promise<ShardWriter> {
        const w = new ShardWriter(opts.access.shard, opts);
        await w.connect();
        const every = opts.checkpointEvery;
        if (opts.signingKey && every) {
            w.timer = setInterval(() => {
                if (w.publisher.pending) void w.publisher.publish(); // retries a lake that was unreachable
                if (w.cadence.tick(w.head.seq, Date.now())) w.kick();
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
        return this.conns.endpoint;
    }

    /** Connects to the primary, takes the writer lock, and loads the head and checkpoint state. */
    private async connect(): Promise<void> {
        const p = await openPrimary(this.opts.access);
        try {
            if (this.head && p.head.seq < this.head.seq) {
                // Only possible if an acknowledged commit was lost: a quorum misconfiguration.
                this.log(`shard ${this.shard}: LOST ACKNOWLEDGED ENTRIES: head was ${this.head.seq}, the new primary has ${p.head.seq}`);
            }
            this.shardId = p.shardId;
            this.head = p.head;
            this.conns = p.conns;
            this.cadence.reload(p.last, p.window, Date.now());
            // Checkpoints signed but never committed are cut again from the reloaded window.
            this.pendingCheckpoints = [];
            // Checkpoints the sinks are missing (a crash between commit and publish) are queued.
            await this.publisher.addMissing(p.checkpoints, (from, to) => p.conns.store.hashes(from, to));
        } catch (err) {
            await p.conns.close();
            throw err;
        }
    }

    /** Validates, queues, and resolves once the batch holding these items is quorum-committed. */
    append(items: AppendItem[]): Promise<AppendResult[]> {
        if (this.closed) return Promise.reject(new WriterError(`shard ${this.shard}: the writer is closed`));
        let prepared: Prepared[];
        try {
            prepared = prepareItems(items, Date.now());
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
            if ((this.queue.length || this.cadence.isDue) && !this.closed) this.kick();
            if (!this.busy) this.idle();
        });
    }

    /** Resolves the next time the writer stops being busy; the caller checks again what it waits for. */
    private nextIdle(): Promise<void> {
        return new Promise((resolve) => this.idleWaiters.push(resolve));
    }

    private idle(): void {
        for (const wake of this.idleWaiters.splice(0)) wake();
    }

    private async drain(): Promise<void> {
        while (!this.closed) {
            const step = nextStep(this.inflight.length, this.queue, this.maxBatch);
            if (step.kind === "settle") {
                await this.settle();
                continue;
            }
            if (step.kind === "idle") break;
            this.cutCheckpoints();
            // One splice per batch, not a shift per request: under a backlog of many small
            // requests, shifting one at a time is quadratic.
            const batch = this.queue.splice(0, step.take);
            const before = this.inflight.at(-1);
            const conn = this.conns.after(before?.conn);
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

    /** One batch: COPY and its checkpoints in a transaction that commits only after the batch before it. */
    private async run(conn: ShardStore, planned: Planned, checkpoints: PublishedCheckpoint[], before?: Promise<void>): Promise<void> {
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
        this.publisher.add(f.checkpoints);
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
            await this.conns.close();
            try {
                await reconnectUntil(this.shard, Date.now() + (this.opts.failoverTimeoutMs ?? 60_000), () => this.connect(), () => this.closed);
                this.log(`shard ${this.shard}: writing to [${this.conns.endpoint.host}]:${this.conns.endpoint.port} from seq ${this.head.seq}`);
            } catch (lost) {
                // No primary in time (or a ledger that contradicts its checkpoints): fail what
                // was waiting. Whether a batch in flight committed is unknown; the callers'
                // idempotency keys make their retries safe. The next append tries again.
                for (const p of [...failed.flatMap((f) => f.batch), ...this.queue.splice(0)]) p.reject(lost as Error);
                return;
            }
            for (const f of failed) {
                const last = f.planned.fresh.at(-1);
                const stored = last ? await this.conns.store.entry(last.seq) : undefined;
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

    /**
     * Plans a batch on the head of the last batch in flight (or the committed head); duplicate
     * keys (in the ledger, in a batch in flight, or earlier in this batch) get the first entry.
     */
    private async plan(items: Prepared[], conn: ShardStore): Promise<Planned> {
        const existing = await conn.findKeys(batchKeys(items));
        return planBatch(items, this.inflight.at(-1)?.planned.head ?? this.head, existing, this.inflight.map((f) => f.planned.keys));
    }

    private committed(planned: Planned, windowLoaded = false): AppendResult[] {
        const { fresh, results } = planned;
        if (fresh.length) this.head = planned.head;
        this.cadence.committed(windowLoaded ? [] : fresh.map((e) => e.hash), this.head.seq);
        this.stats.batches++;
        this.stats.entries += fresh.length;
        this.stats.duplicates += results.length - fresh.length;
        this.stats.lastBatch = results.length;
        if (this.opts.cache && fresh.length) void this.opts.cache.put(this.shardId, fresh, this.head);
        return results;
    }

    /**
     * Signs the checkpoints that are due, over committed entries only (cut at multiples of N; the
     * timer cuts at the head). They are stored with the next transaction.
     */
    private cutCheckpoints(): void {
        const cut = this.cadence.cut(this.head.seq, Date.now());
        this.pendingCheckpoints.push(...cut);
        this.stats.checkpoints += cut.length;
    }

    /** With no batch to ride in, due checkpoints commit in a transaction of their own. */
    private async checkpointIdle(): Promise<void> {
        this.cutCheckpoints();
        if (!this.pendingCheckpoints.length) return;
        const checkpoints = this.pendingCheckpoints.splice(0);
        const conn = this.conns.store;
        const f: Inflight = { batch: [], planned: { results: [], fresh: [], head: this.head, keys: new Map() }, conn, checkpoints, done: Promise.resolve() };
        f.done = this.run(conn, f.planned, checkpoints);
        f.done.catch(() => undefined);
        this.inflight.push(f);
        await this.settle();
    }

    /** Forces a checkpoint of everything appended so far (used at shutdown and by tests). */
    async checkpointNow(): Promise<void> {
        if (!this.opts.checkpointEvery || !this.opts.signingKey) return;
        while (this.busy || this.queue.length) await this.nextIdle();
        this.cadence.force();
        this.busy = true;
        try {
            await this.checkpointIdle();
        } finally {
            this.busy = false;
            this.idle();
        }
    }

    async close(): Promise<void> {
        if (this.timer) clearInterval(this.timer);
        while (this.busy || this.queue.length || this.inflight.length) await this.nextIdle();
        this.closed = true;
        await this.conns?.close();
    }
}
