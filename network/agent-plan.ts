// Pure planner for the agent: from the site description to each node's agent config
// (network/agent/config.ts). No I/O; the same site always gives the same configs.
//
// The forwarding model, per node:
// - one gateway BFD session per uplink, single-hop to the provider's router, which gates the
//   uplink's source-specific default route (`default from <uplink /64>`) and a plain default
//   (primary and backup by metric);
// - one path BFD session per other node and per provider they share, multihop between the two
//   uplink addresses, which gates the route to that node's loopback over that provider;
// - Nginx upstream members at other nodes' loopbacks, live while any path to them is usable.
import type { Site } from "../site/model";
import { fnv16, hostAddress, nodeIds, PlanError, subnet } from "./addressing";
import { NUBLAR_ROUTE_PROTOCOL, type AgentConfig, type AgentRoute, type AgentSession, type AgentUplink, type AgentUpstream } from "./agent/config";

/** Where the node's runtime files live; the lab puts them under its state folder. */
export interface AgentPathsInput {
    socket: string;
    events: string;
    nginxControl?: string;
    bfdKeyFile?: string;
}

export interface AgentPlanOptions {
    /** Per-node file locations. */
    paths: (node: string) => AgentPathsInput;
    holdDownMs?: number;
    startupGraceMs?: number;
}

/** Candidate BFD transmit intervals, fastest first. */
const INTERVALS_MS = [10, 20, 50, 100, 300, 1000];
const DETECT_MULT = 3;

/**
 * BFD timers from the failover SLA: detection (3 x interval) may take at most a third of the
 * budget, leaving the rest for withdrawing the route and updating Nginx.
 */
export function timersForBudget(failoverBudgetMs: number): AgentConfig["timers"] {
    const fits = INTERVALS_MS.filter((i) => i * DETECT_MULT <= failoverBudgetMs / 3);
    const interval = fits.length ? fits[fits.length - 1] : INTERVALS_MS[0];
    return { transmitIntervalMs: interval, receiveIntervalMs: interval, detectMultiplier: DETECT_MULT };
}

/** Each node's loopback /128: /64 number 0 of the first provider's /48, which no uplink uses. */
export function loopbackOf(site: Site, nodeId: number): string {
    return hostAddress(subnet(site.providers[0].prefix, 64, 0), nodeId);
}

/** The /64 of a node's uplink to a provider (node numbers start at 1, so /64 number 0 stays free). */
export function uplinkPrefix(site: Site, provider: string, nodeId: number): string {
    const p = site.providers.find((x) => x.name === provider);
    if (!p) throw new PlanError(`unknown provider '${provider}'`);
    return subnet(p.prefix, 64, nodeId);
}

export function planAgents(site: Site, opts: AgentPlanOptions): AgentConfig[] {
    return site.nodes.map((n) => planAgent(site, n.name, opts));
}

export function planAgent(site: Site, nodeName: string, opts: AgentPlanOptions): AgentConfig {
    const ids = nodeIds(site);
    const node = site.nodes.find((n) => n.name === nodeName);
    if (!node) throw new PlanError(`site '${site.name}' has no node '${nodeName}'`);
    const id = ids.get(node.name)!;
    const paths = opts.paths(node.name);

    const uplinks: AgentUplink[] = node.uplinks.map((u, k) => {
        const prefix = uplinkPrefix(site, u.provider, id);
        return { provider: u.provider, ifname: `up${k}`, prefix, address: hostAddress(prefix, 2), gateway: hostAddress(prefix, 1), session: `gw/${u.provider}` };
    });
    const sessions: AgentSession[] = uplinks.map((u) => ({
        id: u.session, kind: "gateway", provider: u.provider, peer: u.gateway, local: u.address, interface: u.ifname, multihop: false,
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
    });

    const myLoopback = loopbackOf(site, id);
    const sessionsTo = new Map<string, string[]>();
    for (const other of site.nodes) {
        if (other.name === node.name) continue;
        const otherId = ids.get(other.name)!;
        const shared = uplinks.filter((u) => other.uplinks.some((o) => o.provider === u.provider));
        // Spread primaries across providers by a hash of the pair, the same from both ends, so
        // that traffic between two nodes takes the same provider both ways.
        const pair = [node.name, other.name].sort().join("|");
        const offset = shared.length ? fnv16(pair) % shared.length : 0;
        const ranked = shared.map((_, k) => shared[(k + offset) % shared.length]);
        const names: string[] = [];
        ranked.forEach((u, rank) => {
            const sid = `path/${other.name}/${u.provider}`;
            names.push(sid);
            const peer = hostAddress(uplinkPrefix(site, u.provider, otherId), 2);
            sessions.push({ id: sid, kind: "path", provider: u.provider, peerNode: other.name, peer, local: u.address, multihop: true });
            // The path session's own packets go to the peer's uplink /64 over this provider. That
            // route is not gated by BFD: a gateway flap must not take the path sessions down with it
            // (if the provider really is down, they find out by themselves).
            routes.push({
                id: `peer-uplink/${other.name}/${u.provider}`, destination: uplinkPrefix(site, u.provider, otherId), source: u.prefix,
                via: u.gateway, dev: u.ifname, metric: 1024,
                reason: `BFD path sessions to ${other.name} over ${u.provider} (not gated)`,
            });
            routes.push({
                id: `loopback/${other.name}/${u.provider}`, destination: `${loopbackOf(site, otherId)}/128`, preferredSource: myLoopback,
                via: u.gateway, dev: u.ifname, metric: 100 + rank, session: sid,
                reason: `${other.name}'s loopback over ${u.provider} (${rank === 0 ? "primary" : "backup"})`,
            });
        });
        sessionsTo.set(other.name, names);
    }

    // Nginx runs on edge nodes, in front of every ingress service.
    const ingress: AgentUpstream[] = node.role !== "edge" ? [] : site.ingress.map((svc) => ({
        name: svc.name,
        port: svc.port,
        members: svc.upstreams.map((m) => ({
            node: m,
            address: `[${loopbackOf(site, ids.get(m)!)}]:${svc.port}`,
            sessions: m === node.name ? [] : sessionsTo.get(m) ?? [],
        })),
    }));
    for (const u of ingress) for (const m of u.members) {
        if (m.node === node.name) {
            throw new PlanError(`ingress '${u.name}': edge node '${node.name}' runs Nginx on port ${u.port}, so it cannot also be one of its upstreams; list other nodes`);
        }
        if (m.node !== node.name && m.sessions.length === 0) {
            throw new PlanError(`ingress '${u.name}': node '${node.name}' shares no provider with upstream '${m.node}', so it cannot reach it`);
        }
    }

    return {
        version: 1,
        site: site.name,
        node: node.name,
        loopback: myLoopback,
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
        routes,
        ingress,
        paths: { socket: paths.socket, events: paths.events, nginxControl: ingress.length ? paths.nginxControl : undefined },
    };
}
