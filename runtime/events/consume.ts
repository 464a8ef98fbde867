// The one consume loop every sink shares (ledger, lake, alerts, dashboard): read from the group's
// committed offsets, gather what has arrived into a batch, decode and validate each message, send
// the invalid ones to the dead-letter topic, hand the valid ones to the sink, and commit only
// after the sink has acknowledged. A crash anywhere before the commit means the batch is read
// again, so sinks must be idempotent (the ledger by its keys, the lake by its file names).
//
// Nothing one message does can stop the commits forever:
//   - a message that does not decode (decodeEvent is bounded and never throws; a throw would be
//     a bug, and is taken as a refusal too) is dead-lettered with its reason;
//   - a message the sink refuses for a reason of its own is dead-lettered after a bounded number
//     of tries (deliverBatch: SinkRefusal, and how an outage differs);
//   - a sink that is down is retried with backoff, forever: nothing is committed past what it
//     has not acknowledged, so nothing is lost;
//   - a consumer that breaks (its stream dies, its commits keep failing, its loop throws) says so
//     (`failed`), and superviseConsumer closes it and starts it again, with backoff; a crash in a
//     callback of its own (an uncaught exception, an unhandled rejection) is routed to it the same
//     way (guardCrashes), so it takes down neither the process nor the other consumers.
import { AsyncLocalStorage } from "node:async_hooks";
import { decodeEvent, type NublarEvent } from "../../model/events/schema";
import { eventConsumer, eventProducer, sendDeadLetters, type BusOptions, type EventMessage, type EventProducer } from "./kafka";

export interface Delivered {
    event: NublarEvent;
    topic: string;
    partition: number;
    offset: bigint;
}

/**
 * What a sink throws when it refuses what it was given for a reason of the events' own (the
 * ledger answered 400, an event the lake cannot encode, the alert detector failing on it), as
 * opposed to being unavailable. Any other error is taken as the sink being unavailable.
 */
export class SinkRefusal extends Error {
    override readonly name = "SinkRefusal";
}

export interface ConsumerStats {
    batches: number;
    delivered: number;
    /** Messages sent to the dead-letter topic: refused by the decoder, or by the sink. */
    deadLettered: number;
    /** Of those, the ones the sink refused (a SinkRefusal, `strikes` times, alone). */
    refusedBySink: number;
    retries: number;
    lastCommitAt?: number;
    /** superviseConsumer's: how often the consumer broke or crashed, and was started again. */
    crashes?: number;
    restarts?: number;
    lastCrash?: string;
}

export interface ConsumeOptions {
    bus: BusOptions;
    groupId: string;
    topics: string[];
    /** How long a fetch may wait at the broker for data (default 100 ms; the broker answers as soon as there is some). */
    maxWaitMs?: number;
    /** Must be idempotent; a rejection is retried (with backoff) before anything is committed. See deliverBatch. */
    handle: (batch: Delivered[]) => Promise<void>;
    /** Where refused messages go; one is made from `bus` when not given. */
    deadLetters?: EventProducer;
    maxBatch?: number;
    /** Stop fetching while this many bytes of messages wait (default 64 MiB), as well as 2 × maxBatch messages. */
    maxQueuedBytes?: number;
    /**
     * Wait up to this long for a batch to fill before handing it over (default 0: at once). The
     * lake uses it so that a quiet park writes a few larger files instead of one per event.
     */
    lingerMs?: number;
    /** Where to start when the group has no committed offset: `earliest` (sinks) or `latest` (live views). */
    fallback?: "earliest" | "latest";
    /** How often one message alone may be refused by the sink before it is dead-lettered (default 3). */
    strikes?: number;
    /** Counts into this object (superviseConsumer keeps one across restarts). */
    stats?: ConsumerStats;
    log?: (m: string) => void;
}

