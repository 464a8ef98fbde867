// The data center's AWS network plan: every EC2 node uplink is a subnet of its provider's
// block, in the node's zone, and every interface gets exactly the address the site planner
// gave it, so the agent's and the deploy's view of the node is the VPC's.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { IPv6CidrRange } from "ip-num";
import { dcSiteInput, labSiteInput } from "../site/fixtures";
import { parseSite } from "../site/load";
import { PlanError } from "./addressing";
import { planAwsNetwork, VPC_IPV4_CIDR } from "./aws-plan";
import { planSite } from "./site-plan";

const inside = (inner: string, outer: string) => {
    const a = IPv6CidrRange.fromCidr(inner);
    const b = IPv6CidrRange.fromCidr(outer);
    return a.inside(b) || a.isEquals(b);
};

test("one subnet per EC2 node uplink: the planned /64, inside its provider's block, in the node's zone", () => {
    const site = parseSite(dcSiteInput());
    const plan = planSite(site);
    const aws = planAwsNetwork(site, plan)!;
    assert.deepEqual(aws.blocks.map((b) => [b.provider, b.prefix, b.defaultRoute.kind]), [
        ["aws-transit", "2001:db8:3100::/48", "internet-gateway"], ["equinix", "2001:db8:3200::/48", "virtual-gateway"],
    ]);
    assert.equal(aws.subnets.length, 8);
    for (const node of plan.nodes) {
        const inst = aws.instances.find((i) => i.node === node.name)!;
        assert.equal(inst.availabilityZone, site.nodes.find((n) => n.name === node.name)!.failureDomain);
        assert.deepEqual(inst.interfaces.map((i) => [i.deviceIndex, i.ifname, i.address]), node.uplinks.map((u, k) => [k, u.ifname, u.address]));
        for (const [k, u] of node.uplinks.entries()) {
            const subnet = aws.subnets.find((s) => s.key === inst.interfaces[k].subnet)!;
            assert.equal(subnet.prefix, u.prefix);
            assert.equal(subnet.availabilityZone, inst.availabilityZone);
            assert.ok(inside(subnet.prefix, aws.blocks.find((b) => b.provider === u.provider)!.prefix), `${subnet.prefix} in ${u.provider}`);
            assert.ok(inside(`${u.address}/128`, subnet.prefix));
            // AWS reserves ::0-::3 of each subnet.
            assert.ok(BigInt(IPv6CidrRange.fromCidr(`${u.address}/128`).getFirst().getValue()) - BigInt(IPv6CidrRange.fromCidr(subnet.prefix).getFirst().getValue()) >= 4n);
        }
        // Reached on the Internet-routed block.
        assert.equal(inst.sshAddress, node.uplinks.find((u) => u.provider === "aws-transit")!.address);
        assert.equal(inst.forwards, node.hub);
        assert.equal(inst.ingress, node.role === "edge");
    }
    assert.equal(new Set(aws.subnets.map((s) => s.availabilityZone)).size, 3);
});

test("the firewall: ICMPv6, SSH from the site and the operators, the overlay's ports, ingress on edges; IPv4 nowhere but the VPC's mandatory block", () => {
    const site = parseSite(dcSiteInput());
    const aws = planAwsNetwork(site, planSite(site))!;
    assert.deepEqual(aws.firewall.nodes.filter((r) => r.protocol === "icmpv6").map((r) => r.source), ["::/0"]);
    assert.deepEqual(aws.firewall.nodes.filter((r) => r.fromPort === 22).map((r) => r.source), ["2001:db8:3100::/48", "2001:db8:3200::/48", "2001:db8:ff00::/40"]);
    // WireGuard (the default outside the lab) listens on 51820 + uplink index.
    assert.deepEqual(aws.firewall.nodes.filter((r) => r.protocol === "udp").map((r) => [r.fromPort, r.toPort, r.source]), [
        [51820, 51821, "2001:db8:3100::/48"], [51820, 51821, "2001:db8:3200::/48"],
    ]);
    assert.deepEqual(aws.firewall.ingress.map((r) => [r.protocol, r.fromPort, r.source]), [["tcp", 443, "::/0"]]);
    const text = JSON.stringify({ ...aws, ipv4Cidr: undefined });
    assert.doesNotMatch(text, /\d+\.\d+\.\d+\.\d+/);
    assert.equal(aws.ipv4Cidr, VPC_IPV4_CIDR);
    const vx = parseSite({ ...dcSiteInput(), overlay: { transport: "vxlan" } });
    assert.deepEqual(planAwsNetwork(vx, planSite(vx))!.firewall.nodes.filter((r) => r.protocol === "udp").map((r) => r.fromPort), [4789, 4789]);
});

test("a node's instance type overrides the site's; a site without EC2 nodes has no AWS network; over-quota plans are refused", () => {
    const raw = dcSiteInput();
    raw.nodes[2].ec2 = { instanceType: "r7i.2xlarge" };
    const site = parseSite(raw);
    assert.deepEqual(planAwsNetwork(site, planSite(site))!.instances.map((i) => i.instanceType), ["m7i.large", "m7i.large", "r7i.2xlarge", "m7i.large"]);
    const lab = parseSite(labSiteInput(["gate", "app"]));
    assert.equal(planAwsNetwork(lab, planSite(lab)), undefined);
    const many = dcSiteInput();
    many.aws.vpc.sshFrom = Array.from({ length: 60 }, (_, i) => `2001:db8:ff${(i + 16).toString(16)}::/48`);
    const big = parseSite(many);
    assert.throws(() => planAwsNetwork(big, planSite(big)), (e: Error) => e instanceof PlanError && /nodes security group needs 65 inbound rules.*aws.vpc.sshFrom/.test(e.message));
});

test("the interface on an Internet-routed block is the instance's primary one, whatever the uplinks' order", () => {
    const raw = dcSiteInput();
    for (const n of raw.nodes) n.uplinks.reverse();
    const site = parseSite(raw);
    const plan = planSite(site);
    for (const inst of planAwsNetwork(site, plan)!.instances) {
        const node = plan.nodes.find((n) => n.name === inst.node)!;
        assert.deepEqual(inst.interfaces.map((i) => [i.deviceIndex, i.ifname, i.provider]), [[0, "up1", "aws-transit"], [1, "up0", "equinix"]]);
        assert.equal(inst.sshAddress, node.uplinks.find((u) => u.provider === "aws-transit")!.address);
    }
});
