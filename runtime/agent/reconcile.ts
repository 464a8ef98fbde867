// The agent's decisions, as pure functions of (config, session health, time). The daemon
// (agent.ts) feeds BFD events in and applies what comes out; tests drive it with a virtual
// clock. Nothing here touches the kernel, Nginx or a clock.
import type { AgentConfig, AgentRoute, AgentUpstream } from "../../model/network/agent-config";
import type { BfdState } from "../../model/vocabulary";

/** What the agent remembers about one session. */
export interface SessionHealth {
    state: BfdState;
    /** When it last came Up, and last went Down from Up (ms). */
    upAt?: number;
    downAt?: number;
    /** It went Down because the peer said AdminDown (a graceful restart, RFC 5882 §3.2). */
    peerAdminDown: boolean;
}

export function initialHealth(): SessionHealth {
    return { state: "down", peerAdminDown: false };
}

/** Fold one BFD state change into a session's health. */
export function onStateChange(h: SessionHealth, to: BfdState, remoteState: BfdState | undefined, now: number): SessionHealth {
    if (to === h.state) return h;
    // peerAdminDown is kept through the Up, so that judge() can tell a graceful restart that
    // came back in time from a failure; the next Down sets it afresh.
    if (to === "up") return { ...h, state: to, upAt: now };
    if (h.state === "up") return { ...h, state: to, downAt: now, peerAdminDown: remoteState === "admin-down" };
    return { ...h, state: to };
}

/**
 * use: the path works, install it. withdraw: it is dead, remove it.
 * keep: not known yet (starting, or the peer is restarting): leave whatever is installed.
 */
export type Decision = "use" | "withdraw" | "keep";

export interface Clock {
    now: number;
    /** When this agent started. */
    startedAt: number;
}

export interface Verdict {
    decision: Decision;
    /** Why, for operators (`nublar routes`). */
    why: string;
    /** When this verdict may change on its own (a hold-down or a grace period ends). */
    until?: number;
}

export function judge(h: SessionHealth | undefined, cfg: Pick<AgentConfig, "holdDownMs" | "startupGraceMs">, clock: Clock): Verdict {
    const { now, startedAt } = clock;
    if (!h) return { decision: "withdraw", why: "no such session" };
    if (h.state === "up") {
        // The first Up after start is trusted at once; an Up after a Down waits out the hold-down.
        if (h.downAt === undefined || h.upAt === undefined) return { decision: "use", why: "BFD up" };
        // Back from a graceful restart in time: the routes were kept throughout, so there is
        // no flap to damp; withdrawing them now would cut the traffic the grace protected.
        if (h.peerAdminDown && h.upAt < h.downAt + cfg.startupGraceMs) return { decision: "use", why: "BFD up (peer restarted gracefully)" };
        const ready = h.upAt + cfg.holdDownMs;
        if (now >= ready) return { decision: "use", why: "BFD up" };
        return { decision: "withdraw", why: `BFD up, in hold-down for ${Math.ceil(ready - now)} ms`, until: ready };
    }
    const graceEnd = startedAt + cfg.startupGraceMs;
    if (h.downAt === undefined && now < graceEnd) {
        return { decision: "keep", why: `BFD ${h.state}, agent starting: keeping what is installed`, until: graceEnd };
    }
    if (h.peerAdminDown && h.downAt !== undefined && now < h.downAt + cfg.startupGraceMs) {
        return { decision: "keep", why: "peer is administratively down (restarting): keeping what is installed", until: h.downAt + cfg.startupGraceMs };
    }
    return { decision: "withdraw", why: `BFD ${h.state}` };
}

export interface RouteVerdict extends Verdict {
    route: AgentRoute;
}

export interface MemberVerdict extends Verdict {
    upstream: string;
    node: string;
    address: string;
}

export interface DesiredState {
    routes: RouteVerdict[];
    members: MemberVerdict[];
    /** Uplinks whose prefix addresses should be deprecated (preferred lifetime 0, RFC 8678). */
    deprecatedUplinks: string[];
    /** The earliest time a verdict changes without a new event: re-run then. */
    wakeAt?: number;
}

