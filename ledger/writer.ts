// The single writer of one shard: it batches appends (group commit: whatever queued while the
// previous transaction was in flight goes into the next one), extends the hash chain, commits each
// batch as one transaction that PostgreSQL acknowledges only once a quorum holds it, and signs a
// checkpoint every N entries or T ms. It survives a failover: it finds the new primary, checks
// whether its in-flight batch made it, and carries on from the ledger's real head.
import type { KeyObject } from "node:crypto";
import { EntryError, canonicalPayload, chainEntry, checkSource, type LedgerEntry } from "./core/encoding";
import { checkpointBytes, checkpointDigest, signCheckpoint, type SignedCheckpoint } from "./core/checkpoint";
import { merkleRoot } from "./core/merkle";
import { ShardStore, LedgerUnavailableError, isConnectionError, type ShardAccess, type StoredEntry } from "./pg/store";
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
    private store!: ShardStore;
    private shardId = "";
    private head!: { seq: number; hash: Buffer };
    private queue: Pending[] = [];
    private busy = false;
    private closed = false;
    /** Hashes of the entries after the last checkpoint, in seq order. */
    private window: Buffer[] = [];
    private lastCheckpoint: { seq: number; digest: string | null; at: number } = { seq: 0, digest: null, at: Date.now() };
    private unpublished: { signed: SignedCheckpoint; leaves: string[] }[] = [];
    private timer?: NodeJS.Timeout;
    private checkpointDue = false;
    readonly stats = { batches: 0, entries: 0, duplicates: 0, failovers: 0, checkpoints: 0, publishErrors: 0, lastBatch: 0 };
    private readonly maxBatch: number;
    private readonly log: (msg: string) => void;

    private constructor(readonly shard: string, private readonly opts: WriterOptions) {
        this.maxBatch = opts.maxBatch ?? 5000;
        this.log = opts.log ?? (() => undefined);
    }

    static async open(opts: WriterOptions): Promise<ShardWriter> {
        const w = new ShardWriter(opts.access.shard, opts);
        await w.connect();
        const every = opts.checkpointEvery;
        if (opts.signingKey && every) {
            w.timer = setInterval(() => {
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
            this.head = head;
            this.store = store;
            await this.republish(cps);
        } catch (err) {
            await store.close();
            throw err;
        }
    }

    /** Publishes checkpoints the sinks are missing (after a crash between commit and publish). */
    private async republish(cps: SignedCheckpoint[]): Promise<void> {
        for (const sink of this.opts.sinks ?? []) {
            for (const cp of cps) {
                if (await sink.has(this.shard, cp.checkpoint.seq)) continue;
                const leaves = (await this.store.hashes(cp.checkpoint.from, cp.checkpoint.seq)).map((h) => h.toString("hex"));
                await sink.publish(this.shard, { signed: cp, leaves });
                this.log(`shard ${this.shard}: republished checkpoint ${cp.checkpoint.seq} to ${sink.name}`);
            }
        }
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
        while (this.queue.length && !this.closed) {
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
            try {
                const results = await this.commit(batch.flatMap((p) => p.items));
                let i = 0;
                for (const p of batch) {
                    p.resolve(results.slice(i, i + p.items.length));
                    i += p.items.length;
                }
            } catch (err) {
                for (const p of batch) p.reject(err as Error);
            }
            await this.checkpointIfDue();
        }
        await this.checkpointIfDue();
    }

    /** Commits one batch, riding out a failover. */
    private async commit(items: Prepared[]): Promise<AppendResult[]> {
        const deadline = Date.now() + (this.opts.failoverTimeoutMs ?? 60_000);
        for (;;) {
            const before = this.head;
            let planned: { results: AppendResult[]; fresh: (LedgerEntry & { key?: string })[] } | undefined;
            try {
                planned = await this.plan(items);
                await this.store.insertBatch(planned.fresh);
                return this.committed(planned);
            } catch (err) {
                if (!isConnectionError(err)) {
                    this.head = before;
                    throw err;
                }
                this.log(`shard ${this.shard}: lost the primary (${(err as Error).message}); looking for the new one`);
                this.stats.failovers++;
                await this.store.close();
                await this.reconnect(deadline);
                // Did the batch commit before the connection died? The chain says so exactly:
                // its last entry is there with the hash we computed, or it is not there at all.
                if (planned?.fresh.length) {
                    const last = planned.fresh[planned.fresh.length - 1];
                    const stored = await this.store.entry(last.seq);
                    if (stored && stored.hash.equals(last.hash)) {
                        this.log(`shard ${this.shard}: the batch ending at ${last.seq} had committed before the failover`);
                        this.head = before;
                        // connect() loaded the window including this batch; just account for it.
                        this.head = { seq: last.seq, hash: last.hash };
                        return this.committed(planned, true);
                    }
                }
                // Not committed: retry it on the new primary, from its head.
            }
        }
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

    /** Assigns seqs and hashes; duplicate keys (in the ledger or earlier in this batch) get the first entry. */
    private async plan(items: Prepared[]): Promise<{ results: AppendResult[]; fresh: (LedgerEntry & { key?: string })[] }> {
        const keys = items.flatMap((it) => (it.key ? [it.key] : []));
        const existing = await this.store.findKeys([...new Set(keys)]);
        const results: AppendResult[] = [];
        const fresh: (LedgerEntry & { key?: string })[] = [];
        const inBatch = new Map<string, AppendResult>();
        let head = this.head;
        for (const it of items) {
            const known = it.key ? existing.get(it.key) : undefined;
            if (known) {
                results.push({ seq: known.seq, hash: known.hash.toString("hex"), duplicate: true });
                continue;
            }
            const again = it.key ? inBatch.get(it.key) : undefined;
            if (again) {
                results.push({ ...again, duplicate: true });
                continue;
            }
            const e = chainEntry(head, it.timeUs, it.source, it.payload);
            head = e;
            fresh.push({ ...e, key: it.key });
            const r = { seq: e.seq, hash: e.hash.toString("hex"), duplicate: false };
            if (it.key) inBatch.set(it.key, r);
            results.push(r);
        }
        return { results, fresh };
    }

    private committed(planned: { results: AppendResult[]; fresh: (LedgerEntry & { key?: string })[] }, windowLoaded = false): AppendResult[] {
        const { fresh, results } = planned;
        if (fresh.length) {
            const last = fresh[fresh.length - 1];
            this.head = { seq: last.seq, hash: last.hash };
            if (!windowLoaded) for (const e of fresh) this.window.push(e.hash);
        }
        this.stats.batches++;
        this.stats.entries += fresh.length;
        this.stats.duplicates += results.length - fresh.length;
        this.stats.lastBatch = results.length;
        const every = this.opts.checkpointEvery;
        if (every && this.head.seq - this.lastCheckpoint.seq >= every.entries) this.checkpointDue = true;
        if (this.opts.cache && fresh.length) {
            const stored: StoredEntry[] = fresh.map((e) => ({ ...e, key: e.key ?? null }));
            void this.opts.cache.put(this.shardId, stored, this.head);
        }
        return results;
    }

    /** Signs and stores the checkpoints that are due, then publishes them. */
    private async checkpointIfDue(): Promise<void> {
        const key = this.opts.signingKey;
        const every = this.opts.checkpointEvery;
        if (!key || !every || !this.checkpointDue) return;
        this.checkpointDue = false;
        try {
            // Cut at multiples of N, so checkpoints fall on predictable seqs; the timer cuts at the head.
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
                await this.store.insertCheckpoint(signed, checkpointBytes(signed.checkpoint).toString("utf8"));
                this.window = this.window.slice(n);
                this.lastCheckpoint = { seq, digest: checkpointDigest(signed.checkpoint), at: Date.now() };
                this.unpublished.push({ signed, leaves: leaves.map((h) => h.toString("hex")) });
                this.stats.checkpoints++;
            }
        } catch (err) {
            // Retried on the next batch or tick; after a failover connect() reloads the state.
            this.checkpointDue = true;
            this.log(`shard ${this.shard}: checkpoint failed: ${(err as Error).message}`);
            if (isConnectionError(err)) {
                await this.store.close();
                await this.reconnect(Date.now() + (this.opts.failoverTimeoutMs ?? 60_000)).catch((e) => this.log((e as Error).message));
            }
        }
        await this.publish();
    }

    private async publish(): Promise<void> {
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
        this.lastCheckpoint.at = 0;
        this.checkpointDue = true;
        await new Promise<void>((resolve) => {
            const wait = () => (this.busy || this.queue.length ? setTimeout(wait, 5) : resolve());
            wait();
        });
        this.busy = true;
        try {
            await this.checkpointIfDue();
        } finally {
            this.busy = false;
        }
    }

    async close(): Promise<void> {
        if (this.timer) clearInterval(this.timer);
        while (this.busy || this.queue.length) await new Promise((r) => setTimeout(r, 5));
        this.closed = true;
        await this.store?.close();
    }
}
