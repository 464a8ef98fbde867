// One shard's database, from the client side: connecting to whichever instance is primary,
// appending a batch in one statement (one transaction, acknowledged once a quorum holds it), and
// reading entries, hashes and checkpoints back. No chain logic here: that is ledger/core.
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { genesisHead, type LedgerEntry } from "../../../model/ledger/core/encoding";
import type { SignedCheckpoint } from "../../../model/ledger/core/checkpoint";
import type { VerifyRow } from "../../../model/ledger/core/verify";
import { databaseName } from "./schema";
import { ENTRY_COPY_COLUMNS, ENTRY_INSERT_COLUMNS, EntryRowParser, encodeCopyBatch } from "./copy-rows";

// int8 as JS numbers: seqs and microsecond times stay below 2^53.
pg.types.setTypeParser(20, (v: string) => Number(v));

export interface PgEndpoint {
    host: string;
    port: number;
}

export interface ShardAccess {
    shard: string;
    /** Every instance of the shard's cluster; the primary is found by asking. */
    endpoints: PgEndpoint[];
    user: string;
    password: string;
}

/** No instance could be used: says what each one answered. */
export class LedgerUnavailableError extends Error {
    override name = "LedgerUnavailableError";
}

export interface StoredEntry extends LedgerEntry {
    key: string | null;
}

const ENTRY_COLUMNS = "seq, (extract(epoch from time) * 1000000)::int8 AS time_us, source, payload, prev_hash, hash, idem_key";
const toEntry = (r: { seq: number; time_us: number; source: string; payload: string; prev_hash: Buffer; hash: Buffer; idem_key: string | null }): StoredEntry => ({
    seq: r.seq, timeUs: r.time_us, source: r.source, payload: r.payload, prevHash: r.prev_hash, hash: r.hash, key: r.idem_key,
});

