// Engine layer: the nublar-sla policy pack with the real Pulumi CLI. The lab and the shipped
// parks pass; stack configs that each break one rule are blocked on that rule, by `pulumi
// preview --policy-pack`, by `pulumi up` (before anything is created) and in `nublar audit`'s
// signed report. Previews only: nothing is created on this machine.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { netnsExists } from "../../lab/ops";
import { planLab } from "../../model/network/lab-plan";
import { parseSite } from "../../model/site/load";
import { requireCommands } from "../helpers/prereq";
import { ROOT, TestProject } from "./project";

const project = new TestProject();
const tag = `tp${(process.pid % 46656).toString(36)}`;
const stackSite = (name: string) => parse(fs.readFileSync(path.join(ROOT, "stacks", `Pulumi.${name}.yaml`), "utf8")).config["nublar:site"];
const POLICY = path.join(ROOT, "policy");

/** The lab with its own tag, changed by `edit`. */
function lab(edit: (s: any) => void = () => undefined) {
    const s = structuredClone(stackSite("lab"));
    s.lab = { ...s.lab, tag };
    edit(s);
    return s;
}

function park(edit: (s: any) => void) {
    const s = structuredClone(stackSite("isla-nublar"));
    edit(s);
    return s;
}

/** Each stack breaks one rule (or, where one fault costs twice, names both), and nothing else. */
const VIOLATIONS: Record<string, { site: unknown; rules: string[] }> = {
    "bad-bfd": { site: lab((s) => { s.sla.failoverBudgetMs = 50; }), rules: ["bfd-detection-within-budget"] },
    "bad-multihoming": { site: lab((s) => { s.nodes[1].uplinks = [{ provider: "provider-a" }]; }), rules: ["multihoming"] },
    // One upstream is not redundant, and it also costs the lab its (three nines) SLA.
    "bad-ingress": { site: lab((s) => { s.ingress[0].upstreams = ["visitor-center"]; }), rules: ["ingress-redundancy", "sla-availability"] },
    "bad-ledger": { site: lab((s) => { s.ledger = { instances: 1 }; }), rules: ["ledger-quorum"] },
    "bad-sla": { site: lab((s) => { s.sla.availability = 0.999999; }), rules: ["sla-availability"] },
    "bad-provider-bfd": { site: park((s) => { s.providers[0].bfd = { transmitIntervalMs: 300, receiveIntervalMs: 300, detectMultiplier: 3 }; }), rules: ["bfd-detection-within-budget"] },
    // Without its Kubernetes workloads: with them, the schema itself refuses a ledger without backups.
    "bad-park-ledger": { site: park((s) => { s.ledger = { dataDurability: "preferred", anchor: "directory" }; delete s.kubernetes; }), rules: ["ledger-anchor", "ledger-backups", "ledger-quorum"] },
};
const PASSING = ["lab", "isla-nublar", "isla-sorna", "dc-eu-west"];

before(() => {
    requireCommands("pulumi", "pulumi-language-nodejs", "pulumi-analyzer-policy-nublar");
    // The parks' workloads go through the real Kubernetes provider, which renders them to a
    // folder: no cluster is reachable from here.
    const render = (name: string) => ({ config: { "nublar:kubernetesRenderTo": path.join(project.work, "rendered", name) } });
    for (const name of PASSING) project.addStack(name, name === "lab" ? lab() : stackSite(name), name === "lab" ? {} : render(name));
    for (const [name, v] of Object.entries(VIOLATIONS)) project.addStack(name, v.site, render(name));
    project.addStack("bad-config", lab((s) => { s.sla.availability = 2; }));
});

after(() => project.remove());

test("pulumi preview --policy-pack: the lab passes; a mandatory violation fails naming the resource, the rule and the fix", () => {
    const good = project.pulumi(["preview", "--policy-pack", POLICY], "lab");
    assert.equal(good.status, 0, good.output);
    assert.match(good.output, /nublar-sla@v1\.0\.0/);
    const bad = project.pulumi(["preview", "--policy-pack", POLICY], "bad-bfd");
    assert.notEqual(bad.status, 0, bad.output);
    assert.match(bad.output, /\[mandatory\].*bfd-detection-within-budget\s+\(nublar:site:Site: lab\)/);
    assert.match(bad.output, /cannot fail over within 50 ms/);
    assert.match(bad.output, /Fix: raise sla\.failoverBudgetMs/);
});

