// Benchmark: how planning, rendering and `pulumi preview` grow with the size of a park.
//
//   node --import tsx bench/site-plan.ts [--sizes 100,1000,5000] [--runs 5] [--preview-sizes 100,1000,5000] [--preview-timeout-s 1800]
//
// Each (size, run) plans in a fresh child process, so peak memory (maxRSS) is that run's own.
// Phases: validate the site (zod schema), planSite (addresses, overlay), planAgents (sessions,
// routes, ingress), render (every node's NixOS bundle and Nginx config). Then `pulumi preview`
// of the same park with the real engine, once per size (it is slow). The growth between sizes
// is a ratio measured in the same run, so the machine's noise mostly cancels out.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestProject } from "../test/engine/project";
import { machine, summary, writeResult } from "./machine";
import { PROJECT_ROOT } from "../model/project";

const ROOT = PROJECT_ROOT;

/** A park of n nodes: 2 edge and 2 core hubs, the rest app nodes, two providers. */
export function benchSite(n: number) {
    const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz2Q0hZFSOPggsoAlK8BkxfAVXfuggFwVHG79+hT3uw";
    const roles = (i: number) => (i < 2 ? "edge" : i < 4 ? "core" : "app");
    const nodes = Array.from({ length: n }, (_, i) => ({
        name: i < 4 ? `${roles(i)}-${i}` : `node-${i}`,
        id: i + 1,
        role: roles(i),
        failureDomain: `rack-${i % 8}`,
        uplinks: [{ provider: "provider-a" }, { provider: "provider-b" }],
        ssh: { host: `2001:db8:1100:${(i + 1).toString(16)}::2`, hostKey },
    }));
    return {
        name: `bench-${n}`,
        kind: "park",
        sla: { availability: 0.999999, failoverBudgetMs: 300 },
        providers: [{ name: "provider-a", prefix: "2001:db8:1100::/48" }, { name: "provider-b", prefix: "2001:db8:1200::/48" }],
        nodes,
        ingress: [{ name: "visitor-web", port: 443, upstreams: nodes.slice(4, 8).map((x) => x.name) }],
    };
}

/** One measured run, in this (child) process. */
async function measureOnce(n: number) {
    const { parseSite } = await import("../model/site/load");
    const { planSite } = await import("../model/network/site-plan");
    const { planAgents } = await import("../model/network/agent-plan");
    const { renderNginxConf } = await import("../model/network/nginx-conf");
    const { NIXOS_PATHS, nixosAgentPaths, renderNixosNode } = await import("../model/nix/render");
    const raw = benchSite(n);
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const t = [performance.now()];
    const site = parseSite(raw);
    t.push(performance.now());
    const plan = planSite(site);
    t.push(performance.now());
    const agents = planAgents(site, { paths: nixosAgentPaths }, plan);
    t.push(performance.now());
    let bytes = 0;
    const wg: Record<string, Record<string, string>> = {};
    for (const node of plan.nodes) wg[node.name] = Object.fromEntries(node.overlays.map((o) => [o.provider, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]));
    plan.nodes.forEach((node, i) => {
        const agent = agents[i];
        const nginxConf = agent.ingress.length ? renderNginxConf({ upstreams: agent.ingress, controlSocket: NIXOS_PATHS.nginxControl, luaDir: NIXOS_PATHS.luaDir, modules: [] }) : undefined;
        const files = renderNixosNode({ site, node, agent, nginxConf, authorizedKeys: [], wireguardPublicKeys: wg, profile: { label: "bench" } });
        for (const v of Object.values(files)) bytes += v.length;
    });
    t.push(performance.now());
    const sessions = agents.reduce((s, a) => s + a.sessions.length, 0);
    const routes = agents.reduce((s, a) => s + a.routes.length, 0);
    return {
        ms: { validate: t[1] - t[0], planSite: t[2] - t[1], planAgents: t[3] - t[2], render: t[4] - t[3], total: t[4] - t[0] },
        peakRssMiB: process.resourceUsage().maxRSS / 1024,
        rssGrowthMiB: (process.memoryUsage().rss - rssBefore) / 2 ** 20,
        sessions, routes, renderedMiB: bytes / 2 ** 20,
    };
}

