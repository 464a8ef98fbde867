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
import { newSshKeyPair } from "../../runtime/deploy/ssh-key";
import { planSite } from "../../model/network/site-plan";
import { policies } from "../../policy/policies";
import { validateResource } from "../../policy/testing";
import { dcSiteInput } from "../../model/site/fixtures";
import { parseSite } from "../../model/site/load";
import { settled } from "../../test/helpers/pulumi-mocks";
import { ec2HardwareConfiguration, IMDS_ADDRESSES, IMDS_NFT_TABLE, renderUserData } from "./user-data";

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

const OPERATOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKey operator@dc";

async function dc(raw: unknown = dcSiteInput(), operatorKeys: string[] = [OPERATOR_KEY]) {
    pulumi.runtime.setAllConfig({ "nublar:operatorKeys": JSON.stringify(operatorKeys) });
    const { Site } = await import("../site");
    registered.length = 0;
    const site = parseSite(raw);
    const { resources } = await settled((opts) => new Site("dc", { site, stateRoot: "/tmp/nublar-unit" }, opts));
    // nublar's own resources (nixos:Deployment, nixos:GeneratedKey) register as `nublar:<module>:<type>`.
    const of = (t: string) => registered.filter((r) => r.type === t || r.type === `nublar:${t}`);
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
    // The provider's gateway is attached to this VPC (a route to an unattached one fails).
    assert.deepEqual(of("aws:ec2/vpnGatewayAttachment:VpnGatewayAttachment").map((a) => [a.inputs.vpcId, a.inputs.vpnGatewayId]), [[vpc.id, "vgw-0123456789abcdef0"]]);
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
    assert.match(script, /\nSSH_HOST_ED25519_KEY:PRIVATE dc-edge-1-host-key\n/);
    assert.match(script, new RegExp(`cat > /root/.ssh/authorized_keys <<'NUBLAR_KEYS'\\n${OPERATOR_KEY}\\nNUBLAR_KEYS`));
    assert.match(script, /up0 = "0a:11:22:33:44:[0-9a-f]{2}";\n    up1 = "0a:11:22:33:44:[0-9a-f]{2}";/);
});

test("EC2 nodes without operator keys are refused, saying how to set them (nobody could log in)", async () => {
    await assert.rejects(dc(dcSiteInput(), []), /EC2 nodes but no operator keys: set nublar:operatorKeys/);
});

