// Reads for consumers and dashboards: the cache first, PostgreSQL when the cache cannot answer
// in full (a miss, Redis down, or a range past the cached head), then the cache is backfilled
// from what PostgreSQL returned. Never a mix: an answer comes whole from one of the two.
import type { LedgerCache } from "./cache";
import { ShardStore, type ShardAccess, type StoredEntry } from "./pg/store";

export class ShardReader {
    private store?: ShardStore;
    private shardId?: string;
    readonly stats = { fromCache: 0, fromDatabase: 0 };

    constructor(private readonly access: ShardAccess, private readonly cache?: LedgerCache) {}

    private async db(): Promise<ShardStore> {
        if (!this.store) {
            const store = await ShardStore.open(this.access, "any");
            this.shardId = (await store.shardInfo()).id;
            this.store = store;
            store.client.on("error", () => { if (this.store === store) this.store = undefined; });
        }
        return this.store;
    }

    async id(): Promise<string> {
        if (!this.shardId) await this.db();
        return this.shardId!;
    }

    /** Up to `limit` entries from `from`, and where they came from. */
    async read(from: number, limit: number): Promise<{ entries: StoredEntry[]; source: "cache" | "database" }> {
        if (this.cache) {
            const id = await this.id();
            const head = await this.cache.head(id);
            if (head && from <= head.seq) {
                const cached = await this.cache.entries(id, from, Math.min(limit, head.seq - from + 1));
                if (cached) {
                    this.stats.fromCache++;
                    return { entries: cached, source: "cache" };
                }
            }
        }
        const entries = await this.withRetry((s) => s.entries(from, limit));
        this.stats.fromDatabase++;
        if (this.cache && entries.length) void this.cache.put(await this.id(), entries, entries[entries.length - 1]);
        return { entries, source: "database" };
    }

    async head(): Promise<{ seq: number; hash: Buffer }> {
        if (this.cache) {
            const h = await this.cache.head(await this.id());
            if (h) return h;
        }
        return this.withRetry((s) => s.head());
    }

    private async withRetry<T>(fn: (s: ShardStore) => Promise<T>): Promise<T> {
        try {
            return await fn(await this.db());
        } catch (err) {
            // One reconnect (a failover, a restarted instance), then give up with the real error.
            await this.store?.close();
            this.store = undefined;
            return fn(await this.db());
        }
    }

    async close(): Promise<void> {
        await this.store?.close();
        this.store = undefined;
    }
}
