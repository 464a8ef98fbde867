// The site's address and overlay plan: pure and deterministic. Every other planner (the
// agent's sessions and routes, the lab, the NixOS renderer) reads node addresses from here.
//
// Address layout. Each provider gives the site one /48, that is 65,536 /64s, numbered by
// node (model/network/addressing.ts: the number comes from the node's name, or its `id`):
//
//   /64 number            use
//   0                     loopbacks, in the first provider's /48 only: node N is ::N
//   1 .. 0x3fff           uplink of node N to this provider: gateway ::1, node ::2
//   0x4000                the overlay segment over this provider: node N is ::N
//   0x8000 + N            sensor subnet of node N, reached through this provider
//
// Because every address is a function of (provider prefix, node number), adding or removing
// a node never moves another node's addresses, whatever the order of the inventory.
//
// Overlay. Per provider, one tunnel segment over that provider's uplinks (WireGuard in
// production, VXLAN over IPv6 in the lab). A full mesh needs n(n-1) tunnels and BFD
// sessions; a park of thousands of nodes cannot afford that, so the overlay is hub and spoke:
// edge and core nodes are hubs, which tunnel to every node; other nodes tunnel to the hubs
// only and reach each other through them. In a small site where every node is a hub it is a
// full mesh.
import { IPv6CidrRange } from "ip-num";
import type { Site, SiteNode } from "../site/model";
import { fnv16, formatIpv6, NODE_ID_MAX, nodeIds, PlanError, prefixBase, subnet } from "./addressing";

export const LOOPBACK_SUBNET = 0;
export const OVERLAY_SUBNET = 0x4000;
export const SENSOR_SUBNET_BASE = 0x8000;
/** VXLAN's IANA port; WireGuard listens on 51820 + uplink index. */
export const VXLAN_PORT = 4789;
export const WIREGUARD_PORT = 51820;
/** Uplinks are plain Ethernet (1500); VXLAN over IPv6 adds 70 bytes, WireGuard over IPv6 80. */
const UNDERLAY_MTU = 1500;
const OVERHEAD = { vxlan: 70, wireguard: 80 } as const;

export const HUB_ROLES: readonly SiteNode["role"][] = ["edge", "core"];

export interface UplinkPlan {
    provider: string;
    /** Interface name on the node: up0, up1, ... in the order the node lists its uplinks. */
    ifname: string;
    /** The uplink's /64. */
    prefix: string;
    address: string;
    /** The provider router's address on the link. */
    gateway: string;
    /**
     * Whether the router runs BFD with the node. Not on an EC2 node: its uplinks end at the VPC's
     * router, which answers no BFD, so the agent judges the uplink by its paths over it instead
     * (model/network/agent-plan.ts).
     */
    gatewayBfd: boolean;
}

export interface OverlayPeerPlan {
    node: string;
    /** The peer's uplink address on this provider: where tunnel packets go. */
    endpoint: string;
    /** The peer's address on the overlay segment. */
    address: string;
    loopback: string;
    hub: boolean;
}

export interface OverlayPlan {
    provider: string;
    transport: "wireguard" | "vxlan";
    /** Tunnel interface on the node: ov0, ov1, ... matching up0, up1, ... */
    ifname: string;
    /** The uplink the tunnel runs over, and its local endpoint. */
    underlay: { ifname: string; local: string };
    /** VXLAN network identifier (stable by provider name); unused by WireGuard. */
    vni: number;
    /**
     * The tunnel device's MAC (VXLAN): stable by node and provider, so that a rebuilt node
     * keeps it and its peers' neighbour and forwarding entries stay right.
     */
    mac: string;
    port: number;
    mtu: number;
    /** The segment's /64, and this node's address on it. */
    prefix: string;
    address: string;
    peers: OverlayPeerPlan[];
    /**
     * WireGuard only, on a spoke: the one hub its route to the loopback /64 goes through on this
     * tunnel. WireGuard gives a prefix to one peer per interface, so the agent's routes and the
     * rendered allowed IPs must name the same hub: the first hub in the site's order, the same
     * for every spoke on this provider, so that what a spoke sends through a hub and what that hub
     * relays back are accepted by the same peer entry.
     */
    loopbacksVia?: string;
}

