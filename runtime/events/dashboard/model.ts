// The dashboard's view of a park: pure and deterministic. `initialView` lays out what the site
// plan says exists (nodes, providers, uplinks, every BFD session, ingress upstreams), all in
// state Unknown; `applyEvent` folds one bus event into it, in place, and returns the delta that
// changed, which the server coalesces and sends to browsers (runtime/events/dashboard/server.ts).
//
// Rules that keep it honest under at-least-once delivery:
// - an event id seen among the last ID_WINDOW ids is a duplicate and changes nothing;
// - a bfd-change at or before the session's last change (event time, then agent seq: `supersedes`
//   in model/events/schema.ts, the alert detector's rule too) does not roll its state back, and a
//   path-latency sample at or before the last one does not replace it;
// - events for another site are ignored (counted in stats), events for a node the site does not
//   have go to the stream only;
// - what the plan does not have is kept, but only so much of it, whatever the bus sends: at most
//   UNPLANNED_SESSIONS sessions, UNPLANNED_ROUTES route names and UNPLANNED_UPSTREAMS upstreams per
//   node, and OPEN_ALERTS alerts from the bus; beyond that the least recently changed goes (a
//   session or an alert leaves with `null` in the delta), and the event is in the stream as ever.
// Metrics (path-latency, sensor-reading) update the view but do not enter the event stream:
// they arrive every second and would push every change out of it.
import { planAgents } from "../../../model/network/agent-plan";
import { planSite } from "../../../model/network/site-plan";
import type { Site } from "../../../model/site/model";
import { supersedes, type Alert, type EventOf, type EventType, type NublarEvent } from "../../../model/events/schema";
import {
    DIAGNOSTICS, isBfdStateSymbol, parseSessionId, ROUTE_EVENTS,
    type BfdStateSymbol, type Diagnostic, type RouteEvent, type RouteOutcome, type SessionKind,
} from "../../../model/vocabulary";

/** A session's state on the dashboard: the envelope's BFD state (model/vocabulary.ts), or Unknown until an agent reports one. */
export type SessionState = BfdStateSymbol | "Unknown";

/** The tone of each state, in the order the page lists them (its counts and legend follow this order). */
const STATE_TONE: Readonly<Record<SessionState, Tone>> = { Up: "good", Down: "bad", Init: "warn", AdminDown: "info", Unknown: "info" };
export const SESSION_STATES = Object.keys(STATE_TONE) as readonly SessionState[];

/** The event stream keeps this many, oldest first. */
export const STREAM_LIMIT = 200;
/** Route changes kept per node. */
export const RECENT_ROUTES = 10;
/** How many recent event ids are remembered to drop redeliveries. */
export const ID_WINDOW = 4096;
/** Free text from the bus is cut to this many characters before it reaches a browser. */
const TEXT_LIMIT = 2000;
/** Sessions the site plan does not have (reported by agents anyway), kept at most, over the whole view. */
export const UNPLANNED_SESSIONS = 64;
/** Route names a node's plan does not have, kept at most per node. */
export const UNPLANNED_ROUTES = 64;
/** Ingress upstreams a node's plan does not have, kept at most per node. */
export const UNPLANNED_UPSTREAMS = 16;
/** Open alerts from the bus kept at most (the dashboard's own, one per Down session at most, come on top). */
export const OPEN_ALERTS = 256;

export interface SessionView {
    node: string;
    /** The agent's session id: `gw/<provider>` or `path/<peer node>/<provider>` (model/vocabulary.ts sessionId). */
    id: string;
    kind: SessionKind;
    provider: string;
    /** The peer node of a path session; the provider of a gateway session. */
    peer: string;
    /** False for a session the site plan does not have (reported by an agent anyway). */
    planned: boolean;
    state: SessionState;
    remoteState: BfdStateSymbol | null;
    /** Why the session last changed; null when there was nothing to say (diagnostic "ok"). */
    diagnostic: Diagnostic | null;
    /** Event time of the last state change, µs since the epoch, and the agent's seq of it. */
    since: number | null;
    seq: number | null;
    transitions: number;
    rttMs: number | null;
    maxGapMs: number | null;
    detectionMs: number | null;
    /** Event time of the last path-latency report. */
    latencyAt: number | null;
}

