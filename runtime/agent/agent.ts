// nublar-agent: one per node. It keeps the node's BFD sessions (node-bfd) and applies what
// reconcile.ts decides: kernel routes and address lifetimes over rtnetlink, and Nginx
// upstream members over Nginx's local control socket. It serves its state, metrics and
// events on a unix socket (api.ts).
//
// Failure behaviour:
// - while the agent is down, installed routes stay (fail-static), and Nginx keeps its sets;
// - on start it reads the kernel's routes (our protocol number only) and Nginx's sets, and
//   keeps them through the startup grace while sessions come Up;
// - on SIGTERM it takes its sessions AdminDown, so that peers keep their routes to us
//   (RFC 5882 §3.2) while we restart.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { BfdService, GTSM_TABLE, gtsmRuleset, type SessionSnapshot, type SessionSpec, type StateChange } from "node-bfd";
import { BFD_KEY_CREDENTIAL, NGINX_CONTROL_TOKEN_CREDENTIAL, type AgentConfig } from "../../model/network/agent-config";
import { defaultControlTokenFile } from "../../model/network/nginx-conf";
import { bfdEventOf, EventLog } from "./events";
import { Kernel, type KernelEvent } from "./kernel";
import { AgentMetrics } from "./metrics";
import { NginxControl } from "./nginx-control";
import { desiredState, diffRoutes, initialHealth, onStateChange, routeKey, upstreamPush, type DesiredState, type SessionHealth, type UpstreamPush } from "./reconcile";

export interface AgentOptions {
    /** Niceness of node-bfd's timer thread (negative needs root). Default -10. */
    bfdNiceness?: number;
    /** SCHED_FIFO priority of node-bfd's timer thread (needs root); undefined: not real-time. */
    bfdRealtimePriority?: number;
    /** Install the GTSM nftables rule (default true). */
    gtsm?: boolean;
    /** Re-check everything at least this often, to repair drift (ms). */
    resyncMs?: number;
    log?: (line: string) => void;
    /** Called when the agent cannot go on (node-bfd's worker died); the daemon exits. */
    onFatal?: (err: Error) => void;
}

export class Agent {
    readonly events: EventLog;
    readonly metrics = new AgentMetrics();
    readonly startedAt = Date.now();
    private readonly health = new Map<string, SessionHealth>();
    private readonly nginx?: NginxControl;
    /** What Nginx holds, as last read or pushed. */
    private pushed: Record<string, string[]> | undefined;
    /** Upstreams in panic now: no member live, every member pushed (panic routing). */
    private readonly inPanic = new Set<string>();
    private running = false;
    private dirty = false;
    private wakeTimer?: NodeJS.Timeout;
    private resyncTimer?: NodeJS.Timeout;
    private stopped = false;

    private constructor(readonly config: AgentConfig, private readonly kernel: Kernel, private readonly bfd: BfdService, nginxToken: string | undefined) {
        this.events = new EventLog(config.node, config.paths.events);
        if (config.paths.nginxControl) this.nginx = new NginxControl(config.paths.nginxControl, nginxToken!);
        for (const s of config.sessions) this.health.set(s.id, initialHealth());
    }

    static async start(config: AgentConfig, opts: AgentOptions = {}): Promise<Agent> {
        const log = opts.log ?? (() => undefined);
        // Secrets first, before anything touches the system: a session configured for
        // authentication never runs without its key, and Nginx never without its token.
        const key = config.pathAuth && config.sessions.some(needsAuth) ? readSecret(BFD_KEY_CREDENTIAL, config.pathAuth.keyFile) : undefined;
        const specs = sessionSpecs(config, key);
        if (key) log(`path sessions authenticated with ${config.pathAuth!.type}, key id ${config.pathAuth!.keyId}, from ${key.from}`);
        const nginxToken = config.paths.nginxControl ? readNginxControlToken(config) : undefined;
        const kernel = await Kernel.open();
        if (opts.gtsm !== false) installGtsm();
        await kernel.ensureAddress("lo", config.loopback, 128);
        const bfd = await BfdService.start({ workerNiceness: opts.bfdNiceness ?? -10, workerRealtimePriority: opts.bfdRealtimePriority });
        const agent = new Agent(config, kernel, bfd, nginxToken?.value);
        agent.events.emit("agent", { event: "start", site: config.site, sessions: config.sessions.length, routes: config.routes.length });
        bfd.on("state", (c) => agent.onBfd(c));
        bfd.on("error", (err) => {
            // Without BFD the agent would hold stale decisions: exit, leave routes in place
            // (fail-static), and let the supervisor restart it.
            agent.events.emit("error", { step: "bfd", message: `BFD worker died: ${err.message}` });
            opts.onFatal?.(err);
        });
        kernel.watch((e) => agent.onKernel(e));
        for (const { session: s, spec } of specs) {
            await bfd.add(s.id, spec);
            agent.metrics.sessionState.set({ session: s.id, peer: s.peer, kind: s.kind }, 0);
        }
        if (agent.nginx) {
            try {
                agent.pushed = (await agent.nginx.get()).upstreams;
            } catch (err) {
                agent.events.emit("error", { step: "nginx", message: (err as Error).message });
            }
        }
        agent.resyncTimer = setInterval(() => agent.reconcile("resync"), opts.resyncMs ?? 5000);
        agent.resyncTimer.unref();
        await agent.reconcile("start");
        log(`agent for ${config.node} (site ${config.site}): ${config.sessions.length} BFD sessions, ${config.routes.length} planned routes, ${config.ingress.length} upstreams`);
        return agent;
    }

