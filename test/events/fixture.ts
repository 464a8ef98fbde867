// A real event pipeline for a test file: a KRaft broker from the Kafka jars (lab/kafka-broker.ts) and
// a real ledger (PostgreSQL primary + 2 standbys, Redis, the ingest service) on ::1, on free ports,
// in fresh folders; the pipeline's parts run as child processes, so a test can SIGKILL one.
// Everything is stopped by PID and removed, even when a test fails.
import { spawn, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { brokerPid, clusterIdFor, kafkaClasspath, startBroker, stopBroker, type BrokerLayout } from "../../lab/kafka-broker";
import { pipelineRequest } from "../../lab/event-bus";
import type { PipelineConfig } from "../../runtime/events/pipeline";
import { signReadings } from "../../runtime/events/gateway";
import { planEvents } from "../../model/events/plan";
import { SiteSchema } from "../../model/site/model";
import { writeServiceConfig, type ServiceConfig } from "../../runtime/ledger/config";
import { generateSigningKey } from "../../model/ledger/core/checkpoint";
import { LOOPBACK, type LedgerCluster } from "../../lab/ledger/cluster";
import { ROLES } from "../../runtime/ledger/pg/schema";
import { IngestService } from "../../runtime/ledger/service";
import { startTestCluster } from "../ledger/fixture";
import { freePort } from "../helpers/ports";
import { PROJECT_ROOT } from "../../model/project";

const PROJECT_DIR = PROJECT_ROOT;
export const SHARDS = ["habitat", "network", "security", "audit"];

/** Why the event tests cannot run here, or undefined. */
export function missingKafka(): string | undefined {
    try {
        kafkaClasspath();
        return undefined;
    } catch (err) {
        return (err as Error).message;
    }
}

export async function startTestBroker(): Promise<BrokerLayout> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-events-kafka-"));
    const layout: BrokerLayout = { dir, clusterId: clusterIdFor(dir), listeners: [{ name: "LOCAL", host: "::1", port: await freePort() }], controllerPort: await freePort(), heapMb: 512 };
    process.once("exit", () => {
        const pid = brokerPid(layout);
        if (pid) process.kill(pid, "SIGKILL");
        fs.rmSync(dir, { recursive: true, force: true });
    });
    await startBroker(layout);
    return layout;
}

export async function stopTestBroker(layout: BrokerLayout | undefined): Promise<void> {
    if (!layout) return;
    await stopBroker(layout);
    fs.rmSync(layout.dir, { recursive: true, force: true });
}

export interface TestLedger {
    cluster: LedgerCluster;
    service: IngestService;
    socket: string;
    close(): Promise<void>;
}

export async function startTestLedger(): Promise<TestLedger> {
    const cluster = await startTestCluster(SHARDS);
    const dir = cluster.layout.dir;
    const keys = generateSigningKey();
    fs.writeFileSync(path.join(dir, "sign.key"), keys.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, "sign.pub"), keys.publicKey.export({ type: "spki", format: "pem" }));
    const socket = path.join(dir, "ingest.sock");
    const p = cluster.layout.passwords;
    const config: ServiceConfig = {
        site: "lab", shards: SHARDS, endpoints: cluster.layout.pgPorts.map((port) => ({ host: LOOPBACK, port })),
        ingest: { user: ROLES.ingest, password: p.ingest }, auditor: { user: ROLES.auditor, password: p.auditor },
        redis: { host: LOOPBACK, port: cluster.layout.redisPort, password: p.redis },
        checkpoint: { entries: 1000, ms: 5000 }, signingKeyFile: path.join(dir, "sign.key"), publicKeyFile: path.join(dir, "sign.pub"),
        lakeDir: path.join(dir, "checkpoints"), listen: { socket },
    };
    writeServiceConfig(path.join(dir, "service.json"), config);
    const service = new IngestService(config, () => undefined);
    await service.start();
    return { cluster, service, socket, async close() { await service.stop(); await cluster.destroy(); } };
}

/**
 * The lab site's pipeline config, pointed at this broker, ledger and a fresh lake folder, with a
 * new random key for each of `sensors` (the gateway refuses readings of any other sensor).
 */
