// The sensor gateway: where the park's sensors, many of them legacy devices that speak nothing
// but HTTP, hand in readings over IPv6. A reading is accepted (202) only once the event bus has
// it on every in-sync replica, so a sensor that gets no 202 sends again; the reading's identity
// (sensor, boot, seq) makes that resend harmless downstream. A reading that is not valid is
// answered with its reason and also goes to the dead-letter topic: nothing is dropped silently.
//
//   POST /v1/readings   {"sensor":"fence-07","kind":"fence-voltage","value":9.7,"unit":"kV","seq":41}
//                       or an array of those, or {"readings":[...]}; optional "time" (ms since the
//                       epoch or ISO 8601, the sensor's clock) and "boot" (changes when the sensor's
//                       seq restarts from 0; without it, a sensor whose seq restarts repeats ids,
//                       and its new readings are taken for resends)
//   GET  /healthz
//
// Every POST is signed by the one sensor it speaks for (README "Sensor credentials"):
//   content-type: application/json
//   x-nublar-sensor: fence-07
//   x-nublar-timestamp: 1795400000          (Unix seconds; within maxSkewSeconds of the gateway's clock)
//   x-nublar-signature: v1=<hex HMAC-SHA256(key, "nublar-readings-v1\n" sensor "\n" timestamp "\n" body)>
// The body is signed byte for byte as sent. A request without a valid signature, or with a
// reading of another sensor, is answered 401 and counted, and none of it reaches the bus (not
// even the dead-letter topic). A request with an Origin header (a web page) gets 403.
import * as crypto from "node:crypto";
import * as http from "node:http";
import * as net from "node:net";
import { nowUs, type NublarEvent, validateEvent } from "../../model/events/schema";
import { SENSOR_ID, SENSOR_KEY, type SensorKeys } from "../../model/events/plan";
import { kafkaErrorText, messageOf, sendDeadLetters, type DeadLetter, type EventProducer } from "./kafka";

export interface GatewayOptions {
    site: string;
    producer: EventProducer;
    /** Where to listen: IPv6 addresses (the lab: ::1 and the management bridge). */
    listen: { host: string; port: number }[];
    /** Prefixes senders may come from (CIDR); anything else gets 403. */
    allow: string[];
    /** Each sensor's HMAC-SHA256 key (two while rotating), 64 hex digits. A sensor without one can send nothing. */
    sensorKeys: SensorKeys;
    log?: (m: string) => void;
    /** Largest request body, bytes (default 1 MiB). */
    maxBody?: number;
    /** How far a request's x-nublar-timestamp may be from this clock, seconds (default 300). */
    maxSkewSeconds?: number;
    /** Open connections per listener; more are closed at once, and counted (default 1024). */
    maxConnections?: number;
    /** Request body bytes held at once, all requests together; past it a request gets 503 (default 32 MiB). */
    maxInflightBytes?: number;
    /** Time to send the headers, and the whole request (default 10 s and 30 s). */
    headersTimeoutMs?: number;
    requestTimeoutMs?: number;
    /** How long an idle keep-alive connection stays open (default 5 s). */
    keepAliveTimeoutMs?: number;
    /** Refusals are logged as one summary line per interval at most (default 10 s). */
    refusalLogMs?: number;
}

export interface GatewayStats {
    requests: number;
    accepted: number;
    rejected: number;
    /** 403: the sender is outside the allowed prefixes. */
    refused: number;
    /** 403: the request carries an Origin header (a web page). */
    forbiddenOrigin: number;
    /** 401: no valid credential. */
    unauthorized: number;
    /** 415: not application/json. */
    unsupportedType: number;
    /** 413. */
    tooLarge: number;
    /** 503: the body budget (maxInflightBytes) was spent. */
    busy: number;
    /** Connections closed at once because a listener had maxConnections open. */
    dropped: number;
    busErrors: number;
}

export const SIGNATURE_HEADERS = { sensor: "x-nublar-sensor", timestamp: "x-nublar-timestamp", signature: "x-nublar-signature" } as const;
const SIGNING_CONTEXT = "nublar-readings-v1";

/** The bytes a sensor signs: the context, its id, the timestamp, then the body exactly as sent. */
export function signedPrefix(sensor: string, timestamp: string): Buffer {
    return Buffer.from(`${SIGNING_CONTEXT}\n${sensor}\n${timestamp}\n`, "utf8");
}

