// Reads for consumers and dashboards: the cache first, PostgreSQL when the cache cannot answer
// in full (a miss, Redis down, or a range past the cached head), then the cache is backfilled
// from what PostgreSQL returned. Never a mix: an answer comes whole from one of the two.
import type { LedgerCache } from "./cache";
import { ShardStore, type ShardAccess, type StoredEntry } from "./pg/store";

export class ShardReader {
    private store?: ShardStore;
    private shardId?: string;

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
            const cached = await this.cache.entries(await this.id(), from, limit);
            if (cached) return { entries: cached, source: "cache" };
        }
        const entries = await this.withRetry((s) => s.entries(from, limit));
        if (this.cache && entries.length) void this.cache.put(await this.id(), entries, entries[entries.length - 1]);
        return { entries, source: "database" };
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
