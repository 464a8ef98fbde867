// The live dashboard's server: one HTTP server on loopback serving the page (web/), preact and
// htm from node_modules (their ESM builds, through an import map: no bundler, nothing from a
// CDN), a JSON snapshot at /api/view, and a WebSocket at /ws that sends the snapshot on connect
// and then batched deltas.
//
// Security: there is no authentication, so it listens on loopback only and refuses any other
// host. Every request's Host header must be a loopback name (a DNS-rebinding page, which
// arrives under its own name, cannot read it), a WebSocket's Origin must be this same origin (no other
// site can open one in a visitor's browser), and the page runs under a Content-Security-Policy
// that allows only 'self' (the inline import map is allowed by its SHA-256, computed here).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import type { Site } from "../../../model/site/model";
import type { NublarEvent } from "../../../model/events/schema";
import { projectPath } from "../../../model/project";
import { applyEvent, initialView, isEmptyDelta, STREAM_LIMIT, type DashboardDelta, type DashboardView } from "./model";

export interface DashboardOptions {
    site: Site;
    /** Loopback only: `::1` (default), `localhost` or an address in 127.0.0.0/8. */
    host?: string;
    /** 0 (default): any free port. */
    port?: number;
    /** Deltas published within this window go out as one message (default 50 ms). */
    batchMs?: number;
    /** A client with more than this queued is sent a fresh snapshot once it drains, not every delta (default 1 MiB). */
    maxBufferedBytes?: number;
    /**
     * The most sessions, nodes and alerts one batched delta holds (default 1024): a flood that
     * changes more within one batch is sent as a fresh snapshot instead, so what waits to be sent
     * stays bounded however many keys the events name.
     */
    maxPendingKeys?: number;
}

export interface DashboardServerStats {
    clients: number;
    /** Clients skipping deltas until their send buffer drains; they get a snapshot then. */
    lagging: number;
    /** Messages sent, by kind, to all clients. */
    snapshots: number;
    deltas: number;
    /** Batches that changed more than maxPendingKeys entries, sent as snapshots instead. */
    resyncs: number;
    /** Events that made applyEvent throw (none expected; counted rather than crashing the feed). */
    errors: number;
}

export interface Dashboard {
    /** `http://[::1]:<port>/` */
    url: string;
    /** Folds one event into the view and schedules a delta to every browser. */
    publish(e: NublarEvent): void;
    close(): Promise<void>;
    clients(): number;
    stats(): DashboardServerStats;
    /** The current view (the object /api/view serialises). */
    view(): DashboardView;
}

export class DashboardError extends Error {
    override name = "DashboardError";
}

const WEB_DIR = projectPath("runtime", "events", "dashboard", "web");
/** The tab icon: three nodes on two links, in the page's colours. */
const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#0b3d5c"/>` +
    `<path d="M9 22 16 10 23 22" stroke="#4ac26b" stroke-width="2.5" fill="none"/>` +
    `<circle cx="16" cy="10" r="4" fill="#fff"/><circle cx="9" cy="22" r="4" fill="#fff"/><circle cx="23" cy="22" r="4" fill="#fff"/></svg>`;
const PING_MS = 30_000;

const loopback = new net.BlockList();
loopback.addAddress("::1", "ipv6");
loopback.addSubnet("127.0.0.0", 8, "ipv4");

export function isLoopbackHost(host: string): boolean {
    if (host === "localhost") return true;
    const family = net.isIP(host);
    return family !== 0 && loopback.check(host, family === 6 ? "ipv6" : "ipv4");
}

interface Asset {
    body: Buffer;
    type: string;
}

const TYPES: Record<string, string> = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
};

/** The vendored ESM builds, by the URL the import map gives them. */
function vendorFiles(): Record<string, string> {
    const preactDist = path.dirname(require.resolve("preact"));
    const hooksDist = path.dirname(require.resolve("preact/hooks"));
    const htmDist = path.dirname(require.resolve("htm"));
    return {
        "/vendor/preact.js": path.join(preactDist, "preact.module.js"),
        "/vendor/preact-hooks.js": path.join(hooksDist, "hooks.module.js"),
        "/vendor/htm.js": path.join(htmDist, "htm.module.js"),
    };
}

