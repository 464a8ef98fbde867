import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { dcSiteInput, labSiteInput } from "./fixtures";
import { loadSiteFromStackFile, parseSite, SiteConfigError, stackFile } from "./load";
import { PROJECT_ROOT } from "../project";

const ROOT = PROJECT_ROOT;

/** A valid lab site; each test breaks one thing. */
function labSite(): any {
    const site = labSiteInput(["gate", "control-room"], { ingress: [{ name: "web", port: 80, upstreams: ["gate"] }] });
    site.nodes[0].role = "edge";
    site.nodes[1] = { ...site.nodes[1], role: "core", failureDomain: "west", uplinks: [{ provider: "provider-a" }] };
    return site;
}

function problems(raw: unknown): string[] {
    try {
        parseSite(raw);
    } catch (err) {
        assert.ok(err instanceof SiteConfigError, `expected SiteConfigError, got ${err}`);
        return err.problems;
    }
    assert.fail("expected the site to be rejected");
}

test("every shipped stack is a valid site", () => {
    const stacks = fs.readdirSync(path.join(ROOT, "stacks")).filter((f) => f.endsWith(".yaml"));
    for (const required of ["lab", "isla-nublar", "isla-sorna", "dc-eu-west"]) {
        assert.ok(stacks.includes(`Pulumi.${required}.yaml`), `stack ${required} is shipped`);
    }
    for (const f of stacks) {
        const site = loadSiteFromStackFile(path.join(ROOT, "stacks", f));
        assert.equal(`Pulumi.${site.name}.yaml`, f, "the site is named after its stack");
    }
});

test("defaults are filled in: lab settings, ssh port and user, empty ingress", () => {
    const raw = labSite();
    delete raw.ingress;
    const site = parseSite(raw);
    assert.deepEqual(site.lab, { tag: "lab", managementPrefix: "fd6e:626c:6172::/64" });
    assert.deepEqual(site.ingress, []);
    const park = loadSiteFromStackFile(stackFile(ROOT, "isla-nublar"));
    assert.equal(park.nodes[0].ssh?.port, 22);
    assert.equal(park.nodes[0].ssh?.user, "root");
});

test("an IPv4 prefix is rejected naming the key, the value and the rule", () => {
    const raw = labSite();
    raw.providers[1].prefix = "10.0.0.0/8";
    const [p, ...rest] = problems(raw);
    assert.equal(rest.length, 0);
    assert.match(p, /^nublar:site\.providers\[1\]\.prefix = "10\.0\.0\.0\/8": .*IPv6-only/);
});

test("prefix length, host bits and syntax are checked", () => {
    const raw = labSite();
    raw.providers[0].prefix = "2001:db8:a::/56";
    raw.providers[1].prefix = "2001:db8:b::1/48";
    raw.ingress = [];
    const ps = problems(raw);
    assert.ok(ps.some((p) => p.includes("providers[0].prefix") && p.includes("must be a /48")), ps.join("\n"));
    assert.ok(ps.some((p) => p.includes("providers[1].prefix") && p.includes("host bits must be zero")), ps.join("\n"));
    raw.providers[0].prefix = "not-a-prefix";
    assert.ok(problems(raw).some((p) => p.includes('"not-a-prefix"') && p.includes("CIDR")));
});

test("overlapping and equal provider prefixes are rejected, naming both", () => {
    const raw = labSite();
    raw.providers[1].prefix = raw.providers[0].prefix;
    const ps = problems(raw);
    assert.ok(ps.some((p) => p.startsWith("nublar:site.providers[1].prefix") && p.includes("overlaps providers[0] 'provider-a'")), ps.join("\n"));
});

