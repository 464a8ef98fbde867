// The shard writer's publishing of committed checkpoints to the sinks (the lake), outside the
// database. A queue in seq order, one run at a time; a checkpoint that fails stays at the front
// and the next call retries it, so an unreachable lake never holds up ingest.
import type { SignedCheckpoint } from "../../model/ledger/core/checkpoint";
import type { CheckpointSink, PublishedCheckpoint } from "./sinks";

export interface PublisherHooks {
    log: (msg: string) => void;
    /** A publish failed (it is retried later). */
    failed: () => void;
}

export class CheckpointPublisher {
    private readonly queue: PublishedCheckpoint[] = [];
    private running = false;

    constructor(private readonly shard: string, private readonly sinks: readonly CheckpointSink[], private readonly hooks: PublisherHooks) {}

    /** Checkpoints waiting to be published. */
    get pending(): number {
        return this.queue.length;
    }

    /** Queues committed checkpoints, in seq order, and starts publishing. */
    add(cps: readonly PublishedCheckpoint[]): void {
        if (!cps.length) return;
        this.queue.push(...cps);
        void this.publish();
    }

    /**
     * Stored checkpoints that some sink is missing (a crash between commit and publish) join the
     * queue, with their leaves read through `hashes`; a sink that cannot answer counts as missing.
     */
    async addMissing(cps: readonly SignedCheckpoint[], hashes: (from: number, to: number) => Promise<Buffer[]>): Promise<void> {
        const queued = new Set(this.queue.map((c) => c.signed.checkpoint.seq));
        for (const cp of cps) {
            if (queued.has(cp.checkpoint.seq)) continue;
            const missing = await Promise.all(this.sinks.map((sink) => sink.has(this.shard, cp.checkpoint.seq).then((has) => !has, () => true)));
            if (!missing.some(Boolean)) continue;
            const leaves = (await hashes(cp.checkpoint.from, cp.checkpoint.seq)).map((h) => h.toString("hex"));
            this.queue.push({ signed: cp, leaves });
            this.hooks.log(`shard ${this.shard}: checkpoint ${cp.checkpoint.seq} is not published yet; queued`);
        }
        void this.publish();
    }

    /** Publishes queued checkpoints in order; one run at a time; what fails waits for the next call. */
    async publish(): Promise<void> {
        if (this.running) return;
        this.running = true;
        try {
            while (this.queue.length) {
                const cp = this.queue[0];
                try {
                    for (const sink of this.sinks) await sink.publish(this.shard, cp);
                    this.queue.shift();
                } catch (err) {
                    this.hooks.failed();
                    this.hooks.log(`shard ${this.shard}: publishing checkpoint ${cp.signed.checkpoint.seq} failed, will retry: ${(err as Error).message}`);
                    return;
                }
            }
        } finally {
            this.running = false;
        }
    }
}
