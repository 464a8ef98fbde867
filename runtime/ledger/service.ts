// The ingest service: one writer per shard, a cache-first reader, and a small HTTP API on a unix
// socket (and optionally on ::1). `nublar ledger serve --config FILE` runs it; the lab starts it.
//   POST /v1/shards/S/entries   {"entries":[{"source","payload","time"?,"key"?}]}
//                               -> {"results":[{"seq","hash","duplicate"}]} once a quorum holds them
//   GET  /v1/shards/S/entries?from=N&limit=M   -> entries (cache first, else PostgreSQL)
//   GET  /v1/shards/S/head      GET /v1/status
// Errors are JSON {"error": "..."}: 400 bad entry (nothing written), 404 unknown shard,
// 413 body too large, 503 no primary reachable, or too many bodies at once (with Retry-After).
//
// Bounds (SERVICE_LIMITS), so that no client can make it hold memory without limit: a body is at
// most 16 MiB; at most 32 bodies are read at once, and at most 64 MiB of bodies are held at once
// (a body counts for its Content-Length, or 16 MiB without one, from the moment it is accepted
// until it is answered); a POST beyond either gets 503 and Retry-After before a byte of its body
// is kept. A client that is slow to send its headers (10 s) or its whole request (30 s) is cut off
// (slowloris), and at most 1024 connections are open at once.
import * as fs from "node:fs";
import * as http from "node:http";
import { loadPrivateKey } from "../../model/ledger/core/checkpoint";
import { EntryError } from "../../model/ledger/core/encoding";
import { LedgerCache } from "./cache";
import { EventCollector } from "./collect";
import type { ServiceConfig } from "./config";
import { LedgerUnavailableError, type ShardAccess } from "./pg/store";
import { ShardReader } from "./reader";
import { LakeDirectorySink } from "./sinks";
import { ShardWriter } from "./writer";

export interface ServiceLimits {
    /** The largest request body, in bytes (413 beyond). */
    maxBody: number;
    /** Request bodies being read at once (503 beyond). */
    maxBodiesReading: number;
    /** Bytes of request bodies held at once, each counted from its acceptance until its answer (503 beyond). */
    maxBodyBytes: number;
    /** A request's headers must arrive within this, and the whole request within requestTimeoutMs; checked every checkIntervalMs. */
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    checkIntervalMs: number;
    /** Connections open at once, per listener; more are closed at once. */
    maxConnections: number;
    /** What a 503 for too many bodies says in Retry-After. */
    retryAfterSeconds: number;
}

export const SERVICE_LIMITS: Readonly<ServiceLimits> = {
    maxBody: 16 << 20, maxBodiesReading: 32, maxBodyBytes: 64 << 20,
    headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, checkIntervalMs: 1000, maxConnections: 1024, retryAfterSeconds: 1,
};

export class IngestService {
    readonly writers = new Map<string, ShardWriter>();
    readonly readers = new Map<string, ShardReader>();
    private server?: http.Server;
    private tcp?: http.Server;
    private cache?: LedgerCache;
    private collector?: EventCollector;
    readonly started = Date.now();
    readonly limits: Readonly<ServiceLimits>;
    /** Request bodies now: being read, and bytes held (reserved) until answered; the peaks; the 503s for too many. */
    readonly bodies = { reading: 0, bytes: 0, peakReading: 0, peakBytes: 0, refused: 0 };