test("references must resolve: uplink providers and ingress upstreams", () => {
    const raw = labSite();
    raw.nodes[1].uplinks[0].provider = "provider-c";
    raw.ingress[0].upstreams = ["nowhere"];
    const ps = problems(raw);
    assert.ok(ps.some((p) => p.startsWith('nublar:site.nodes[1].uplinks[0].provider = "provider-c"') && p.includes("provider-a, provider-b")), ps.join("\n"));
    assert.ok(ps.some((p) => p.startsWith('nublar:site.ingress[0].upstreams[0] = "nowhere"') && p.includes("gate, control-room")), ps.join("\n"));
});

test("duplicate names are rejected", () => {
    const raw = labSite();
    raw.nodes[1].name = "gate";
    assert.ok(problems(raw).some((p) => p.startsWith("nublar:site.nodes[1].name") && p.includes("duplicate node name")));
});

test("outside the lab, every node needs SSH with a pinned host key", () => {
    const raw = labSite();
    raw.kind = "park";
    const ps = problems(raw);
    assert.ok(ps.some((p) => p.startsWith("nublar:site.nodes[0].ssh = (missing)") && p.includes("pinned hostKey")), ps.join("\n"));
    raw.nodes.forEach((n: any) => (n.ssh = { host: "2001:db8:a::10", hostKey: "ssh-ed25519 AAAAC3Nza" }));
    raw.nodes[1].ssh = { host: "192.0.2.10", hostKey: "not a key" };
    const ps2 = problems(raw);
    assert.ok(ps2.some((p) => p.startsWith('nublar:site.nodes[1].ssh.host = "192.0.2.10"') && p.includes("IPv6-only")), ps2.join("\n"));
    assert.ok(ps2.some((p) => p.startsWith('nublar:site.nodes[1].ssh.hostKey = "not a key"') && p.includes("ssh-keyscan")), ps2.join("\n"));
});

test("a misspelt key is reported, not ignored", () => {
    const raw = labSite();
    raw.nodes[0].uplink = raw.nodes[0].uplinks;
    assert.ok(problems(raw).some((p) => p.startsWith("nublar:site.nodes[0]: unknown key(s) 'uplink'")));
});

test("a missing site or a missing field says what is required", () => {
    assert.match(problems(undefined)[0], /nublar:site is missing/);
    const raw = labSite();
    delete raw.sla;
    assert.ok(problems(raw).some((p) => p.startsWith("nublar:site.sla = (missing): is required")));
});

test("a datacenter needs its AWS regions; lab settings belong to labs only", () => {
    const raw = labSite();
    raw.kind = "datacenter";
    raw.lab = { tag: "x" };
    raw.nodes.forEach((n: any) => (n.ssh = { host: "dc.example.net", hostKey: "ssh-ed25519 AAAAC3Nza" }));
    const ps = problems(raw);
    assert.ok(ps.some((p) => p.startsWith("nublar:site.aws = (missing)")), ps.join("\n"));
    assert.ok(ps.some((p) => p.startsWith("nublar:site.lab = ") && p.includes("only allowed")), ps.join("\n"));
});

