// The event pipeline daemon (`nublar bus serve --config FILE`): the sensor gateway and the
// sinks (ledger, lake, alerts), each a consumer group of its own, so each keeps its own offsets
// and can be replayed alone. `--only` runs a subset, for instance one sink per process.
// It answers GET /stats on a unix socket (`nublar bus status`, the benchmark).
import * as fs from "node:fs";
import * as http from "node:http";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { z } from "zod";
import { guardCrashes, runConsumer, superviseConsumer, type Delivered, type RunningConsumer } from "./consume";
import { startGateway, type GatewayStats } from "./gateway";
import { ensureTopics, eventProducer, publishEvents, type BusOptions } from "./kafka";
import { DirectoryLake, lakeSink, type LakeSinkStats } from "./lake-sink";
import { ledgerSink } from "./ledger-sink";
import { TOPICS } from "../../model/events/topics";
import { SENSOR_ID, SENSOR_KEY } from "../../model/events/plan";

export const SINKS = ["gateway", "ledger", "lake", "alerts"] as const;
export type PipelinePart = (typeof SINKS)[number];

export const PipelineConfig = z.strictObject({
    site: z.string(),
    brokers: z.array(z.string()).min(1),
    topics: z.array(z.strictObject({ name: z.string(), partitions: z.number().int(), replicas: z.number().int(), configs: z.record(z.string(), z.string()).optional() })),
    gateway: z.strictObject({
        listen: z.array(z.strictObject({ host: z.string(), port: z.number().int() })), allow: z.array(z.string()),
        /** Each sensor's HMAC-SHA256 key(s), hex (`nublar:sensorKeys`, a Pulumi secret): why this file is mode 0600. */
        sensorKeys: z.record(z.string().regex(SENSOR_ID), z.union([z.string().regex(SENSOR_KEY), z.array(z.string().regex(SENSOR_KEY)).min(1).max(2)])).default({}),
        /** The gateway's bounds (runtime/events/gateway.ts GatewayOptions; defaults there). */
        limits: z.strictObject({
            maxBody: z.number().int().min(1024).optional(), maxConnections: z.number().int().min(1).optional(), maxInflightBytes: z.number().int().min(1024).optional(),
            maxSkewSeconds: z.number().int().min(1).optional(), refusalLogMs: z.number().int().min(100).optional(),
        }).optional(),
    }),
    /** The ledger ingest service's unix socket. */
    ledgerSocket: z.string(),
    lakeDir: z.string(),
    /** The lake on S3 (or an S3-compatible store) instead of lakeDir: production's. Credentials from the SDK's default chain. */
    lakeS3: z.strictObject({
        bucket: z.string().min(3),
        prefix: z.string().optional(),
        region: z.string().optional(),
        /** An S3-compatible endpoint (path-style addressing). */
        endpoint: z.string().url().optional(),
        kmsKeyId: z.string().optional(),
    }).optional(),
    /** How long the lake consumer lets a batch fill before writing a file (ms; default 5000). */
    lakeLingerMs: z.number().int().min(0).optional(),
    alerts: z.strictObject({ url: z.string(), routingKey: z.string().optional() }),
    /** The daemon's own unix socket (stats). */
    socket: z.string(),
});
export type PipelineConfig = z.infer<typeof PipelineConfig>;