export function isConnectionError(err: unknown): boolean {
    const e = err as { code?: string; message?: string };
    // Class 08 (connection exception), 57P01-03 (admin/crash shutdown, cannot connect now), and
    // socket errors that never got a SQLSTATE.
    return (!!e?.code && (/^08/.test(e.code) || /^57P0[123]$/.test(e.code) || ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTCONN"].includes(e.code)))
        || /Connection terminated|connection.*(closed|ended)|not queryable|terminating connection/i.test(e?.message ?? "");
}

export class ShardStore {
    private constructor(readonly shard: string, readonly client: pg.Client, readonly endpoint: PgEndpoint, readonly primary: boolean) {}

    /**
     * Connects to the shard. `role: "primary"` (the writer) accepts only an instance that takes
     * writes; `role: "any"` (readers, verify) takes the first that answers, preferring the primary.
     */
    static async open(access: ShardAccess, role: "primary" | "any", connectTimeoutMs = 3000): Promise<ShardStore> {
        const reasons: string[] = [];
        let fallback: ShardStore | undefined;
        for (const ep of access.endpoints) {
            const client = new pg.Client({ host: ep.host, port: ep.port, user: access.user, password: access.password, database: databaseName(access.shard), connectionTimeoutMillis: connectTimeoutMs, application_name: "nublar-ledger" });
            client.on("error", () => undefined); // surfaced by the next query instead
            try {
                await client.connect();
                const recovery = (await client.query("SELECT pg_is_in_recovery() AS r")).rows[0].r as boolean;
                const store = new ShardStore(access.shard, client, ep, !recovery);
                if (!recovery) {
                    if (fallback) await fallback.close();
                    return store;
                }
                if (role === "any" && !fallback) { fallback = store; continue; }
                reasons.push(`[${ep.host}]:${ep.port} is a standby`);
                await client.end().catch(() => undefined);
            } catch (err) {
                reasons.push(`[${ep.host}]:${ep.port}: ${(err as Error).message}`);
                await client.end().catch(() => undefined);
            }
        }
        if (fallback) return fallback;
        throw new LedgerUnavailableError(`shard ${access.shard}: no ${role === "primary" ? "primary" : "instance"} reachable (${reasons.join("; ")})`);
    }

    async close(): Promise<void> {
        await this.client.end().catch(() => undefined);
    }

    /** Single writer per shard: a session advisory lock, released when the session dies. */
    async lockWriter(): Promise<boolean> {
        return (await this.client.query("SELECT pg_try_advisory_lock(hashtext('unicorn-writer')) AS ok")).rows[0].ok as boolean;
    }

    async shardInfo(): Promise<{ name: string; id: string; format: string }> {
        const r = await this.client.query("SELECT name, id::text AS id, format FROM ledger.shard");
        if (r.rowCount !== 1) throw new Error(`database ${databaseName(this.shard)} has no shard record: was it bootstrapped?`);
        if (r.rows[0].name !== this.shard) throw new Error(`database ${databaseName(this.shard)} holds shard ${r.rows[0].name}, not ${this.shard}`);
        return r.rows[0];
    }

    async head(): Promise<{ seq: number; hash: Buffer }> {
        const r = await this.client.query("SELECT seq, hash FROM ledger.entries ORDER BY seq DESC LIMIT 1");
        return r.rowCount ? { seq: r.rows[0].seq, hash: r.rows[0].hash } : genesisHead(this.shard);
    }

    async findKeys(keys: string[]): Promise<Map<string, { seq: number; hash: Buffer }>> {
        const found = new Map<string, { seq: number; hash: Buffer }>();
        if (!keys.length) return found;
        const r = await this.client.query("SELECT idem_key, seq, hash FROM ledger.entries WHERE idem_key = ANY($1::text[])", [keys]);
        for (const row of r.rows) found.set(row.idem_key, { seq: row.seq, hash: row.hash });
        return found;
    }

    /**
     * One COPY statement: all of the batch or none of it. On its own it is its own transaction,
     * acknowledged (the COPY completes) only after the commit, which synchronous_standby_names
     * holds until a quorum has flushed it; the writer runs it inside BEGIN ... COMMIT instead.
     */
    async insertBatch(entries: (LedgerEntry & { key?: string | null })[]): Promise<void> {
        if (!entries.length) return;
        const stream = this.client.query(copyFrom(`COPY ledger.entries (${ENTRY_INSERT_COLUMNS}) FROM STDIN (FORMAT binary)`));
        await new Promise<void>((resolve, reject) => {
            stream.on("error", reject);
            stream.on("finish", resolve);
            stream.end(encodeCopyBatch(entries));
        });
    }

    /** Explicit transactions, for the writer's pipelined commits. */
    async begin(): Promise<void> {
        await this.client.query("BEGIN");
    }

    async commit(): Promise<void> {
        await this.client.query("COMMIT");
    }

    async rollback(): Promise<void> {
        await this.client.query("ROLLBACK");
    }

    async entry(seq: number): Promise<StoredEntry | undefined> {
        const r = await this.client.query(`SELECT ${ENTRY_COLUMNS} FROM ledger.entries WHERE seq = $1`, [seq]);
        return r.rowCount ? toEntry(r.rows[0]) : undefined;
    }

    async entries(from: number, limit: number): Promise<StoredEntry[]> {
        const r = await this.client.query(`SELECT ${ENTRY_COLUMNS} FROM ledger.entries WHERE seq >= $1 ORDER BY seq LIMIT $2`, [from, limit]);
        return r.rows.map(toEntry);
    }

    async hashes(from: number, to: number): Promise<Buffer[]> {
        const r = await this.client.query({ text: "SELECT hash FROM ledger.entries WHERE seq BETWEEN $1 AND $2 ORDER BY seq", values: [from, to], rowMode: "array" });
        return r.rows.map((row) => row[0] as Buffer);
    }

    async checkpoints(): Promise<SignedCheckpoint[]> {
        const r = await this.client.query("SELECT body, signature FROM ledger.checkpoints ORDER BY seq");
        return r.rows.map((row) => ({ checkpoint: JSON.parse(row.body), signature: row.signature }));
    }

    async insertCheckpoint(signed: SignedCheckpoint, body: string): Promise<void> {
        await this.client.query("INSERT INTO ledger.checkpoints (seq, body, signature) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING", [signed.checkpoint.seq, body, signed.signature]);
    }

    /** Streams rows from..to (inclusive; to = null for the head) in seq order through COPY. */
    async copyRows(from: number, to: number | null, onRow: (row: VerifyRow) => void): Promise<number> {
        if (!Number.isSafeInteger(from) || (to !== null && !Number.isSafeInteger(to))) throw new RangeError("from/to must be integers");
        const where = `seq >= ${from}${to === null ? "" : ` AND seq <= ${to}`}`;
        const parser = new EntryRowParser(onRow);
        // Rows are appended in seq order, so walking the primary key beats sorting the table
        // (which, past work_mem, spills to disk); the planner's row estimates often say otherwise.
        await this.client.query("BEGIN READ ONLY");
        await this.client.query("SET LOCAL enable_sort = off");
        const stream = this.client.query(copyTo(`COPY (SELECT ${ENTRY_COPY_COLUMNS} FROM ledger.entries WHERE ${where} ORDER BY seq) TO STDOUT (FORMAT binary)`));
        try {
            await this.streamCopy(stream, parser);
        } catch (err) {
            await this.client.query("ROLLBACK").catch(() => undefined);
            throw err;
        }
        await this.client.query("COMMIT");
        return parser.rows;
    }

    private streamCopy(stream: NodeJS.ReadableStream & { destroy(err?: Error): void }, parser: EntryRowParser): Promise<void> {
        return new Promise<void>((resolve, reject) => {
            stream.on("data", (chunk: Buffer) => {
                try {
                    parser.push(chunk);
                } catch (err) {
                    stream.destroy(err as Error);
                }
            });
            stream.on("error", reject);
            stream.on("end", () => {
                try {
                    parser.end();
                    resolve();
                } catch (err) {
                    reject(err);
                }
            });
        });
    }
}
