// Kafka clients (@platformatic/kafka) set up the one way nublar uses them: idempotent producers
// that wait for every in-sync replica (acks=all), consumers that commit only what the caller says
// it has finished, and the dead-letter topic. Everything that touches the bus goes through here.
import { Admin, Consumer, ProduceAcks, Producer, stringDeserializers, stringSerializers, type Broker, type Message } from "@platformatic/kafka";
import { encodeEvent, EventError, type NublarEvent } from "../../model/events/schema";
import { DEAD_LETTER_TOPIC, partitionKey, topicOf } from "../../model/events/topics";
import type { TopicToCreate } from "../../model/events/plan";

/** A broker address: `host:port`, with IPv6 hosts in brackets (`[::1]:19092`). */
export function parseBroker(s: string): Broker {
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`'${s}' is not a broker address (host:port, IPv6 as [addr]:port)`);
    return { host: m[1], port: Number(m[2]) };
}

export interface BusOptions {
    brokers: string[];
    clientId: string;
    /** Per-request timeout, ms. */
    timeoutMs?: number;
}

type RawProducer = Producer<string, Buffer, string, string>;
/** A producer whose sends never overlap (see eventProducer). */
export interface EventProducer {
    send(o: { messages: Parameters<RawProducer["send"]>[0]["messages"] }): Promise<unknown>;
    /** Waits for the send in flight at most `deadlineMs` (default 5 s), then closes. */
    close(deadlineMs?: number): Promise<void>;
}
export type EventConsumer = Consumer<string, Buffer, string, string>;
export type EventMessage = Message<string, Buffer, string, string>;

const bootstrap = (o: BusOptions) => o.brokers.map(parseBroker);

/**
 * acks=all and idempotent: a retried send is written once, and an ack means every in-sync replica
 * has it. Sends go one at a time: with two in flight, @platformatic/kafka 1.35's idempotent
 * producer got OUT_OF_ORDER_SEQUENCE_NUMBER from the broker (seen here under load). Callers
 * coalesce instead (runtime/events/gateway.ts), so one send carries many events.
 */