test("each node's deploy reaches its planned address on the Internet-routed block, pinning the generated key, waiting for the boot", async () => {
    const { of, plan } = await dc();
    const deployments = of("nixos:Deployment");
    assert.equal(deployments.length, 4);
    for (const d of deployments) {
        const node = plan.nodes.find((n) => n.name === d.inputs.node)!;
        const key = of("nixos:GeneratedKey").find((k) => k.name === `dc-${node.name}-host-key`)!;
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

/**
 * The first-boot script rooted in a scratch folder, with ip and systemctl recorded in `calls`, not
 * run; nft, iptables and ip6tables recorded in `imds` (nft's input in `imds.nft`) with what had
 * happened before them: an earlier ip or systemctl call, the host key on disk. Never the real ones.
 */
function rootedScript(script: string, root: string): string {
    const key = `${root}/etc/ssh/ssh_host_ed25519_key`;
    const before = `first=$([ -e ${root}/calls ] && echo no || echo yes) key=$([ -e ${key} ] && echo yes || echo no)`;
    return script
        .replace(/(^|[\s>'"])\/(etc|root|var\/lib|sys\/class\/net)(?=[\/\s]|$)/gm, `$1${root}/$2`)
        .replace("set -eu\n", [
            "set -eu",
            // `ip link set dev X name Y` renames the fake interface, as the kernel would.
            `ip() { echo "ip $*" >> ${root}/calls; if [ "$5" = name ]; then mv "${root}/sys/class/net/$4" "${root}/sys/class/net/$6"; fi; }`,
            `systemctl() { echo "systemctl $*" >> ${root}/calls; }`,
            `nft() { echo "nft $* ${before}" >> ${root}/imds; cat > ${root}/imds.nft; }`,
            `iptables() { echo "iptables $* ${before}" >> ${root}/imds; }`,
            `ip6tables() { echo "ip6tables $* ${before}" >> ${root}/imds; }`,
            "",
        ].join("\n"));
}

test("the first-boot script, run in a scratch root: the host key, the operators' keys, the NICs renamed by MAC, a hardware configuration that parses; once only", (t) => {
    const host = newSshKeyPair();
    const input = {
        site: "dc-test", node: "edge-1", hostPrivateKey: host.private, hostPublicKey: host.public,
        authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyOne op@one", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyTwo op@two"],
        uplinkMacs: { up0: "0A:11:22:33:44:01", up1: "0a:11:22:33:44:02" },
    };
    const script = renderUserData(input);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-userdata-"));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    // The machine as the image boots it: two NICs under their kernel names, up1's MAC on ens5.
    for (const [dev, mac] of [["ens5", "0a:11:22:33:44:02"], ["ens6", "0a:11:22:33:44:01"]]) {
        fs.mkdirSync(path.join(root, "sys/class/net", dev), { recursive: true });
        fs.writeFileSync(path.join(root, "sys/class/net", dev, "address"), `${mac}\n`);
    }
    const rooted = rootedScript(script, root);
    const run = () => spawnSync("sh", ["-c", rooted], { encoding: "utf8" });
    const r = run();
    assert.equal(r.status, 0, r.stderr);
    const keyFile = path.join(root, "etc/ssh/ssh_host_ed25519_key");
    assert.equal(fs.readFileSync(keyFile, "utf8").trim(), host.private.trim());
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    // OpenSSH itself derives the pinned public key from the installed private one.
    const derived = spawnSync("ssh-keygen", ["-y", "-f", keyFile], { encoding: "utf8" });
    assert.equal(derived.status, 0, derived.stderr);
    assert.equal(derived.stdout.trim().split(" ").slice(0, 2).join(" "), host.public.trim().split(" ").slice(0, 2).join(" "));
    assert.equal(fs.readFileSync(path.join(root, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim(), host.public.trim());
    assert.equal(fs.readFileSync(path.join(root, "root/.ssh/authorized_keys"), "utf8").trim().split("\n").length, 2);
    const calls = fs.readFileSync(path.join(root, "calls"), "utf8");
    assert.match(calls, /systemctl restart sshd.service/);
    assert.match(calls, /ip link set dev ens5 name up1\n/);
    assert.match(calls, /ip link set dev ens6 name up0\n/);
    // (Un-rooted: the rooting above also rewrote the paths inside it.)
    const hw = fs.readFileSync(path.join(root, "etc/nixos/hardware-configuration.nix"), "utf8").split(`${root}/`).join("/");
    assert.equal(hw, ec2HardwareConfiguration({ site: "dc-test", node: "edge-1", uplinkMacs: { up0: "0a:11:22:33:44:01", up1: "0a:11:22:33:44:02" } }));
    const nix = spawnSync("/usr/bin/nix-instantiate", ["--parse", "-E", hw], { encoding: "utf8", env: { ...process.env, NIX_CONFIG: "build-users-group =" } });
    assert.equal(nix.status, 0, nix.stderr);
    const nft = spawnSync("nft", ["-c", "-f", "-"], { input: IMDS_NFT_TABLE, encoding: "utf8" });
    assert.equal(nft.status, 0, `the IMDS rule: ${nft.stderr}`);
    assert.ok(hw.includes(IMDS_NFT_TABLE.split("\n")[2].trim()), "the hardware configuration carries the checked rule");
    assert.deepEqual(fs.readdirSync(path.join(root, "sys/class/net")).sort(), ["up0", "up1"]);
    // Amazon-init runs it again at every boot: names already right, nothing is written again.
    fs.writeFileSync(path.join(root, "root/.ssh/authorized_keys"), "rotated\n");
    fs.rmSync(path.join(root, "calls"));
    assert.equal(run().status, 0);
    assert.equal(fs.readFileSync(path.join(root, "root/.ssh/authorized_keys"), "utf8"), "rotated\n");
    assert.ok(!fs.existsSync(path.join(root, "calls")));
    // A reboot before the first deploy lost the names: they are given again, keys still untouched.
    fs.renameSync(path.join(root, "sys/class/net/up0"), path.join(root, "sys/class/net/ens6"));
    assert.equal(run().status, 0);
    assert.equal(fs.readFileSync(path.join(root, "calls"), "utf8"), "ip link set dev ens6 down\nip link set dev ens6 name up0\nip link set dev up0 up\n");
    assert.equal(fs.readFileSync(path.join(root, "root/.ssh/authorized_keys"), "utf8"), "rotated\n");
    // A rename that fails stops the script before anything is written or marked done.
    fs.rmSync(path.join(root, "var/lib/nublar"), { recursive: true });
    fs.rmSync(path.join(root, "etc/nixos/hardware-configuration.nix"));
    fs.renameSync(path.join(root, "sys/class/net/up0"), path.join(root, "sys/class/net/ens6"));
    const failing = spawnSync("sh", ["-c", rooted.replace(/^ip\(\) \{.*$/m, "ip() { return 1; }")], { encoding: "utf8" });
    assert.notEqual(failing.status, 0);
    assert.match(failing.stderr, /nublar: cannot name ens6 up0/);
    assert.ok(!fs.existsSync(path.join(root, "var/lib/nublar/first-boot.done")));
    assert.ok(!fs.existsSync(path.join(root, "etc/nixos/hardware-configuration.nix")));
});

/** Every file below `dir`, relative to it. */
const filesBelow = (dir: string): string[] => fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();

test("first boot: the metadata service is root's alone before anything else, and the host's private key is left nowhere but /etc/ssh (the image's copy of the user data rewritten)", (t) => {
    const host = newSshKeyPair();
    const script = renderUserData({ site: "dc-test", node: "edge-1", hostPrivateKey: host.private, hostPublicKey: host.public, authorizedKeys: [OPERATOR_KEY], uplinkMacs: { up0: "0a:11:22:33:44:01" } });
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-userdata-"));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    fs.mkdirSync(path.join(root, "sys/class/net/ens5"), { recursive: true });
    fs.writeFileSync(path.join(root, "sys/class/net/ens5/address"), "0a:11:22:33:44:01\n");
    // As the image leaves it: fetch-ec2-metadata's root-only copy, which amazon-init runs (`exec bash $userData`).
    const userData = path.join(root, "etc/ec2-metadata/user-data");
    const fetch = () => {
        fs.mkdirSync(path.dirname(userData), { recursive: true });
        fs.writeFileSync(userData, rootedScript(script, root), { mode: 0o600 });
    };
    fetch();
    const r = spawnSync("sh", [userData], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(root, "var/lib/nublar/first-boot.done")), "the script ran to its end from the file it rewrote");
    // The block came first: before any NIC was renamed, before the key was written.
    assert.equal(fs.readFileSync(path.join(root, "imds"), "utf8"), "nft -f - first=yes key=no\n");
    assert.match(fs.readFileSync(path.join(root, "calls"), "utf8"), /ip link set dev ens5 name up0/);
    const fed = fs.readFileSync(path.join(root, "imds.nft"), "utf8");
    assert.equal(fed, `add table inet nublar-imds\ndelete table inet nublar-imds\n${IMDS_NFT_TABLE}`);
    const check = spawnSync("nft", ["-c", "-f", "-"], { input: fed, encoding: "utf8" });
    assert.equal(check.status, 0, check.stderr);
    // The same table in the hardware configuration, which holds it from the first deploy on.
    const hw = fs.readFileSync(path.join(root, "etc/nixos/hardware-configuration.nix"), "utf8");
    for (const line of IMDS_NFT_TABLE.split("\n").slice(1, -2)) assert.ok(hw.includes(`    ${line}\n`), `the hardware configuration has '${line.trim()}'`);
    assert.match(hw, /^  systemd\.services\.fetch-ec2-metadata\.enable = false;$/m);

    // The private key: on disk in /etc/ssh only, root's alone, and nowhere else the script left it.
    const secret = host.private.trim().split("\n").slice(1, -1);
    const holders = () => filesBelow(root).filter((f) => {
        const text = fs.readFileSync(path.join(root, f), "utf8");
        return secret.some((l) => text.includes(l)) || text.includes("SSH_HOST_ED25519_KEY:");
    });
    assert.deepEqual(holders(), ["etc/ssh/ssh_host_ed25519_key"]);
    assert.equal(fs.statSync(path.join(root, "etc/ssh/ssh_host_ed25519_key")).mode & 0o777, 0o600);
    // The image's copy is still root's only, and still all the rest of the script.
    assert.equal(fs.statSync(userData).mode & 0o777, 0o600);
    const left = fs.readFileSync(userData, "utf8");
    assert.match(left, /^SSH_HOST_ED25519_KEY_PUB:ssh-ed25519 /m);
    assert.ok(left.includes(OPERATOR_KEY) && left.includes("hardware-configuration.nix"));
    assert.ok(!filesBelow(path.dirname(userData)).some((f) => f !== "user-data"), "no temporary copy left");

    // A reboot before the first deploy: the image fetches the user data again, key and all, and
    // apply-ec2-data finds the key already there. The block comes first again, then the copy goes.
    fetch();
    fs.rmSync(path.join(root, "imds"));
    fs.rmSync(path.join(root, "calls"));
    const again = spawnSync("sh", [userData], { encoding: "utf8" });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(fs.readFileSync(path.join(root, "imds"), "utf8"), "nft -f - first=yes key=yes\n");
    assert.deepEqual(holders(), ["etc/ssh/ssh_host_ed25519_key"]);

    // What the rule does, in a network namespace of its own (nothing on this machine changes):
    // root reaches the metadata service at both addresses; another user reaches neither, and
    // reaches anything else.
    const table = path.join(root, "imds.nft");
    const probe = (who: string, h: string) => `if timeout 1 ${who === "root" ? "" : "setpriv --reuid 65534 --regid 65534 --clear-groups "}bash -c 'exec 3<>/dev/tcp/${h}/80'; then echo "${who} ${h} ok"; else echo "${who} ${h} blocked"; fi`;
    const hosts = [IMDS_ADDRESSES.ipv6, IMDS_ADDRESSES.ipv4, "::1"];
    const netns = spawnSync("unshare", ["-n", "bash", "-c", [
        "set -e",
        "ip link set lo up",
        `ip addr add ${IMDS_ADDRESSES.ipv6}/128 dev lo`,
        `ip addr add ${IMDS_ADDRESSES.ipv4}/32 dev lo`,
        `nft -f ${table}`,
        `node -e 'const net = require("net"); for (const h of ${JSON.stringify(hosts)}) net.createServer((s) => s.end()).listen(80, h)' &`,
        "trap 'kill $!' EXIT",
        "for _ in $(seq 100); do if bash -c 'exec 3<>/dev/tcp/::1/80' 2>/dev/null; then break; fi; sleep 0.05; done",
        "set +e",
        ...hosts.flatMap((h) => [probe("root", h), probe("nobody", h)]),
    ].join("\n")], { encoding: "utf8" });
    assert.equal(netns.status, 0, netns.stderr);
    assert.equal(netns.stdout, hosts.map((h) => `root ${h} ok\nnobody ${h} ${h === "::1" ? "ok" : "blocked"}\n`).join(""), netns.stderr);
});

test("first boot without nft: iptables' owner match instead; with neither, the script stops before the key, the NICs or anything else", (t) => {
    const host = newSshKeyPair();
    const script = renderUserData({ site: "dc-test", node: "edge-1", hostPrivateKey: host.private, hostPublicKey: host.public, authorizedKeys: [OPERATOR_KEY], uplinkMacs: { up0: "0a:11:22:33:44:01" } });
    const boot = (stubs: { nft: string; ipt: string }) => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-userdata-"));
        t.after(() => fs.rmSync(root, { recursive: true, force: true }));
        fs.mkdirSync(path.join(root, "sys/class/net/ens5"), { recursive: true });
        fs.writeFileSync(path.join(root, "sys/class/net/ens5/address"), "0a:11:22:33:44:01\n");
        const rooted = rootedScript(script, root)
            .replace(/^nft\(\) \{.*$/m, () => `nft() { ${stubs.nft} }`)
            .replace(/^(ip6?tables)\(\) \{ (echo .*;) \}$/gm, (_, cmd, log) => `${cmd}() { ${log} ${stubs.ipt} }`);
        const r = spawnSync("sh", ["-c", rooted], { encoding: "utf8" });
        const read = (f: string) => fs.existsSync(path.join(root, f)) ? fs.readFileSync(path.join(root, f), "utf8") : undefined;
        return { r, read };
    };
    // No nft on the image (NixOS's default firewall is iptables): the rule is checked for, then inserted first.
    const rule = (cmd: string, verb: string, address: string) => `${cmd} -w ${verb} OUTPUT ${verb === "-I" ? "1 " : ""}-d ${address} -m owner ! --uid-owner 0 -j DROP first=yes key=no`;
    const fallback = boot({ nft: "return 127;", ipt: '[ "$2" != -C ];' });
    assert.equal(fallback.r.status, 0, fallback.r.stderr);
    assert.equal(fallback.read("imds"), [
        rule("iptables", "-C", IMDS_ADDRESSES.ipv4), rule("iptables", "-I", IMDS_ADDRESSES.ipv4),
        rule("ip6tables", "-C", IMDS_ADDRESSES.ipv6), rule("ip6tables", "-I", IMDS_ADDRESSES.ipv6), "",
    ].join("\n"));
    assert.ok(fallback.read("var/lib/nublar/first-boot.done") !== undefined);
    // Neither: nothing after it runs, the key is not written, no NIC renamed, nothing marked done.
    const none = boot({ nft: "return 1;", ipt: "return 1;" });
    assert.notEqual(none.r.status, 0);
    assert.match(none.r.stderr, /nublar: cannot block the instance metadata service to non-root processes/);
    for (const f of ["etc/ssh/ssh_host_ed25519_key", "root/.ssh/authorized_keys", "etc/nixos/hardware-configuration.nix", "var/lib/nublar/first-boot.done", "calls"]) assert.equal(none.read(f), undefined, f);
});

test("the host key lines of the user data, read as NixOS's apply-ec2-data reads them (sed), give back the key pair; values that could break out are refused", () => {
    const host = newSshKeyPair();
    const script = renderUserData({ site: "s", node: "n", hostPrivateKey: host.private, hostPublicKey: host.public, authorizedKeys: [], uplinkMacs: { up0: "0a:11:22:33:44:01" } });
    const sed = (expr: string) => spawnSync("sed", [expr], { input: script, encoding: "utf8" }).stdout;
    assert.equal(sed("s/|/\\n/g; s/SSH_HOST_ED25519_KEY://; t; d").trim(), host.private.trim());
    assert.equal(sed("s/SSH_HOST_ED25519_KEY_PUB://; t; d").trim(), host.public.trim());
    assert.throws(() => renderUserData({ site: "s", node: "n", hostPrivateKey: "a\nNUBLAR_KEY\nrm -rf /", hostPublicKey: host.public, authorizedKeys: [], uplinkMacs: {} }), /contains the line 'NUBLAR_KEY'/);
    assert.throws(() => renderUserData({ site: "s", node: "n", hostPrivateKey: host.private, hostPublicKey: `${host.public.split(" ").slice(0, 2).join(" ")} x';reboot;'`, authorizedKeys: [], uplinkMacs: {} }), /not an ed25519 public key line/);
    assert.throws(() => renderUserData({ site: "s", node: "n", hostPrivateKey: host.private, hostPublicKey: host.public, authorizedKeys: ["ssh-ed25519 AAAA a|b"], uplinkMacs: {} }), /holds '\|'/);
    assert.throws(() => ec2HardwareConfiguration({ site: "s", node: "n", uplinkMacs: { up0: "\"; evil" } }), /cannot name NIC 'up0'/);
    const many = Array.from({ length: 200 }, (_, i) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${"x".repeat(40)}${i} operator${i}@example`);
    assert.throws(() => renderUserData({ site: "s", node: "n", hostPrivateKey: host.private, hostPublicKey: host.public, authorizedKeys: many, uplinkMacs: {} }), /over EC2's 16384-byte user data limit/);
});
