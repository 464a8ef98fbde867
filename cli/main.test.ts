// The nublar command as a user runs it: help, validation with exit codes and --json.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { stringify } from "yaml";
import { dcSiteInput, labSiteInput } from "../model/site/fixtures";
import { PROJECT_ROOT } from "../model/project";

const BIN = path.join(__dirname, "nublar.js");

function nublar(...args: string[]) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("--help lists the command groups", () => {
    const r = nublar("--help");
    assert.equal(r.status, 0);
    for (const word of ["site", "lab"]) assert.match(r.stdout, new RegExp(`\\b${word}\\b`));
    const lab = nublar("lab", "--help").stdout;
    for (const cmd of ["status", "ssh", "clean"]) assert.match(lab, new RegExp(`\\b${cmd}\\b`));
});

test("site validate: every shipped stack passes, as text and as JSON", () => {
    const text = nublar("site", "validate");
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /ok\s+stacks\/Pulumi\.lab\.yaml/);
    const json = JSON.parse(nublar("site", "validate", "--json").stdout);
    assert.ok(json.length >= 4 && json.every((r: { ok: boolean }) => r.ok));
});

test("site validate: a bad stack file exits 1 and names the key, value and rule", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-cli-"));
    try {
        const file = path.join(dir, "Pulumi.bad.yaml");
        fs.writeFileSync(file, stringify({ config: { "nublar:site": labSiteInput(["gate"], { providers: [{ name: "provider-a", prefix: "10.0.0.0/8" }] }) } }));
        const r = nublar("site", "validate", "--json", "--file", file);
        assert.equal(r.status, 1);
        const [result] = JSON.parse(r.stdout);
        assert.equal(result.ok, false);
        assert.ok(result.problems.some((p: string) => p.startsWith('nublar:site.providers[0].prefix = "10.0.0.0/8"') && p.includes("IPv6-only")));
        assert.ok(result.problems.some((p: string) => p.includes("uplinks[1].provider") && p.includes("provider-b")));
        fs.writeFileSync(file, "config: [unclosed");
        const broken = nublar("site", "validate", "--file", file);
        assert.equal(broken.status, 1);
        assert.match(broken.stdout, /cannot read the stack file/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("site show prints the site with defaults; unknown stacks get a clear message", () => {
    const shown = JSON.parse(nublar("site", "show", "--stack", "isla-nublar", "--json").stdout);
    assert.equal(shown.name, "isla-nublar");
    assert.equal(shown.nodes[0].ssh.port, 22);
    const missing = nublar("site", "show", "--stack", "nowhere");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no stack file .*Pulumi\.nowhere\.yaml; stacks are: .*lab/);
});

test("site plan shows the address and overlay plan; a site that cannot be planned exits 1 saying why", () => {
    const plan = JSON.parse(nublar("site", "plan", "--stack", "lab", "--json").stdout);
    const { planSite } = require("../model/network/site-plan") as typeof import("../model/network/site-plan");
    const { loadSiteFromStackFile, stackFile } = require("../model/site/load") as typeof import("../model/site/load");
    assert.deepEqual(plan, JSON.parse(JSON.stringify(planSite(loadSiteFromStackFile(stackFile(PROJECT_ROOT, "lab"))))));
    const one = nublar("site", "plan", "--stack", "lab", "--node", "visitor-center");
    assert.equal(one.status, 0);
    assert.match(one.stdout, /ov0\s+vxlan\s+gate \(hub\)/);
    assert.equal(nublar("site", "plan", "--stack", "lab", "--node", "nope").status, 1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-cli-"));
    try {
        const raw = labSiteInput(["a", "b"]);
        raw.nodes[0].role = "app"; // no hub left
        const file = path.join(dir, "Pulumi.nohub.yaml");
        fs.writeFileSync(file, stringify({ config: { "nublar:site": raw } }));
        const r = nublar("site", "plan", "--file", file);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot be planned: .*no edge or core node/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("network commands: --help, usage errors exit 2, an unreachable agent exits 3", () => {
    const help = nublar("--help").stdout;
    for (const cmd of ["bfd", "routes", "ingress", "events", "agent"]) assert.match(help, new RegExp(`\\b${cmd}\\b`));
    const peers = nublar("bfd", "peers", "--help");
    assert.equal(peers.status, 0);
    for (const opt of ["--node", "--socket", "--json", "--check", "--brief", "--counters"]) assert.ok(peers.stdout.includes(opt), opt);
    const bad = nublar("bfd", "peers", "--brief", "--counters", "--socket", "/nonexistent");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /cannot be used with/);
    const gone = nublar("routes", "--socket", path.join(os.tmpdir(), `no-agent-${process.pid}.sock`));
    assert.equal(gone.status, 3);
    assert.match(gone.stderr, /cannot reach the agent socket/);
    const limit = nublar("events", "--limit", "lots", "--socket", "/nonexistent");
    assert.equal(limit.status, 2);
});

test("site plan of a data center with EC2 nodes adds the VPC: blocks, a subnet per uplink, the SSH address; --json has it as planned", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-cli-"));
    try {
        const file = path.join(dir, "Pulumi.dc-test.yaml");
        fs.writeFileSync(file, stringify({ config: { "nublar:site": dcSiteInput() } }));
        const text = nublar("site", "plan", "--file", file, "--node", "ledger-1");
        assert.equal(text.status, 0, text.stderr);
        assert.match(text.stdout, /AWS eu-west-1: VPC blocks 2001:db8:3100::\/48 \(aws-transit, ::\/0 to the Internet gateway\), 2001:db8:3200::\/48 \(equinix, ::\/0 to vgw-0123456789abcdef0\)/);
        assert.match(text.stdout, /ledger-1\s+eu-west-1c\s+m7i.large\s+up0 \(aws-transit\)\s+\S+::\/64\s+\S+::10\s+yes/);
        assert.doesNotMatch(text.stdout, /^edge-1\s+eu-west/m, "--node shows that node only");
        const { planSite } = require("../model/network/site-plan") as typeof import("../model/network/site-plan");
        const { planAwsNetwork } = require("../model/network/aws-plan") as typeof import("../model/network/aws-plan");
        const { parseSite } = require("../model/site/load") as typeof import("../model/site/load");
        const site = parseSite(dcSiteInput());
        const json = JSON.parse(nublar("site", "plan", "--file", file, "--json").stdout);
        assert.deepEqual(json.aws, JSON.parse(JSON.stringify(planAwsNetwork(site, planSite(site)))));
        assert.match(nublar("site", "show", "--file", file).stdout, /edge-1\s+edge\s+eu-west-1a\s+aws-transit,equinix\s+\(EC2: see site plan\)/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("lab ledger-clusters: --help says what it shows; on a lab whose ledger runs on this machine it says so and where to look", () => {
    const help = nublar("lab", "ledger-clusters", "--help");
    assert.equal(help.status, 0);
    for (const opt of ["--stack", "--file", "--json"]) assert.ok(help.stdout.includes(opt), opt);
    // The shipped lab keeps kubernetes.ledger false (the ledger's writer is not on CloudNativePG yet).
    const r = nublar("lab", "ledger-clusters", "--stack", "lab");
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /runs its ledger on this machine, not on CloudNativePG .*nublar ledger status/);
});