test("a large site can live in its own file (nublar:siteFile), read relative to the project", () => {
    const os = require("node:os") as typeof import("node:os");
    const { stringify } = require("yaml") as typeof import("yaml");
    const { siteFromConfig } = require("./load") as typeof import("./load");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-sitefile-"));
    try {
        fs.mkdirSync(path.join(dir, "stacks"));
        fs.mkdirSync(path.join(dir, "sites"));
        fs.writeFileSync(path.join(dir, "sites", "park.yaml"), stringify(labSite()));
        fs.writeFileSync(path.join(dir, "stacks", "Pulumi.park.yaml"), stringify({ config: { "nublar:siteFile": "sites/park.yaml" } }));
        assert.deepEqual(loadSiteFromStackFile(path.join(dir, "stacks", "Pulumi.park.yaml")), parseSite(labSite()));
        assert.throws(() => siteFromConfig({ site: labSite(), siteFile: "sites/park.yaml" }, dir, "test"), /either nublar:site or nublar:siteFile/);
        assert.throws(() => siteFromConfig({ siteFile: "sites/none.yaml" }, dir, "test"), /nublar:siteFile = "sites\/none.yaml": cannot read/);
        const bad = labSite();
        bad.providers[0].prefix = "10.0.0.0/8";
        fs.writeFileSync(path.join(dir, "sites", "bad.yaml"), stringify(bad));
        assert.throws(() => siteFromConfig({ siteFile: "sites/bad.yaml" }, dir, "test"), (e: Error) => e instanceof SiteConfigError && /\(nublar:siteFile sites\/bad.yaml\)/.test(e.message) && /IPv6-only/.test(e.message));
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("EC2 nodes: a valid data center parses; VPC providers' uplink hosts default to ::10 (AWS reserves ::0-::3), others to ::2", () => {
    const site = parseSite(dcSiteInput());
    assert.deepEqual(site.providers.map((p) => p.uplinkHost), [0x10, 0x10]);
    assert.equal(site.aws?.nixos?.instanceType, "m7i.large");
    assert.deepEqual(site.aws?.vpc?.uplinks.map((u) => u.route), ["internet-gateway", { virtualGatewayId: "vgw-0123456789abcdef0" }]);
    assert.deepEqual(parseSite(labSite()).providers.map((p) => p.uplinkHost), [2, 2]);
    const raw = dcSiteInput();
    raw.providers[1].uplinkHost = 3;
    assert.ok(problems(raw).some((p) => p.startsWith("nublar:site.providers[1].uplinkHost") && p.includes("reserves the first four")));
});

test("EC2 nodes: each mistake is named at its key", () => {
    const expect = (change: (raw: any) => void, key: string, words: RegExp) => {
        const raw = dcSiteInput();
        change(raw);
        const ps = problems(raw);
        assert.ok(ps.some((p) => p.startsWith(`nublar:site.${key}`) && words.test(p)), `${key} ${words}:\n${ps.join("\n")}`);
    };
    expect((r) => (r.nodes[0].ssh = { host: "2001:db8:3100::10", hostKey: "ssh-ed25519 AAAAC3Nza" }), "nodes[0].ssh", /derived on an EC2 node/);
    expect((r) => (r.nodes[1].failureDomain = "eu-central-1a"), "nodes[1].failureDomain", /availability zone of eu-west-1/);
    expect((r) => r.nodes.forEach((n: any) => (n.failureDomain = "eu-west-1a")), "nodes", /at least two availability zones/);
    expect((r) => r.aws.vpc.uplinks.pop(), "nodes[0].uplinks[1].provider", /list 'equinix' in aws.vpc.uplinks/);
    expect((r) => delete r.aws.nixos, "aws.nixos", /NixOS AMI/);
    expect((r) => delete r.aws.vpc, "nodes[0].ec2", /aws.vpc.uplinks/);
    expect((r) => (r.aws.vpc.uplinks[0].ipamPoolId = "pool-1"), "aws.vpc.uplinks[0].ipamPoolId", /IPAM pool id/);
    expect((r) => (r.aws.vpc.uplinks[1].provider = "level3"), "aws.vpc.uplinks[1].provider", /one of the site's providers/);
    expect((r) => (r.aws.vpc.sshFrom = ["10.0.0.0/8"]), "aws.vpc.sshFrom[0]", /IPv6-only/);
    expect((r) => (r.aws.nixos.ami = "nixos-24.05"), "aws.nixos.ami", /AMI id/);
    expect((r) => (r.kind = "park"), "nodes[0].ec2", /datacenter sites/);
    expect((r) => (r.aws.vpc.uplinks[1].route = { transitGatewayId: "tgw-0123456789abcdef0" }), "aws.vpc.uplinks[1].route", /transit gateways attach only through subnets with IPv4/);
    expect((r) => {
        delete r.nodes[3].ec2;
        r.nodes[3].ssh = { host: "2001:db8:3300::10", hostKey: "ssh-ed25519 AAAAC3Nza" };
    }, "nodes[3].uplinks[0].provider", /one of the VPC's blocks .*only EC2 nodes/);
});