/** Every file the page needs, read once at startup, and the CSP that allows exactly them. */
function loadAssets(): { assets: Map<string, Asset>; csp: string } {
    const assets = new Map<string, Asset>();
    const read = (file: string) => {
        try {
            return fs.readFileSync(file);
        } catch (err) {
            throw new DashboardError(`dashboard: cannot read ${file}: ${(err as Error).message}`);
        }
    };
    for (const name of ["index.html", "app.js", "style.css"]) {
        assets.set(name === "index.html" ? "/" : `/${name}`, { body: read(path.join(WEB_DIR, name)), type: TYPES[path.extname(name)] });
    }
    for (const [url, file] of Object.entries(vendorFiles())) assets.set(url, { body: read(file), type: TYPES[".js"] });
    assets.set("/favicon.svg", { body: Buffer.from(FAVICON), type: "image/svg+xml" });
    // Browsers do not load import maps from a file (`<script type="importmap" src>` is not
    // supported), so the map is inline, and the CSP allows that one script by its hash.
    const html = assets.get("/")!.body.toString("utf8");
    const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
    if (!map) throw new DashboardError(`dashboard: ${path.join(WEB_DIR, "index.html")} has no <script type="importmap">`);
    const hash = crypto.createHash("sha256").update(map[1], "utf8").digest("base64");
    const csp = [
        "default-src 'none'",
        `script-src 'self' 'sha256-${hash}'`,
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ].join("; ");
    return { assets, csp };
}

/**
 * mergeDelta (./model.ts) in place, into the server's own pending delta: the cost of an event is
 * the size of its delta, not of the batch. Returns how many new keys the batch has now.
 */
