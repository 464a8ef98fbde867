// Pure planner for a data center's AWS network: from the site and its plan (model/network/site-plan.ts)
// to the VPC's IPv6 blocks, one subnet per EC2 node uplink, each instance's interfaces, and the
// firewall. components/aws/vpc.ts and nixos-instance.ts apply it; nothing here calls AWS.
//
// The site planner already gave every uplink its /64 inside its provider's /48, and the node its
// address there. The VPC takes each provider's /48 as one of its IPv6 blocks (brought to AWS
// with BYOIP and held in an IPAM pool), so each uplink /64 can be a subnet of the VPC in the
// node's availability zone, and each interface gets exactly its planned address: the same
// agent, BFD, overlay and deploy code then runs on EC2 nodes as on park nodes.
import type { Site } from "../site/model";
import { PlanError } from "./addressing";
import { VXLAN_PORT, WIREGUARD_PORT, type SitePlan } from "./site-plan";

/**
 * AWS gives every VPC an IPv4 block, whether it is used or not. nublar takes the smallest one
 * (a /28) and no subnet draws from it: every subnet is IPv6-only (ipv6Native).
 */
export const VPC_IPV4_CIDR = "10.255.255.0/28";

export type AwsDefaultRoute = { kind: "internet-gateway" } | { kind: "virtual-gateway"; id: string };

export interface AwsBlockPlan {
    provider: string;
    /** The provider's /48, as the site describes it. */
    prefix: string;
    ipamPoolId: string;
    /** Where this block's subnets send ::/0. */
    defaultRoute: AwsDefaultRoute;
}

export interface AwsSubnetPlan {
    /** `<node>-<ifname>`: stable, and unique in the site. */
    key: string;
    node: string;
    provider: string;
    /** The node's uplink /64 on this provider. */
    prefix: string;
    availabilityZone: string;
}

export interface AwsInterfacePlan {
    /** 0 is the instance's primary interface (the one deploys reach); the others are attached after launch. */
    deviceIndex: number;
    /** The name the plan gives it on the node (up0, up1, ...); NixOS names the NIC by its MAC. */
    ifname: string;
    provider: string;
    subnet: string;
    address: string;
}

export interface AwsInstancePlan {
    node: string;
    role: string;
    availabilityZone: string;
    instanceType: string;
    ami: string;
    rootVolumeGiB: number;
    /**
     * Hubs forward between spokes, so AWS's source/destination check must be off on their
     * interfaces (it drops packets not addressed from or to the interface).
     */
    forwards: boolean;
    /** Runs Nginx in front of the site's ingress services (edge nodes): opens their ports. */
    ingress: boolean;
    interfaces: AwsInterfacePlan[];
    /** Where deploys reach it: its address on an Internet-routed block, else its first uplink's. */
    sshAddress: string;
}

export interface AwsFirewallRule {
    description: string;
    protocol: "tcp" | "udp" | "icmpv6";
    /** Absent for ICMPv6: every type. */
    fromPort?: number;
    toPort?: number;
    /** One source prefix per rule: what an AWS security group rule takes. */
    source: string;
}

export interface AwsNetworkPlan {
    site: string;
    region: string;
    ipv4Cidr: string;
    blocks: AwsBlockPlan[];
    subnets: AwsSubnetPlan[];
    instances: AwsInstancePlan[];
    firewall: {
        /** Every EC2 node: ICMPv6, SSH, the overlay's tunnels. */
        nodes: AwsFirewallRule[];
        /** Edge nodes too: the ingress services' ports, from anywhere. */
        ingress: AwsFirewallRule[];
    };
}

/** AWS's default quotas that a plan must fit (a quota increase is a support request). */
export const AWS_LIMITS = { subnetsPerVpc: 200, ipv6BlocksPerVpc: 5, inboundRulesPerSecurityGroup: 60 } as const;

