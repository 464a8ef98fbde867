// The Redis cache tier: recent entries and shard heads, so dashboards and consumers reading the
// tail do not load PostgreSQL. Rules that keep it honest:
//   - only entries the ledger has acknowledged (quorum-committed) or read back from PostgreSQL
//     are ever written to it, so it cannot serve what the ledger does not hold;
//   - keys carry the shard's random id (ledger.shard.id), so a rebuilt ledger never meets a
//     previous one's entries;
//   - the head only moves forward (a Lua compare-and-set), whatever order writes arrive in;
//   - every call fails fast when Redis is down (no offline queue), and callers fall back to
//     PostgreSQL: ingest never waits for the cache.
import Redis from "ioredis";
import type { LedgerEntry } from "../../model/ledger/core/encoding";
import type { StoredEntry } from "./pg/store";

export interface CacheOptions {
    host: string;
    port: number;
    password?: string;
    /** How long cached entries live, in seconds. */
    ttlSeconds?: number;
}

interface CachedEntry {
    seq: number;
    timeUs: number;
    source: string;
    payload: string;
    prevHash: string;
    hash: string;
    key: string | null;
}

const RAISE_HEAD = `
local cur = redis.call('HGET', KEYS[1], 'seq')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'hash', ARGV[2])
  return 1
end
return 0`;

export class LedgerCache {
    readonly redis: Redis;
    private readonly ttl: number;
    /** Counts for /metrics and tests: hits, misses, errors (Redis down or slow). */
    readonly stats = { hits: 0, misses: 0, errors: 0, writes: 0 };

    constructor(opts: CacheOptions) {
        this.ttl = opts.ttlSeconds ?? 3600;
        this.redis = new Redis({
            host: opts.host, port: opts.port, password: opts.password, family: 6,
            enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000, commandTimeout: 500,
            retryStrategy: (times) => Math.min(100 * times, 2000), lazyConnect: false,
        });
        this.redis.on("error", () => { this.stats.errors++; });
        this.redis.defineCommand("unicornRaiseHead", { numberOfKeys: 1, lua: RAISE_HEAD });
    }

    private key(shardId: string, what: string) {
        return `unicorn:{${shardId}}:${what}`;
    }

    /** Caches entries the ledger holds and raises the head. Never throws: the cache is optional. */
    async put(shardId: string, entries: readonly (LedgerEntry & { key?: string | null })[], head?: { seq: number; hash: Buffer }): Promise<boolean> {
        if (!entries.length && !head) return true;
        try {
            const p = this.redis.pipeline();
            for (const e of entries) {
                const v: CachedEntry = { seq: e.seq, timeUs: e.timeUs, source: e.source, payload: e.payload, prevHash: e.prevHash.toString("hex"), hash: e.hash.toString("hex"), key: e.key ?? null };
                p.set(this.key(shardId, `e:${e.seq}`), JSON.stringify(v), "EX", this.ttl);
            }
            if (head) (p as unknown as { unicornRaiseHead(k: string, s: number, h: string): void }).unicornRaiseHead(this.key(shardId, "head"), head.seq, head.hash.toString("hex"));
            const res = await p.exec();
            if (res?.some(([err]) => err)) throw res.find(([err]) => err)![0];
            this.stats.writes += entries.length;
            return true;
        } catch {
            this.stats.errors++;
            return false;
        }
    }

    async head(shardId: string): Promise<{ seq: number; hash: Buffer } | undefined> {
        try {
            const h = await this.redis.hgetall(this.key(shardId, "head"));
            if (!h.seq) return undefined;
            return { seq: Number(h.seq), hash: Buffer.from(h.hash, "hex") };
        } catch {
            this.stats.errors++;
            return undefined;
        }
    }

    /**
     * Up to `count` entries from `from`, stopping at the cached head; undefined unless every one
     * of them is cached (so a partial answer never hides entries the ledger has).
     */
    async entries(shardId: string, from: number, count: number): Promise<StoredEntry[] | undefined> {
        try {
            const head = await this.head(shardId);
            count = head ? Math.min(count, head.seq - from + 1) : 0;
            if (count < 1) { this.stats.misses++; return undefined; }
            const keys = Array.from({ length: count }, (_, i) => this.key(shardId, `e:${from + i}`));
            const values = keys.length ? await this.redis.mget(keys) : [];
            if (values.some((v) => v === null)) { this.stats.misses++; return undefined; }
            this.stats.hits++;
            return values.map((v) => {
                const c = JSON.parse(v as string) as CachedEntry;
                return { seq: c.seq, timeUs: c.timeUs, source: c.source, payload: c.payload, prevHash: Buffer.from(c.prevHash, "hex"), hash: Buffer.from(c.hash, "hex"), key: c.key };
            });
        } catch {
            this.stats.errors++;
            return undefined;
        }
    }

    async close(): Promise<void> {
        this.redis.disconnect();
    }
}