export function desiredState(cfg: AgentConfig, health: ReadonlyMap<string, SessionHealth>, clock: Clock): DesiredState {
    const verdicts = new Map<string, Verdict>();
    const groups = new Map((cfg.sessionGroups ?? []).map((g) => [g.id, g.anyOf]));
    // Has any path of this node come Up since the agent started? Until then there may be no
    // deployed peer at all (a new site's first node), and a group of paths judges nothing.
    // Asked only when a group is judged: most nodes have none, and this runs on every BFD event.
    let anyPathUpSeen: boolean | undefined;
    const anyPathUp = () => (anyPathUpSeen ??= cfg.sessions.some((s) => s.kind === "path" && health.get(s.id)?.upAt !== undefined));
    const verdict = (id: string): Verdict => {
        let v = verdicts.get(id);
        if (!v) {
            const anyOf = groups.get(id);
            v = !anyOf ? judge(health.get(id), cfg, clock)
                // No path of this node has come Up since the agent started: its peers may not be
                // deployed yet (a new site's canary). That is no evidence against the uplink, and
                // withdrawing its routes would cut the node off from its operators. Once any path
                // is Up, peers exist, and an uplink none of whose paths came Up is judged.
                : !anyPathUp() ? { decision: "use", why: `no path of this node has come up since the agent started (peers not deployed yet?): ${id} not judged` }
                : anyVerdict(anyOf, anyOf.map((m) => verdict(m)));
            verdicts.set(id, v);
        }
        return v;
    };
    const routes = cfg.routes.map((route): RouteVerdict => (route.session === undefined
        ? { route, decision: "use", why: "always installed (not gated by BFD)" }
        : { route, ...verdict(route.session) }));
    const members: MemberVerdict[] = [];
    for (const u of cfg.ingress) {
        for (const m of u.members) {
            const base = { upstream: u.name, node: m.node, address: m.address };
            if (m.sessions.length === 0) {
                members.push({ ...base, decision: "use", why: "local member" });
                continue;
            }
            members.push({ ...base, ...anyVerdict(m.sessions, m.sessions.map(verdict)) });
        }
    }
    const deprecatedUplinks = cfg.uplinks.filter((u) => verdict(u.session).decision === "withdraw").map((u) => u.provider);
    return { routes, members, deprecatedUplinks, wakeAt: earliest([...verdicts.values()].map((v) => v.until)) };
}

/** "Any of these": usable if one is, kept if one is kept, else withdrawn until the first may change. */
function anyVerdict(ids: string[], vs: Verdict[]): Verdict {
    const pick = vs.find((v) => v.decision === "use") ?? vs.find((v) => v.decision === "keep");
    if (pick) return { ...pick, why: `${pick.why} on ${ids[vs.indexOf(pick)]}` };
    const waiting = vs.findIndex((v) => v.until !== undefined);
    const why = waiting >= 0 ? `${vs[waiting].why} on ${ids[waiting]}` : `every path is down (${ids.join(", ")})`;
    return { decision: "withdraw", why, until: earliest(vs.map((v) => v.until)) };
}

function earliest(times: (number | undefined)[]): number | undefined {
    const t = times.filter((x): x is number => x !== undefined);
    return t.length ? Math.min(...t) : undefined;
}

/** The member set to push for one upstream: "use" members, plus "keep" members already pushed. */
export function memberSet(verdicts: MemberVerdict[], upstream: string, current: readonly string[]): string[] {
    return verdicts
        .filter((v) => v.upstream === upstream && (v.decision === "use" || (v.decision === "keep" && current.includes(v.address))))
        .map((v) => v.address);
}

export interface UpstreamPush {
    /** The member set to push to Nginx. */
    members: string[];
    /** The live members (memberSet): what is pushed unless the upstream is in panic. */
    live: string[];
    /** No member is live and the upstream has panic routing on: every member is pushed. */
    panic: boolean;
}

/**
 * What to push for one upstream. Normally its live members (memberSet), which may be none:
 * Nginx then answers 503. With panic routing on (`panic`, the site's `ingress[].panic`), an
 * upstream with no live member gets every member instead, as Envoy's panic threshold does:
 * when BFD sees every member down at once, the likelier cause is this node (its BFD thread
 * stalled, and its peers declared it down) than every backend failing together, and Nginx's
 * retries still skip a member that really is dead. As soon as one member is live again, the
 * live set is pushed and the upstream leaves panic.
 */
export function upstreamPush(u: Pick<AgentUpstream, "name" | "members" | "panic">, verdicts: MemberVerdict[], current: readonly string[]): UpstreamPush {
    const live = memberSet(verdicts, u.name, current);
    if (live.length > 0 || !u.panic || u.members.length === 0) return { members: live, live, panic: false };
    return { members: u.members.map((m) => m.address), live, panic: true };
}

/** Identity of a kernel route as the kernel sees it: one route per (destination, source, metric). */
export function routeKey(r: { destination: string; source?: string; metric: number }): string {
    return `${r.destination} from ${r.source ?? "::/0"} metric ${r.metric}`;
}

export interface RouteDiff<T> {
    add: AgentRoute[];
    remove: T[];
}

/**
 * What to change in the kernel: `installed` are the routes carrying our protocol number now.
 * "use" routes missing (or different) are added; routes no verdict wants are removed; "keep"
 * routes stay as they are.
 */
export function diffRoutes<T extends { destination: string; source?: string; metric: number; via: string; dev: string }>(
    desired: RouteVerdict[],
    installed: T[],
): RouteDiff<T> {
    const byKey = new Map(installed.map((r) => [routeKey(r), r]));
    const add: AgentRoute[] = [];
    const wanted = new Set<string>();
    for (const v of desired) {
        const key = routeKey(v.route);
        const have = byKey.get(key);
        if (v.decision === "use") {
            wanted.add(key);
            if (!have || have.via !== v.route.via || have.dev !== v.route.dev) add.push(v.route);
        } else if (v.decision === "keep" && have) {
            wanted.add(key);
        }
    }
    const remove = installed.filter((r) => !wanted.has(routeKey(r)));
    return { add, remove };
}
