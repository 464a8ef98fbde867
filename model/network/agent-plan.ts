// Pure planner for the agent: from the site plan (model/network/site-plan.ts) to each node's agent
// config (model/network/agent-config.ts). No I/O; the same site always gives the same configs.
//
// The forwarding model, per node:
// - one gateway BFD session per uplink, single-hop to the provider's router, which gates the
//   uplink's source-specific default route (`default from <uplink /64>`) and a plain default
//   (primary and backup by metric);
// - one path BFD session per overlay peer, single-hop inside the tunnel (so it tests the tunnel
//   itself, and GTSM applies), authenticated; it gates the route to that peer's loopback over
//   that tunnel, primary or backup by metric;
// - on spokes, the whole loopback /64 through the hubs, gated the same way: spokes reach each
//   other through a hub;
// - one ungated route per provider for the tunnels' own packets (the underlay): a gateway flap
//   must not take the tunnels down with it, and if the provider really is down the path
//   sessions find out by themselves;
// - Nginx upstream members at other nodes' loopbacks, live while any path to them is usable.
import type { Site } from "../site/model";
import { fnv16, PlanError } from "./addressing";
import { defaultControlTokenFile } from "./nginx-conf";
import { NUBLAR_ROUTE_PROTOCOL, type AgentConfig, type AgentRoute, type AgentSession, type AgentSessionGroup, type AgentUplink, type AgentUpstream } from "./agent-config";
import { nodePlan, planSite, type NodePlan, type OverlayPeerPlan, type OverlayPlan, type SitePlan } from "./site-plan";
import { sessionId } from "../vocabulary";

/** Where the node's runtime files live; the lab puts them under its state folder. */
export interface AgentPathsInput {
    socket: string;
    events: string;
    nginxControl?: string;
    /** The control token's source file; default: beside nginxControl (defaultControlTokenFile). */
    nginxControlToken?: string;
    bfdKeyFile?: string;
}

export interface AgentPlanOptions {
    /** Per-node file locations. */
    paths: (node: string) => AgentPathsInput;
    holdDownMs?: number;
    startupGraceMs?: number;
    /** Per node: the event bus it publishes to (model/events/plan.ts), if the site has one. */
    eventBus?: (node: string) => { brokers: string[]; stateFile: string } | undefined;
}

/** Candidate BFD transmit intervals, fastest first. */
const INTERVALS_MS = [10, 20, 50, 100, 300, 1000];
const DETECT_MULT = 3;
/** Ungated last-resort routes sit below every gated one (those use 100-ish and 200-ish). */
const LAST_RESORT_METRIC = 4096;

/**
 * BFD timers from the failover SLA: detection (3 x interval) may take at most a third of the
 * budget, leaving the rest for withdrawing the route and updating Nginx.
 */
export function timersForBudget(failoverBudgetMs: number): AgentConfig["timers"] {
    const fits = INTERVALS_MS.filter((i) => i * DETECT_MULT <= failoverBudgetMs / 3);
    const interval = fits.length ? fits[fits.length - 1] : INTERVALS_MS[0];
    return { transmitIntervalMs: interval, receiveIntervalMs: interval, detectMultiplier: DETECT_MULT };
}

export function planAgents(site: Site, opts: AgentPlanOptions, plan: SitePlan = planSite(site)): AgentConfig[] {
    return plan.nodes.map((n) => agentConfigFor(site, plan, n, opts));
}

export function planAgent(site: Site, nodeName: string, opts: AgentPlanOptions, plan: SitePlan = planSite(site)): AgentConfig {
    return agentConfigFor(site, plan, nodePlan(plan, nodeName), opts);
}

