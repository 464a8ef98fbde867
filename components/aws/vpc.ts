// DataCenterNetwork: the data center's IPv6-only VPC, applied from its plan (model/network/aws-plan.ts).
//   - the VPC takes each provider's /48 from its IPAM pool (BYOIP), plus the /28 of IPv4 that
//     AWS requires of every VPC and that no subnet uses;
//   - one IPv6-only subnet per EC2 node uplink, in the node's zone;
//   - one route table per provider block: ::/0 to the Internet gateway, or to the provider's
//     Direct Connect virtual private gateway, which this component attaches to the VPC;
//   - two security groups: every node's (ICMPv6, SSH, the overlay) and the edges' ingress ports.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { AwsFirewallRule, AwsNetworkPlan } from "../../model/network/aws-plan";

export interface DataCenterNetworkArgs {
    plan: AwsNetworkPlan;
}

export class DataCenterNetwork extends pulumi.ComponentResource {
    readonly vpcId: pulumi.Output<string>;
    /** Subnet key (`<node>-<ifname>`) -> subnet id. */
    readonly subnetIds: Record<string, pulumi.Output<string>> = {};
    readonly nodeSecurityGroupId: pulumi.Output<string>;
    readonly ingressSecurityGroupId: pulumi.Output<string>;

    constructor(name: string, args: DataCenterNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:aws:DataCenterNetwork", name, {}, opts);
        const { plan } = args;
        const child = { parent: this };
        const region = plan.region;
        const tags = (what: string) => ({ Name: `${name}-${what}`, "nublar:site": plan.site });

        const [first, ...more] = plan.blocks;
        const vpc = new aws.ec2.Vpc(name, {
            region,
            cidrBlock: plan.ipv4Cidr,
            ipv6CidrBlock: first.prefix,
            ipv6IpamPoolId: first.ipamPoolId,
            enableDnsSupport: true,
            enableDnsHostnames: true,
            tags: tags("vpc"),
        }, child);
        const blocks = more.map((b) => new aws.ec2.VpcIpv6CidrBlockAssociation(`${name}-${b.provider}`, {
            region, vpcId: vpc.id, ipv6CidrBlock: b.prefix, ipv6IpamPoolId: b.ipamPoolId,
        }, child));

        const internetGateway = plan.blocks.some((b) => b.defaultRoute.kind === "internet-gateway")
            ? new aws.ec2.InternetGateway(name, { region, vpcId: vpc.id, tags: tags("igw") }, child)
            : undefined;
        const routeTables = new Map(plan.blocks.map((b) => [b.provider, new aws.ec2.RouteTable(`${name}-${b.provider}`, { region, vpcId: vpc.id, tags: tags(b.provider) }, child)] as const));

        for (const s of plan.subnets) {
            const subnet = new aws.ec2.Subnet(`${name}-${s.key}`, {
                region,
                vpcId: vpc.id,
                availabilityZone: s.availabilityZone,
                ipv6Native: true,
                ipv6CidrBlock: s.prefix,
                assignIpv6AddressOnCreation: true,
                enableResourceNameDnsAaaaRecordOnLaunch: true,
                tags: tags(s.key),
                // A subnet of a later block waits for the block to be the VPC's.
            }, { ...child, dependsOn: blocks });
            new aws.ec2.RouteTableAssociation(`${name}-${s.key}`, { region, subnetId: subnet.id, routeTableId: routeTables.get(s.provider)!.id }, child);
            this.subnetIds[s.key] = subnet.id;
        }

        // ::/0 per block. A provider's Direct Connect gateway must first be attached to this VPC
        // (to one VPC at a time: nublar owns the attachment).
        for (const b of plan.blocks) {
            const r = b.defaultRoute;
            const attached = r.kind === "virtual-gateway"
                ? [new aws.ec2.VpnGatewayAttachment(`${name}-${b.provider}`, { region, vpcId: vpc.id, vpnGatewayId: r.id }, child)]
                : [];
            new aws.ec2.Route(`${name}-${b.provider}-default`, {
                region, routeTableId: routeTables.get(b.provider)!.id, destinationIpv6CidrBlock: "::/0",
                gatewayId: r.kind === "internet-gateway" ? internetGateway!.id : r.id,
            }, { ...child, dependsOn: attached });
        }

        const group = (what: string, description: string, rules: AwsFirewallRule[], egress: boolean) => {
            const sg = new aws.ec2.SecurityGroup(`${name}-${what}`, { region, vpcId: vpc.id, description, tags: tags(what) }, child);
            rules.forEach((r, i) => new aws.vpc.SecurityGroupIngressRule(`${name}-${what}-${i}`, {
                region,
                securityGroupId: sg.id,
                description: r.description,
                ipProtocol: r.protocol,
                fromPort: r.protocol === "icmpv6" ? -1 : r.fromPort,
                toPort: r.protocol === "icmpv6" ? -1 : r.toPort,
                cidrIpv6: r.source,
            }, child));
            // Security groups made through the API lose AWS's default egress rule: say it.
            if (egress) new aws.vpc.SecurityGroupEgressRule(`${name}-${what}-egress`, { region, securityGroupId: sg.id, description: "everything out (IPv6)", ipProtocol: "-1", cidrIpv6: "::/0" }, child);
            return sg;
        };
        const nodes = group("nodes", `nublar ${plan.site}: EC2 nodes (ICMPv6, SSH, overlay)`, plan.firewall.nodes, true);
        const ingress = group("ingress", `nublar ${plan.site}: ingress services on edge nodes`, plan.firewall.ingress, false);

        this.vpcId = vpc.id;
        this.nodeSecurityGroupId = nodes.id;
        this.ingressSecurityGroupId = ingress.id;
        this.registerOutputs({ vpcId: this.vpcId, subnetIds: this.subnetIds, nodeSecurityGroupId: this.nodeSecurityGroupId, ingressSecurityGroupId: this.ingressSecurityGroupId });
    }
}