export interface RunningConsumer {
    readonly stats: ConsumerStats;
    /** Resolves, with why, when the consumer stops by itself (not by close): it consumes nothing more and should be closed and started again. */
    readonly failed: Promise<Error>;
    /** Stops: waits for the batch in hand at most `waitMs` (default 15 s), then leaves the group. */
    close(waitMs?: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const backoff = (attempt: number) => Math.min(5000, 50 * 2 ** Math.min(attempt, 7));
const message = (err: unknown) => String((err as Error)?.message ?? err);

/**
 * Fault injection for the tests: `NUBLAR_FAULT=<group>:<fault>:<n>` acts right after the n-th
 * batch the sink acknowledged, before its offsets are committed (the window where a careless
 * consumer writes twice):
 *   - `after-sink`: this process dies with SIGKILL;
 *   - `crash`: an uncaught exception in a callback of the consumer's (a bug in a sink's timer);
 *   - `reject`: an unhandled rejection in the consumer.
 */
let faultFired = false; // once per process: a consumer started again after the fault does not fault again
function faultAfterSink(groupId: string): (() => void) | undefined {
    const m = /^([^:]+):(after-sink|crash|reject):(\d+)$/.exec(process.env.NUBLAR_FAULT ?? "");
    if (!m || m[1] !== groupId) return undefined;
    let left = Number(m[3]);
    return () => {
        if (faultFired || --left !== 0) return;
        faultFired = true;
        if (m[2] === "after-sink") process.kill(process.pid, "SIGKILL");
        else if (m[2] === "crash") setImmediate(() => {
            throw new Error(`injected crash in ${groupId} (NUBLAR_FAULT)`);
        });
        else void Promise.reject(new Error(`injected rejection in ${groupId} (NUBLAR_FAULT)`));
    };
}

export interface DeliveryOptions {
    handle: (batch: Delivered[]) => Promise<void>;
    /** How often one message alone may be refused (SinkRefusal) before it is given up on (default 3). */
    strikes?: number;
    /** False once the consumer is closing: retrying stops, with the last error. */
    running?: () => boolean;
    /** Called before each retry (counted in the stats). */
    onRetry?: (what: string, err: unknown, waitMs: number) => void;
    wait?: (attempt: number) => number;
}

export interface Refused {
    delivered: Delivered;
    reason: string;
}

/**
 * Hands a batch to the sink until it has acknowledged every event in it, except the ones it
 * refused for a reason of their own; returns those, for the dead-letter topic. The rule that
 * tells a poison message from a sink that is down:
 *
 *   - Any error but a SinkRefusal means the sink is unavailable (a database down, a socket
 *     refused, a timeout, a 503): the same events are retried with backoff (50 ms doubling to
 *     5 s), forever. Nothing is given up, so nothing is lost; the offsets wait.
 *   - A SinkRefusal means the sink is up and refused the content. The refused part is split in
 *     two halves, handed over in order, and so on down to single events: the others go through,
 *     in their offset order (the ledger's chain, the lake's contiguous files depend on it).
 *   - An event refused alone `strikes` times (default 3, 50 and 100 ms apart) is given up on:
 *     returned with the sink's reason. If it fails with any other error in between, that is an
 *     outage again, and retried without limit.
 *
 * So a poison event costs at most 2·log2(batch) + strikes calls; an outage costs nothing but time.
 */
export async function deliverBatch(batch: Delivered[], o: DeliveryOptions): Promise<Refused[]> {
    const strikes = o.strikes ?? 3;
    const running = o.running ?? (() => true);
    const wait = o.wait ?? backoff;
    const refused: Refused[] = [];
    const describe = (part: Delivered[]) => (part.length === 1 ? `${part[0].topic}/${part[0].partition}@${part[0].offset}` : `a batch of ${part.length}`);

    async function walk(part: Delivered[]): Promise<void> {
        let refusals = 0;
        for (let attempt = 0; ; attempt++) {
            try {
                await o.handle(part);
                return;
            } catch (err) {
                if (!running()) throw err;
                if (err instanceof SinkRefusal) {
                    if (part.length > 1) {
                        const mid = Math.ceil(part.length / 2);
                        await walk(part.slice(0, mid));
                        await walk(part.slice(mid));
                        return;
                    }
                    if (++refusals >= strikes) {
                        refused.push({ delivered: part[0], reason: `refused by the sink ${refusals} times: ${message(err)}` });
                        return;
                    }
                }
                const ms = wait(attempt);
                o.onRetry?.(describe(part), err, ms);
                await sleep(ms);
            }
        }
    }
    await walk(batch);
    return refused;
}

export async function runConsumer(o: ConsumeOptions): Promise<RunningConsumer> {
    const log = o.log ?? (() => undefined);
    const maxBatch = o.maxBatch ?? 2000;
    const maxQueuedBytes = o.maxQueuedBytes ?? 64 << 20;
    const consumer = eventConsumer({ ...o.bus, groupId: o.groupId, maxWaitMs: o.maxWaitMs });
    const ownProducer = o.deadLetters ? undefined : eventProducer({ ...o.bus, clientId: `${o.bus.clientId}-dlq` });
    const dlq = o.deadLetters ?? ownProducer!;
    const stats: ConsumerStats = o.stats ?? { batches: 0, delivered: 0, deadLettered: 0, refusedBySink: 0, retries: 0 };
    stats.refusedBySink ??= 0;
    let stream: Awaited<ReturnType<typeof consumer.consume>>;
    try {
        stream = await consumer.consume({ topics: o.topics, mode: "committed", fallbackMode: o.fallback ?? "earliest", autocommit: false });
    } catch (err) {
        await Promise.resolve(consumer.close(true)).catch(() => undefined);
        if (ownProducer) await ownProducer.close(1000).catch(() => undefined);
        throw err;
    }
    const fault = faultAfterSink(o.groupId);
    const queue: EventMessage[] = [];
    let queuedBytes = 0;
    let flushing = false;
    let closing = false;
    let broken: Error | undefined;
    let commits: Promise<void> = Promise.resolve();
    let reportFailure!: (err: Error) => void;
    const failed = new Promise<Error>((r) => (reportFailure = r));
    const running = () => !closing && !broken;

    /** The consumer cannot go on: stop handing and committing anything, and say so. */
    function fail(err: Error): void {
        if (closing || broken) return;
        broken = err;
        log(`${o.groupId}: broken (${err.message}); nothing more is committed until it is started again`);
        reportFailure(err);
    }

    async function untilDone(what: string, fn: () => Promise<void>, maxAttempts = Infinity): Promise<void> {
        for (let attempt = 0; ; attempt++) {
            try {
                return await fn();
            } catch (err) {
                if (!running() || attempt + 1 >= maxAttempts) throw err;
                stats.retries++;
                const wait = backoff(attempt);
                log(`${o.groupId}: ${what} failed (${message(err)}); nothing committed, retrying in ${wait} ms`);
                await sleep(wait);
            }
        }
    }

    const letterOf = (m: EventMessage, reason: string) => ({
        value: m.value, reason, origin: `${m.topic}/${m.partition}@${m.offset}`, consumer: o.groupId,
        key: m.key || undefined,
    });

    async function flush(): Promise<void> {
        if (flushing) return;
        flushing = true;
        try {
            while (queue.length && running()) {
                const batch = queue.splice(0, maxBatch);
                for (const m of batch) queuedBytes -= m.value.length + (m.key?.length ?? 0);
                if (stream.isPaused() && queue.length < maxBatch && queuedBytes < maxQueuedBytes / 2) stream.resume();
                const good: Delivered[] = [];
                const messageOf = new Map<Delivered, EventMessage>();
                const bad: { m: EventMessage; reason: string }[] = [];
                for (const m of batch) {
                    let v: ReturnType<typeof decodeEvent>;
                    try {
                        v = decodeEvent(m.value);
                    } catch (err) {
                        v = { ok: false, reason: `the decoder failed on it: ${message(err).slice(0, 300)}` };
                    }
                    if (v.ok) {
                        const d = { event: v.event, topic: m.topic, partition: m.partition, offset: m.offset };
                        good.push(d);
                        messageOf.set(d, m);
                    } else bad.push({ m, reason: v.reason });
                }
                if (bad.length) {
                    await untilDone("dead-lettering", () => sendDeadLetters(dlq, bad.map(({ m, reason }) => letterOf(m, reason))));
                    stats.deadLettered += bad.length;
                    for (const b of bad.slice(0, 20)) log(`${o.groupId}: ${b.m.topic}/${b.m.partition}@${b.m.offset} sent to the dead-letter topic: ${b.reason}`);
                    if (bad.length > 20) log(`${o.groupId}: ... and ${bad.length - 20} more in this batch`);
                }
                if (good.length) {
                    const refused = await deliverBatch(good, {
                        handle: o.handle, strikes: o.strikes, running,
                        onRetry: (what, err, ms) => {
                            stats.retries++;
                            log(`${o.groupId}: the sink failed on ${what} (${err instanceof SinkRefusal ? "refused" : "unavailable?"}: ${message(err)}); nothing committed, retrying in ${ms} ms`);
                        },
                    });
                    if (refused.length) {
                        await untilDone("dead-lettering", () => sendDeadLetters(dlq, refused.map((r) => letterOf(messageOf.get(r.delivered)!, r.reason))));
                        stats.deadLettered += refused.length;
                        stats.refusedBySink += refused.length;
                        for (const r of refused) log(`${o.groupId}: ${r.delivered.topic}/${r.delivered.partition}@${r.delivered.offset} (${r.delivered.event.id}) sent to the dead-letter topic: ${r.reason}`);
                    }
                    stats.delivered += good.length - refused.length;
                }
                fault?.();
                if (!running()) break;
                // The last message of each partition carries that partition's commit (offset + 1).
                // Commits run behind the sink, in order, so the next batch need not wait for
                // one: a crash before a commit lands re-reads batches the sinks already hold,
                // which they drop (by key, by offset). A commit that keeps failing breaks the
                // consumer (it is started again, and re-reads from the last commit that landed).
                const last = new Map<string, EventMessage>();
                for (const m of batch) last.set(`${m.topic}/${m.partition}`, m);
                commits = commits.then(async () => {
                    await untilDone("committing offsets", async () => {
                        await Promise.all([...last.values()].map((m) => m.commit() as Promise<void>));
                    }, 6);
                    stats.lastCommitAt = Date.now();
                }).catch((err: Error) => {
                    if (running()) fail(new Error(`committing offsets failed 6 times: ${message(err)}`));
                });
                stats.batches++;
            }
        } catch (err) {
            // Only a bug gets here (or a retry cut short by close): the batch in hand is neither
            // delivered nor committed, so the consumer must not go on past it.
            if (running()) fail(new Error(`the consume loop failed: ${message(err)}`));
        } finally {
            flushing = false;
            if (running() && stream.isPaused() && queue.length < maxBatch && queuedBytes < maxQueuedBytes / 2) stream.resume();
        }
    }

    let lingering: NodeJS.Timeout | undefined;
    stream.on("data", (m: EventMessage) => {
        if (!running()) return;
        queue.push(m);
        queuedBytes += m.value.length + (m.key?.length ?? 0);
        // Bounded memory: stop fetching while a full batch, or enough bytes, wait for the sink.
        if (queue.length >= maxBatch * 2 || queuedBytes >= maxQueuedBytes) stream.pause();
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
    // The stream destroys itself on an error it does not recover from (a fetch that failed all its
    // retries): it delivers nothing more, so the consumer is broken.
    stream.on("error", (err: Error) => {
        log(`${o.groupId}: consumer error: ${err.message}`);
        fail(new Error(`the consumer's stream failed: ${err.message}`));
    });
    stream.on("close", () => fail(new Error("the consumer's stream closed")));

    return {
        stats,
        failed,
        async close(waitMs = 15_000) {
            closing = true;
            if (lingering) clearTimeout(lingering);
            const deadline = Date.now() + waitMs;
            while (flushing && Date.now() < deadline) await sleep(5);
            await Promise.race([commits, sleep(Math.max(0, Math.min(5000, deadline - Date.now())))]);
            await stream.close().catch(() => undefined);
            // Not forced: the member leaves the group, so a reset (replay) need not wait for its session to expire.
            await Promise.resolve(consumer.close(false)).catch(() => Promise.resolve(consumer.close(true)).catch(() => undefined));
            if (ownProducer) await ownProducer.close().catch(() => undefined);
        },
    };
}

/** Which supervised consumer the running code belongs to (AsyncLocalStorage follows callbacks, timers and promises). */
const consumerScope = new AsyncLocalStorage<{ name: string; crash(err: Error): void }>();

export interface SupervisorOptions {
    log?: (m: string) => void;
    /** The first wait before starting again (default 1 s); it doubles up to maxBackoffMs (30 s), and is back to the first after a run of stableMs (60 s). */
    minBackoffMs?: number;
    maxBackoffMs?: number;
    stableMs?: number;
}

/**
 * Runs a consumer and starts it again whenever it breaks (`failed`) or crashes (an uncaught
 * exception or unhandled rejection in its own code, routed here by guardCrashes): it is logged,
 * counted (`crashes`, `restarts`, `lastCrash` in its stats), closed, and started again after a
 * backoff, re-reading from its last commit. The first start is the caller's: if it fails, this
 * throws (a pipeline half started is worse than one stopped).
 */
export async function superviseConsumer(name: string, start: (stats: ConsumerStats) => Promise<RunningConsumer>, o: SupervisorOptions = {}): Promise<RunningConsumer> {
    const log = o.log ?? (() => undefined);
    const minBackoff = o.minBackoffMs ?? 1000;
    const maxBackoff = o.maxBackoffMs ?? 30_000;
    const stableMs = o.stableMs ?? 60_000;
    const stats: ConsumerStats = { batches: 0, delivered: 0, deadLettered: 0, refusedBySink: 0, retries: 0, crashes: 0, restarts: 0 };
    let current: RunningConsumer | undefined;
    let startedAt = Date.now();
    let wait = minBackoff;
    let closed = false;
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    // Each start is an incarnation: a late crash from one already replaced restarts nothing. A
    // crash while one is being started is kept, and acted on once it is.
    let incarnation = 0;
    let busy = true;
    let pending: Error | undefined;
    let restarting: Promise<void> | undefined;
    const launch = () => {
        const mine = ++incarnation;
        return consumerScope.run({ name, crash: (err: Error) => crashed(err, mine) }, () => start(stats));
    };

    function crashed(err: Error, who: number): void {
        if (closed) return;
        if (who !== incarnation) {
            log(`${name}: an instance already replaced failed: ${message(err)}`);
            return;
        }
        stats.crashes = (stats.crashes ?? 0) + 1;
        stats.lastCrash = `${new Date().toISOString()} ${message(err)}`;
        log(`${name}: crashed: ${err.stack ?? message(err)}`);
        if (busy) {
            pending ??= err;
            return;
        }
        busy = true;
        restarting = restart().finally(() => {
            restarting = undefined;
            settle();
        });
    }

    /** Done starting: act on a crash that came meanwhile. */
    function settle(): void {
        busy = false;
        const err = pending;
        pending = undefined;
        if (err && !closed) {
            stats.crashes = (stats.crashes ?? 1) - 1; // counted when it came
            crashed(err, incarnation);
        }
    }

    async function restart(): Promise<void> {
        if (Date.now() - startedAt > stableMs) wait = minBackoff;
        const old = current;
        current = undefined;
        await old?.close(10_000).catch((err: Error) => log(`${name}: closing after the crash: ${err.message}`));
        while (!closed) {
            log(`${name}: starting again in ${wait} ms`);
            await Promise.race([sleep(wait), stopped]);
            wait = Math.min(maxBackoff, wait * 2);
            if (closed) return;
            pending = undefined; // whatever the old instance still did, a new one starts now
            try {
                const c = await launch();
                if (closed) {
                    await c.close();
                    return;
                }
                current = c;
                startedAt = Date.now();
                stats.restarts = (stats.restarts ?? 0) + 1;
                watch(c);
                log(`${name}: started again (restart ${stats.restarts})`);
                return;
            } catch (err) {
                stats.lastCrash = `${new Date().toISOString()} start failed: ${message(err)}`;
                log(`${name}: could not start again: ${message(err)}`);
            }
        }
    }

    function watch(c: RunningConsumer): void {
        const mine = incarnation;
        void c.failed.then((err) => crashed(err, mine));
    }

    current = await launch();
    watch(current);
    settle();
    return {
        stats,
        // It does not fail by itself: it starts again.
        failed: new Promise<Error>(() => undefined),
        async close(waitMs?: number) {
            closed = true;
            stop();
            await restarting;
            await current?.close(waitMs);
        },
    };
}

/**
 * While installed, an uncaught exception or unhandled rejection in a supervised consumer's code
 * crashes only that consumer (superviseConsumer starts it again); one from anywhere else still
 * ends the process, as Node would (its state is unknown). Returns the uninstaller.
 */
export function guardCrashes(log: (m: string) => void): () => void {
    const handle = (err: unknown, kind: string) => {
        const e = err instanceof Error ? err : new Error(String(err));
        const scope = consumerScope.getStore();
        if (scope) {
            scope.crash(e);
            return;
        }
        log(`${kind} outside any consumer, exiting: ${e.stack ?? e.message}`);
        process.exit(1);
    };
    const onException = (err: unknown) => handle(err, "uncaught exception");
    const onRejection = (err: unknown) => handle(err, "unhandled rejection");
    process.on("uncaughtException", onException);
    process.on("unhandledRejection", onRejection);
    return () => {
        process.off("uncaughtException", onException);
        process.off("unhandledRejection", onRejection);
    };
}