    private onBfd(c: StateChange): void {
        // node-bfd's names become the vocabulary's here, and only here.
        const mapped = bfdEventOf(c);
        if (!mapped.ok) {
            this.events.emit("error", { step: "bfd", session: c.id, message: mapped.reason }, c.at);
            return;
        }
        const b = mapped.fields;
        const meta = this.config.sessions.find((s) => s.id === b.session);
        const prev = this.health.get(b.session) ?? initialHealth();
        this.health.set(b.session, onStateChange(prev, b.to, b.remoteState, c.at));
        this.metrics.bfdChange({ session: b.session, peer: b.peer, kind: meta?.kind ?? "unknown", to: b.to, diagnostic: b.diagnostic });
        this.events.emit("bfd", b, c.at);
        void this.reconcile(`bfd ${b.session} ${b.to}`);
    }

    private onKernel(e: KernelEvent): void {
        if ("route" in e) {
            if (e.route.protocol !== this.config.routeProtocol) return;
            this.events.emit("route", { event: e.kind, ...e.route }, e.at);
            if (e.kind === "route-removed") void this.reconcile("route removed");
            return;
        }
        this.events.emit("agent", { event: e.kind, link: e.link }, e.at);
        // The kernel flushes routes through a link that goes down, and never restores them.
        void this.reconcile(`${e.kind} ${e.link}`);
    }

    /** Apply the desired state. Runs one at a time; a request during a run causes one more run. */
    async reconcile(reason: string): Promise<void> {
        if (this.stopped) return;
        if (this.running) {
            this.dirty = true;
            return;
        }
        this.running = true;
        try {
            do {
                this.dirty = false;
                await this.reconcileOnce(reason);
            } while (this.dirty && !this.stopped);
        } finally {
            this.running = false;
        }
    }

    private async reconcileOnce(reason: string): Promise<void> {
        this.metrics.reconciles.inc();
        const now = Date.now();
        const d = desiredState(this.config, this.health, { now, startedAt: this.startedAt });
        // Nginx first: excluding a dead member is what clients feel; then the kernel.
        await Promise.all([this.applyNginx(d, reason), this.applyRoutes(d, reason), this.applyAddresses(d)]);
        if (this.wakeTimer) clearTimeout(this.wakeTimer);
        this.wakeTimer = undefined;
        if (d.wakeAt !== undefined) {
            this.wakeTimer = setTimeout(() => this.reconcile("timer"), Math.max(1, d.wakeAt - Date.now() + 1));
        }
    }