export function readPipelineConfig(file: string): PipelineConfig {
    let raw: unknown;
    try {
        raw = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (err) {
        throw new Error(`cannot read the pipeline config ${file}: ${(err as Error).message}`);
    }
    const r = PipelineConfig.safeParse(raw);
    if (!r.success) throw new Error(`the pipeline config ${file} is invalid: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return r.data;
}

/** Latency samples, µs, from the gateway's receipt of a reading to the ledger's acknowledgement. */
class LatencyRing {
    private readonly buf: Float64Array;
    private n = 0;
    constructor(size = 1 << 20) {
        this.buf = new Float64Array(size);
    }
    add(us: number) {
        this.buf[this.n++ % this.buf.length] = us;
    }
    get count() {
        return this.n;
    }
    /** Samples added since `from` (a count returned earlier), oldest first, at most the ring's size. */
    since(from: number): number[] {
        const start = Math.max(from, this.n - this.buf.length);
        const out: number[] = [];
        for (let i = start; i < this.n; i++) out.push(this.buf[i % this.buf.length]);
        return out;
    }
}

export interface Pipeline {
    stats(): Record<string, unknown>;
    close(): Promise<void>;
}

export async function runPipeline(cfg: PipelineConfig, parts: readonly PipelinePart[] = SINKS, log: (m: string) => void = () => undefined): Promise<Pipeline> {
    const bus: BusOptions = { brokers: cfg.brokers, clientId: `nublar-pipeline-${cfg.site}` };
    const created = await ensureTopics(bus, cfg.topics);
    if (created.length) log(`created topics: ${created.join(", ")}`);
    const producer = eventProducer(bus);
    // The consumers share this process (and the gateway): a crash in one's own code restarts that
    // one only (consume.ts superviseConsumer), instead of ending the process for all of them.
    const unguard = guardCrashes(log);
    const closers: (() => Promise<void>)[] = [];
    const consumers: Record<string, RunningConsumer> = {};
    let gatewayStats: GatewayStats | undefined;
    let lakeStats: LakeSinkStats | undefined;
    // Two clocks: from the gateway's receipt, and from the reading's own time (the sensor's clock;
    // on one machine, as in the benchmark, the whole path including HTTP).
    const ledgerLatency = new LatencyRing();
    const sensorLatency = new LatencyRing();
    const ledgerResults = { appended: 0, duplicates: 0 };
    // Where the time goes: the event loop's delay (one thread runs the gateway and the sinks),
    // the ledger's answer per batch, and the time from the gateway's receipt to the consumer.
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const ledgerCall = new LatencyRing(1 << 16);
    const toConsumer = new LatencyRing(1 << 16);

    try {
        if (parts.includes("ledger")) {
            const topics = Object.values(TOPICS).filter((t) => "shard" in t).map((t) => t.name);
            consumers.ledger = await superviseConsumer("ledger", (stats) => runConsumer({ stats,
                bus: { ...bus, clientId: `${bus.clientId}-ledger` }, groupId: "nublar-ledger", topics, deadLetters: producer, log,
                handle: timed(ledgerSink({
                    socket: cfg.ledgerSocket,
                    conflicts: { producer, site: cfg.site }, log, // an id held with another payload: dead letter + alert
                    onAcked: (batch: Delivered[], ackedAt, r) => {
                        ledgerResults.appended += r.appended;
                        ledgerResults.duplicates += r.duplicates;
                        for (const d of batch) {
                            if (d.event.type !== "sensor-reading") continue;
                            ledgerLatency.add(ackedAt - d.event.payload.receivedAt);
                            sensorLatency.add(ackedAt - d.event.time);
                        }
                    },
                })),
            }), { log });
        }
        if (parts.includes("lake")) {
            const store = cfg.lakeS3
                ? new (require("./s3-lake") as typeof import("./s3-lake")).S3Lake({
                    bucket: cfg.lakeS3.bucket, prefix: cfg.lakeS3.prefix, kmsKeyId: cfg.lakeS3.kmsKeyId,
                    client: { region: cfg.lakeS3.region ?? "us-east-1", ...(cfg.lakeS3.endpoint ? { endpoint: cfg.lakeS3.endpoint, forcePathStyle: true } : {}) },
                })
                : new DirectoryLake(cfg.lakeDir);
            const sink = lakeSink(store);
            lakeStats = sink.stats;
            consumers.lake = await superviseConsumer("lake", (stats) => runConsumer({ stats,
                bus: { ...bus, clientId: `${bus.clientId}-lake` }, groupId: "nublar-lake", topics: Object.values(TOPICS).map((t) => t.name), deadLetters: producer, log,
                // Bigger files for the lake: it is read by analytics, not by people waiting.
                maxBatch: 10_000, lingerMs: cfg.lakeLingerMs ?? 5000, handle: sink.handle,
            }), { log });
        }
        if (parts.includes("alerts")) {
            const { alertsSink } = require("./alerts/wire") as typeof import("./alerts/wire");
            const sink = alertsSink({ site: cfg.site, url: cfg.alerts.url, routingKey: cfg.alerts.routingKey, publish: (events) => publishEvents(producer, events), log });
            consumers.alerts = await superviseConsumer("alerts", (stats) => runConsumer({ stats,
                bus: { ...bus, clientId: `${bus.clientId}-alerts` }, groupId: "nublar-alerts", topics: [TOPICS.network.name, TOPICS.telemetry.name], deadLetters: producer, log,
                // Alerts are about now: a new group starts at the end, not by re-alerting last week.
                fallback: "latest", handle: sink.handle,
            }), { log });
            closers.push(sink.close);
        }
        if (parts.includes("gateway")) {
            const gw = await startGateway({ site: cfg.site, producer, listen: cfg.gateway.listen, allow: cfg.gateway.allow, sensorKeys: cfg.gateway.sensorKeys, ...cfg.gateway.limits, log });
            gatewayStats = gw.stats;
            log(`sensor gateway on ${gw.addresses.map((a) => `http://${a}/v1/readings`).join(", ")}`);
            closers.push(gw.close);
        }
    } catch (err) {
        // Half started is worse than stopped: close what did start, then fail.
        for (const c of Object.values(consumers)) await c.close().catch(() => undefined);
        for (const c of closers) await c().catch(() => undefined);
        await producer.close(1000).catch(() => undefined);
        unguard();
        throw err;
    }

    function timed(handle: (batch: Delivered[]) => Promise<void>) {
        return async (batch: Delivered[]) => {
            const t = performance.now();
            const arrived = Math.round((performance.timeOrigin + t) * 1000);
            for (const d of batch) if (d.event.type === "sensor-reading") toConsumer.add(arrived - d.event.payload.receivedAt);
            await handle(batch);
            ledgerCall.add((performance.now() - t) * 1000);
        };
    }
    const pct = (xs: number[], p: number) => {
        const s = [...xs].sort((a, b) => a - b);
        return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] / 10) / 100 : null;
    };

    const stats = () => ({
        site: cfg.site,
        parts,
        gateway: gatewayStats,
        consumers: Object.fromEntries(Object.entries(consumers).map(([k, c]) => [k, c.stats])),
        ledger: { ...ledgerResults, latencySamples: ledgerLatency.count },
        timingsMs: {
            eventLoopDelayP50: Math.round(loopDelay.percentile(50) / 1e4) / 100, eventLoopDelayP99: Math.round(loopDelay.percentile(99) / 1e4) / 100,
            gatewayToConsumerP50: pct(toConsumer.since(0), 0.5), gatewayToConsumerP99: pct(toConsumer.since(0), 0.99),
            ledgerBatchP50: pct(ledgerCall.since(0), 0.5), ledgerBatchP99: pct(ledgerCall.since(0), 0.99),
        },
        lake: lakeStats,
    });

    fs.rmSync(cfg.socket, { force: true });
    const server = http.createServer((req, res) => {
        const url = new URL(req.url ?? "/", "http://pipeline");
        let body: unknown;
        if (url.pathname === "/stats") body = stats();
        else if (url.pathname === "/latency") {
            const from = Number(url.searchParams.get("from") ?? 0);
            body = { count: ledgerLatency.count, fromReceiptUs: ledgerLatency.since(from), fromSensorUs: sensorLatency.since(from) };
        }
        else {
            res.writeHead(404).end(JSON.stringify({ error: "GET /stats or /latency?from=N" }));
            return;
        }
        const text = JSON.stringify(body);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(cfg.socket, () => resolve());
    });
    fs.chmodSync(cfg.socket, 0o660);

    return {
        stats,
        async close() {
            loopDelay.disable();
            server.close();
            // Consumers first: a batch they finish may still need the alerts' notifier.
            for (const c of Object.values(consumers)) await c.close();
            for (const c of closers) await c().catch(() => undefined);
            await producer.close().catch(() => undefined);
            unguard();
            fs.rmSync(cfg.socket, { force: true });
        },
    };
}