/** The site's AWS network, or undefined when it has no EC2 nodes. Throws PlanError naming what does not fit. */
export function planAwsNetwork(site: Site, plan: SitePlan): AwsNetworkPlan | undefined {
    const ec2 = site.nodes.filter((n) => n.ec2);
    if (!ec2.length) return undefined;
    const { aws } = site;
    if (!aws?.vpc || !aws.nixos) throw new PlanError(`site '${site.name}' has EC2 nodes but no aws.vpc or aws.nixos (the site model requires both)`);
    const nixos = aws.nixos;

    const blocks = aws.vpc.uplinks.map((u): AwsBlockPlan => {
        const r = u.route;
        if (r !== "internet-gateway" && !("virtualGatewayId" in r)) throw new PlanError(`aws.vpc.uplinks '${u.provider}': a transit gateway cannot serve an IPv6-only VPC (the site model refuses it)`);
        return {
            provider: u.provider,
            prefix: site.providers.find((p) => p.name === u.provider)!.prefix,
            ipamPoolId: u.ipamPoolId,
            defaultRoute: r === "internet-gateway" ? { kind: "internet-gateway" } : { kind: "virtual-gateway", id: r.virtualGatewayId },
        };
    });
    if (blocks.length > AWS_LIMITS.ipv6BlocksPerVpc) {
        throw new PlanError(`aws.vpc.uplinks: ${blocks.length} IPv6 blocks, but a VPC takes at most ${AWS_LIMITS.ipv6BlocksPerVpc}`);
    }
    const internet = new Set(blocks.filter((b) => b.defaultRoute.kind === "internet-gateway").map((b) => b.provider));

    const subnets: AwsSubnetPlan[] = [];
    const instances = ec2.map((node): AwsInstancePlan => {
        const planned = plan.nodes.find((p) => p.name === node.name)!;
        // The interface deploys reach (on an Internet-routed block) is the instance's primary one:
        // before the agent's source routes exist, replies leave by the primary interface, and
        // AWS drops what leaves an interface from another's address.
        const primary = Math.max(0, planned.uplinks.findIndex((u) => internet.has(u.provider)));
        const order = [planned.uplinks[primary], ...planned.uplinks.filter((_, k) => k !== primary)];
        const interfaces = order.map((u, deviceIndex): AwsInterfacePlan => {
            const key = `${node.name}-${u.ifname}`;
            subnets.push({ key, node: node.name, provider: u.provider, prefix: u.prefix, availabilityZone: node.failureDomain });
            return { deviceIndex, ifname: u.ifname, provider: u.provider, subnet: key, address: u.address };
        });
        const ssh = interfaces[0];
        return {
            node: node.name,
            role: node.role,
            availabilityZone: node.failureDomain,
            instanceType: node.ec2!.instanceType ?? nixos.instanceType,
            ami: nixos.ami,
            rootVolumeGiB: nixos.rootVolumeGiB,
            forwards: planned.hub,
            ingress: node.role === "edge" && site.ingress.length > 0,
            interfaces,
            sshAddress: ssh.address,
        };
    });
    if (subnets.length > AWS_LIMITS.subnetsPerVpc) {
        throw new PlanError(`the VPC needs ${subnets.length} subnets (one per EC2 node uplink), over AWS's default quota of ${AWS_LIMITS.subnetsPerVpc}; raise the quota or split the data center`);
    }

    const sitePrefixes = site.providers.map((p) => p.prefix);
    const nodes: AwsFirewallRule[] = [
        // IPv6 does not work without ICMPv6: neighbour discovery, and path MTU discovery (routers
        // never fragment) across the tunnels' smaller MTU.
        { description: "ICMPv6 (neighbour and path MTU discovery)", protocol: "icmpv6", source: "::/0" },
        ...[...sitePrefixes, ...aws.vpc.sshFrom].map((source): AwsFirewallRule => ({ description: "SSH (deploys, nublar CLI)", protocol: "tcp", fromPort: 22, toPort: 22, source })),
        // Only the tunnels' outer packets cross the VPC: BFD path sessions, the bus and the ledger
        // run inside them, between loopbacks.
        ...sitePrefixes.map((source): AwsFirewallRule => site.overlay.transport === "vxlan"
            ? { description: "overlay (VXLAN)", protocol: "udp", fromPort: VXLAN_PORT, toPort: VXLAN_PORT, source }
            : { description: "overlay (WireGuard)", protocol: "udp", fromPort: WIREGUARD_PORT, toPort: WIREGUARD_PORT + maxUplinks(site) - 1, source }),
    ];
    const ports = [...new Set(site.ingress.map((s) => s.port))].sort((a, b) => a - b);
    const ingress = ports.map((port): AwsFirewallRule => ({ description: `ingress services on ${port}`, protocol: "tcp", fromPort: port, toPort: port, source: "::/0" }));
    for (const [name, rules] of [["nodes", nodes], ["ingress", ingress]] as const) {
        if (rules.length > AWS_LIMITS.inboundRulesPerSecurityGroup) {
            throw new PlanError(`the ${name} security group needs ${rules.length} inbound rules, over AWS's default quota of ${AWS_LIMITS.inboundRulesPerSecurityGroup}: shorten aws.vpc.sshFrom${name === "ingress" ? " or use fewer ingress ports" : ""}`);
        }
    }
    return { site: site.name, region: aws.region, ipv4Cidr: VPC_IPV4_CIDR, blocks, subnets, instances, firewall: { nodes, ingress } };
}

function maxUplinks(site: Site): number {
    return Math.max(...site.nodes.map((n) => n.uplinks.length));
}