function agentConfigFor(site: Site, plan: SitePlan, node: NodePlan, opts: AgentPlanOptions): AgentConfig {
    const paths = opts.paths(node.name);
    // An uplink whose router runs BFD has a gateway session; one whose router answers none (an
    // EC2 node's VPC router) is judged by a group of the same name: it works while any path
    // session over it is Up (below).
    const uplinks: AgentUplink[] = node.uplinks.map(({ gatewayBfd: _, ...u }) => ({ ...u, session: sessionId({ kind: "gateway", provider: u.provider }) }));
    const sessions: AgentSession[] = node.uplinks.filter((u) => u.gatewayBfd).map((u) => ({
        id: sessionId({ kind: "gateway", provider: u.provider }), kind: "gateway", provider: u.provider, peer: u.gateway, local: u.address, interface: u.ifname, multihop: false,
    }));
    const routes: AgentRoute[] = [];
    uplinks.forEach((u, k) => {
        routes.push({
            id: `default-from/${u.provider}`, destination: "::/0", source: u.prefix, via: u.gateway, dev: u.ifname, metric: 1024, session: u.session,
            reason: `traffic from ${u.provider}'s prefix leaves through ${u.provider} (source-specific default)`,
        });
        routes.push({
            id: `default/${u.provider}`, destination: "::/0", via: u.gateway, dev: u.ifname, metric: 100 + k, session: u.session,
            reason: `${k === 0 ? "primary" : "backup"} default route via ${u.provider}`,
        });
        const provider = site.providers.find((p) => p.name === u.provider)!;
        routes.push({
            id: `underlay/${u.provider}`, destination: provider.prefix, source: u.prefix, via: u.gateway, dev: u.ifname, metric: 1024,
            reason: `overlay tunnels to other nodes' ${u.provider} uplinks (not gated)`,
        });
    });

    // Path sessions, one per tunnel peer, grouped by peer node.
    const byPeer = new Map<string, { overlay: OverlayPlan; peer: OverlayPeerPlan; session: string }[]>();
    for (const o of node.overlays) for (const p of o.peers) {
        const sid = sessionId({ kind: "path", peerNode: p.node, provider: o.provider });
        sessions.push({ id: sid, kind: "path", provider: o.provider, peerNode: p.node, peer: p.address, local: o.address, interface: o.ifname, multihop: false });
        const list = byPeer.get(p.node) ?? [];
        list.push({ overlay: o, peer: p, session: sid });
        byPeer.set(p.node, list);
    }
    // An uplink whose router answers no BFD is judged by the path sessions over it (a group).
    // Paths over an uplink can all fail for reasons on the peers' side (every hub rebooting), with
    // the uplink itself fine; a node left without any default would then lose its operators too.
    // So such an uplink also keeps ungated defaults below every gated one: from its own prefix
    // (replies to an operator leave by the interface they came in on, whatever the metrics: AWS
    // drops what leaves an interface from another's address), and a plain one.
    const sessionGroups: AgentSessionGroup[] = [];
    node.uplinks.forEach((u, k) => {
        if (u.gatewayBfd) return;
        const anyOf = sessions.filter((x) => x.kind === "path" && x.provider === u.provider).map((x) => x.id);
        if (!anyOf.length) {
            throw new PlanError(`node '${node.name}': its uplink to ${u.provider} ends at a router without BFD (an EC2 node's VPC router), and no other node is reachable over ${u.provider} to judge it by; give another node an uplink to ${u.provider}`);
        }
        sessionGroups.push({ id: sessionId({ kind: "gateway", provider: u.provider }), anyOf, reason: `${u.provider}'s router answers no BFD: the uplink works while any path over it does` });
        routes.push({
            id: `last-resort/default-from/${u.provider}`, destination: "::/0", source: u.prefix, via: u.gateway, dev: u.ifname, metric: LAST_RESORT_METRIC,
            reason: `traffic from ${u.provider}'s prefix when no path over it is up (not gated: its router answers no BFD)`,
        });
        routes.push({
            id: `last-resort/default/${u.provider}`, destination: "::/0", via: u.gateway, dev: u.ifname, metric: LAST_RESORT_METRIC + k,
            reason: `default route via ${u.provider} when no path over any uplink is up (not gated: its router answers no BFD)`,
        });
    });
    // Last resort, ungated: when BFD sees every path to a node down (its agent died, say), its
    // traffic still tries the primary tunnel rather than finding no route at all. The gated
    // routes win whenever any of them is installed.
    const lastResort: AgentRoute[] = [];
    for (const [peerNode, paths] of byPeer) {
        // Spread primaries across providers by a hash of the pair, the same from both ends, so
        // that traffic between two nodes takes the same provider both ways.
        const offset = fnv16([node.name, peerNode].sort().join("|")) % paths.length;
        paths.forEach((_, rank) => {
            const { overlay, peer, session } = paths[(rank + offset) % paths.length];
            routes.push({
                id: `loopback/${peerNode}/${overlay.provider}`, destination: `${peer.loopback}/128`, preferredSource: node.loopback,
                via: peer.address, dev: overlay.ifname, metric: 100 + rank, session,
                reason: `${peerNode}'s loopback through the ${overlay.provider} tunnel (${rank === 0 ? "primary" : "backup"})`,
            });
            if (rank === 0) {
                lastResort.push({
                    id: `last-resort/${peerNode}`, destination: `${peer.loopback}/128`, preferredSource: node.loopback,
                    via: peer.address, dev: overlay.ifname, metric: LAST_RESORT_METRIC,
                    reason: `${peerNode}'s loopback when no path session to it is up (not gated)`,
                });
            }
        });
    }
    routes.push(...lastResort);
    if (!node.hub) {
        // Spokes reach every other loopback through a hub; more specific /128s win where a direct
        // tunnel exists. Spokes spread over hubs and providers by a hash of their own name.
        // With WireGuard, only the tunnel's designated hub (OverlayPlan.loopbacksVia) can carry
        // the /64; VXLAN is Ethernet and has no such limit.
        const viaHubs = [...byPeer.values()].flat()
            .filter((x) => x.peer.hub && (x.overlay.transport !== "wireguard" || x.overlay.loopbacksVia === x.peer.node));
        const offset = viaHubs.length ? fnv16(node.name) % viaHubs.length : 0;
        viaHubs.forEach((_, rank) => {
            const { overlay, peer, session } = viaHubs[(rank + offset) % viaHubs.length];
            routes.push({
                id: `loopbacks/${peer.node}/${overlay.provider}`, destination: plan.loopbackPrefix, preferredSource: node.loopback,
                via: peer.address, dev: overlay.ifname, metric: 200 + rank, session,
                reason: `other nodes' loopbacks through hub ${peer.node} over ${overlay.provider} (${rank === 0 ? "primary" : `backup ${rank}`})`,
            });
        });
        if (viaHubs.length) {
            const { overlay, peer } = viaHubs[offset];
            routes.push({
                id: "last-resort/loopbacks", destination: plan.loopbackPrefix, preferredSource: node.loopback,
                via: peer.address, dev: overlay.ifname, metric: LAST_RESORT_METRIC,
                reason: `other nodes' loopbacks through hub ${peer.node} when no path session to a hub is up (not gated)`,
            });
        }
    }

    // Nginx runs on edge nodes, in front of every ingress service.
    const ingress: AgentUpstream[] = node.role !== "edge" ? [] : site.ingress.map((svc) => ({
        name: svc.name,
        port: svc.port,
        members: svc.upstreams.map((m) => {
            if (m === node.name) {
                throw new PlanError(`ingress '${svc.name}': edge node '${node.name}' runs Nginx on port ${svc.port}, so it cannot also be one of its upstreams; list other nodes`);
            }
            const paths = byPeer.get(m);
            if (!paths) throw new PlanError(`ingress '${svc.name}': edge node '${node.name}' has no tunnel to upstream '${m}' (they share no provider)`);
            return { node: m, address: `[${paths[0].peer.loopback}]:${svc.port}`, sessions: paths.map((p) => p.session) };
        }),
        // Only when asked for: an upstream without it renders exactly as before.
        ...(svc.panic ? { panic: true } : {}),
    }));

    return {
        version: 1,
        site: site.name,
        node: node.name,
        loopback: node.loopback,
        routeProtocol: NUBLAR_ROUTE_PROTOCOL,
        holdDownMs: opts.holdDownMs ?? 3000,
        // A restarted agent needs this long to bring its path sessions back: with meticulous
        // keyed SHA1, the peer rejects our new sequence numbers as replays until it has heard
        // nothing valid for twice its detection time (RFC 5880 §6.8.1; 2 x 3 x 1 s at the slow
        // rate), and the handshake then takes a few slow-rate packets. Measured here: 5 s was
        // too short, every time.
        startupGraceMs: opts.startupGraceMs ?? 15_000,
        timers: timersForBudget(site.sla.failoverBudgetMs),
        pathAuth: paths.bfdKeyFile ? { type: "meticulous-keyed-sha1", keyId: 1, keyFile: paths.bfdKeyFile } : undefined,
        uplinks,
        sessions,
        ...(sessionGroups.length ? { sessionGroups } : {}),
        routes,
        ingress,
        eventBus: opts.eventBus?.(node.name),
        paths: {
            socket: paths.socket, events: paths.events,
            nginxControl: ingress.length ? paths.nginxControl : undefined,
            nginxControlToken: ingress.length && paths.nginxControl ? paths.nginxControlToken ?? defaultControlTokenFile(paths.nginxControl) : undefined,
        },
    };
}
