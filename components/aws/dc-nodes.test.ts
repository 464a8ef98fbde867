// A data center's EC2 nodes under Pulumi mocks, through the Site component: the VPC takes the
// providers' blocks from their IPAM pools, every uplink is an IPv6-only subnet at its planned
// /64, every interface has its planned address, and each node's deploy reaches that address
// pinning the host key nublar generated. Also the first-boot script, run for real in a
// scratch root, and its hardware configuration through nix-instantiate --parse.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { utils } from "ssh2";
import { planSite } from "../../network/site-plan";
import { policies } from "../../policy/policies";
import { validateResource } from "../../policy/testing";
import { dcSiteInput } from "../../site/fixtures";
import { parseSite } from "../../site/load";
import { settled } from "../../test/helpers/pulumi-mocks";
import { ec2HardwareConfiguration, renderUserData } from "./user-data";

interface Registered { type: string; name: string; inputs: Record<string, any>; id: string }
const registered: Registered[] = [];
/** What GeneratedKey gives back, by kind: an OpenSSH line for a host key, a WireGuard key otherwise. */
const publicKeyOf = (kind: string, name: string) => kind === "ssh-host"
    ? `ssh-ed25519 AAAA${Buffer.from(name).toString("base64").replace(/=/g, "")} ${name}`
    : Buffer.alloc(32, name).toString("base64");
const mac = (n: number) => `0a:11:22:33:44:${n.toString(16).padStart(2, "0")}`;