    private async applyNginx(d: DesiredState, reason: string): Promise<void> {
        if (!this.nginx) return;
        try {
            // Read back what Nginx holds on start, after an error, and on every resync: a
            // restarted Nginx has lost its sets.
            if (!this.pushed || reason === "resync") this.pushed = (await this.nginx.get()).upstreams;
        } catch (err) {
            this.metrics.reconcileErrors.inc({ step: "nginx" });
            this.events.emit("error", { step: "nginx", message: (err as Error).message });
            return;
        }
        for (const u of this.config.ingress) {
            const current = this.pushed[u.name] ?? [];
            const push = upstreamPush(u, d.members, current);
            const want = push.members;
            if (!sameSet(want, current)) {
                try {
                    // Nginx may use the new set as soon as it stores it, before the reply arrives:
                    // the event records both ends of that window.
                    const requestedAt = performance.timeOrigin + performance.now();
                    const version = await this.nginx.put(u.name, want);
                    this.pushed[u.name] = want;
                    this.metrics.nginxPushes.inc({ result: "ok" });
                    const removed = current.filter((m) => !want.includes(m));
                    this.events.emit("nginx", { upstream: u.name, members: want, removed, added: want.filter((m) => !current.includes(m)), version, reason, requestedAt, ...(push.panic ? { panic: true } : {}) });
                    if (removed.length) void this.abortConnections(u.name, removed);
                } catch (err) {
                    // Unknown state now: read it back on the next pass.
                    this.pushed = undefined;
                    this.metrics.nginxPushes.inc({ result: "error" });
                    this.metrics.reconcileErrors.inc({ step: "nginx" });
                    this.events.emit("error", { step: "nginx", upstream: u.name, message: (err as Error).message });
                    return;
                }
            }
            this.notePanic(u.name, push, reason);
        }
    }

    /** Say when an upstream enters panic (no member live: every member used) and when it leaves. */
    private notePanic(upstream: string, push: UpstreamPush, reason: string): void {
        if (push.panic === this.inPanic.has(upstream)) return;
        if (push.panic) {
            this.inPanic.add(upstream);
            this.events.emit("nginx", { upstream, event: "panic-start", members: push.members, live: push.live, reason, why: `no live member: sending to all ${push.members.length} (panic routing)` });
        } else {
            this.inPanic.delete(upstream);
            this.events.emit("nginx", { upstream, event: "panic-end", members: push.members, live: push.live, reason, why: `${push.live.length} member${push.live.length === 1 ? "" : "s"} live again: sending to live members only` });
        }
    }