export interface NodePlan {
    name: string;
    id: number;
    role: SiteNode["role"];
    failureDomain: string;
    /** Hubs forward between spokes (IPv6 forwarding on). */
    hub: boolean;
    loopback: string;
    uplinks: UplinkPlan[];
    overlays: OverlayPlan[];
    /** One /64 per provider for the node's sensors (multihomed hosts take one address from each). */
    sensors: { provider: string; prefix: string }[];
}

export interface SitePlan {
    site: string;
    /** The /64 all loopbacks come from (spokes route it to the hubs). */
    loopbackPrefix: string;
    hubs: string[];
    nodes: NodePlan[];
}

/** Plan the site. Throws PlanError naming the offending entries. */
export function planSite(site: Site): SitePlan {
    checkPools(site);
    const ids = nodeIds(site);
    const loopbackPrefix = subnet(site.providers[0].prefix, 64, LOOPBACK_SUBNET);
    const hubs = site.nodes.filter((n) => HUB_ROLES.includes(n.role)).map((n) => n.name);
    if (hubs.length === 0) {
        throw new PlanError(`site '${site.name}' has no edge or core node: the overlay needs at least one hub (nodes: ${site.nodes.map((n) => `${n.name} (${n.role})`).join(", ")})`);
    }
    const hubSet = new Set(hubs);
    // Addresses are computed as numbers from each provider's base, and each is formatted once:
    // a hub lists every node as a peer, so text re-derived per peer would cost O(hubs x nodes)
    // parses (bench/site-plan.ts).
    const base = new Map(site.providers.map((p) => [p.name, prefixBase(p.prefix)]));
    const hostOffset = new Map(site.providers.map((p) => [p.name, BigInt(p.uplinkHost ?? 2)]));
    const net64 = (provider: string, index: number) => base.get(provider)! + (BigInt(index) << 64n);
    const loopbackBase = prefixBase(loopbackPrefix);
    const overlayPrefix = new Map(site.providers.map((p) => [p.name, `${formatIpv6(net64(p.name, OVERLAY_SUBNET))}/64`]));
    const addressed = new Map(site.nodes.map((node) => {
        const id = ids.get(node.name)!;
        const uplinks = node.uplinks.map((u, k): UplinkPlan => {
            const net = net64(u.provider, id);
            return {
                provider: u.provider, ifname: `up${k}`, prefix: `${formatIpv6(net)}/64`,
                address: formatIpv6(net + hostOffset.get(u.provider)!), gateway: formatIpv6(net + 1n), gatewayBfd: !node.ec2,
            };
        });
        const overlayAddress = new Map(node.uplinks.map((u) => [u.provider, formatIpv6(net64(u.provider, OVERLAY_SUBNET) + BigInt(id))]));
        return [node.name, { id, loopback: formatIpv6(loopbackBase + BigInt(id)), uplinks, overlayAddress }];
    }));

    // Who is on each provider's segment, so that peers are found without a scan per node.
    const onProvider = new Map<string, SiteNode[]>();
    for (const n of site.nodes) for (const u of n.uplinks) {
        const list = onProvider.get(u.provider) ?? [];
        list.push(n);
        onProvider.set(u.provider, list);
    }
    const hubsOnProvider = new Map([...onProvider].map(([p, list]) => [p, list.filter((n) => hubSet.has(n.name))]));
    const transport = site.overlay.transport!;

    const nodes = site.nodes.map((node): NodePlan => {
        const me = addressed.get(node.name)!;
        const hub = hubSet.has(node.name);
        const overlays = me.uplinks.map((u, k): OverlayPlan => {
            const candidates = hub ? onProvider.get(u.provider)! : hubsOnProvider.get(u.provider)!;
            const firstHub = candidates.find((p) => p.name !== node.name && hubSet.has(p.name))?.name;
            return {
                ...(transport === "wireguard" && !hub && firstHub ? { loopbacksVia: firstHub } : {}),
                provider: u.provider,
                transport,
                ifname: `ov${k}`,
                underlay: { ifname: u.ifname, local: u.address },
                vni: 0x10000 + fnv16(u.provider),
                mac: tunnelMac(me.id, u.provider),
                port: transport === "vxlan" ? VXLAN_PORT : WIREGUARD_PORT + k,
                mtu: UNDERLAY_MTU - OVERHEAD[transport],
                prefix: overlayPrefix.get(u.provider)!,
                address: me.overlayAddress.get(u.provider)!,
                peers: candidates.filter((p) => p.name !== node.name).map((p) => {
                    const peer = addressed.get(p.name)!;
                    return {
                        node: p.name,
                        endpoint: peer.uplinks.find((x) => x.provider === u.provider)!.address,
                        address: peer.overlayAddress.get(u.provider)!,
                        loopback: peer.loopback,
                        hub: hubSet.has(p.name),
                    };
                }),
            };
        });
        return {
            name: node.name,
            id: me.id,
            role: node.role,
            failureDomain: node.failureDomain,
            hub,
            loopback: me.loopback,
            uplinks: me.uplinks,
            overlays,
            sensors: node.uplinks.map((u) => ({ provider: u.provider, prefix: `${formatIpv6(net64(u.provider, SENSOR_SUBNET_BASE + me.id))}/64` })),
        };
    });

    // A spoke that shares no provider with any hub would be cut off from the overlay.
    for (const n of nodes) {
        if (!n.hub && n.overlays.every((o) => o.peers.length === 0)) {
            throw new PlanError(`node '${n.name}' shares no provider with any hub (${hubs.join(", ")}), so the overlay cannot reach it; give it an uplink to one of their providers`);
        }
    }
    return { site: site.name, loopbackPrefix, hubs, nodes };
}