export interface RouteEntry {
    time: number;
    event: RouteEvent;
    outcome: RouteOutcome;
    route: string;
    prefix: string | null;
    via: string | null;
    metric: number | null;
    reason: string | null;
}

export interface IngressMemberView {
    node: string;
    /** `[loopback]:port`, as Nginx dials it. */
    address: string;
}

export interface IngressView {
    upstream: string;
    port: number | null;
    /** The members the site plans for this upstream. */
    configured: IngressMemberView[];
    /** The members the agent last reported live; null until it reports. */
    members: string[] | null;
    /** Configured member nodes found (by node name or address) in `members`; null until reported. */
    live: string[] | null;
    event: string | null;
    time: number | null;
    changes: number;
}

export interface NodeView {
    name: string;
    role: string;
    failureDomain: string;
    hub: boolean;
    loopback: string;
    /** Gateway session ids, in uplink order (one per provider). */
    gateways: string[];
    /** Path session ids, in plan order. */
    paths: string[];
    routes: {
        /** Routes in the agent plan (gated and not). */
        planned: number;
        /** Routes whose last event installed them, or withdrew them. */
        installed: number;
        withdrawn: number;
        /** Route events seen. */
        changes: number;
        /** Last outcome per route, as the agent names the route. */
        state: Record<string, RouteOutcome>;
        /** Newest last, at most RECENT_ROUTES. */
        recent: RouteEntry[];
    };
    ingress: IngressView[];
}

export interface AlertView {
    dedupKey: string;
    severity: Alert["severity"];
    class: string;
    summary: string;
    node: string;
    session: string | null;
    details: string;
    /** Event time of the first trigger, and of the last. */
    since: number;
    updated: number;
    triggers: number;
    /** True for the dashboard's own "session down" entry, shown while no bus alert covers that session. */
    derived: boolean;
}

export type Tone = "good" | "bad" | "warn" | "info";

export interface StreamEntry {
    id: string;
    time: number;
    type: NublarEvent["type"];
    source: string;
    node: string | null;
    session: string | null;
    text: string;
    tone: Tone;
}

export interface DashboardStats {
    /** Events that changed the view or entered the stream. */
    applied: number;
    duplicates: number;
    /** bfd-change events older than the session's last change. */
    stale: number;
    /** Events about another site. */
    foreign: number;
    /** Events about a node this site does not have. */
    unknownNode: number;
    lastEventTime: number | null;
}

export interface DashboardView {
    site: string;
    kind: string;
    description: string | null;
    providers: { name: string; prefix: string }[];
    failureDomains: { name: string; nodes: string[] }[];
    /** Node names in site order. */
    nodeOrder: string[];
    nodes: Record<string, NodeView>;
    /** By sessionKey(node, id). */
    sessions: Record<string, SessionView>;
    /** Open alerts by dedupKey. */
    alerts: Record<string, AlertView>;
    /** The stream, oldest first, at most STREAM_LIMIT. */
    events: StreamEntry[];
    counts: Record<SessionState, number>;
    stats: DashboardStats;
}

/** What one or more events changed: maps replace whole entries; `null` removes a session or an alert. */
export interface DashboardDelta {
    sessions?: Record<string, SessionView | null>;
    nodes?: Record<string, NodeView>;
    alerts?: Record<string, AlertView | null>;
    /** New stream entries, oldest first. */
    events?: StreamEntry[];
    counts?: Record<SessionState, number>;
    stats?: DashboardStats;
}

export function sessionKey(node: string, session: string): string {
    return `${node} ${session}`;
}

/** The key of the dashboard's own alert for a session in state Down. */
export function derivedAlertKey(node: string, session: string): string {
    return `dashboard/session-down/${node}/${session}`;
}

const emptyCounts = (): Record<SessionState, number> => Object.fromEntries(SESSION_STATES.map((s) => [s, 0])) as Record<SessionState, number>;

