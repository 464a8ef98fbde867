// The event pipeline's plan, from the one site model: the topics and their partitions, where the
// bus is, who may send sensor readings, and (in the lab) where the broker and the pipeline live
// on this machine. Pure: the lab component, the agents' plan and `nublar bus` only apply it.
import * as crypto from "node:crypto";
import * as path from "node:path";
import { hostAddress } from "../network/addressing";
import type { Site } from "../site/model";
import { DEAD_LETTER_TOPIC, TOPICS } from "./topics";

export interface EventsLabLayout {
    dir: string;
    brokerDir: string;
    /** Stable per site, so a re-run of `pulumi up` finds the formatted log dirs valid. */
    clusterId: string;
    /** The broker on ::1 (this machine's clients) and on the management bridge (the nodes' agents). */
    localPort: number;
    controllerPort: number;
    mgmtPort: number;
    mgmtHost: string;
    lakeDir: string;
    /** The pipeline daemon's config (`nublar bus serve --config`), pid and log. */
    configFile: string;
    pidFile: string;
    logFile: string;
}

/** A topic as the bus creates it (runtime/events/kafka.ts ensureTopics). */
export interface TopicToCreate {
    name: string;
    partitions: number;
    replicas: number;
    configs?: Record<string, string>;
}

export interface EventsPlan {
    site: string;
    topics: TopicToCreate[];
    /** Bootstrap addresses for clients on the pipeline's machine. */
    brokers: string[];
    /** Bootstrap addresses for the nodes' agents. */
    agentBrokers: string[];
    gateway: { port: number; listen: string[]; allow: string[] };
    dashboardPort: number;
    alertsUrl: string;
    lab?: EventsLabLayout;
}

/**
 * Sensor credentials (runtime/events/gateway.ts): each sensor signs its requests with HMAC-SHA256
 * under a key of its own. A key is 32 random bytes written as 64 hex digits (`openssl rand -hex
 * 32`). The keys are the Pulumi secret stack config `nublar:sensorKeys`, a map of sensor id to
 * key (or to a list of two keys while one is rotated); they reach the gateway only through the
 * pipeline's config file, mode 0600.
 */
export const SENSOR_KEYS_CONFIG = "sensorKeys";
export const SENSOR_KEY = /^[0-9a-fA-F]{64}$/;
/** A sensor id, as the envelope checks it (model/events/schema.ts). */
export const SENSOR_ID = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/;
export type SensorKeys = Record<string, string | string[]>;

/** What is wrong with a `nublar:sensorKeys` value; empty when nothing is. Never quotes a key. */
export function sensorKeysProblems(keys: unknown): string[] {
    if (keys === undefined) return [];
    if (typeof keys !== "object" || keys === null || Array.isArray(keys)) return [`${SENSOR_KEYS_CONFIG} must be a map of sensor id to key`];
    const out: string[] = [];
    for (const [id, v] of Object.entries(keys)) {
        if (!SENSOR_ID.test(id)) out.push(`${SENSOR_KEYS_CONFIG}: ${JSON.stringify(id.slice(0, 140))} is not a sensor id (letters, digits, . _ : / @ -; at most 128)`);
        const list = Array.isArray(v) ? v : [v];
        if (!list.length || list.length > 2) out.push(`${SENSOR_KEYS_CONFIG}.${id}: one key, or two while rotating`);
        else if (!list.every((k) => typeof k === "string" && SENSOR_KEY.test(k))) out.push(`${SENSOR_KEYS_CONFIG}.${id}: a key is 64 hex digits (32 random bytes: openssl rand -hex 32)`);
    }
    return out;
}

/** How long the bus keeps events: long enough to replay a week into a rebuilt ledger. */
const RETENTION_MS = String(7 * 24 * 3600 * 1000);

export function planEvents(site: Site, lab?: { stateDir: string; managementPrefix: string }): EventsPlan | undefined {
    const ev = site.events;
    if (!ev.enabled) return undefined;
    // A single broker cannot replicate; a real bus (Strimzi) has 3 brokers and min.insync 2.
    const replicas = lab ? 1 : 3;
    const topics: TopicToCreate[] = [
        ...Object.values(TOPICS).map((t) => ({ name: t.name, partitions: ev.partitions, replicas, configs: { "retention.ms": RETENTION_MS } })),
        { name: DEAD_LETTER_TOPIC, partitions: 1, replicas, configs: { "retention.ms": String(30 * 24 * 3600 * 1000) } },
    ];
    // Sensors sit in the nodes' sensor subnets (model/network/site-plan.ts: /64 number 0x8000 + N of each provider's /48).
    const allow = ["::1/128", ...site.providers.map((p) => p.prefix)];
    if (lab) {
        const dir = path.join(lab.stateDir, "events");
        const base = ev.labBasePort;
        const mgmtHost = hostAddress(lab.managementPrefix, 1);
        const layout: EventsLabLayout = {
            dir,
            brokerDir: path.join(dir, "broker"),
            clusterId: crypto.createHash("sha256").update(`nublar-lab-events/${site.name}`).digest().subarray(0, 16).toString("base64url"),
            localPort: base,
            controllerPort: base + 1,
            mgmtPort: base + 2,
            mgmtHost,
            // Its own folder, removed with the broker: the lake's high offsets are the topics',
            // so a new broker (offsets from 0 again) must start a new lake. (The ledger's
            // checkpoints have their own lake folder.)
            lakeDir: path.join(dir, "lake"),
            configFile: path.join(dir, "pipeline.json"),
            pidFile: path.join(dir, "pipeline.pid"),
            logFile: path.join(dir, "pipeline.log"),
        };
        return {
            site: site.name,
            topics,
            brokers: [`[::1]:${base}`],
            agentBrokers: [`[${mgmtHost}]:${base + 2}`],
            gateway: { port: ev.gatewayPort, listen: ["::1", mgmtHost], allow: [...allow, lab.managementPrefix] },
            dashboardPort: ev.dashboardPort,
            alertsUrl: ev.alerts.url,
            lab: layout,
        };
    }
    const brokers = ev.brokers ?? [];
    return {
        site: site.name,
        topics,
        brokers,
        agentBrokers: brokers,
        gateway: { port: ev.gatewayPort, listen: ["::"], allow },
        dashboardPort: ev.dashboardPort,
        alertsUrl: ev.alerts.url,
    };
}