export function eventProducer(o: BusOptions): EventProducer {
    const make = (): RawProducer => new Producer({
        clientId: o.clientId,
        bootstrapBrokers: bootstrap(o),
        idempotent: true,
        acks: ProduceAcks.ALL,
        timeout: o.timeoutMs ?? 10_000,
        retries: 5,
        retryDelay: 100,
        autocreateTopics: false,
        serializers: { key: stringSerializers.key, value: (v?: Buffer) => v, headerKey: stringSerializers.headerKey, headerValue: stringSerializers.headerValue },
    });
    let raw = make();
    let tail: Promise<unknown> = Promise.resolve();
    type Messages = Parameters<RawProducer["send"]>[0]["messages"];
    const sendAll = async (messages: Messages) => {
        for (const chunk of chunks(messages)) {
            try {
                await raw.send({ messages: chunk });
            } catch (err) {
                // After a failed send nobody knows whether the broker wrote it, and the client's
                // sequence numbers may now be out of step with the broker's: a later send could be
                // taken for a duplicate and dropped. A new producer (a new producer id) starts clean;
                // anything sent again is dropped downstream by its event id.
                const old = raw;
                raw = make();
                void Promise.resolve(old.close(true)).catch(() => undefined);
                throw err;
            }
        }
    };
    return {
        send(opts) {
            const r = tail.then(() => sendAll(opts.messages));
            tail = r.catch(() => undefined);
            return r;
        },
        async close(deadlineMs = 5000) {
            // Bounded: a stalled broker must not hold up an agent's or a CLI's exit.
            await Promise.race([tail, new Promise((r) => setTimeout(r, deadlineMs).unref())]);
            await Promise.race([Promise.resolve(raw.close(true)).catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
        },
    };
}

/**
 * The broker refuses a record batch over message.max.bytes (1 MiB by default), and the client
 * puts one send's messages for a partition into one batch: split sends at about 900 KB.
 */
const MAX_SEND_BYTES = 900_000;
function chunks<T extends { value?: Buffer; key?: string; headers?: unknown }>(messages: T[]): T[][] {
    const out: T[][] = [];
    let cur: T[] = [];
    let size = 0;
    for (const m of messages) {
        const bytes = (m.value?.length ?? 0) + (m.key?.length ?? 0) + (m.headers ? JSON.stringify(m.headers).length : 0) + 64;
        if (cur.length && size + bytes > MAX_SEND_BYTES) {
            out.push(cur);
            cur = [];
            size = 0;
        }
        cur.push(m);
        size += bytes;
    }
    if (cur.length) out.push(cur);
    return out;
}

/** The message for an event: its topic, its key (what keeps its order), and the encoded envelope. Throws EventError when invalid. */
export function messageOf(e: NublarEvent): { topic: string; key: string; value: Buffer } {
    return { topic: topicOf(e.type).name, key: partitionKey(e), value: encodeEvent(e) };
}

/** Publishes events; resolves once every in-sync replica has them. Invalid events throw before anything is sent. */
export async function publishEvents(producer: EventProducer, events: NublarEvent[]): Promise<void> {
    if (!events.length) return;
    await producer.send({ messages: events.map(messageOf) });
}

export interface DeadLetter {
    /** The bytes as they were received (or the JSON the sender sent). */
    value: Buffer;
    reason: string;
    /** Where it came from: `nublar.sensors/0@1234`, `sensor-gateway [2001:db8::5]`. */
    origin: string;
    /** The consumer group that refused it (each group that reads a topic refuses a bad message once). */
    consumer?: string;
    key?: string;
}

const MAX_DEAD_LETTER_BYTES = 256 * 1024;
/** A key is kept up to this many characters: with the value's cap, a dead letter always fits the broker's 1 MiB limit. */
const MAX_DEAD_LETTER_KEY = 1024;

/** Sends what a boundary refused to the dead-letter topic, reason and origin in headers. */
export async function sendDeadLetters(producer: EventProducer, letters: DeadLetter[]): Promise<void> {
    if (!letters.length) return;
    await producer.send({
        messages: letters.map((l) => {
            const key = l.key ?? l.origin;
            return {
                topic: DEAD_LETTER_TOPIC,
                // Under the broker's message size limit, however large what was refused (its key included).
                key: key.length > MAX_DEAD_LETTER_KEY ? key.slice(0, MAX_DEAD_LETTER_KEY) : key,
                value: l.value.length > MAX_DEAD_LETTER_BYTES ? l.value.subarray(0, MAX_DEAD_LETTER_BYTES) : l.value,
                headers: {
                    "nublar-reason": l.reason.slice(0, 1000), "nublar-origin": l.origin.slice(0, 300), "nublar-at": new Date().toISOString(),
                    ...(l.consumer ? { "nublar-consumer": l.consumer } : {}),
                    ...(l.value.length > MAX_DEAD_LETTER_BYTES ? { "nublar-truncated-from": String(l.value.length) } : {}),
                    ...(key.length > MAX_DEAD_LETTER_KEY ? { "nublar-key-truncated-from": String(key.length) } : {}),
                },
            };
        }),
    });
}

/** A consumer group member that never commits on its own: callers commit after their sink acknowledged. */
export function eventConsumer(o: BusOptions & { groupId: string; maxWaitMs?: number }): EventConsumer {
    return new Consumer({
        clientId: o.clientId,
        groupId: o.groupId,
        bootstrapBrokers: bootstrap(o),
        autocommit: false,
        // Low latency: a fetch returns as soon as one byte is there, and waits at most maxWaitMs otherwise.
        minBytes: 1,
        maxWaitTime: o.maxWaitMs ?? 100,
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        timeout: o.timeoutMs ?? 10_000,
        deserializers: { key: stringDeserializers.key, value: (v?: Buffer) => v ?? Buffer.alloc(0), headerKey: stringDeserializers.headerKey, headerValue: stringDeserializers.headerValue },
    });
}

export type { TopicToCreate };

/** Creates the topics that do not exist yet; existing ones are left as they are. */
export async function ensureTopics(o: BusOptions, topics: TopicToCreate[]): Promise<string[]> {
    const admin = new Admin({ clientId: `${o.clientId}-admin`, bootstrapBrokers: bootstrap(o), timeout: o.timeoutMs ?? 10_000 });
    try {
        const existing = new Set(await admin.listTopics());
        const created: string[] = [];
        for (const t of topics.filter((x) => !existing.has(x.name))) {
            await admin.createTopics({
                topics: [t.name],
                partitions: t.partitions,
                replicas: t.replicas,
                configs: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
            });
            created.push(t.name);
        }
        return created;
    } finally {
        await admin.close();
    }
}

/**
 * Moves a consumer group back to the start of its topics: the next run re-reads (replays)
 * everything. Kafka refuses while the group has members, so this waits (up to `waitMs`) for a
 * member that just stopped to be gone.
 */
export async function resetGroup(o: BusOptions, groupId: string, waitMs = 30_000): Promise<void> {
    const admin = new Admin({ clientId: `${o.clientId}-admin`, bootstrapBrokers: bootstrap(o), timeout: o.timeoutMs ?? 10_000 });
    const deadline = Date.now() + waitMs;
    try {
        for (;;) {
            try {
                await admin.deleteGroups({ groups: [groupId] });
                return;
            } catch (err) {
                const text = kafkaErrorText(err);
                if (/does not exist|GROUP_ID_NOT_FOUND|not found/i.test(text)) return; // never committed: already at the start
                if (Date.now() > deadline) throw new Error(`cannot reset consumer group ${groupId}: ${text} (is a consumer of it still running?)`);
                await new Promise((r) => setTimeout(r, 500));
            }
        }
    } finally {
        await admin.close();
    }
}

export { EventError };

/** The whole story of a client error: @platformatic/kafka nests the broker's answer in `errors` and `cause`. */
export function kafkaErrorText(err: unknown, depth = 0): string {
    const e = err as Error & { errors?: unknown[]; cause?: unknown; code?: string; apiCode?: number };
    if (!e || typeof e !== "object" || depth > 4) return String(err);
    const inner = [...(Array.isArray(e.errors) ? e.errors : []), ...(e.cause ? [e.cause] : [])].map((x) => kafkaErrorText(x, depth + 1));
    const uniq = [...new Set(inner)];
    return `${e.message}${e.code ? ` [${e.code}]` : ""}${uniq.length ? ` (${uniq.join("; ")})` : ""}`;
}

/**
 * Publishes a few events from a short-lived process (a deploy, an audit) and closes: at most
 * `timeoutMs`, never throws. Says what happened, for the caller to print.
 */
export async function publishOnce(brokers: string[], clientId: string, events: NublarEvent[], timeoutMs = 5000): Promise<{ ok: true } | { ok: false; error: string }> {
    const producer = eventProducer({ brokers, clientId, timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    try {
        await Promise.race([
            publishEvents(producer, events),
            new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no acknowledgement within ${timeoutMs / 1000} s`)), timeoutMs))),
        ]);
        return { ok: true };
    } catch (err) {
        return { ok: false, error: kafkaErrorText(err) };
    } finally {
        clearTimeout(timer);
        await producer.close(1000).catch(() => undefined);
    }
}