/** The site as planned, every session Unknown. Throws what the planners throw for an unplannable site. */
export function initialView(site: Site): DashboardView {
    const plan = planSite(site);
    const agents = planAgents(site, { paths: () => ({ socket: "-", events: "-" }) }, plan);
    const nodes: Record<string, NodeView> = {};
    const sessions: Record<string, SessionView> = {};
    const counts = emptyCounts();
    for (const n of plan.nodes) {
        const cfg = agents.find((a) => a.node === n.name)!;
        nodes[n.name] = {
            name: n.name, role: n.role, failureDomain: n.failureDomain, hub: n.hub, loopback: n.loopback,
            gateways: cfg.sessions.filter((s) => s.kind === "gateway").map((s) => s.id),
            paths: cfg.sessions.filter((s) => s.kind === "path").map((s) => s.id),
            routes: { planned: cfg.routes.length, installed: 0, withdrawn: 0, changes: 0, state: {}, recent: [] },
            ingress: cfg.ingress.map((u) => ({
                upstream: u.name, port: u.port, configured: u.members.map((m) => ({ node: m.node, address: m.address })),
                members: null, live: null, event: null, time: null, changes: 0,
            })),
        };
        for (const s of cfg.sessions) {
            sessions[sessionKey(n.name, s.id)] = {
                node: n.name, id: s.id, kind: s.kind, provider: s.provider, peer: s.kind === "path" ? s.peerNode ?? s.peer : s.provider,
                planned: true, state: "Unknown", remoteState: null, diagnostic: null, since: null, seq: null, transitions: 0,
                rttMs: null, maxGapMs: null, detectionMs: null, latencyAt: null,
            };
            counts.Unknown++;
        }
    }
    const domains = new Map<string, string[]>();
    for (const n of site.nodes) domains.set(n.failureDomain, [...(domains.get(n.failureDomain) ?? []), n.name]);
    const view: DashboardView = {
        site: site.name,
        kind: site.kind,
        description: site.description ?? null,
        providers: site.providers.map((p) => ({ name: p.name, prefix: p.prefix })),
        failureDomains: [...domains].map(([name, members]) => ({ name, nodes: members })),
        nodeOrder: site.nodes.map((n) => n.name),
        nodes,
        sessions,
        alerts: {},
        events: [],
        counts,
        stats: { applied: 0, duplicates: 0, stale: 0, foreign: 0, unknownNode: 0, lastEventTime: null },
    };
    // What the plan has, by the names the agents' events use (model/network/agent-plan.ts, runtime/agent/outbox.ts).
    const b = boundsOf(view);
    for (const cfg of agents) {
        b.plannedRoutes.set(cfg.node, new Set(cfg.routes.map((r) => `${r.destination}${r.source ? ` from ${r.source}` : ""} metric ${r.metric}`)));
    }
    return view;
}

/**
 * What keeps the view bounded, beside it (not in it, so the view stays plain JSON): the plan's
 * route names per node, and for what the plan does not have, least recently changed first.
 */
interface Bounds {
    plannedRoutes: Map<string, Set<string>>;
    sessions: Map<string, true>;
    routes: Map<string, Map<string, true>>;
    upstreams: Map<string, Map<string, true>>;
    alerts: Map<string, true>;
}
const bounds = new WeakMap<DashboardView, Bounds>();

/** The view's bounds; for a view not made by initialView here (a copy), rebuilt from what it holds. */
function boundsOf(view: DashboardView): Bounds {
    let b = bounds.get(view);
    if (b) return b;
    b = { plannedRoutes: new Map(), sessions: new Map(), routes: new Map(), upstreams: new Map(), alerts: new Map() };
    for (const [k, s] of Object.entries(view.sessions)) if (!s.planned) b.sessions.set(k, true);
    for (const n of Object.values(view.nodes)) {
        if (n.routes.state && Object.keys(n.routes.state).length) b.routes.set(n.name, new Map(Object.keys(n.routes.state).map((r) => [r, true])));
        const unplanned = n.ingress.filter((u) => u.port === null && u.configured.length === 0);
        if (unplanned.length) b.upstreams.set(n.name, new Map(unplanned.map((u) => [u.upstream, true])));
    }
    for (const a of Object.values(view.alerts).filter((x) => !x.derived).sort((x, y) => x.updated - y.updated)) b.alerts.set(a.dedupKey, true);
    bounds.set(view, b);
    return b;
}

/** Marks a key as just changed: it goes last. */
function touch(lru: Map<string, true>, key: string): void {
    lru.delete(key);
    lru.set(key, true);
}

/** The least recently changed key, taken out. */
function takeOldest(lru: Map<string, true>): string | undefined {
    const k = lru.keys().next();
    if (k.done) return undefined;
    lru.delete(k.value);
    return k.value;
}