function mergeInto(into: DashboardDelta, d: DashboardDelta): number {
    let added = 0;
    const merge = <T>(to: Record<string, T>, from: Record<string, T>) => {
        for (const [k, v] of Object.entries(from)) {
            if (!Object.prototype.hasOwnProperty.call(to, k)) added++;
            to[k] = v;
        }
    };
    if (d.sessions) merge((into.sessions ??= {}), d.sessions);
    if (d.nodes) merge((into.nodes ??= {}), d.nodes);
    if (d.alerts) merge((into.alerts ??= {}), d.alerts);
    if (d.events) {
        const events = (into.events ??= []);
        events.push(...d.events);
        if (events.length > STREAM_LIMIT) events.splice(0, events.length - STREAM_LIMIT);
    }
    if (d.counts) into.counts = d.counts;
    if (d.stats) into.stats = d.stats;
    return added;
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
    const host = opts.host ?? "::1";
    if (!isLoopbackHost(host)) {
        throw new DashboardError(
            `dashboard: refusing to listen on '${host}': it has no authentication, so it listens on loopback only ` +
            "(::1, localhost or 127.0.0.0/8). To view it from another machine, tunnel to it: ssh -L 8080:[::1]:<port> <this host>",
        );
    }
    const batchMs = opts.batchMs ?? 50;
    const maxBuffered = opts.maxBufferedBytes ?? 1 << 20;
    const maxPendingKeys = opts.maxPendingKeys ?? 1024;
    const { assets, csp } = loadAssets();
    const view = initialView(opts.site);
    const counters = { snapshots: 0, deltas: 0, resyncs: 0, errors: 0 };

    /**
     * Host header values this server answers to: a loopback name, any port (an SSH tunnel's local
     * port differs from ours). A DNS-rebinding page arrives under its own name and is refused.
     */
    const hostOk = (h: string | undefined) => !!h && /^(\[::1\]|localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d{1,5})?$/i.test(h);

    const securityHeaders = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    };
    const reply = (res: http.ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
        res.writeHead(status, { ...securityHeaders, "Content-Type": type, "Content-Length": Buffer.byteLength(body), "Cache-Control": "no-store", ...extra });
        res.end(res.req.method === "HEAD" ? undefined : body);
    };

    const server = http.createServer((req, res) => {
        if (!hostOk(req.headers.host)) return reply(res, 421, "text/plain; charset=utf-8", "unknown Host: the dashboard answers on loopback only\n");
        if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "text/plain; charset=utf-8", "method not allowed\n", { Allow: "GET, HEAD" });
        const url = new URL(req.url ?? "/", "http://localhost");
        if (url.pathname === "/api/view") return reply(res, 200, "application/json; charset=utf-8", JSON.stringify(view));
        const asset = assets.get(url.pathname === "/index.html" ? "/" : url.pathname);
        if (!asset) return reply(res, 404, "text/plain; charset=utf-8", "not found\n");
        reply(res, 200, asset.type, asset.body);
    });
    // Requests are small: a slow or idle peer must not hold a socket for long.
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;

    interface Client {
        ws: WebSocket;
        lagging: boolean;
        alive: boolean;
    }
    const clients = new Set<Client>();
    const wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false });

    const refuse = (socket: Duplex, status: number, why: string) => {
        const body = `${why}\n`;
        socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    server.on("upgrade", (req, socket, head) => {
        socket.on("error", () => socket.destroy());
        const hostHeader = req.headers.host ?? "";
        if (new URL(req.url ?? "/", "http://localhost").pathname !== "/ws") return refuse(socket, 404, "not found");
        if (!hostOk(hostHeader)) return refuse(socket, 421, "unknown Host: the dashboard answers on loopback only");
        // Browsers always send Origin on a WebSocket; it must be this page's own origin.
        if (req.headers.origin !== `http://${hostHeader}`) return refuse(socket, 403, `origin ${JSON.stringify(req.headers.origin ?? null)} is not allowed`);
        wss.handleUpgrade(req, socket, head, (ws) => {
            const c: Client = { ws, lagging: false, alive: true };
            clients.add(c);
            ws.on("pong", () => (c.alive = true));
            ws.on("close", () => clients.delete(c));
            ws.on("error", () => ws.terminate());
            ws.on("message", () => undefined); // the page sends nothing; maxPayload bounds what it could
            flush(); // whatever is pending goes to the others first, so the snapshot is the newest state
            sendSnapshot(c);
        });
    });

    let seq = 0;
    const sendSnapshot = (c: Client) => {
        c.lagging = false;
        counters.snapshots++;
        c.ws.send(JSON.stringify({ type: "snapshot", seq, view }));
    };

    // Batching: the first delta after a quiet period goes out at once (next tick); more within
    // batchMs of the last message are merged into one, so a flap storm sends at most one message
    // per batchMs however many events it has.
    let pending: DashboardDelta | null = null;
    let pendingKeys = 0;
    /** The batch outgrew maxPendingKeys: everyone gets a snapshot instead. */
    let resync = false;
    let timer: NodeJS.Timeout | undefined;
    let lastFlush = 0;
    function flush() {
        if (timer) clearTimeout(timer);
        timer = undefined;
        if (resync) {
            resync = false;
            lastFlush = performance.now();
            seq++;
            counters.resyncs++;
            for (const c of clients) {
                if (c.ws.readyState !== WebSocket.OPEN) continue;
                if (c.lagging || c.ws.bufferedAmount > maxBuffered) c.lagging = true; // its snapshot comes when it drains
                else sendSnapshot(c);
            }
            return;
        }
        if (!pending) return;
        const delta = pending;
        pending = null;
        pendingKeys = 0;
        lastFlush = performance.now();
        seq++;
        let msg: string | undefined;
        for (const c of clients) {
            if (c.ws.readyState !== WebSocket.OPEN) continue;
            if (c.lagging || c.ws.bufferedAmount > maxBuffered) {
                c.lagging = true; // it gets a snapshot when its buffer drains (see the sweep below)
                continue;
            }
            msg ??= JSON.stringify({ type: "delta", seq, delta });
            counters.deltas++;
            c.ws.send(msg);
        }
    }
    const publish = (e: NublarEvent) => {
        let d: DashboardDelta;
        try {
            d = applyEvent(view, e);
        } catch {
            counters.errors++;
            return;
        }
        if (isEmptyDelta(d)) return;
        if (!resync) {
            pending ??= {};
            pendingKeys += mergeInto(pending, d);
            if (pendingKeys > maxPendingKeys) {
                // More changed than a delta should carry: drop it, send the view itself.
                pending = null;
                pendingKeys = 0;
                resync = true;
            }
        }
        if (!timer) timer = setTimeout(flush, Math.max(0, lastFlush + batchMs - performance.now()));
    };

    // Lagging clients get a snapshot once drained; dead ones (no pong in PING_MS) are dropped.
    let sweeps = 0;
    const sweep = setInterval(() => {
        const ping = ++sweeps % Math.max(1, Math.round(PING_MS / 250)) === 0;
        for (const c of clients) {
            if (c.ws.readyState !== WebSocket.OPEN) continue;
            if (c.lagging && c.ws.bufferedAmount <= maxBuffered / 2) sendSnapshot(c);
            if (ping) {
                if (!c.alive) c.ws.terminate();
                c.alive = false;
                c.ws.ping();
            }
        }
    }, 250);
    sweep.unref();

    await new Promise<void>((resolve, reject) => {
        server.once("error", (err: NodeJS.ErrnoException) => reject(new DashboardError(`dashboard: cannot listen on [${host}]:${opts.port ?? 0}: ${err.message}`)));
        server.listen({ host, port: opts.port ?? 0 }, () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    const urlHost = net.isIPv6(host) ? `[${host}]` : host;

    let closing: Promise<void> | undefined;
    return {
        url: `http://${urlHost}:${port}/`,
        publish,
        clients: () => clients.size,
        stats: () => ({ clients: clients.size, lagging: [...clients].filter((c) => c.lagging).length, ...counters }),
        view: () => view,
        close: () => (closing ??= new Promise<void>((resolve) => {
            clearInterval(sweep);
            if (timer) clearTimeout(timer);
            for (const c of clients) c.ws.terminate();
            wss.close();
            server.close(() => resolve());
            server.closeAllConnections();
        })),
    };
}
