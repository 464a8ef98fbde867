// The one consume loop every sink shares (ledger, lake, alerts, dashboard): read from the group's
// committed offsets, gather what has arrived into a batch, decode and validate each message, send
// the invalid ones to the dead-letter topic, hand the valid ones to the sink, and commit only
// after the sink has acknowledged. A crash anywhere before the commit means the batch is read
// again, so sinks must be idempotent (the ledger by its keys, the lake by its file names).
import { decodeEvent, type NublarEvent } from "../../model/events/schema";
import { eventConsumer, eventProducer, sendDeadLetters, type BusOptions, type EventMessage, type EventProducer } from "./kafka";

export interface Delivered {
    event: NublarEvent;
    topic: string;
    partition: number;
    offset: bigint;
}

export interface ConsumeOptions {
    bus: BusOptions;
    groupId: string;
    topics: string[];
    /** How long a fetch may wait at the broker for data (default 100 ms; the broker answers as soon as there is some). */
    maxWaitMs?: number;
    /** Must be idempotent; a rejection is retried (with backoff) before anything is committed. */
    handle: (batch: Delivered[]) => Promise<void>;
    /** Where refused messages go; one is made from `bus` when not given. */
    deadLetters?: EventProducer;
    maxBatch?: number;
    /**
     * Wait up to this long for a batch to fill before handing it over (default 0: at once). The
     * lake uses it so that a quiet park writes a few larger files instead of one per event.
     */
    lingerMs?: number;
    /** Where to start when the group has no committed offset: `earliest` (sinks) or `latest` (live views). */
    fallback?: "earliest" | "latest";
    log?: (m: string) => void;
}

export interface RunningConsumer {
    readonly stats: { batches: number; delivered: number; deadLettered: number; retries: number; lastCommitAt?: number };
    close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Fault injection for the exactly-once tests: `NUBLAR_FAULT=<group>:after-sink:<n>` kills this
 * process with SIGKILL right after the n-th batch the sink acknowledged, before its offsets are
 * committed: the window where a careless consumer writes twice.
 */
function faultAfterSink(groupId: string): (() => void) | undefined {
    const m = /^([^:]+):after-sink:(\d+)$/.exec(process.env.NUBLAR_FAULT ?? "");
    if (!m || m[1] !== groupId) return undefined;
    let left = Number(m[2]);
    return () => {
        if (--left <= 0) process.kill(process.pid, "SIGKILL");
    };
}

export async function runConsumer(o: ConsumeOptions): Promise<RunningConsumer> {
    const log = o.log ?? (() => undefined);
    const maxBatch = o.maxBatch ?? 2000;
    const consumer = eventConsumer({ ...o.bus, groupId: o.groupId, maxWaitMs: o.maxWaitMs });
    const ownProducer = o.deadLetters ? undefined : eventProducer({ ...o.bus, clientId: `${o.bus.clientId}-dlq` });
    const dlq = o.deadLetters ?? ownProducer!;
    const stats: RunningConsumer["stats"] = { batches: 0, delivered: 0, deadLettered: 0, retries: 0 };
    const stream = await consumer.consume({ topics: o.topics, mode: "committed", fallbackMode: o.fallback ?? "earliest", autocommit: false });
    const fault = faultAfterSink(o.groupId);
    const queue: EventMessage[] = [];
    let flushing = false;
    let closing = false;
    let commits: Promise<void> = Promise.resolve();

    async function untilDone(what: string, fn: () => Promise<void>): Promise<void> {
        for (let attempt = 0; ; attempt++) {
            try {
                return await fn();
            } catch (err) {
                if (closing) throw err;
                stats.retries++;
                const wait = Math.min(5000, 50 * 2 ** Math.min(attempt, 7));
                log(`${o.groupId}: ${what} failed (${(err as Error).message}); nothing committed, retrying in ${wait} ms`);
                await sleep(wait);
            }
        }
    }

    async function flush(): Promise<void> {
        if (flushing) return;
        flushing = true;
        try {
            while (queue.length && !closing) {
                const batch = queue.splice(0, maxBatch);
                const good: Delivered[] = [];
                const bad: { m: EventMessage; reason: string }[] = [];
                for (const m of batch) {
                    const v = decodeEvent(m.value);
                    if (v.ok) good.push({ event: v.event, topic: m.topic, partition: m.partition, offset: m.offset });
                    else bad.push({ m, reason: v.reason });
                }
                if (bad.length) {
                    await untilDone("dead-lettering", () => sendDeadLetters(dlq, bad.map(({ m, reason }) => ({ value: m.value, reason, origin: `${m.topic}/${m.partition}@${m.offset}`, key: m.key || undefined }))));
                    stats.deadLettered += bad.length;
                    for (const b of bad) log(`${o.groupId}: ${b.m.topic}/${b.m.partition}@${b.m.offset} sent to the dead-letter topic: ${b.reason}`);
                }
                if (good.length) await untilDone("the sink", () => o.handle(good));
                fault?.();
                // The last message of each partition carries that partition's commit (offset + 1).
                // Commits run behind the sink, in order, so the next batch need not wait for
                // one: a crash before a commit lands re-reads batches the sinks already hold,
                // which they drop (by key, by offset).
                const last = new Map<string, EventMessage>();
                for (const m of batch) last.set(`${m.topic}/${m.partition}`, m);
                commits = commits.then(() => untilDone("committing offsets", async () => {
                    await Promise.all([...last.values()].map((m) => m.commit() as Promise<void>));
                })).catch(() => undefined);
                stats.batches++;
                stats.delivered += good.length;
                stats.lastCommitAt = Date.now();
            }
        } catch (err) {
            if (!closing) log(`${o.groupId}: stopped: ${(err as Error).message}`);
        } finally {
            flushing = false;
            if (queue.length < maxBatch && stream.isPaused()) stream.resume();
        }
    }

    let lingering: NodeJS.Timeout | undefined;
    stream.on("data", (m: EventMessage) => {
        queue.push(m);
        // Bounded memory: stop fetching while a full batch waits for the sink.
        if (queue.length >= maxBatch * 2) stream.pause();
        if (flushing) return;
        if (!o.lingerMs || queue.length >= maxBatch) {
            if (lingering) clearTimeout(lingering);
            lingering = undefined;
            setImmediate(() => void flush());
        } else if (!lingering) {
            lingering = setTimeout(() => {
                lingering = undefined;
                void flush();
            }, o.lingerMs);
        }
    });
    stream.on("error", (err: Error) => log(`${o.groupId}: consumer error: ${err.message}`));

    return {
        stats,
        async close() {
            closing = true;
            if (lingering) clearTimeout(lingering);
            while (flushing) await sleep(5);
            await Promise.race([commits, sleep(5000)]);
            await stream.close().catch(() => undefined);
            // Not forced: the member leaves the group, so a reset (replay) need not wait for its session to expire.
            await Promise.resolve(consumer.close(false)).catch(() => Promise.resolve(consumer.close(true)).catch(() => undefined));
            if (ownProducer) await ownProducer.close().catch(() => undefined);
        },
    };
}