/** The headers of a signed request (as `nublar bus send` and the tests send them). */
export function signReadings(keyHex: string, sensor: string, body: string | Buffer, nowMs = Date.now()): Record<string, string> {
    if (!SENSOR_KEY.test(keyHex)) throw new Error("a sensor key is 64 hex digits (32 random bytes: openssl rand -hex 32)");
    const timestamp = String(Math.floor(nowMs / 1000));
    const mac = crypto.createHmac("sha256", Buffer.from(keyHex, "hex")).update(signedPrefix(sensor, timestamp)).update(body).digest("hex");
    return {
        "content-type": "application/json",
        [SIGNATURE_HEADERS.sensor]: sensor,
        [SIGNATURE_HEADERS.timestamp]: timestamp,
        [SIGNATURE_HEADERS.signature]: `v1=${mac}`,
    };
}

/** The credential's headers, checked before the body is read; or why they are not one. */
function credentialOf(h: http.IncomingHttpHeaders, nowMs: number, maxSkewSeconds: number): { ok: true; sensor: string; timestamp: string; mac: Buffer } | { ok: false; why: string } {
    const one = (name: string) => (Array.isArray(h[name]) ? undefined : (h[name] as string | undefined));
    const sensor = one(SIGNATURE_HEADERS.sensor);
    const timestamp = one(SIGNATURE_HEADERS.timestamp);
    const signature = one(SIGNATURE_HEADERS.signature);
    if (sensor === undefined || timestamp === undefined || signature === undefined) {
        return { ok: false, why: `unsigned: send ${Object.values(SIGNATURE_HEADERS).join(", ")} (runtime/events/README.md, "Sensor credentials")` };
    }
    if (!SENSOR_ID.test(sensor)) return { ok: false, why: `${SIGNATURE_HEADERS.sensor} is not a sensor id` };
    if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, why: `${SIGNATURE_HEADERS.timestamp} must be Unix seconds` };
    const skew = Number(timestamp) - nowMs / 1000;
    if (Math.abs(skew) > maxSkewSeconds) return { ok: false, why: `${SIGNATURE_HEADERS.timestamp} is ${Math.round(Math.abs(skew))} s ${skew < 0 ? "old" : "ahead"}: at most ${maxSkewSeconds} s either way (is the sensor's clock set?)` };
    const m = /^v1=([0-9a-fA-F]{64})$/.exec(signature);
    if (!m) return { ok: false, why: `${SIGNATURE_HEADERS.signature} must be v1=<64 hex digits>` };
    return { ok: true, sensor, timestamp, mac: Buffer.from(m[1], "hex") };
}

function isJson(contentType: string | undefined): boolean {
    return (contentType ?? "").split(";")[0].trim().toLowerCase() === "application/json";
}

/**
 * Refusals, as one log line per interval with counts by reason and a few of the senders, so a
 * flood cannot fill the disk. Bounded: the reasons are a fixed set, and at most MAX_ADDRESSES
 * distinct senders are remembered per interval.
 */
class RefusalLog {
    private static readonly MAX_ADDRESSES = 1000;
    private counts = new Map<string, number>();
    private addresses = new Set<string>();
    private last?: string;
    private since = Date.now();
    private timer?: NodeJS.Timeout;
    constructor(private readonly log: (m: string) => void, private readonly intervalMs: number) {}

    note(reason: string, address: string, detail?: string): void {
        this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
        if (this.addresses.size < RefusalLog.MAX_ADDRESSES) this.addresses.add(address.slice(0, 64));
        if (detail) this.last = detail.slice(0, 300);
        if (!this.timer) {
            this.since = Date.now();
            this.timer = setTimeout(() => this.flush(), this.intervalMs);
            this.timer.unref();
        }
    }

    flush(): void {
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        if (!this.counts.size) return;
        const total = [...this.counts.values()].reduce((a, b) => a + b, 0);
        const n = this.addresses.size;
        const from = `${n >= RefusalLog.MAX_ADDRESSES ? `${n}+` : n} address(es), e.g. ${[...this.addresses].slice(0, 3).join(", ")}`;
        this.log(`refused ${total} request(s) in ${((Date.now() - this.since) / 1000).toFixed(1)} s: ${[...this.counts].map(([r, c]) => `${c} ${r}`).join("; ")}; from ${from}${this.last ? `; last: ${this.last}` : ""}`);
        this.counts = new Map();
        this.addresses = new Set();
        this.last = undefined;
    }
}

const MAX_READINGS = 10_000;

function timeUsOf(v: unknown, fallback: number): number | string {
    if (v === undefined) return fallback;
    if (typeof v === "number" && Number.isFinite(v)) return Math.round(v * 1000);
    if (typeof v === "string" && !Number.isNaN(Date.parse(v))) return Date.parse(v) * 1000;
    return `time: ${JSON.stringify(v)} is neither ms since the epoch nor ISO 8601`;
}

