// The ingest service: one writer per shard, a cache-first reader, and a small HTTP API on a unix
// socket (and optionally on ::1). `nublar ledger serve --config FILE` runs it; the lab starts it.
//   POST /v1/shards/S/entries   {"entries":[{"source","payload","time"?,"key"?}]}
//                               -> {"results":[{"seq","hash","duplicate"}]} once a quorum holds them
//   GET  /v1/shards/S/entries?from=N&limit=M   -> entries (cache first, else PostgreSQL)
//   GET  /v1/shards/S/head      GET /v1/status
// Errors are JSON {"error": "..."}: 400 bad entry (nothing written), 404 unknown shard,
// 413 body too large, 503 no primary reachable.
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

const MAX_BODY = 16 << 20;

export class IngestService {
    readonly writers = new Map<string, ShardWriter>();
    readonly readers = new Map<string, ShardReader>();
    private server?: http.Server;
    private tcp?: http.Server;
    private cache?: LedgerCache;
    private collector?: EventCollector;
    readonly started = Date.now();

    constructor(private readonly config: ServiceConfig, private readonly log: (m: string) => void = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`)) {}

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
        this.server = http.createServer((req, res) => void this.handle(req, res));
        await new Promise<void>((resolve, reject) => {
            this.server!.once("error", reject);
            this.server!.listen(cfg.listen.socket, () => resolve());
        });
        fs.chmodSync(cfg.listen.socket, 0o660);
        if (cfg.listen.port) {
            this.tcp = http.createServer((req, res) => void this.handle(req, res));
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
        };
    }

    private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const send = (code: number, body: unknown) => {
            const text = JSON.stringify(body);
            res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
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
                const body = await readBody(req);
                if (body === undefined) return send(413, { error: `request body over ${MAX_BODY} bytes; send smaller batches` });
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

function readBody(req: http.IncomingMessage): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        let size = 0;
        req.on("data", (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY) {
                // Stop keeping it, but read the rest, so the 413 reaches the client (destroying
                // the request would close the socket before the answer).
                chunks.length = 0;
                resolve(undefined);
                return;
            }
            chunks.push(c);
        });
        req.on("end", () => resolve(size > MAX_BODY ? undefined : Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
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