    constructor(private readonly config: ServiceConfig, private readonly log: (m: string) => void = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`), limits: Partial<ServiceLimits> = {}) {
        this.limits = { ...SERVICE_LIMITS, ...limits };
    }

    /** An HTTP server with the limits' timeouts and connection cap. */
    private httpServer(): http.Server {
        const l = this.limits;
        const server = http.createServer({ headersTimeout: l.headersTimeoutMs, requestTimeout: l.requestTimeoutMs, connectionsCheckingInterval: l.checkIntervalMs }, (req, res) => void this.handle(req, res));
        server.maxConnections = l.maxConnections;
        return server;
    }

    access(shard: string, who: "ingest" | "auditor" = "ingest"): ShardAccess {
        const c = this.config[who];
        return { shard, endpoints: this.config.endpoints, user: c.user, password: c.password };
    }

    async start(): Promise<void> {
        const cfg = this.config;
        const signingKey = loadPrivateKey(fs.readFileSync(cfg.signingKeyFile, "utf8"));
        if (cfg.redis) this.cache = new LedgerCache(cfg.redis);
        const lake = new LakeDirectorySink(cfg.lakeDir);
        for (const shard of cfg.shards) {
            const w = await ShardWriter.open({
                access: this.access(shard), signingKey, checkpointEvery: cfg.checkpoint, sinks: [lake], cache: this.cache, maxBatch: cfg.maxBatch,
                log: this.log,
            });
            this.writers.set(shard, w);
            // Readers need only SELECT: they use the auditor role, not the writer's.
            this.readers.set(shard, new ShardReader(this.access(shard, "auditor"), this.cache));
            this.log(`shard ${shard}: writer on [${w.endpoint.host}]:${w.endpoint.port}, head ${w.headSeq}`);
        }
        if (cfg.collect) {
            this.collector = new EventCollector(this.writers.get(cfg.collect.shard)!, cfg.collect.files, cfg.collect.stateFile, this.log);
            this.collector.start();
        }
        fs.rmSync(cfg.listen.socket, { force: true });
        this.server = this.httpServer();
        await new Promise<void>((resolve, reject) => {
            this.server!.once("error", reject);
            this.server!.listen(cfg.listen.socket, () => resolve());
        });
        fs.chmodSync(cfg.listen.socket, 0o660);
        if (cfg.listen.port) {
            this.tcp = this.httpServer();
            await new Promise<void>((resolve, reject) => {
                this.tcp!.once("error", reject);
                this.tcp!.listen(cfg.listen.port, "::1", () => resolve());
            });
        }
        this.log(`ingest listening on ${cfg.listen.socket}${cfg.listen.port ? ` and [::1]:${cfg.listen.port}` : ""}`);
    }

    status() {
        return {
            site: this.config.site,
            uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
            shards: Object.fromEntries([...this.writers].map(([s, w]) => [s, { head: w.headSeq, primary: `[${w.endpoint.host}]:${w.endpoint.port}`, ...w.stats }])),
            cache: this.cache ? { status: this.cache.redis.status, ...this.cache.stats } : null,
            collector: this.collector ? this.collector.stats : null,
            bodies: { ...this.bodies },
        };
    }

    private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const send = (code: number, body: unknown, headers: Record<string, string> = {}) => {
            if (res.headersSent || res.destroyed) return;
            const text = JSON.stringify(body);
            res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
            res.end(text);
        };
        try {
            const url = new URL(req.url ?? "/", "http://ledger");
            if (url.pathname === "/v1/status" && req.method === "GET") return send(200, this.status());
            const m = /^\/v1\/shards\/([^/]+)\/(entries|head)$/.exec(url.pathname);
            if (!m) return send(404, { error: `no such endpoint: ${req.method} ${url.pathname} (try /v1/status, /v1/shards/S/entries, /v1/shards/S/head)` });
            const shard = decodeURIComponent(m[1]);
            const writer = this.writers.get(shard);
            if (!writer) return send(404, { error: `unknown shard ${JSON.stringify(shard)}; shards: ${[...this.writers.keys()].join(", ")}` });
            if (m[2] === "head" && req.method === "GET") {
                return send(200, { shard, seq: writer.headSeq });
            }
            if (m[2] === "entries" && req.method === "POST") {
                const l = this.limits;
                const tooLarge = () => send(413, { error: `request body over ${l.maxBody} bytes; send smaller batches` });
                // Admission, before a byte of the body is kept (Node discards a body not read).
                const declared = req.headers["content-length"] === undefined ? undefined : Number(req.headers["content-length"]);
                if (declared !== undefined && declared > l.maxBody) return tooLarge();
                const reserve = declared !== undefined && Number.isSafeInteger(declared) && declared >= 0 ? declared : l.maxBody;
                const b = this.bodies;
                if (b.reading >= l.maxBodiesReading || b.bytes + reserve > l.maxBodyBytes) {
                    b.refused++;
                    return send(503, { error: `busy: ${b.reading} request bodies being read and ${b.bytes} bytes held (at most ${l.maxBodiesReading} and ${l.maxBodyBytes}); retry after ${l.retryAfterSeconds} s` }, { "retry-after": String(l.retryAfterSeconds) });
                }
                b.reading++;
                b.bytes += reserve;
                b.peakReading = Math.max(b.peakReading, b.reading);
                b.peakBytes = Math.max(b.peakBytes, b.bytes);
                let reading = true;
                const doneReading = () => {
                    if (reading) b.reading--;
                    reading = false;
                };
                let held = true;
                res.once("close", () => {
                    doneReading();
                    if (held) b.bytes -= reserve;
                    held = false;
                });
                const read = await readBody(req, l.maxBody);
                doneReading();
                if (read.kind === "aborted") return; // the client went (or was cut off): nobody to answer
                if (read.kind === "too-large") return tooLarge();
                const body = read.text;
                let parsed: { entries?: unknown };
                try {
                    parsed = JSON.parse(body);
                } catch (err) {
                    return send(400, { error: `body is not JSON: ${(err as Error).message}` });
                }
                if (!parsed || !Array.isArray(parsed.entries)) return send(400, { error: 'body must be {"entries": [ {"source": ..., "payload": ...}, ... ]}' });
                const results = await writer.append(parsed.entries);
                return send(200, { shard, results });
            }
            if (m[2] === "entries" && req.method === "GET") {
                const from = Number(url.searchParams.get("from") ?? "1");
                const limit = Number(url.searchParams.get("limit") ?? "100");
                if (!Number.isSafeInteger(from) || from < 1 || !Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
                    return send(400, { error: "from must be a positive integer and limit 1..10000" });
                }
                const r = await this.readers.get(shard)!.read(from, limit);
                return send(200, {
                    shard, source: r.source,
                    entries: r.entries.map((e) => ({ seq: e.seq, time: new Date(e.timeUs / 1000).toISOString(), source: e.source, payload: JSON.parse(e.payload), hash: e.hash.toString("hex") })),
                });
            }
            return send(405, { error: `${req.method} is not allowed on ${url.pathname}` });
        } catch (err) {
            if (err instanceof EntryError) return send(400, { error: err.message });
            if (err instanceof LedgerUnavailableError) return send(503, { error: err.message });
            this.log(`request failed: ${(err as Error).stack}`);
            return send(500, { error: (err as Error).message });
        }
    }

    /** Stops taking appends, collects what the agents wrote last, signs a final checkpoint, closes. */
    async stop(): Promise<void> {
        this.collector?.stop();
        await new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
        await new Promise((r) => (this.tcp ? this.tcp.close(r) : r(undefined)));
        await this.collector?.poll();
        for (const w of this.writers.values()) await w.checkpointNow().catch(() => undefined);
        for (const w of this.writers.values()) await w.close();
        for (const r of this.readers.values()) await r.close();
        await this.cache?.close();
        fs.rmSync(this.config.listen.socket, { force: true });
    }
}

type BodyRead = { kind: "ok"; text: string } | { kind: "too-large" } | { kind: "aborted" };

/** Reads a request body of at most maxBody bytes; one over it is read on but not kept, so that the 413 reaches the client. */
function readBody(req: http.IncomingMessage, maxBody: number): Promise<BodyRead> {
    return new Promise((resolve) => {
        let chunks: Buffer[] = [];
        let size = 0;
        req.on("data", (c: Buffer) => {
            size += c.length;
            if (size > maxBody) {
                // Stop keeping it, but read the rest, so the 413 reaches the client (destroying
                // the request would close the socket before the answer).
                chunks = [];
                resolve({ kind: "too-large" });
                return;
            }
            chunks.push(c);
        });
        req.on("end", () => resolve(size > maxBody ? { kind: "too-large" } : { kind: "ok", text: Buffer.concat(chunks).toString("utf8") }));
        // Closed before its end (the client went, or the request timeout cut it): what was read is let go.
        const aborted = () => {
            chunks = [];
            resolve({ kind: "aborted" });
        };
        req.on("error", aborted);
        req.on("close", () => {
            if (!req.complete) aborted();
        });
    });
}

/** Runs the service until SIGTERM/SIGINT, then stops cleanly (final checkpoint, offsets saved). */
export async function runService(config: ServiceConfig): Promise<void> {
    const svc = new IngestService(config);
    await svc.start();
    const stop = async () => {
        await svc.stop();
        process.exit(0);
    };
    process.once("SIGTERM", () => void stop());
    process.once("SIGINT", () => void stop());
}
