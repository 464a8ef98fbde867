// The park's topics, and where each kind of event goes. One table, read by the producers (which
// topic, which key), the ledger consumer (which shard) and the lake consumer (which folder).
import type { EventType, NublarEvent } from "./schema";

export interface TopicSpec {
    name: string;
    /** What it carries. */
    carries: EventType[];
    /** The ledger shard its events are appended to; none: the lake only. */
    shard?: string;
}

export const TOPICS = {
    sensors: { name: "nublar.sensors", carries: ["sensor-reading"], shard: "habitat" },
    network: { name: "nublar.network", carries: ["bfd-change", "route-change", "ingress-change", "agent-notice"], shard: "network" },
    // Samples every few seconds from every session: the lake and the alerts read them; the
    // ledger keeps state changes, not telemetry.
    telemetry: { name: "nublar.telemetry", carries: ["path-latency"] },
    deploys: { name: "nublar.deploys", carries: ["deploy"], shard: "security" },
    // `nublar audit` appends each report to the ledger's audit shard itself, with the report's
    // own fields and seq; the bus copy feeds the lake and the dashboards.
    audits: { name: "nublar.audits", carries: ["audit-result"] },
    // Alerts are derived from the network topic: replaying that re-derives them, so they are not
    // ledgered twice; the lake keeps them for post-mortems.
    alerts: { name: "nublar.alerts", carries: ["alert"] },
} as const satisfies Record<string, TopicSpec>;

/** Where anything refused at a boundary goes, with its reason in the `nublar-reason` header. */
export const DEAD_LETTER_TOPIC = "nublar.dead-letter";

const BY_TYPE = new Map<EventType, TopicSpec>(Object.values(TOPICS).flatMap((t) => t.carries.map((c) => [c as EventType, t as TopicSpec])));
const BY_NAME = new Map<string, TopicSpec>(Object.values(TOPICS).map((t) => [t.name, t as TopicSpec]));

export function topicOf(type: EventType): TopicSpec {
    return BY_TYPE.get(type)!;
}

export function topicNamed(name: string): TopicSpec | undefined {
    return BY_NAME.get(name);
}

/**
 * The message key: events about one sensor, or one node's session, share a partition, so they
 * stay in order (Kafka orders within a partition only).
 */
export function partitionKey(e: NublarEvent): string {
    switch (e.type) {
        case "sensor-reading":
            return e.payload.sensor;
        case "bfd-change":
        case "route-change":
        case "ingress-change":
        case "path-latency":
        case "deploy":
        case "alert":
        case "agent-notice":
            return e.payload.node;
        case "audit-result":
            return e.payload.stack;
    }
}