export async function testPipelineConfig(broker: BrokerLayout, ledgerSocket: string, dir: string, sensors: string[] = []): Promise<PipelineConfig> {
    const site = SiteSchema.parse({
        name: "lab", kind: "lab", sla: { availability: 0.999, failoverBudgetMs: 300 },
        providers: [{ name: "a", prefix: "2001:db8:a::/48" }, { name: "b", prefix: "2001:db8:b::/48" }],
        nodes: [{ name: "gate", role: "edge", failureDomain: "x", uplinks: [{ provider: "a" }, { provider: "b" }] }],
    });
    const plan = planEvents(site, { stateDir: dir, managementPrefix: "fd6e:626c:6172::/64" })!; // one broker: replication 1
    return {
        site: "lab",
        brokers: [`[::1]:${broker.listeners[0].port}`],
        topics: plan.topics,
        gateway: { listen: [{ host: "::1", port: await freePort() }], allow: plan.gateway.allow, sensorKeys: Object.fromEntries(sensors.map((s) => [s, crypto.randomBytes(32).toString("hex")])) },
        ledgerSocket,
        lakeDir: path.join(dir, "lake"),
        alerts: { url: "http://[::1]:9/unused" },
        lakeLingerMs: 300,
        socket: path.join(dir, "pipeline.sock"),
    };
}

/** A request's headers signed by `sensor` with its key in `cfg`, as the sensor would send them. */
export function signedHeaders(cfg: PipelineConfig, sensor: string, body: string): Record<string, string> {
    const key = cfg.gateway.sensorKeys[sensor];
    if (!key) throw new Error(`the test config has no key for sensor ${sensor}`);
    return signReadings(Array.isArray(key) ? key[0] : key, sensor, body);
}

/** One part (or several) of the pipeline as its own process: `nublar bus serve --only`. */
export class PipelineProcess {
    child?: ChildProcess;
    readonly logFile: string;
    constructor(readonly configFile: string, readonly parts: string, readonly socket: string, readonly env: Record<string, string> = {}) {
        this.logFile = `${configFile}.${parts.replace(/,/g, "+")}.log`;
    }

    async start(): Promise<void> {
        fs.rmSync(this.socket, { force: true });
        const log = fs.openSync(this.logFile, "a");
        this.child = spawn(process.execPath, [path.join(PROJECT_DIR, "cli", "nublar.js"), "bus", "serve", "--config", this.configFile, "--only", this.parts], {
            stdio: ["ignore", log, log], env: { ...process.env, ...this.env },
        });
        fs.closeSync(log);
        const child = this.child;
        process.once("exit", () => child.exitCode === null && child.kill("SIGKILL"));
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline) {
            if (child.exitCode !== null || child.signalCode) throw new Error(`pipeline (${this.parts}) exited: ${this.tail()}`);
            try {
                await getJson(this.socket, "/stats");
                return;
            } catch {
                await new Promise((r) => setTimeout(r, 100));
            }
        }
        throw new Error(`pipeline (${this.parts}) did not come up: ${this.tail()}`);
    }

    tail(): string {
        return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, "utf8").split("\n").slice(-15).join("\n") : "";
    }

    /** Resolves when the process has exited (it may be killed by a fault, or by us). */
    exited(): Promise<void> {
        const c = this.child;
        if (!c || c.exitCode !== null || c.signalCode) return Promise.resolve();
        return new Promise((r) => c.once("exit", () => r()));
    }

    async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
        const c = this.child;
        if (!c || c.exitCode !== null || c.signalCode) return;
        c.kill(signal);
        const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
        await this.exited();
        clearTimeout(t);
    }
}

/** GET JSON on a unix socket (the pipeline's stats, the ledger's ingest service). */
export function getJson(socket: string, urlPath: string, timeoutMs = 5000): Promise<any> {
    return pipelineRequest(socket, urlPath, timeoutMs);
}

/** Every entry of a shard, through the ingest service. */
export async function shardEntries(socket: string, shard: string): Promise<{ seq: number; source: string; payload: any; hash: string }[]> {
    const out: { seq: number; source: string; payload: any; hash: string }[] = [];
    for (let from = 1; ; from += 10_000) {
        const r = await getJson(socket, `/v1/shards/${shard}/entries?from=${from}&limit=10000`);
        out.push(...r.entries);
        if (r.entries.length < 10_000) return out;
    }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 100): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
        try {
            const v = await fn();
            if (v !== undefined && v !== false) return v as T;
        } catch (err) {
            last = err;
        }
        await new Promise((r) => setTimeout(r, everyMs));
    }
    throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}
