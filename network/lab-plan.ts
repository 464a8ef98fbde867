// Pure planner for the lab park: from a lab site to the namespaces, links,
// addresses and SSH endpoints that components/lab applies on this machine.
// No I/O here; the same site always gives the same plan.
import type { Site } from "../site/model";
import { hostAddress, nodeIds, PlanError } from "./addressing";
import { loopbackOf, uplinkPrefix } from "./agent-plan";

export interface LabUplinkPlan {
    provider: string;
    /** Interface name inside the node's namespace. */
    ifname: string;
    /** The provider router's namespace, and the interface name inside it. */
    routerNetns: string;
    routerIfname: string;
    /** The /64 on this link, carved from the provider's /48 by node number. */
    prefix: string;
    address: string;
    routerAddress: string;
}

export interface LabNodePlan {
    name: string;
    id: number;
    netns: string;
    role: string;
    failureDomain: string;
    /** The node's loopback /128 (network/agent-plan.ts allocates it). */
    loopback: string;
    uplinks: LabUplinkPlan[];
    mgmt: { ifname: string; hostIfname: string; address: string };
}

export interface LabRouterPlan {
    provider: string;
    netns: string;
    prefix: string;
    /**
     * Routes to the nodes' loopbacks through each node's uplink: the provider carries the
     * site's loopbacks, as the overlay will (issue 5).
     */
    loopbackRoutes: { destination: string; via: string; dev: string }[];
}

export interface LabPlan {
    site: string;
    tag: string;
    /** Where runtime files (keys, sshd configs, pid files) live, relative to the state root. */
    stateSubdir: string;
    mgmt: { bridge: string; prefix: string; hostAddress: string };
    routers: LabRouterPlan[];
    nodes: LabNodePlan[];
}

export function planLab(site: Site): LabPlan {
    if (site.kind !== "lab" || !site.lab) {
        throw new PlanError(`site '${site.name}' is of kind '${site.kind}', not 'lab': the lab park only plans lab sites`);
    }
    const { tag, managementPrefix } = site.lab;
    const ids = nodeIds(site);

    const nodes = site.nodes.map((node): LabNodePlan => {
        const id = ids.get(node.name)!;
        const hex = id.toString(16).padStart(4, "0");
        return {
            name: node.name,
            id,
            netns: `nbl-${tag}-${node.name}`,
            role: node.role,
            failureDomain: node.failureDomain,
            loopback: loopbackOf(site, id),
            uplinks: node.uplinks.map((up, k) => {
                const prefix = uplinkPrefix(site, up.provider, id);
                return {
                    provider: up.provider,
                    ifname: `up${k}`,
                    routerNetns: routerNetns(tag, up.provider),
                    routerIfname: `n${hex}`,
                    prefix,
                    routerAddress: hostAddress(prefix, 1),
                    address: hostAddress(prefix, 2),
                };
            }),
            // Interface names are limited to 15 bytes: "nb" + tag (<= 8) + "." + 4 hex digits.
            mgmt: { ifname: "mgmt0", hostIfname: `nb${tag}.${hex}`, address: hostAddress(managementPrefix, 0x10000 + id) },
        };
    });

    const used = new Set(site.nodes.flatMap((n) => n.uplinks.map((u) => u.provider)));
    const routers = site.providers
        .filter((p) => used.has(p.name))
        .map((p) => ({
            provider: p.name,
            netns: routerNetns(tag, p.name),
            prefix: p.prefix,
            loopbackRoutes: nodes.flatMap((n) => n.uplinks.filter((u) => u.provider === p.name)
                .map((u) => ({ destination: `${n.loopback}/128`, via: u.address, dev: u.routerIfname }))),
        }));

    const clash = nodes.find((n) => routers.some((r) => r.netns === n.netns));
    if (clash) throw new PlanError(`node '${clash.name}' would share namespace ${clash.netns} with a provider router; rename it`);

    return {
        site: site.name,
        tag,
        stateSubdir: `lab/${tag}`,
        mgmt: { bridge: `nb${tag}`, prefix: managementPrefix, hostAddress: hostAddress(managementPrefix, 1) },
        routers,
        nodes,
    };
}

function routerNetns(tag: string, provider: string): string {
    return `nbl-${tag}-p-${provider}`;
}