/** A reading as a sensor sends it, into an envelope; or the reason it cannot be one. */
export function readingEnvelope(site: string, raw: unknown, address: string, receivedAt: number): { ok: true; event: NublarEvent } | { ok: false; reason: string } {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { ok: false, reason: "a reading must be a JSON object" };
    const r = raw as Record<string, unknown>;
    const unknown = Object.keys(r).filter((k) => !["sensor", "kind", "value", "unit", "seq", "time", "boot"].includes(k));
    if (unknown.length) return { ok: false, reason: `unknown field(s) ${unknown.join(", ")} (expected sensor, kind, value, unit, seq, time, boot)` };
    for (const f of ["sensor", "kind", "value", "seq"]) if (r[f] === undefined) return { ok: false, reason: `${f} is missing` };
    if (typeof r.value !== "number") return { ok: false, reason: `value: ${JSON.stringify(r.value)} is not a number` };
    if (typeof r.seq !== "number") return { ok: false, reason: `seq: ${JSON.stringify(r.seq)} is not a number` };
    if (r.boot !== undefined && !(typeof r.boot === "string" || typeof r.boot === "number")) return { ok: false, reason: "boot: must be a string or a number" };
    const time = timeUsOf(r.time, receivedAt);
    if (typeof time === "string") return { ok: false, reason: time };
    // '#' cannot be in a sensor id, and the boot is escaped: no two readings share an id.
    const boot = r.boot === undefined ? "" : `#${encodeURIComponent(String(r.boot))}`;
    const event = {
        id: `sensor/${String(r.sensor)}${boot}/${String(r.seq)}`, site, source: "sensor-gateway", time, type: "sensor-reading",
        payload: { sensor: String(r.sensor), kind: String(r.kind), value: r.value, unit: typeof r.unit === "string" ? r.unit : "", seq: r.seq, receivedAt, address },
    } as NublarEvent;
    return validateEvent(event);
}

/**
 * One produce request in flight at a time, carrying everything that arrived while the previous
 * one was out: under load a send carries hundreds of readings, and at rest a reading waits for
 * no timer. (A send per request, queued behind each other, fell behind at 1,000 requests/s.)
 */
class Coalescer {
    private pending: { events: NublarEvent[]; resolve: () => void; reject: (e: Error) => void }[] = [];
    private inFlight = false;
    constructor(private readonly producer: EventProducer) {}

    publish(events: NublarEvent[]): Promise<void> {
        return new Promise((resolve, reject) => {
            this.pending.push({ events, resolve, reject });
            if (!this.inFlight) setImmediate(() => this.flush());
        });
    }

    private flush(): void {
        if (this.inFlight || !this.pending.length) return;
        this.inFlight = true;
        const waiting = this.pending;
        this.pending = [];
        this.producer.send({ messages: waiting.flatMap((w) => w.events.map(messageOf)) }).then(
            () => waiting.forEach((w) => w.resolve()),
            (err: Error) => waiting.forEach((w) => w.reject(err)),
        ).finally(() => {
            this.inFlight = false;
            this.flush();
        });
    }
}

