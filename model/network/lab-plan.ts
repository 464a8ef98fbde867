// Pure planner for the lab park: from a lab site to the namespaces, links,
// addresses and SSH endpoints that components/lab applies on this machine.
// No I/O here; the same site always gives the same plan.
import type { Site } from "../site/model";
import { hostAddress, PlanError } from "./addressing";
import { planSite, type OverlayPlan, type SitePlan } from "./site-plan";

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
    /** The node's loopback /128 (model/network/site-plan.ts allocates it). */
    loopback: string;
    /** Hubs forward between the overlay's spokes. */
    hub: boolean;
    uplinks: LabUplinkPlan[];
    /** The node's tunnels (VXLAN in the lab), applied by the node's deploy (components/nixos). */
    overlays: OverlayPlan[];
    mgmt: { ifname: string; hostIfname: string; address: string };
}

export interface LabRouterPlan {
    provider: string;
    netns: string;
    /** The provider's /48. Its router knows only the uplink /64s (connected): loopbacks travel in the overlay. */
    prefix: string;
}

/** The lab's single-node Kubernetes cluster (lab/kube), when the site has `kubernetes`: a namespace of its own on the management bridge. */
export interface LabKubeNodePlan {
    netns: string;
    /** The Kubernetes node's name, and its zone label (one failure domain: the machine). */
    nodeName: string;
    zone: string;
    mgmt: { ifname: string; hostIfname: string; address: string };
    /**
     * Whether the ledger's CloudNativePG clusters run there (the site's kubernetes.ledger): the
     * cluster then imports their images and runs its own DNS (CoreDNS), by which their
     * instances find each other's Services.
     */
    ledger: boolean;
}

export interface LabPlan {
    site: string;
    tag: string;
    /** Where runtime files (keys, sshd configs, pid files) live, relative to the state root. */
    stateSubdir: string;
    mgmt: { bridge: string; prefix: string; hostAddress: string };
    routers: LabRouterPlan[];
    nodes: LabNodePlan[];
    kube?: LabKubeNodePlan;
}

export function planLab(site: Site, sitePlan: SitePlan = planSite(site)): LabPlan {
    if (site.kind !== "lab" || !site.lab) {
        throw new PlanError(`site '${site.name}' is of kind '${site.kind}', not 'lab': the lab park only plans lab sites`);
    }
    const { tag, managementPrefix } = site.lab;
    const nodes = sitePlan.nodes.map((node): LabNodePlan => {
        const id = node.id;
        const hex = id.toString(16).padStart(4, "0");
        return {
            name: node.name,
            id,
            netns: `nbl-${tag}-${node.name}`,
            role: node.role,
            failureDomain: node.failureDomain,
            loopback: node.loopback,
            hub: node.hub,
            uplinks: node.uplinks.map((u) => ({
                provider: u.provider,
                ifname: u.ifname,
                routerNetns: routerNetns(tag, u.provider),
                routerIfname: `n${hex}`,
                prefix: u.prefix,
                routerAddress: u.gateway,
                address: u.address,
            })),
            overlays: node.overlays,
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
        }));

    const clash = nodes.find((n) => routers.some((r) => r.netns === n.netns));
    if (clash) throw new PlanError(`node '${clash.name}' would share namespace ${clash.netns} with a provider router; rename it`);
    const kube: LabKubeNodePlan | undefined = site.kubernetes && {
        netns: `nbl-${tag}-k8s`,
        nodeName: `${tag}-k8s`,
        zone: "lab",
        // After the nodes' addresses (0x10000 + id, ids below 0x10000).
        mgmt: { ifname: "mgmt0", hostIfname: `nb${tag}.k8s`, address: hostAddress(managementPrefix, 0x20000) },
        ledger: site.kubernetes.ledger,
    };
    const kubeClash = kube && [...nodes.map((n) => n.netns), ...routers.map((r) => r.netns)].includes(kube.netns);
    if (kubeClash) throw new PlanError(`the lab's Kubernetes node would share namespace ${kube!.netns} with a node or router; rename the node 'k8s'`);

    return {
        site: site.name,
        tag,
        stateSubdir: `lab/${tag}`,
        mgmt: { bridge: `nb${tag}`, prefix: managementPrefix, hostAddress: hostAddress(managementPrefix, 1) },
        routers,
        nodes,
        ...(kube ? { kube } : {}),
    };
}

function routerNetns(tag: string, provider: string): string {
    return `nbl-${tag}-p-${provider}`;
}