/** The entry itself, never something inherited (an id such as "__proto__" or "toString" from the bus names nothing). */
function own<T>(map: Record<string, T>, key: string): T | undefined {
    return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

/** Recently seen event ids per view: kept beside the view, not in it, so the view stays plain JSON. */
const seenIds = new WeakMap<DashboardView, { set: Set<string>; ring: string[]; next: number }>();

function remember(view: DashboardView, id: string): boolean {
    let w = seenIds.get(view);
    if (!w) seenIds.set(view, (w = { set: new Set(), ring: [], next: 0 }));
    if (w.set.has(id)) return false;
    if (w.ring.length < ID_WINDOW) w.ring.push(id);
    else {
        w.set.delete(w.ring[w.next]);
        w.ring[w.next] = id;
        w.next = (w.next + 1) % ID_WINDOW;
    }
    w.set.add(id);
    return true;
}

const cut = (s: string | null | undefined): string => {
    const t = String(s ?? "");
    return t.length > TEXT_LIMIT ? `${t.slice(0, TEXT_LIMIT - 1)}…` : t;
};

const asState = (s: unknown): BfdStateSymbol | null => (isBfdStateSymbol(s) ? s : null);

/** What a route event means for the route: the vocabulary's table (model/vocabulary.ts ROUTE_EVENTS). */
export function routeOutcome(event: RouteEvent): RouteOutcome {
    return ROUTE_EVENTS[event];
}

/** A diagnostic worth showing: anything but "ok" (code 0, no diagnostic). */
const shownDiagnostic = (d: Diagnostic): Diagnostic | null => (d === DIAGNOSTICS.noDiagnostic ? null : d);
const diagnosticText = (d: Diagnostic) => {
    const shown = shownDiagnostic(d);
    return shown ? ` (${shown})` : "";
};

/** What a handler gets: the view, the event, its node (when the site has it), the delta to fill, and the stream. */
interface Fold<T extends EventType> {
    view: DashboardView;
    event: EventOf<T>;
    node: NodeView | undefined;
    delta: DashboardDelta;
    /** Adds the event to the stream. */
    entry: (text: string, tone: Tone, session?: string | null) => void;
}

/** One handler per event type: each folds its event into the view, in place, and records what changed in the delta. */
const HANDLERS: { readonly [T in EventType]: (f: Fold<T>) => void } = {
    "bfd-change": onBfdChange,
    "route-change": onRouteChange,
    "ingress-change": onIngressChange,
    "path-latency": onPathLatency,
    alert: onAlert,
    deploy: onDeploy,
    "audit-result": onAuditResult,
    "sensor-reading": () => undefined,
    "agent-notice": () => undefined,
};

/**
 * Folds one event into the view, in place, and returns what changed. Never throws on a
 * well-typed event; an event that changes nothing returns an empty delta.
 */
export function applyEvent(view: DashboardView, event: NublarEvent): DashboardDelta {
    const delta: DashboardDelta = {};
    if (event.site !== view.site) {
        view.stats.foreign++;
        delta.stats = view.stats;
        return delta;
    }
    if (!remember(view, event.id)) {
        view.stats.duplicates++;
        delta.stats = view.stats;
        return delta;
    }
    view.stats.applied++;
    view.stats.lastEventTime = Math.max(view.stats.lastEventTime ?? 0, event.time);
    delta.stats = view.stats;
    const node = "node" in event.payload ? own(view.nodes, event.payload.node) : undefined;
    if ("node" in event.payload && !node && event.type !== "deploy") view.stats.unknownNode++;
    const entry = (text: string, tone: Tone, session: string | null = null) => {
        const e: StreamEntry = {
            id: event.id, time: event.time, type: event.type, source: event.source,
            node: "node" in event.payload ? event.payload.node : null, session, text: cut(text), tone,
        };
        view.events.push(e);
        if (view.events.length > STREAM_LIMIT) view.events.splice(0, view.events.length - STREAM_LIMIT);
        delta.events = [e];
    };
    // The handler for this event's type: the table is keyed by type, so the event fits it.
    (HANDLERS[event.type] as (f: Fold<EventType>) => void)({ view, event, node, delta, entry });
    return delta;
}

function onBfdChange({ view, event, node, delta, entry }: Fold<"bfd-change">): void {
    const p = event.payload;
    const to = asState(p.to);
    entry(`${p.session} ${p.from} → ${p.to}${diagnosticText(p.diagnostic)}`, to ? STATE_TONE[to] : "info", p.session);
    if (!node || !to) return;
    const key = sessionKey(p.node, p.session);
    let s = own(view.sessions, key);
    const b = boundsOf(view);
    if (!s) {
        // Not in the plan: the agent runs a session the site no longer (or not yet) describes.
        // An id that names no session (model/vocabulary.ts parseSessionId) stays in the stream only.
        const id = parseSessionId(p.session);
        if (!id.ok) return;
        const ref = id.session;
        // Kept among the last UNPLANNED_SESSIONS changed: the least recently changed goes.
        while (b.sessions.size >= UNPLANNED_SESSIONS) evictSession(view, takeOldest(b.sessions)!, delta);
        s = view.sessions[key] = {
            node: p.node, id: p.session, kind: ref.kind, provider: ref.provider, peer: ref.kind === "path" ? ref.peerNode : ref.provider,
            planned: false, state: "Unknown", remoteState: null, diagnostic: null, since: null, seq: null, transitions: 0,
            rttMs: null, maxGapMs: null, detectionMs: null, latencyAt: null,
        };
        view.counts.Unknown++;
        (ref.kind === "gateway" ? node.gateways : node.paths).push(p.session);
        (delta.nodes ??= {})[p.node] = node;
    }
    if (!s.planned) touch(b.sessions, key);
    if (!supersedes({ time: event.time, seq: p.seq }, s.since === null ? null : { time: s.since, seq: s.seq ?? undefined })) {
        view.stats.stale++;
        return;
    }
    view.counts[s.state]--;
    view.counts[to]++;
    s.state = to;
    s.remoteState = asState(p.remoteState);
    s.diagnostic = shownDiagnostic(p.diagnostic);
    s.since = event.time;
    s.seq = p.seq;
    s.transitions++;
    (delta.sessions ??= {})[key] = s;
    delta.counts = view.counts;
    syncDerivedAlert(view, s, event.time, delta);
}

/** Takes an unplanned session out of the view: off its node, out of the counts, its own alert with it. */
function evictSession(view: DashboardView, key: string, delta: DashboardDelta): void {
    const s = own(view.sessions, key);
    if (!s) return;
    delete view.sessions[key];
    view.counts[s.state]--;
    delta.counts = view.counts;
    (delta.sessions ??= {})[key] = null;
    const node = own(view.nodes, s.node);
    if (node) {
        const list = s.kind === "gateway" ? node.gateways : node.paths;
        const i = list.indexOf(s.id);
        if (i >= 0) list.splice(i, 1);
        (delta.nodes ??= {})[node.name] = node;
    }
    const ak = derivedAlertKey(s.node, s.id);
    if (own(view.alerts, ak)) {
        delete view.alerts[ak];
        (delta.alerts ??= {})[ak] = null;
    }
}

function onRouteChange({ view, event, node, delta, entry }: Fold<"route-change">): void {
    const p = event.payload;
    const outcome = routeOutcome(p.event);
    const where = [p.prefix, p.via && `via ${p.via}`, p.metric !== null && `metric ${p.metric}`].filter(Boolean).join(" ");
    entry(`route ${p.route} ${p.event}${where ? `: ${where}` : ""}`, outcome === "withdrawn" ? "warn" : "info");
    if (!node || p.route === "__proto__") return;
    const r = node.routes;
    r.changes++;
    if (!boundsOf(view).plannedRoutes.get(node.name)?.has(p.route)) {
        // A route name the plan does not have: kept among the node's last UNPLANNED_ROUTES.
        const b = boundsOf(view);
        let lru = b.routes.get(node.name);
        if (!lru) b.routes.set(node.name, (lru = new Map()));
        if (!lru.has(p.route)) while (lru.size >= UNPLANNED_ROUTES) delete r.state[takeOldest(lru)!];
        touch(lru, p.route);
    }
    r.state[p.route] = outcome;
    const values = Object.values(r.state);
    r.installed = values.filter((o) => o === "installed").length;
    r.withdrawn = values.filter((o) => o === "withdrawn").length;
    r.recent.push({ time: event.time, event: p.event, outcome, route: cut(p.route), prefix: p.prefix, via: p.via, metric: p.metric, reason: p.reason === null ? null : cut(p.reason) });
    if (r.recent.length > RECENT_ROUTES) r.recent.splice(0, r.recent.length - RECENT_ROUTES);
    delta.nodes = { [node.name]: node };
}

function onIngressChange({ view, event, node, delta, entry }: Fold<"ingress-change">): void {
    const p = event.payload;
    const change = [p.added.length && `+${p.added.join(", +")}`, p.removed.length && `−${p.removed.join(", −")}`].filter(Boolean).join(" ");
    entry(`upstream ${p.upstream} ${p.event}: ${p.members.length} live${change ? ` (${change})` : ""}`, p.members.length === 0 ? "bad" : p.removed.length ? "warn" : "info");
    if (!node) return;
    let u = node.ingress.find((i) => i.upstream === p.upstream);
    if (!u || (u.port === null && u.configured.length === 0)) {
        // An upstream the plan does not have: kept among the node's last UNPLANNED_UPSTREAMS changed.
        const b = boundsOf(view);
        let lru = b.upstreams.get(node.name);
        if (!lru) b.upstreams.set(node.name, (lru = new Map()));
        if (!u) {
            while (lru.size >= UNPLANNED_UPSTREAMS) {
                const old = takeOldest(lru);
                const i = node.ingress.findIndex((x) => x.upstream === old);
                if (i >= 0) node.ingress.splice(i, 1);
            }
            node.ingress.push((u = { upstream: p.upstream, port: null, configured: [], members: null, live: null, event: null, time: null, changes: 0 }));
        }
        touch(lru, p.upstream);
    }
    u.members = [...p.members];
    u.live = u.configured.filter((m) => p.members.includes(m.node) || p.members.includes(m.address)).map((m) => m.node);
    u.event = p.event;
    u.time = event.time;
    u.changes++;
    delta.nodes = { [node.name]: node };
}

function onPathLatency({ view, event, delta }: Fold<"path-latency">): void {
    const p = event.payload;
    const s = own(view.sessions, sessionKey(p.node, p.session));
    if (!s || !supersedes({ time: event.time }, s.latencyAt === null ? null : { time: s.latencyAt })) return;
    s.rttMs = p.rttMs;
    s.maxGapMs = p.maxGapMs;
    s.detectionMs = p.detectionMs;
    s.latencyAt = event.time;
    (delta.sessions ??= {})[sessionKey(p.node, p.session)] = s;
}

function onAlert({ view, event, delta, entry }: Fold<"alert">): void {
    const p = event.payload;
    const tone: Tone = p.action === "resolve" ? "good" : p.severity === "critical" || p.severity === "error" ? "bad" : p.severity === "warning" ? "warn" : "info";
    entry(`${p.action === "resolve" ? "resolved" : p.severity} ${p.class}: ${p.summary}`, tone, p.session);
    const alerts: Record<string, AlertView | null> = (delta.alerts = {});
    if (p.dedupKey === "__proto__") return;
    const b = boundsOf(view);
    if (p.action === "resolve") {
        if (own(view.alerts, p.dedupKey)) {
            delete view.alerts[p.dedupKey];
            alerts[p.dedupKey] = null;
        }
        b.alerts.delete(p.dedupKey);
    } else {
        const prev = own(view.alerts, p.dedupKey);
        if (!prev) {
            // Kept among the last OPEN_ALERTS triggered: the least recently updated goes.
            while (b.alerts.size >= OPEN_ALERTS) {
                const old = own(view.alerts, takeOldest(b.alerts)!);
                if (!old) continue;
                delete view.alerts[old.dedupKey];
                alerts[old.dedupKey] = null;
                // It may have stood in for the dashboard's own session-down alert.
                const s = old.class === "session-down" && old.session ? own(view.sessions, sessionKey(old.node, old.session)) : undefined;
                if (s) syncDerivedAlert(view, s, event.time, delta);
            }
        }
        touch(b.alerts, p.dedupKey);
        alerts[p.dedupKey] = view.alerts[p.dedupKey] = {
            dedupKey: p.dedupKey, severity: p.severity, class: cut(p.class), summary: cut(p.summary), node: p.node, session: p.session,
            details: cut(p.details), since: prev?.since ?? event.time, updated: event.time, triggers: (prev?.triggers ?? 0) + 1, derived: false,
        };
    }
    if (p.class === "session-down" && p.session) {
        const s = own(view.sessions, sessionKey(p.node, p.session));
        if (s) syncDerivedAlert(view, s, event.time, delta);
    }
}

function onDeploy({ event, entry }: Fold<"deploy">): void {
    const p = event.payload;
    entry(`deploy ${p.stack} generation ${p.generation} ${p.outcome} in ${Math.round(p.durationMs)} ms${p.message ? `: ${p.message}` : ""}`,
        p.outcome === "confirmed" ? "good" : p.outcome === "rolled-back" ? "warn" : "bad");
}

function onAuditResult({ event, entry }: Fold<"audit-result">): void {
    const p = event.payload;
    entry(`audit ${p.stack} ${p.verdict}: ${p.findings} findings, ${p.mandatory} mandatory`, p.verdict === "pass" ? "good" : "bad");
}

/** The dashboard's own alert for a Down session, present exactly while no bus session-down alert covers it. */
function syncDerivedAlert(view: DashboardView, s: SessionView, time: number, delta: DashboardDelta): void {
    const key = derivedAlertKey(s.node, s.id);
    const covered = Object.values(view.alerts).some((a) => !a.derived && a.class === "session-down" && a.node === s.node && a.session === s.id);
    const want = s.state === "Down" && !covered;
    if (want && !view.alerts[key]) {
        const what = s.kind === "gateway" ? `uplink to ${s.provider}` : `path to ${s.peer} over ${s.provider}`;
        (delta.alerts ??= {})[key] = view.alerts[key] = {
            dedupKey: key, severity: s.kind === "gateway" ? "error" : "warning", class: "session-down",
            summary: `${s.node}: BFD session ${s.id} is Down (${what})`, node: s.node, session: s.id,
            details: s.diagnostic ? `diagnostic: ${s.diagnostic}` : "", since: s.since ?? time, updated: time, triggers: 1, derived: true,
        };
    } else if (!want && view.alerts[key]) {
        delete view.alerts[key];
        (delta.alerts ??= {})[key] = null;
    }
}

/** b applied after a: what a client that missed both needs. */
export function mergeDelta(a: DashboardDelta, b: DashboardDelta): DashboardDelta {
    const out: DashboardDelta = { ...a };
    if (b.sessions) out.sessions = { ...a.sessions, ...b.sessions };
    if (b.nodes) out.nodes = { ...a.nodes, ...b.nodes };
    if (b.alerts) out.alerts = { ...a.alerts, ...b.alerts };
    if (b.events) {
        const all = [...(a.events ?? []), ...b.events];
        out.events = all.length > STREAM_LIMIT ? all.slice(all.length - STREAM_LIMIT) : all;
    }
    if (b.counts) out.counts = b.counts;
    if (b.stats) out.stats = b.stats;
    return out;
}

/** Applies a delta to a copy of a view: what the browser does (web/app.js mirrors it). */
export function applyDelta(view: DashboardView, d: DashboardDelta): DashboardView {
    const alerts = { ...view.alerts };
    for (const [k, a] of Object.entries(d.alerts ?? {})) {
        if (a) alerts[k] = a;
        else delete alerts[k];
    }
    // (web/app.js keeps a removed session as null, which it never shows: no node lists it any more.)
    const sessions = d.sessions ? { ...view.sessions } : view.sessions;
    for (const [k, s] of Object.entries(d.sessions ?? {})) {
        if (s) sessions[k] = s;
        else delete sessions[k];
    }
    const events = d.events ? [...view.events, ...d.events].slice(-STREAM_LIMIT) : view.events;
    return {
        ...view,
        sessions,
        nodes: d.nodes ? { ...view.nodes, ...d.nodes } : view.nodes,
        alerts,
        events,
        counts: d.counts ?? view.counts,
        stats: d.stats ?? view.stats,
    };
}

export function isEmptyDelta(d: DashboardDelta): boolean {
    return !d.sessions && !d.nodes && !d.alerts && !d.events && !d.counts && !d.stats;
}