export async function startGateway(o: GatewayOptions): Promise<{ stats: GatewayStats; addresses: string[]; close(): Promise<void> }> {
    const stats: GatewayStats = { requests: 0, accepted: 0, rejected: 0, refused: 0, forbiddenOrigin: 0, unauthorized: 0, unsupportedType: 0, tooLarge: 0, busy: 0, dropped: 0, busErrors: 0 };
    const allow = new net.BlockList();
    for (const p of o.allow) {
        const [addr, len] = p.split("/");
        allow.addSubnet(addr, Number(len ?? 128), "ipv6");
    }
    // Keys decoded once. A sensor without a key is checked against a random one, so an unknown
    // sensor takes as long to refuse as a wrong signature.
    const keys = new Map<string, Buffer[]>();
    for (const [sensor, v] of Object.entries(o.sensorKeys)) {
        const list = Array.isArray(v) ? v : [v];
        if (!SENSOR_ID.test(sensor) || !list.length || !list.every((k) => SENSOR_KEY.test(k))) throw new Error(`the sensor gateway's key for ${JSON.stringify(sensor.slice(0, 140))} is not 64 hex digits (or the id is not a sensor id)`);
        keys.set(sensor, list.map((k) => Buffer.from(k, "hex")));
    }
    const nobody = [crypto.randomBytes(32)];
    const coalescer = new Coalescer(o.producer);
    const maxBody = o.maxBody ?? 1 << 20;
    const maxInflight = o.maxInflightBytes ?? 32 << 20;
    const maxSkew = o.maxSkewSeconds ?? 300;
    const log = o.log ?? (() => undefined);
    const refusals = new RefusalLog(log, o.refusalLogMs ?? 10_000);
    let inflight = 0;

    const reply = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
        res.end(text);
    };
    /** A refusal: counted, summarised in the log, and the connection closed after the answer (an unread body is not read). */
    const refuse = (res: http.ServerResponse, status: number, counter: keyof GatewayStats, reason: string, address: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
        stats[counter]++;
        refusals.note(`${status} ${reason}`, address);
        reply(res, status, body, { connection: "close", ...headers });
    };

    /** The body, within maxBody and the gateway-wide budget; `release` gives its bytes back to the budget. */
    function readBody(req: http.IncomingMessage): Promise<{ ok: true; body: Buffer; release: () => void } | { ok: false; why: "too-large" | "busy" | "aborted" }> {
        return new Promise((resolve) => {
            const chunks: Buffer[] = [];
            let size = 0;
            let done = false;
            const release = () => {
                inflight -= size;
                size = 0;
            };
            const fail = (why: "too-large" | "busy" | "aborted") => {
                if (done) return;
                done = true;
                release();
                chunks.length = 0;
                req.pause();
                resolve({ ok: false, why });
            };
            req.on("data", (c: Buffer) => {
                if (done) return;
                if (size + c.length > maxBody) return fail("too-large");
                if (inflight + c.length > maxInflight) return fail("busy");
                size += c.length;
                inflight += c.length;
                chunks.push(c);
            });
            req.on("end", () => {
                if (done) return;
                done = true;
                resolve({ ok: true, body: Buffer.concat(chunks, size), release });
            });
            req.on("error", () => fail("aborted"));
            req.on("close", () => fail("aborted"));
        });
    }

    async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        stats.requests++;
        const address = (req.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
        if (!net.isIPv6(address) || !allow.check(address, "ipv6")) {
            return refuse(res, 403, "refused", "sender outside the allowed prefixes", address, { error: `${address} may not send readings here (allowed: ${o.allow.join(", ")})` });
        }
        // Browsers send Origin with every cross-origin POST: no web page can post readings.
        if (req.headers.origin !== undefined) {
            return refuse(res, 403, "forbiddenOrigin", "from a web page (Origin header)", address, { error: "requests from web pages (with an Origin header) are refused: sensors send no Origin" });
        }
        const url = new URL(req.url ?? "/", "http://gateway");
        if (url.pathname === "/healthz" && req.method === "GET") return reply(res, 200, { ok: true, ...stats });
        if (url.pathname !== "/v1/readings") return reply(res, 404, { error: `no such endpoint: ${url.pathname} (POST /v1/readings, GET /healthz)` });
        if (req.method !== "POST") return reply(res, 405, { error: "POST readings to /v1/readings" });
        if (!isJson(req.headers["content-type"])) {
            return refuse(res, 415, "unsupportedType", "not application/json", address, { error: `content-type must be application/json (got ${JSON.stringify(String(req.headers["content-type"] ?? "none").slice(0, 100))})` });
        }
        const unauthorized = (why: string) => refuse(res, 401, "unauthorized", "without a valid credential", address, { error: why }, { "www-authenticate": 'Nublar-HMAC-SHA256 realm="sensor-gateway"' });
        const cred = credentialOf(req.headers, Date.now(), maxSkew);
        if (!cred.ok) return unauthorized(cred.why);
        const declared = Number(req.headers["content-length"] ?? 0);
        if (declared > maxBody) return refuse(res, 413, "tooLarge", "over the body limit", address, { error: `body over ${maxBody} bytes: send fewer readings per request` });
        const got = await readBody(req);
        if (!got.ok) {
            if (got.why === "too-large") return refuse(res, 413, "tooLarge", "over the body limit", address, { error: `body over ${maxBody} bytes: send fewer readings per request` });
            if (got.why === "busy") return refuse(res, 503, "busy", "busy (request bodies over the gateway's budget)", address, { error: "the gateway is busy; send again" }, { "retry-after": "1" });
            return;
        }
        try {
            // Constant time: every key of the sensor is tried, compared with timingSafeEqual.
            let valid = false;
            for (const key of keys.get(cred.sensor) ?? nobody) {
                const mac = crypto.createHmac("sha256", key).update(signedPrefix(cred.sensor, cred.timestamp)).update(got.body).digest();
                valid = crypto.timingSafeEqual(mac, cred.mac) || valid;
            }
            if (!valid || !keys.has(cred.sensor)) return unauthorized(`the signature does not match (unknown sensor ${cred.sensor}, wrong key, or the body changed after signing)`);
            await readings(req, res, address, got.body, cred.sensor);
        } finally {
            got.release();
        }
    }

    async function readings(req: http.IncomingMessage, res: http.ServerResponse, address: string, body: Buffer, signer: string): Promise<void> {
        const receivedAt = nowUs();
        const origin = `sensor-gateway [${address}]`;
        let parsed: unknown;
        try {
            parsed = JSON.parse(body.toString("utf8"));
        } catch (err) {
            stats.rejected++;
            const reason = `body is not JSON: ${(err as Error).message}`;
            await sendDeadLetters(o.producer, [{ value: body, reason, origin }]).catch(() => stats.busErrors++);
            return reply(res, 400, { error: reason });
        }
        const readings = Array.isArray(parsed) ? parsed : parsed && typeof parsed === "object" && Array.isArray((parsed as { readings?: unknown }).readings) ? (parsed as { readings: unknown[] }).readings : [parsed];
        if (readings.length > MAX_READINGS) return refuse(res, 413, "tooLarge", "too many readings", address, { error: `at most ${MAX_READINGS} readings per request` });
        // A sensor speaks for itself only.
        const other = readings.findIndex((r) => r && typeof r === "object" && (r as { sensor?: unknown }).sensor !== undefined && String((r as { sensor?: unknown }).sensor) !== signer);
        if (other >= 0) {
            return refuse(res, 401, "unauthorized", "without a valid credential", address, { error: `reading ${other} is from sensor ${JSON.stringify(String((readings[other] as { sensor: unknown }).sensor).slice(0, 140))}, but the request is signed by ${signer}: a sensor sends its own readings only` }, { "www-authenticate": 'Nublar-HMAC-SHA256 realm="sensor-gateway"' });
        }
        const good: NublarEvent[] = [];
        const bad: (DeadLetter & { index: number })[] = [];
        readings.forEach((r, index) => {
            const v = readingEnvelope(o.site, r, address, receivedAt);
            if (v.ok) good.push(v.event);
            else bad.push({ index, value: Buffer.from(JSON.stringify(r) ?? "undefined"), reason: v.reason, origin });
        });
        try {
            await Promise.all([good.length ? coalescer.publish(good) : undefined, sendDeadLetters(o.producer, bad)]);
        } catch (err) {
            stats.busErrors++;
            refusals.note("503 the event bus did not take the readings", address, kafkaErrorText(err));
            return reply(res, 503, { error: `the event bus is unavailable (${(err as Error).message}); send again`, accepted: 0 });
        }
        stats.accepted += good.length;
        stats.rejected += bad.length;
        return reply(res, bad.length && !good.length ? 422 : 202, { accepted: good.length, ids: good.map((e) => e.id), rejected: bad.map((b) => ({ index: b.index, reason: b.reason })) });
    }

    const servers: http.Server[] = [];
    const addresses: string[] = [];
    for (const l of o.listen) {
        const server = http.createServer({
            keepAliveTimeout: o.keepAliveTimeoutMs ?? 5000,
            headersTimeout: o.headersTimeoutMs ?? 10_000,
            requestTimeout: o.requestTimeoutMs ?? 30_000,
            // How often the timeouts above are checked (Node's default is 30 s).
            connectionsCheckingInterval: 1000,
            maxHeaderSize: 16 * 1024,
        }, (req, res) => {
            handle(req, res).catch((err: Error) => {
                refusals.note("500 gateway error", req.socket.remoteAddress ?? "", err.message);
                if (!res.headersSent) reply(res, 500, { error: err.message });
            });
        });
        server.maxConnections = o.maxConnections ?? 1024;
        server.maxHeadersCount = 64;
        server.on("drop", (d?: { remoteAddress?: string }) => {
            stats.dropped++;
            refusals.note(`connection(s) over the cap of ${server.maxConnections}`, d?.remoteAddress ?? "");
        });
        await new Promise<void>((resolve, reject) => {
            server.once("error", (err: Error) => reject(new Error(`the sensor gateway cannot listen on [${l.host}]:${l.port}: ${err.message}`)));
            server.listen({ host: l.host, port: l.port, ipv6Only: true }, () => resolve());
        });
        const a = server.address() as net.AddressInfo;
        addresses.push(`[${a.address}]:${a.port}`);
        servers.push(server);
    }
    if (!keys.size) log("the sensor gateway has no sensor keys (nublar:sensorKeys): every reading will be refused (401)");
    return {
        stats,
        addresses,
        async close() {
            await Promise.all(servers.map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
            refusals.flush();
        },
    };
}