/**
 * Rules the schema cannot see: each provider block must be a /48 (what the layout assumes) and
 * the explicit ids must fit. Overlaps, IPv4 and duplicate names are refused by model/site/model.ts
 * already; they are checked again here because planners are also called with hand-built sites.
 */
function checkPools(site: Site): void {
    const seen = new Map<string, string>();
    for (const p of site.providers) {
        if (p.prefix.includes(".")) throw new PlanError(`provider '${p.name}': ${p.prefix} is IPv4; the site is IPv6-only`);
        const range = IPv6CidrRange.fromCidr(p.prefix);
        if (Number(range.cidrPrefix.getValue()) !== 48) throw new PlanError(`provider '${p.name}': ${p.prefix} is not a /48`);
        for (const [other, prefix] of seen) {
            const r = IPv6CidrRange.fromCidr(prefix);
            if (range.isOverlapping(r) || range.contains(r) || range.inside(r)) {
                throw new PlanError(`providers '${other}' (${prefix}) and '${p.name}' (${p.prefix}) overlap`);
            }
        }
        seen.set(p.name, p.prefix);
    }
    const names = new Set<string>();
    for (const n of site.nodes) {
        if (names.has(n.name)) throw new PlanError(`node name '${n.name}' is used twice`);
        names.add(n.name);
        if (n.id !== undefined && (n.id < 1 || n.id > NODE_ID_MAX)) throw new PlanError(`node '${n.name}': id ${n.id} is outside the pool 1-${NODE_ID_MAX}`);
        for (const u of n.uplinks) {
            if (!site.providers.some((p) => p.name === u.provider)) throw new PlanError(`node '${n.name}': uplink to unknown provider '${u.provider}'`);
        }
    }
}

/** A locally administered unicast MAC (02:...) from the node's number and the provider's name. */
function tunnelMac(id: number, provider: string): string {
    const p = fnv16(provider);
    return [0x02, 0x6e, p >> 8, p & 0xff, id >> 8, id & 0xff].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** One node's plan, by name. */
export function nodePlan(plan: SitePlan, name: string): NodePlan {
    const n = plan.nodes.find((x) => x.name === name);
    if (!n) throw new PlanError(`site '${plan.site}' has no node '${name}'`);
    return n;
}