before(async () => {
    let enis = 0;
    await pulumi.runtime.setMocks({
        newResource(args) {
            const id = `${args.name}-id`;
            registered.push({ type: args.type, name: args.name, inputs: args.inputs, id });
            const extra = args.type.endsWith("nixos:GeneratedKey") ? { value: `PRIVATE ${args.name}`, publicKey: publicKeyOf(args.inputs.kind, args.name) }
                : args.type.endsWith("nixos:Deployment") ? { generation: 1, digest: "d" }
                : args.type === "aws:ec2/networkInterface:NetworkInterface" ? { macAddress: mac(++enis) } : {};
            return { id, state: { ...args.inputs, ...extra } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

async function dc(raw: unknown = dcSiteInput()) {
    const { Site } = await import("../site");
    registered.length = 0;
    const site = parseSite(raw);
    const { resources } = await settled((opts) => new Site("dc", { site, stateRoot: "/tmp/nublar-unit" }, opts));
    const of = (t: string) => registered.filter((r) => r.type === t || (t.startsWith("nublar:nixos:") && r.type.endsWith(t.slice("nublar:".length))));
    return { site, plan: planSite(site), of, resources };
}

test("the VPC: the providers' /48s from their IPAM pools, AWS's mandatory IPv4 /28 unused, a route table per block", async () => {
    const { of } = await dc();
    const [vpc] = of("aws:ec2/vpc:Vpc");
    assert.equal(vpc.inputs.region, "eu-west-1");
    assert.equal(vpc.inputs.cidrBlock, "10.255.255.0/28");
    assert.deepEqual([vpc.inputs.ipv6CidrBlock, vpc.inputs.ipv6IpamPoolId], ["2001:db8:3100::/48", "ipam-pool-0123456789abcdef0"]);
    assert.deepEqual(of("aws:ec2/vpcIpv6CidrBlockAssociation:VpcIpv6CidrBlockAssociation").map((a) => [a.inputs.ipv6CidrBlock, a.inputs.ipv6IpamPoolId, a.inputs.vpcId]),
        [["2001:db8:3200::/48", "ipam-pool-0fedcba987654321f", vpc.id]]);
    const routes = of("aws:ec2/route:Route");
    assert.ok(routes.every((r) => r.inputs.destinationIpv6CidrBlock === "::/0" && !r.inputs.destinationCidrBlock));
    const igw = of("aws:ec2/internetGateway:InternetGateway")[0];
    assert.deepEqual(routes.map((r) => r.inputs.gatewayId).sort(), [igw.id, "vgw-0123456789abcdef0"].sort());
    // No IPv4 subnet, no IPv4 route, no IPv4 firewall rule anywhere.
    assert.ok(of("aws:ec2/subnet:Subnet").every((s) => s.inputs.ipv6Native === true && s.inputs.cidrBlock === undefined));
    const rules = [...of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"), ...of("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")];
    assert.ok(rules.length > 0 && rules.every((r) => r.inputs.cidrIpv6 && !r.inputs.cidrIpv4));
});

test("every uplink: an IPv6-only subnet at its planned /64 in the node's zone, and an interface at its planned address", async () => {
    const { of, plan, site } = await dc();
    const subnets = of("aws:ec2/subnet:Subnet");
    const enis = of("aws:ec2/networkInterface:NetworkInterface");
    assert.equal(subnets.length, 8);
    for (const node of plan.nodes) {
        const zone = site.nodes.find((n) => n.name === node.name)!.failureDomain;
        for (const u of node.uplinks) {
            const subnet = subnets.find((s) => s.inputs.ipv6CidrBlock === u.prefix)!;
            assert.ok(subnet, `${node.name} ${u.ifname}: subnet ${u.prefix}`);
            assert.equal(subnet.inputs.availabilityZone, zone);
            const eni = enis.find((e) => e.inputs.subnetId === subnet.id)!;
            assert.deepEqual(eni.inputs.ipv6Addresses, [u.address]);
            // Hubs forward for spokes: AWS's source/destination check must be off on them only.
            assert.equal(eni.inputs.sourceDestCheck, !node.hub, `${node.name} ${u.ifname}`);
        }
    }
    const attachments = of("aws:ec2/networkInterfaceAttachment:NetworkInterfaceAttachment");
    assert.deepEqual(attachments.map((a) => a.inputs.deviceIndex), [1, 1, 1, 1]);
});

test("instances: the configured NixOS AMI in each node's zone, IMDSv2 over IPv6, encrypted root, a secret first-boot script", async () => {
    const raw = dcSiteInput();
    raw.nodes[2].ec2 = { instanceType: "r7i.xlarge" };
    raw.nodes.pop();
    raw.ingress[0].upstreams = ["ledger-1"];
    const { of, resources } = await dc(raw);
    const instances = of("aws:ec2/instance:Instance");
    assert.deepEqual(instances.map((i) => [i.inputs.availabilityZone, i.inputs.instanceType, i.inputs.ami]).sort(), [
        ["eu-west-1a", "m7i.large", "ami-0123456789abcdef0"], ["eu-west-1b", "m7i.large", "ami-0123456789abcdef0"], ["eu-west-1c", "r7i.xlarge", "ami-0123456789abcdef0"],
    ]);
    for (const i of instances) {
        assert.deepEqual(i.inputs.metadataOptions, { httpEndpoint: "enabled", httpProtocolIpv6: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 });
        assert.deepEqual(i.inputs.rootBlockDevice, { volumeSize: 40, volumeType: "gp3", encrypted: true });
        assert.ok(i.inputs.primaryNetworkInterface.networkInterfaceId.endsWith("-up0-id"));
    }
    // The user data carries the host's private key: it must be a secret output.
    const instance = resources.find((r) => (r as any).__pulumiType === "aws:ec2/instance:Instance" || (r as any).constructor?.name === "Instance") as any;
    assert.ok(instance, "an aws.ec2.Instance resource was constructed");
    assert.equal(await (pulumi.isSecret(instance.userData) as any), true);
    // Mocks see a secret input as its wrapper: { <sig>: ..., value }.
    const data = instances.find((i) => i.inputs.availabilityZone === "eu-west-1a")!.inputs.userData;
    const script = String(typeof data === "object" ? data.value : data);
    assert.match(script, /^#!\/bin\/sh\n/);
    assert.match(script, /cat > \/etc\/ssh\/ssh_host_ed25519_key <<'NUBLAR_KEY'\nPRIVATE dc-edge-1-host-key\nNUBLAR_KEY/);
    assert.match(script, /up0 = "0a:11:22:33:44:[0-9a-f]{2}";\n    up1 = "0a:11:22:33:44:[0-9a-f]{2}";/);
});

test("each node's deploy reaches its planned address on the Internet-routed block, pinning the generated key, waiting for the boot", async () => {
    const { of, plan } = await dc();
    const deployments = of("nublar:nixos:Deployment");
    assert.equal(deployments.length, 4);
    for (const d of deployments) {
        const node = plan.nodes.find((n) => n.name === d.inputs.node)!;
        const key = of("nublar:nixos:GeneratedKey").find((k) => k.name === `dc-${node.name}-host-key`)!;
        assert.deepEqual(d.inputs.access, {
            host: node.uplinks.find((u) => u.provider === "aws-transit")!.address, port: 22, user: "root",
            hostKey: publicKeyOf("ssh-host", key.name), reachableWithinMs: 600_000,
        });
        // A replaced instance is a new machine, deployed again.
        assert.equal(d.inputs.machine, `dc-${node.name}-id`);
    }
});

test("the nublar-sla pack finds nothing mandatory in the data center's resources", async () => {
    const { of: _of } = await dc();
    const found: string[] = [];
    for (const p of policies) {
        if (p.enforcementLevel === "advisory" || !("validateResource" in p)) continue;
        for (const r of registered) found.push(...(await validateResource(p as ResourceValidationPolicy, { type: r.type, name: r.name, props: r.inputs })).violations.map((v) => `${p.name} ${r.type} ${r.name}: ${v.message}`));
    }
    assert.deepEqual(found, []);
});

test("the first-boot script, run in a scratch root, installs the host key, the operators' keys and a hardware configuration that parses", (t) => {
    const host = utils.generateKeyPairSync("ed25519");
    const script = renderUserData({
        site: "dc-test", node: "edge-1", hostPrivateKey: host.private, hostPublicKey: host.public,
        authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyOne op@one", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyTwo op@two"],
        uplinkMacs: { up0: "0A:11:22:33:44:01", up1: "0a:11:22:33:44:02" },
    });
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-userdata-"));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    // The same script, rooted in the scratch folder, with systemctl a no-op.
    const rooted = script.replace(/(^|[\s>])\/(etc|root)\//gm, `$1${root}/$2/`).replace(/ \/(etc|root)(?= |$)/gm, ` ${root}/$1`).replace("systemctl restart", "true");
    const r = spawnSync("sh", ["-c", rooted], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const keyFile = path.join(root, "etc/ssh/ssh_host_ed25519_key");
    assert.equal(fs.readFileSync(keyFile, "utf8").trim(), host.private.trim());
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    const parsed = utils.parseKey(fs.readFileSync(keyFile, "utf8"));
    assert.ok(!(parsed instanceof Error) && (Array.isArray(parsed) ? parsed[0] : parsed).type === "ssh-ed25519");
    assert.equal(fs.readFileSync(path.join(root, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim(), host.public.trim());
    assert.equal(fs.readFileSync(path.join(root, "root/.ssh/authorized_keys"), "utf8").trim().split("\n").length, 2);
    const hw = fs.readFileSync(path.join(root, "etc/nixos/hardware-configuration.nix"), "utf8");
    assert.equal(hw, ec2HardwareConfiguration({ site: "dc-test", node: "edge-1", uplinkMacs: { up0: "0a:11:22:33:44:01", up1: "0a:11:22:33:44:02" } }));
    const nix = spawnSync("/usr/bin/nix-instantiate", ["--parse", "-E", hw], { encoding: "utf8", env: { ...process.env, NIX_CONFIG: "build-users-group =" } });
    assert.equal(nix.status, 0, nix.stderr);
    // Values that could break out of the script are refused.
    assert.throws(() => renderUserData({ site: "s", node: "n", hostPrivateKey: "a\nNUBLAR_KEY\nrm -rf /", hostPublicKey: host.public, authorizedKeys: [], uplinkMacs: {} }), /contains the line 'NUBLAR_KEY'/);
    assert.throws(() => ec2HardwareConfiguration({ site: "s", node: "n", uplinkMacs: { up0: "\"; evil" } }), /cannot name NIC 'up0'/);
});
