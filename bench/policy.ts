// Benchmark: what the nublar-sla policy pack costs.
//
//   node --import tsx bench/policy.ts [--sizes 100,1000,5000] [--rounds 5] [--preview-nodes 100] [--preview-rounds 3]
//
// 1. In one process, for parks of each size: the pack's evaluation of the site component (every
//    resource rule, as the engine calls them, plus the SLA stack rule), cold, against its peer,
//    the program's own planning of the same site (planSite + planAgents), which the pack
//    repeats. Rounds alternate the order of the two, and the ratio is taken per round.
// 2. End to end: `pulumi preview` of one park with and without `--policy-pack`, alternating,
//    with the real engine.
import * as path from "node:path";
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { planAgents } from "../model/network/agent-plan";
import { planSite } from "../model/network/site-plan";
import { nixosAgentPaths } from "../model/nix/render";
import { policies } from "../policy/policies";
import { clearPlanCache } from "../policy/rules/nodes";
import { TYPES } from "../policy/rules/resources";
import { validateResource, validateStack } from "../policy/testing";
import { parseSite } from "../model/site/load";
import { TestProject } from "../test/engine/project";
import { machine, summary, writeResult } from "./machine";
import { benchSite } from "./site-plan";
import { PROJECT_ROOT } from "../model/project";

const ROOT = PROJECT_ROOT;

function option(name: string, fallback: string): string {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
}

/** The bench park, made compliant with the pack (backups, stated failure rates), so both previews succeed. */
function compliantSite(n: number) {
    const s = benchSite(n) as any;
    s.sla = { ...s.sla, failureRates: { provider: { perYear: 1, repairHours: 2 }, node: { perYear: 1, repairHours: 2 }, failureDomain: { perYear: 0.05, repairHours: 4 } } };
    s.ledger = { backup: { schedule: "0 0 3 * * *", retentionDays: 30 } };
    return s;
}

async function packOnce(resource: { type: string; name: string; props: Record<string, unknown> }): Promise<{ ms: number; mandatory: number }> {
    clearPlanCache();
    const t0 = performance.now();
    let mandatory = 0;
    for (const p of policies) {
        const o = "validateStack" in p
            ? await validateStack(p as StackValidationPolicy, [resource])
            : await validateResource(p as ResourceValidationPolicy, resource);
        if (p.enforcementLevel !== "advisory") mandatory += o.violations.length;
    }
    return { ms: performance.now() - t0, mandatory };
}

function planOnce(site: ReturnType<typeof parseSite>): number {
    const t0 = performance.now();
    const plan = planSite(site);
    planAgents(site, { paths: nixosAgentPaths }, plan);
    return performance.now() - t0;
}

function previewOnce(project: TestProject, withPack: boolean): { ms: number; ok: boolean; error?: string } {
    const args = ["preview", "--suppress-outputs", "--diff=false", ...(withPack ? ["--policy-pack", path.join(ROOT, "policy")] : [])];
    const t0 = performance.now();
    const r = project.pulumi(args, "bench", 1_800_000);
    const ms = performance.now() - t0;
    return r.status === 0 ? { ms, ok: true } : { ms, ok: false, error: r.output.trim().split("\n").slice(-5).join(" | ") };
}

async function main() {
    const sizes = option("sizes", "100,1000,5000").split(",").map(Number);
    const rounds = Number(option("rounds", "5"));
    const inProcess: Record<number, unknown> = {};
    for (const n of sizes) {
        const site = parseSite(compliantSite(n));
        const resource = { type: TYPES.site, name: site.name, props: { site } };
        const pack: number[] = [], plan: number[] = [], ratios: number[] = [];
        let mandatory = 0;
        for (let r = 0; r < rounds; r++) {
            // Alternate which goes first, so that a slow stretch of the machine hits both.
            let p = 0, q = 0;
            if (r % 2 === 0) { q = planOnce(site); ({ ms: p, mandatory } = await packOnce(resource)); }
            else { ({ ms: p, mandatory } = await packOnce(resource)); q = planOnce(site); }
            pack.push(p); plan.push(q); ratios.push(p / q);
        }
        inProcess[n] = { packMs: summary(pack), planMs: summary(plan), ratio: summary(ratios), mandatoryFindings: mandatory };
        process.stderr.write(`${n} nodes: ${JSON.stringify(inProcess[n])}\n`);
    }

    const previewNodes = Number(option("preview-nodes", "100"));
    const previewRounds = Number(option("preview-rounds", "3"));
    const project = new TestProject();
    let preview: unknown;
    try {
        project.addStack("bench", compliantSite(previewNodes), { siteFile: true });
        const without: number[] = [], withPack: number[] = [], ratios: number[] = [];
        const errors: string[] = [];
        for (let r = 0; r < previewRounds; r++) {
            const order = r % 2 === 0 ? [false, true] : [true, false];
            const got: Record<string, number> = {};
            for (const p of order) {
                const res = previewOnce(project, p);
                if (!res.ok) errors.push(`${p ? "with" : "without"} the pack: ${res.error}`);
                got[String(p)] = res.ms;
            }
            without.push(got.false); withPack.push(got.true); ratios.push(got.true / got.false);
            process.stderr.write(`preview ${previewNodes} nodes, round ${r + 1}: without ${Math.round(got.false)} ms, with the pack ${Math.round(got.true)} ms\n`);
        }
        preview = { nodes: previewNodes, withoutPackMs: summary(without), withPackMs: summary(withPack), ratio: summary(ratios), errors };
    } finally {
        project.remove();
    }
    const file = writeResult("policy", { machine: machine(), sizes, rounds, inProcess, preview });
    process.stderr.write(`wrote ${file}\n`);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
});
