// The shard writer's connections: two to whichever instance is the primary (the first holds the
// writer lock; the second carries every other batch of the pipeline), what the writer loads when
// it connects (head, checkpoints, the entries after the last one), and finding the primary again
// after a failover.
import { checkpointDigest, type SignedCheckpoint } from "../../model/ledger/core/checkpoint";
import { ShardStore, LedgerUnavailableError, type ShardAccess } from "./pg/store";
import type { Head } from "./writer-batch";
import type { LastCheckpoint } from "./writer-cadence";

export class WriterError extends Error {
    override name = "WriterError";
}

/** The two connections to the primary. */
export class PrimaryConnections {
    constructor(
        /** Holds the writer lock. */
        readonly store: ShardStore,
        /** The second connection to the same primary, for pipelined commits. */
        readonly second: ShardStore,
    ) {}

    get endpoint() {
        return this.store.endpoint;
    }

    /** The connection for a batch: not the one the batch before it (if any) is committing on. */
    after(before: ShardStore | undefined): ShardStore {
        return before === this.store ? this.second : this.store;
    }

    async close(): Promise<void> {
        await this.store.close();
        await this.second.close();
    }
}

/** What the writer finds on the primary. */
export interface PrimaryState {
    conns: PrimaryConnections;
    shardId: string;
    head: Head;
    /** Every stored checkpoint, in seq order. */
    checkpoints: SignedCheckpoint[];
    /** The last of them (seq 0 and no digest before the first). */
    last: LastCheckpoint;
    /** Hashes of the entries after it, in seq order. */
    window: Buffer[];
}

/**
 * Connects to the primary, takes the writer lock, checks that the last checkpoint still matches
 * the ledger, and loads the head and checkpoint state. Throws WriterError when the shard has a
 * writer already or contradicts its checkpoint (retrying cannot help), else the store's errors.
 */
export async function openPrimary(access: ShardAccess): Promise<PrimaryState> {
    const shard = access.shard;
    const store = await ShardStore.open(access, "primary");
    try {
        if (!(await store.lockWriter())) throw new WriterError(`shard ${shard} already has a writer (another ingest service holds its lock)`);
        const shardId = (await store.shardInfo()).id;
        const head = await store.head();
        const checkpoints = await store.checkpoints();
        const cp = checkpoints.at(-1);
        if (cp) {
            const at = await store.entry(cp.checkpoint.seq);
            if (!at || at.hash.toString("hex") !== cp.checkpoint.head) {
                throw new WriterError(`shard ${shard}: the entry at seq ${cp.checkpoint.seq} does not match its signed checkpoint; refusing to append to a tampered ledger (run: nublar ledger verify --shard ${shard})`);
            }
        }
        const last: LastCheckpoint = { seq: cp?.checkpoint.seq ?? 0, digest: cp ? checkpointDigest(cp.checkpoint) : null };
        const window = head.seq > last.seq ? await store.hashes(last.seq + 1, head.seq) : [];
        // The second connection goes to the same instance, and must find it still primary.
        const second = await ShardStore.open({ ...access, endpoints: [store.endpoint] }, "primary");
        return { conns: new PrimaryConnections(store, second), shardId, head, checkpoints, last, window };
    } catch (err) {
        await store.close();
        throw err;
    }
}

/**
 * Runs `connect` until it succeeds, retrying every 200 ms until `deadline` (ms since the epoch)
 * or until `stopped()`. A WriterError ends it at once; otherwise the last error is reported in a
 * LedgerUnavailableError.
 */
export async function reconnectUntil(shard: string, deadline: number, connect: () => Promise<void>, stopped: () => boolean): Promise<void> {
    let lastErr: Error | undefined;
    while (Date.now() < deadline && !stopped()) {
        try {
            await connect();
            return;
        } catch (err) {
            lastErr = err as Error;
            if (err instanceof WriterError) throw err;
            await new Promise((r) => setTimeout(r, 200));
        }
    }
    throw new LedgerUnavailableError(`shard ${shard}: no primary within the failover timeout (${lastErr?.message ?? "closed"})`);
}