test("the parks preview their Kubernetes workloads with the real Kubernetes provider plugin, and pass the pack", () => {
    for (const stack of PASSING.filter((n) => n !== "lab")) {
        const r = project.pulumi(["preview", "--json", "--policy-pack", POLICY], stack);
        assert.equal(r.status, 0, `${stack}:\n${r.output.slice(-4000)}`);
        const steps: { op: string; urn: string; newState?: { type: string; inputs?: Record<string, unknown> } }[] = JSON.parse(r.stdout).steps;
        const provider = steps.find((s) => s.newState?.type === "pulumi:providers:kubernetes");
        assert.ok(provider, `${stack}: a Kubernetes provider`);
        assert.equal(provider.newState!.inputs?.version, "4.25.0", `${stack}: the plugin setup built (scripts/kube/build-pulumi-kubernetes)`);
        assert.match(String(provider.newState!.inputs?.renderYamlToDirectory), /rendered/);
        const kinds = new Set(steps.map((s) => s.newState?.type).filter((t) => t?.startsWith("kubernetes:")));
        for (const kind of ["kubernetes:core/v1:Namespace", "kubernetes:postgresql.cnpg.io/v1:Cluster"]) assert.ok(kinds.has(kind), `${stack}: ${kind} in [${[...kinds].join(", ")}]`);
    }
});

test("pulumi up with the pack is blocked before anything is created", () => {
    const up = project.pulumi(["up", "--yes", "--policy-pack", POLICY], "bad-ingress");
    assert.notEqual(up.status, 0, up.output);
    assert.match(up.output, /ingress-redundancy/);
    const exported = JSON.parse(project.pulumi(["stack", "export"], "bad-ingress").stdout);
    assert.equal((exported.deployment?.resources ?? []).length, 0, "no resource in the stack's state");
    const nodes = planLab(parseSite(VIOLATIONS["bad-ingress"].site)).nodes;
    assert.ok(!nodes.some((n) => netnsExists(n.netns)), "no namespace created");
});

interface AuditOutcome {
    verdict: string;
    report: string;
    summary: { mandatory: number };
    sla: { meets: boolean } | null;
    ledger: { appended: boolean; reason?: string };
}

function audit(stack: string): { status: number | null; out: AuditOutcome; findings: { policy: string; enforcementLevel: string; resource: { type: string } | null }[]; output: string } {
    const r = project.nublar(["audit", "--stack", stack, "--json", "--out", path.join(project.work, "reports", stack)], 180_000);
    let out: AuditOutcome;
    try {
        out = JSON.parse(r.stdout);
    } catch {
        assert.fail(`nublar audit --stack ${stack} printed no JSON (exit ${r.status}):\n${r.output}`);
    }
    const report = JSON.parse(fs.readFileSync(out.report, "utf8"));
    return { status: r.status, out, findings: report.findings, output: r.output };
}

test("nublar audit: the lab and every shipped park and data center pass, with an SLA estimate that meets the target", () => {
    for (const stack of PASSING) {
        const a = audit(stack);
        assert.equal(a.status, 0, `${stack}:\n${a.output}`);
        assert.equal(a.out.verdict, "pass");
        assert.deepEqual(a.findings.filter((f) => f.enforcementLevel === "mandatory"), [], stack);
        assert.equal(a.out.sla?.meets, true, stack);
    }
});

test("nublar audit: each violating stack fails on exactly its rules, and the signed report verifies", () => {
    for (const [stack, v] of Object.entries(VIOLATIONS)) {
        const a = audit(stack);
        assert.equal(a.status, 1, `${stack}:\n${a.output}`);
        assert.equal(a.out.verdict, "fail");
        const rules = [...new Set(a.findings.filter((f) => f.enforcementLevel === "mandatory").map((f) => f.policy))].sort();
        assert.deepEqual(rules, v.rules, stack);
        // Found at preview on the site component (and, for the lab's ledger, on its cluster resource too).
        assert.ok(a.findings.some((f) => f.resource?.type === "nublar:site:Site"), `${stack}: findings name the site component`);
        // The lab's ledger is not running here: the report says so rather than failing.
        assert.equal(a.out.ledger.appended, false);
        const pub = path.join(project.stateDir, "audit", "signing.pub");
        const verify = project.nublar(["audit", "verify", a.out.report, "--public-key", pub]);
        assert.equal(verify.status, 0, verify.output);
    }
});

test("nublar audit: a stack that does not exist, and a program that cannot plan, exit 3 with the reason", () => {
    const missing = project.nublar(["audit", "--stack", "no-such-stack"]);
    assert.equal(missing.status, 3, missing.output);
    assert.match(missing.stderr, /stack 'no-such-stack' does not exist/);
    const invalid = project.nublar(["audit", "--stack", "bad-config"], 180_000);
    assert.equal(invalid.status, 3, invalid.output);
    assert.match(invalid.stderr, /sla\.availability/);
});