    /**
     * Requests in flight to a member that just died would wait for a reply that never comes
     * (the peer cannot even send a reset). Destroying those sockets (`ss -K`, the kernel's
     * sock_destroy) fails them at once, and Nginx's proxy_next_upstream retries them on a
     * live member. Idle keepalive connections to the dead member go too.
     */
    private async abortConnections(upstream: string, members: string[]): Promise<void> {
        for (const m of members) {
            const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
                const child = spawn("ss", ["-H", "-K", "-t", "dst", m], { stdio: ["ignore", "pipe", "pipe"] });
                let out = "";
                child.stdout.on("data", (c) => (out += c));
                child.stderr.on("data", (c) => (out += c));
                child.on("error", (err) => resolve({ code: -1, out: err.message }));
                child.on("close", (code) => resolve({ code, out }));
            });
            if (r.code === 0) {
                const count = r.out.split("\n").filter((l) => l.trim()).length;
                this.events.emit("nginx", { upstream, event: "connections-aborted", member: m, count });
            } else {
                this.metrics.reconcileErrors.inc({ step: "abort-connections" });
                this.events.emit("error", { step: "abort-connections", member: m, message: r.out.trim() });
            }
        }
    }

    private async applyRoutes(d: DesiredState, reason: string): Promise<void> {
        let installed;
        try {
            installed = await this.kernel.routes(this.config.routeProtocol);
        } catch (err) {
            this.metrics.reconcileErrors.inc({ step: "routes" });
            this.events.emit("error", { step: "routes", message: `cannot read routes: ${(err as Error).message}` });
            return;
        }
        const diff = diffRoutes(d.routes, installed);
        // Withdraw first, so that traffic moves to the backup at once.
        for (const r of diff.remove) {
            try {
                await this.kernel.deleteRoute(r);
                this.metrics.routeChanges.inc({ op: "withdraw" });
            } catch (err) {
                if (!/ESRCH/.test((err as Error).message)) {
                    this.metrics.reconcileErrors.inc({ step: "routes" });
                    this.events.emit("error", { step: "routes", route: routeKey(r), message: (err as Error).message });
                }
            }
        }
        for (const r of diff.add) {
            try {
                await this.kernel.setRoute(r, this.config.routeProtocol);
                this.metrics.routeChanges.inc({ op: "install" });
            } catch (err) {
                // ENETDOWN: the link is down; the link-up event brings us back.
                this.metrics.reconcileErrors.inc({ step: "routes" });
                this.events.emit("error", { step: "routes", route: r.id, message: (err as Error).message, reason });
            }
        }
    }

    private readonly deprecated = new Map<string, boolean>();

    private async applyAddresses(d: DesiredState): Promise<void> {
        for (const u of this.config.uplinks) {
            const want = d.deprecatedUplinks.includes(u.provider);
            if (this.deprecated.get(u.provider) === want) continue;
            try {
                const addr = (await this.kernel.addresses(u.ifname)).find((a) => a.address === u.address);
                if (!addr) continue;
                if (addr.deprecated !== want) await this.kernel.setDeprecated(u.ifname, u.address, addr.prefixLength, want);
                this.deprecated.set(u.provider, want);
                this.events.emit("address", { uplink: u.provider, address: u.address, preferred: !want });
            } catch (err) {
                this.metrics.reconcileErrors.inc({ step: "addresses" });
                this.events.emit("error", { step: "addresses", uplink: u.provider, message: (err as Error).message });
            }
        }
    }

    /** Everything `nublar bfd peers`, `routes` and `ingress` show. */
    async state(): Promise<AgentState> {
        const snapshot = await this.bfd.snapshot();
        const byId = new Map(snapshot.sessions.map((s) => [s.id, s]));
        const now = Date.now();
        const d = desiredState(this.config, this.health, { now, startedAt: this.startedAt });
        let installed: Awaited<ReturnType<Kernel["routes"]>> = [];
        try {
            installed = await this.kernel.routes(this.config.routeProtocol);
        } catch {
            // shown as not installed
        }
        const have = new Set(installed.map((r) => `${routeKey(r)} via ${r.via} dev ${r.dev}`));
        return {
            node: this.config.node,
            site: this.config.site,
            startedAt: this.startedAt,
            loopback: this.config.loopback,
            sessions: this.config.sessions.map((s) => ({
                ...s,
                bfd: byId.get(s.id),
            })),
            routes: d.routes.map((v) => ({
                id: v.route.id, destination: v.route.destination, source: v.route.source, via: v.route.via, dev: v.route.dev, metric: v.route.metric,
                session: v.route.session, reason: v.route.reason, decision: v.decision, why: v.why,
                installed: have.has(`${routeKey(v.route)} via ${v.route.via} dev ${v.route.dev}`),
            })),
            ingress: this.config.ingress.map((u) => ({
                name: u.name, port: u.port,
                pushed: this.pushed?.[u.name],
                ...(u.panic ? { panic: this.inPanic.has(u.name) } : {}),
                members: d.members.filter((m) => m.upstream === u.name).map((m) => ({ node: m.node, address: m.address, decision: m.decision, why: m.why, live: !this.inPanic.has(u.name) && (this.pushed?.[u.name]?.includes(m.address) ?? false) })),
            })),
            uplinks: this.config.uplinks.map((u) => ({ ...u, deprecated: d.deprecatedUplinks.includes(u.provider) })),
            // How late the BFD timers ran since the previous /state (a stalled thread shows here first).
            bfdWorker: { loopDelayMs: snapshot.loopDelayMs, priority: snapshot.priority, unmatchedDrops: snapshot.unmatchedDrops },
        };
    }

    /** Graceful stop: sessions go AdminDown (peers keep their routes to us), routes stay. */
    /** Each BFD session's longest receive gap since the last call (node-bfd), for path-latency telemetry. */
    rxGaps() {
        return this.bfd.rxGaps();
    }

    async stop(): Promise<void> {
        if (this.stopped) return;
        this.stopped = true;
        if (this.wakeTimer) clearTimeout(this.wakeTimer);
        if (this.resyncTimer) clearInterval(this.resyncTimer);
        this.events.emit("agent", { event: "stop" });
        const detectMs = this.config.timers.transmitIntervalMs * this.config.timers.detectMultiplier;
        await Promise.all(this.config.sessions.map((s) => this.bfd.remove(s.id).catch(() => undefined)));
        // Let the AdminDown packets reach the peers before the sockets close.
        await new Promise((r) => setTimeout(r, Math.max(50, 2 * detectMs)));
        await this.bfd.stop();
        this.kernel.close();
        this.events.close();
    }
}

export interface AgentState {
    node: string;
    site: string;
    startedAt: number;
    loopback: string;
    sessions: (AgentConfig["sessions"][number] & { bfd?: SessionSnapshot })[];
    routes: {
        id: string; destination: string; source?: string; via: string; dev: string; metric: number;
        session?: string; reason: string; decision: string; why: string; installed: boolean;
    }[];
    /** panic: present when the upstream has panic routing on; true while it is in panic. */
    ingress: { name: string; port: number; pushed?: string[]; panic?: boolean; members: { node: string; address: string; decision: string; why: string; live: boolean }[] }[];
    uplinks: (AgentConfig["uplinks"][number] & { deprecated: boolean })[];
    bfdWorker: { loopDelayMs: { p50: number; p99: number; max: number }; priority: string; unmatchedDrops: Record<string, number> };
}

