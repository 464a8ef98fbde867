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
import * as http from "node:http";
import * as net from "node:net";
import { nowUs, type NublarEvent, validateEvent } from "../../model/events/schema";
import { kafkaErrorText, messageOf, sendDeadLetters, type DeadLetter, type EventProducer } from "./kafka";

export interface GatewayOptions {
    site: string;
    producer: EventProducer;
    /** Where to listen: IPv6 addresses (the lab: ::1 and the management bridge). */
    listen: { host: string; port: number }[];
    /** Prefixes senders may come from (CIDR); anything else gets 403. */
    allow: string[];
    log?: (m: string) => void;
    /** Largest request body, bytes. */
    maxBody?: number;
}

export interface GatewayStats {
    requests: number;
    accepted: number;
    rejected: number;
    refused: number;
    busErrors: number;
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
    const stats: GatewayStats = { requests: 0, accepted: 0, rejected: 0, refused: 0, busErrors: 0 };
    const allow = new net.BlockList();
    for (const p of o.allow) {
        const [addr, len] = p.split("/");
        allow.addSubnet(addr, Number(len ?? 128), "ipv6");
    }
    const coalescer = new Coalescer(o.producer);
    const maxBody = o.maxBody ?? 1 << 20;
    const log = o.log ?? (() => undefined);

    const reply = (res: http.ServerResponse, status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
    };

    async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        stats.requests++;
        const address = (req.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
        if (!net.isIPv6(address) || !allow.check(address, "ipv6")) {
            stats.refused++;
            log(`refused a request from ${address}: not in the allowed prefixes`);
            return reply(res, 403, { error: `${address} may not send readings here (allowed: ${o.allow.join(", ")})` });
        }
        const url = new URL(req.url ?? "/", "http://gateway");
        if (url.pathname === "/healthz" && req.method === "GET") return reply(res, 200, { ok: true, ...stats });
        if (url.pathname !== "/v1/readings") return reply(res, 404, { error: `no such endpoint: ${url.pathname} (POST /v1/readings, GET /healthz)` });
        if (req.method !== "POST") return reply(res, 405, { error: "POST readings to /v1/readings" });
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of req) {
            size += (c as Buffer).length;
            if (size > maxBody) return reply(res, 413, { error: `body over ${maxBody} bytes: send fewer readings per request` });
            chunks.push(c as Buffer);
        }
        const body = Buffer.concat(chunks);
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
        if (readings.length > MAX_READINGS) return reply(res, 413, { error: `at most ${MAX_READINGS} readings per request` });
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
            log(`the event bus did not take ${good.length} reading(s) from ${address}: ${kafkaErrorText(err)}`);
            return reply(res, 503, { error: `the event bus is unavailable (${(err as Error).message}); send again`, accepted: 0 });
        }
        stats.accepted += good.length;
        stats.rejected += bad.length;
        return reply(res, bad.length && !good.length ? 422 : 202, { accepted: good.length, ids: good.map((e) => e.id), rejected: bad.map((b) => ({ index: b.index, reason: b.reason })) });
    }

    const servers: http.Server[] = [];
    const addresses: string[] = [];
    for (const l of o.listen) {
        const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
            handle(req, res).catch((err: Error) => {
                log(`gateway: ${err.message}`);
                if (!res.headersSent) reply(res, 500, { error: err.message });
            });
        });
        await new Promise<void>((resolve, reject) => {
            server.once("error", (err: Error) => reject(new Error(`the sensor gateway cannot listen on [${l.host}]:${l.port}: ${err.message}`)));
            server.listen({ host: l.host, port: l.port, ipv6Only: true }, () => resolve());
        });
        const a = server.address() as net.AddressInfo;
        addresses.push(`[${a.address}]:${a.port}`);
        servers.push(server);
    }
    return {
        stats,
        addresses,
        async close() {
            await Promise.all(servers.map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
        },
    };
}