function previewOnce(n: number, timeoutMs: number): { ms: number; resources: number; ok: boolean; peakRssMiB?: number; error?: string } {
    const project = new TestProject();
    const work = project.work;
    try {
        try {
            project.addStack("bench", benchSite(n), { siteFile: true });
        } catch (err) {
            return { ms: NaN, resources: 0, ok: false, error: (err as Error).message };
        }
        const env = project.env();
        // GNU time's %M: the peak RSS of the largest process in the preview's tree (the engine,
        // the language host or the program), written to a file so stdout stays pulumi's JSON.
        const timeFile = path.join(work, "time.txt");
        const start = performance.now();
        // Text output, not --json: with every resource's inputs (each node's whole bundle), the
        // JSON of a 1,000-node preview passed 512 MiB.
        const res = spawnSync("/usr/bin/time", ["-f", "%M", "-o", timeFile, "pulumi", "preview", "--stack", "bench", "--non-interactive", "--suppress-outputs", "--diff=false"], { cwd: work, env, encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 1 << 28 });
        const ms = performance.now() - start;
        const peakRssMiB = fs.existsSync(timeFile) ? Number(fs.readFileSync(timeFile, "utf8").trim().split("\n").pop()) / 1024 : undefined;
        if (res.error) {
            const timedOut = (res.error as NodeJS.ErrnoException).code === "ETIMEDOUT";
            return { ms, resources: 0, ok: false, peakRssMiB, error: timedOut ? `not finished after ${timeoutMs / 1000} s` : `cannot run /usr/bin/time pulumi preview: ${res.error.message}` };
        }
        if (res.status !== 0) return { ms, resources: 0, ok: false, peakRssMiB, error: (res.stderr || res.stdout).slice(-2000) };
        const created = /(\d+) to create/.exec(res.stdout);
        return { ms, resources: created ? Number(created[1]) : 0, ok: true, peakRssMiB };
    } finally {
        project.remove();
    }
}

function option(name: string, fallback: string): string {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : fallback;
}

async function main() {
    if (process.argv[2] === "--child") {
        process.stdout.write(JSON.stringify(await measureOnce(Number(process.argv[3]))));
        return;
    }
    const sizes = option("sizes", "100,1000,5000").split(",").map(Number);
    const runs = Number(option("runs", "5"));
    const previewSizes = option("preview-sizes", sizes.join(",")).split(",").filter(Boolean).map(Number);
    const plan: Record<number, unknown> = {};
    for (const n of sizes) {
        const samples: Awaited<ReturnType<typeof measureOnce>>[] = [];
        for (let r = 0; r < runs; r++) {
            const child = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", __filename, "--child", String(n)], { cwd: ROOT, encoding: "utf8", maxBuffer: 1 << 26 });
            if (child.status !== 0) throw new Error(`size ${n}: ${child.stderr}`);
            samples.push(JSON.parse(child.stdout));
        }
        const phases = ["validate", "planSite", "planAgents", "render", "total"] as const;
        plan[n] = {
            ms: Object.fromEntries(phases.map((p) => [p, summary(samples.map((s) => s.ms[p]))])),
            peakRssMiB: summary(samples.map((s) => s.peakRssMiB)),
            sessions: samples[0].sessions, routes: samples[0].routes, renderedMiB: Math.round(samples[0].renderedMiB * 10) / 10,
        };
        process.stderr.write(`plan+render ${n} nodes: ${JSON.stringify(plan[n])}\n`);
    }
    const preview: Record<number, unknown> = {};
    for (const n of previewSizes) {
        const p = previewOnce(n, Number(option("preview-timeout-s", "1800")) * 1000);
        preview[n] = p;
        process.stderr.write(`preview ${n} nodes: ${JSON.stringify(p)}\n`);
    }
    // Growth: each size against the smallest, per phase (p50), and per node.
    const base = sizes[0];
    const growth = Object.fromEntries(sizes.map((n) => {
        const cur = plan[n] as any;
        const b = plan[base] as any;
        const phases = Object.fromEntries(Object.keys(cur.ms).map((p) => [p, Math.round((cur.ms[p].p50 / b.ms[p].p50) * 10) / 10]));
        const pv = preview[n] as any;
        const pb = preview[base] as any;
        return [n, { nodesRatio: n / base, phasesP50Ratio: phases, previewRatio: pv?.ok && pb?.ok ? Math.round((pv.ms / pb.ms) * 10) / 10 : null }];
    }));
    const file = writeResult("site-plan", { machine: machine(), sizes, runs, plan, preview, growth });
    process.stderr.write(`wrote ${file}\n`);
}

if (require.main === module) {
    main().catch((err) => {
        process.stderr.write(`${err.stack ?? err}\n`);
        process.exit(1);
    });
}