function sameSet(a: string[], b: string[]): boolean {
    return a.length === b.length && a.every((x) => b.includes(x));
}

/** Path sessions are authenticated whether they run inside a tunnel (single-hop) or across
 * providers (multihop): a tunnel such as VXLAN does not authenticate its peers. */
export function needsAuth(s: AgentConfig["sessions"][number]): boolean {
    return s.kind === "path" || s.multihop;
}

export class AgentSecretError extends Error {
    override name = "AgentSecretError";
}

/** A secret as the agent read it: its text, and where it came from (for messages; never the text). */
export interface Secret {
    value: string;
    from: string;
}

/**
 * Read one of the agent's secrets. Started with credentials (systemd's LoadCredential=, the
 * lab's startAgent: $CREDENTIALS_DIRECTORY, a folder only the agent's user can read), the
 * agent reads its private copy there; otherwise (run by hand, as root) the source file.
 */
export function readSecret(id: string, sourceFile: string, env: NodeJS.ProcessEnv = process.env): Secret {
    const dir = env.CREDENTIALS_DIRECTORY;
    const file = dir ? path.join(dir, id) : sourceFile;
    const from = dir ? `credential ${id} (${file}, loaded from ${sourceFile})` : sourceFile;
    try {
        return { value: fs.readFileSync(file, "utf8").trim(), from };
    } catch (err) {
        throw new AgentSecretError(`cannot read ${from}: ${(err as Error).message}`);
    }
}

/** Nginx's control token; without it the agent could not set a single member. */
function readNginxControlToken(config: AgentConfig): Secret {
    const source = config.paths.nginxControlToken ?? defaultControlTokenFile(config.paths.nginxControl!);
    const token = readSecret(NGINX_CONTROL_TOKEN_CREDENTIAL, source);
    if (!token.value) throw new AgentSecretError(`Nginx's control token is empty: ${token.from}`);
    return token;
}

/**
 * Each session's node-bfd spec. A session that needs authentication gets the config's key;
 * one configured for authentication (pathAuth) whose key is missing or empty is refused,
 * naming it and the key file, rather than run unauthenticated. Only without pathAuth at all
 * (which the nublar-sla pack refuses for real sites) does it run without.
 */
export function sessionSpecs(config: AgentConfig, key: Secret | undefined): { session: AgentConfig["sessions"][number]; spec: SessionSpec }[] {
    const auth = config.pathAuth;
    const unkeyed = auth ? config.sessions.filter(needsAuth) : [];
    if (auth && unkeyed.length && !key?.value) {
        const names = unkeyed.map((s) => s.id);
        const shown = names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
        const many = names.length > 1;
        throw new AgentSecretError(`${many ? "sessions" : "session"} ${shown} ${many ? "are" : "is"} configured for ${auth.type} authentication (pathAuth), but its BFD key is ${key ? "empty" : "missing"}: ${key?.from ?? auth.keyFile}. Refusing to run ${many ? "them" : "it"} unauthenticated.`);
    }
    return config.sessions.map((s) => {
        const spec: SessionSpec = {
            peer: s.peer, local: s.local, interface: s.interface, multihop: s.multihop,
            transmitIntervalMs: config.timers.transmitIntervalMs, receiveIntervalMs: config.timers.receiveIntervalMs, detectMultiplier: config.timers.detectMultiplier,
        };
        if (needsAuth(s)) {
            if (auth) spec.auth = { type: auth.type, keys: [{ id: auth.keyId, secret: key!.value }], sendKeyId: auth.keyId };
            else spec.allowUnauthenticated = true;
        }
        return { session: s, spec };
    });
}

/** The GTSM rule for single-hop BFD (node-bfd cannot read the hop limit itself). */
function installGtsm(): void {
    // Declare, delete and re-create the table, so that a restart replaces the rule, not adds a copy.
    const input = `table inet ${GTSM_TABLE}\ndelete table inet ${GTSM_TABLE}\n${gtsmRuleset()}`;
    const r = spawnSync("nft", ["-f", "-"], { input, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cannot install the GTSM nftables rule: ${(r.stderr || r.error?.message || "").trim()}`);
}
