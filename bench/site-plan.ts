// Benchmark: how planning, rendering and the Pulumi runs of a park grow with its size, and what
// nublar's own provider plugin changed (issue 20), against the last dynamic-provider build and
// against the engine's floor, all in the same run.
//
//   node --import tsx bench/site-plan.ts [options]        (--help: the options)
//
// 1. plan+render (--sizes, --runs): each (size, run) in a fresh child process, so peak memory
//    (maxRSS) is that run's own. Phases: validate the site (zod schema), planSite (addresses,
//    overlay), planAgents (sessions, routes, ingress), render (every node's NixOS bundle and
//    Nginx config).
// 2. `pulumi preview` of benchSite(n) parks (--preview-sizes, --preview-runs), three variants
//    interleaved per size (the order rotates from run to run, so a slow phase of the shared
//    machine does not always fall on the same one):
//      native   this checkout's program (nublar:<module>:<Type> resources of pulumi-resource-nublar)
//      dynamic  the program of --old-commit (the last commit with Pulumi dynamic providers), from a
//               clone sharing this checkout's node_modules and .tools
//      floor    a plain-JS program of ComponentResources only, as many as the native preview
//               creates (one root component, the rest its children): the engine's floor
// 3. a first `pulumi up --skip-preview` of N resources (--create-sizes, --create-runs): N LabFile
//    (nublar:lab:File, each a small file) from this checkout (native) and from --old-commit
//    (dynamic), N ComponentResources (floor), and native with PULUMI_SKIP_CHECKPOINTS=true
//    (native-nockpt: the state written once at the end). Time, state writes, and the stack's
//    state file at the end (bytes per resource).
// 4. a first `pulumi up --skip-preview` of a park (--park-up), native, with a bench-only build of
//    nublar's provider whose Deployment deploys nothing (it returns the outputs a deploy would):
//    the real state of a park, per resource type. With PULUMI_SKIP_CHECKPOINTS=true at each size,
//    and with per-step checkpoints at the smallest. From these and (3), an estimate of a first
//    `up` of the largest park with checkpoints (too slow to run here).
//
// Each pulumi run polls its whole process tree (/proc, every --poll-ms): per role (engine,
// language host, program, provider) the peak RSS of the largest process (VmHWM) and the CPU time.
// Each run records the load average and the CPU's steal and idle shares (/proc/stat) over it.
// Ratios are taken in the same run. Every temp project, checkout and file is removed at the end.
import { CLK_TCK, median, processTree, readStat, roleOf, type Role } from "./process-tree";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { TestProject } from "../test/engine/project";
import { machine, summary, writeResult } from "./machine";
import { PROJECT_ROOT } from "../model/project";
import { PULUMI_BIN } from "../runtime/pulumi-engine";
import { PROVIDER_VERSION } from "../provider/tokens";

const ROOT = PROJECT_ROOT;
/** The last commit whose resources were Pulumi dynamic resources (before provider/ existed). */
const DYNAMIC_COMMIT = "28e7c7031299b96256f82b627327b339c8682ce4";

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

// ---------------------------------------------------------------- 1. plan+render

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

function planRender(sizes: number[], runs: number) {
    const plan: Record<number, any> = {};
    for (const n of sizes) {
        const samples: Awaited<ReturnType<typeof measureOnce>>[] = [];
        for (let r = 0; r < runs; r++) {
            const child = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", __filename, "--child", String(n)], { cwd: ROOT, encoding: "utf8", maxBuffer: 1 << 26 });
            if (child.status !== 0) throw new Error(`plan+render of ${n} nodes: ${child.stderr}`);
            samples.push(JSON.parse(child.stdout));
        }
        const phases = ["validate", "planSite", "planAgents", "render", "total"] as const;
        plan[n] = {
            ms: Object.fromEntries(phases.map((p) => [p, summary(samples.map((s) => s.ms[p]))])),
            peakRssMiB: summary(samples.map((s) => s.peakRssMiB)),
            sessions: samples[0].sessions, routes: samples[0].routes, renderedMiB: Math.round(samples[0].renderedMiB * 10) / 10,
        };
        log(`plan+render ${n} nodes: ${JSON.stringify(plan[n])}`);
    }
    // Growth: each size against the smallest, per phase (p50).
    const base = plan[sizes[0]];
    const growth = Object.fromEntries(sizes.map((n) => [n, {
        nodesRatio: n / sizes[0],
        phasesP50Ratio: Object.fromEntries(Object.keys(plan[n].ms).map((p) => [p, r2(plan[n].ms[p].p50 / base.ms[p].p50)])),
    }]));
    return { plan, growth };
}

// ---------------------------------------------------------------- options

const HELP = `Usage: node --import tsx bench/site-plan.ts [options]

plan+render, then \`pulumi preview\` and first \`pulumi up\`s: this checkout (native) against the
last dynamic-provider commit (dynamic) and the engine's floor (ComponentResources only).

  --sizes LIST           plan+render park sizes (default 100,1000,5000; "" skips)
  --runs R               plan+render runs per size (default 5)
  --preview-sizes LIST   preview park sizes (default: --sizes; "" skips)
  --preview-runs SPEC    runs per size, "R" or "size:R,..." (default 100:3,1000:3,5000:1; others 1)
  --variants LIST        preview and create variants: native,dynamic,floor (default all)
  --create-sizes LIST    first \`up\` of N LabFiles / components (default 500,2000; "" skips)
  --create-runs SPEC     as --preview-runs (default 500:3,2000:1)
  --no-nockpt            no native-nockpt create (native with PULUMI_SKIP_CHECKPOINTS=true)
  --park-up LIST         first \`up\` of parks with a no-deploy provider (default 100,1000; "" skips):
                         each without checkpoints, the smallest also with them
  --old-commit SHA       the dynamic-provider build (default ${DYNAMIC_COMMIT.slice(0, 12)})
  --name NAME            results file bench/results/NAME.json (default site-plan; must start so)
  --timeout-s S          limit per pulumi command (default 1800)
  --poll-ms MS           process-tree sampling period (default 200)
  --help                 this text

BENCH_QUICK=1 shortens the defaults (1 run, creates of 50 and 200, a park up of 20 nodes).
Needs .tools/bin/pulumi (scripts/setup) and nublar's provider plugin built (scripts/build-provider);
each temp project installs the plugin into its own Pulumi home. The default run takes about
40 minutes on 2 shared vCPUs.`;

interface Options {
    sizes: number[];
    runs: number;
    previewSizes: number[];
    previewRuns: (n: number) => number;
    variants: Variant[];
    createSizes: number[];
    createRuns: (n: number) => number;
    nockpt: boolean;
    parkUp: number[];
    oldCommit: string;
    name: string;
    timeoutMs: number;
    pollMs: number;
}

type Variant = "native" | "dynamic" | "floor";
const VARIANTS: Variant[] = ["native", "dynamic", "floor"];

function fail(message: string): never {
    process.stderr.write(`site-plan: ${message}\n`);
    process.exit(2);
}

function parseOptions(argv: string[]): Options {
    const known = new Set(["--sizes", "--runs", "--preview-sizes", "--preview-runs", "--variants", "--create-sizes", "--create-runs", "--park-up", "--old-commit", "--name", "--timeout-s", "--poll-ms", "--preview-timeout-s"]);
    const flags = new Set(["--no-nockpt"]);
    for (let i = 0; i < argv.length; i++) {
        if (flags.has(argv[i])) continue;
        if (known.has(argv[i]) && i + 1 < argv.length) {
            i++;
            continue;
        }
        fail(`unknown or incomplete option: ${argv[i]} (see --help)`);
    }
    const quick = process.env.BENCH_QUICK === "1";
    const opt = (name: string, fallback: string) => {
        const i = argv.indexOf(`--${name}`);
        return i >= 0 ? argv[i + 1] : fallback;
    };
    const list = (name: string, fallback: string) => opt(name, fallback).split(",").filter(Boolean).map((x) => {
        const v = Number(x);
        if (!Number.isInteger(v) || v <= 0) fail(`--${name}: "${x}" is not a positive whole number`);
        return v;
    });
    const runSpec = (name: string, fallback: string) => {
        const spec = opt(name, fallback);
        if (/^\d+$/.test(spec)) return () => Number(spec);
        const m = new Map<number, number>();
        for (const part of spec.split(",").filter(Boolean)) {
            const [size, runs] = part.split(":").map(Number);
            if (!Number.isInteger(size) || !Number.isInteger(runs) || runs < 1) fail(`--${name}: "${part}" is not size:runs`);
            m.set(size, runs);
        }
        return (n: number) => m.get(n) ?? 1;
    };
    const num = (name: string, fallback: number) => {
        const v = Number(opt(name, String(fallback)));
        if (!Number.isFinite(v) || v <= 0) fail(`--${name} must be a number > 0`);
        return v;
    };
    const variants = opt("variants", VARIANTS.join(",")).split(",").filter(Boolean);
    for (const v of variants) if (!VARIANTS.includes(v as Variant)) fail(`--variants: unknown variant ${v} (native, dynamic, floor)`);
    const name = opt("name", "site-plan");
    if (!/^site-plan[\w-]*$/.test(name)) fail("--name must start with site-plan (letters, digits, - and _ after it)");
    const sizes = list("sizes", "100,1000,5000");
    return {
        sizes,
        runs: num("runs", 5),
        previewSizes: list("preview-sizes", sizes.join(",")),
        previewRuns: runSpec("preview-runs", quick ? "1" : "100:3,1000:3,5000:1"),
        // Native first: the floor takes its resource count from native's first preview.
        variants: VARIANTS.filter((v) => variants.includes(v)),
        createSizes: list("create-sizes", quick ? "50,200" : "500,2000"),
        createRuns: runSpec("create-runs", quick ? "1" : "500:3,2000:1"),
        nockpt: !argv.includes("--no-nockpt"),
        parkUp: list("park-up", quick ? "20" : "100,1000"),
        oldCommit: opt("old-commit", DYNAMIC_COMMIT),
        name,
        timeoutMs: num("timeout-s", num("preview-timeout-s", 1800)) * 1000,
        pollMs: Math.max(20, num("poll-ms", 200)),
    };
}

// ---------------------------------------------------------------- small helpers

const log = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** The whole machine's CPU counters (all cores), for the steal and idle shares over a run. */
function cpuTimes(): number[] {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
    return line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
}

function cpuShares(before: number[], after: number[]) {
    const d = after.map((v, i) => v - before[i]);
    const total = d.reduce((a, b) => a + b, 0) || 1;
    const pct = (x: number) => r1((100 * x) / total);
    return { busyPct: pct(d[0] + d[1] + d[2] + d[5] + d[6]), idlePct: pct(d[3] + d[4]), stealPct: pct(d[7]) };
}

function netnsList(): string {
    return spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
}

// ---------------------------------------------------------------- process tree polling

const ROLES: Role[] = ["program", "engine", "language host", "provider", "provider shim", "other"];

interface Proc { pid: number; start: string; role: Role; cmd: string; cpuMs: number; hwmKiB: number; writeBytes?: number }

/** Polls /proc for a process and all its descendants (kept by pid once seen, even if orphaned). */
class TreeMonitor {
    readonly procs = new Map<number, Proc>();
    private timer?: NodeJS.Timeout;
    constructor(private readonly rootPid: number, private readonly pollMs: number) {}

    start() {
        this.poll();
        this.timer = setInterval(() => this.poll(), this.pollMs);
    }

    stop() {
        clearInterval(this.timer);
    }

    /** SIGKILL every process of the tree still alive (only those this run started). */
    kill() {
        for (const p of this.procs.values()) {
            try {
                if (readStat(p.pid)?.start === p.start) process.kill(p.pid, "SIGKILL");
            } catch {
                // gone
            }
        }
    }

    poll() {
        const { stats, tree } = processTree(this.rootPid, this.procs);
        for (const pid of tree) {
            const s = stats.get(pid)!;
            let p = this.procs.get(pid);
            if (p && p.start !== s.start) p = undefined; // a reused pid: another process
            let cmd: string[];
            try {
                cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
            } catch {
                continue;
            }
            if (cmd.length === 0) continue; // a zombie
            if (!p) {
                p = { pid, start: s.start, role: roleOf(cmd), cmd: cmd.join(" ").slice(0, 300), cpuMs: 0, hwmKiB: 0 };
                this.procs.set(pid, p);
            } else if (p.role === "other" || p.role === "provider shim") {
                // The plugin launchers exec node: the same pid gets its real command line.
                const role = roleOf(cmd);
                if (role !== p.role) Object.assign(p, { role, cmd: cmd.join(" ").slice(0, 300) });
            }
            p.cpuMs = (s.cpu * 1000) / CLK_TCK;
            try {
                const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
                const hwm = /VmHWM:\s+(\d+)/.exec(status);
                if (hwm) p.hwmKiB = Math.max(p.hwmKiB, Number(hwm[1]));
                if (p.role === "engine") p.writeBytes = Number(/write_bytes: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"))?.[1]);
            } catch {
                // exited between reads
            }
        }
    }
}

/** Monitors of the pulumi runs in flight, to end their processes if this benchmark is stopped. */
const RUNNING = new Set<TreeMonitor>();

// ---------------------------------------------------------------- one measured pulumi run

interface RoleSummary { procs: number; cpuS: number; peakRssMiB: number }

interface StateInfo {
    /** Renames onto the stack file: each one a full rewrite of the state. */
    writes: number;
    backups: number;
    /** The sizes of those rewrites, summed (what the backend serialized, hashed and wrote). */
    bytesRewritten: number;
    finalBytes: number;
    resources: number;
    bytesPerResource: number;
    byType: Record<string, { count: number; bytes: number; meanBytes: number }>;
    /** Bytes per top-level field of a resource entry, summed over all (where the bytes are). */
    byField: Record<string, number>;
}

interface Run {
    label: string;
    variant: string;
    n: number;
    run: number;
    ok: boolean;
    error?: string;
    wallS: number;
    resources?: number;
    roles: Partial<Record<Role, RoleSummary>>;
    /** How the provider ran: nublar's compiled build, its sources under tsx, a dynamic provider. */
    providerCmd?: string;
    engineWriteMiB?: number;
    state?: StateInfo;
    load: [number, number];
    cpu: ReturnType<typeof cpuShares>;
}

async function measurePulumi(label: string, variant: string, n: number, run: number, args: string[], project: TestProject, env: NodeJS.ProcessEnv, o: Options, stack = "bench"): Promise<Run> {
    const stackDir = path.join(project.work, "state", ".pulumi", "stacks", "nublar");
    const stackFile = path.join(stackDir, `${stack}.json`);
    const state = { writes: 0, backups: 0, bytesRewritten: 0 };
    fs.mkdirSync(stackDir, { recursive: true });
    // The file backend writes the state to a temp file and renames it onto <stack>.json, after a
    // copy of the previous one to <stack>.json.bak: each rename is one full rewrite.
    const watcher = fs.watch(stackDir, (event, file) => {
        if (event !== "rename" || !file) return;
        if (file === `${stack}.json`) {
            try {
                state.bytesRewritten += fs.statSync(stackFile).size;
                state.writes++;
            } catch {
                // between the backup and the write
            }
        } else if (file === `${stack}.json.bak`) state.backups++;
    });
    const load0 = os.loadavg()[0];
    const cpu0 = cpuTimes();
    const t0 = performance.now();
    const child = spawn(PULUMI_BIN, [...args, "--stack", stack, "--non-interactive"], { cwd: project.work, env, stdio: ["ignore", "pipe", "pipe"] });
    const monitor = new TreeMonitor(child.pid!, o.pollMs);
    RUNNING.add(monitor);
    monitor.start();
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
        stdout += d;
        if (stdout.length > 1 << 24) stdout = stdout.slice(-(1 << 20)); // the tail holds the summary
    });
    child.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.length > 1 << 22) stderr = stderr.slice(-(1 << 20));
    });
    let timedOut = false;
    const killer = setTimeout(() => {
        timedOut = true;
        monitor.kill();
    }, o.timeoutMs);
    const status: number | null = await new Promise((resolve) => child.on("close", (code) => resolve(code)));
    const wallS = (performance.now() - t0) / 1000;
    clearTimeout(killer);
    monitor.stop();
    monitor.poll();
    monitor.kill(); // a plugin left behind by a failed run
    RUNNING.delete(monitor);
    const cpu = cpuShares(cpu0, cpuTimes());
    watcher.close();

    const roles: Partial<Record<Role, RoleSummary>> = {};
    for (const p of monitor.procs.values()) {
        const r = (roles[p.role] ??= { procs: 0, cpuS: 0, peakRssMiB: 0 });
        r.procs++;
        r.cpuS = r2(r.cpuS + p.cpuMs / 1000);
        r.peakRssMiB = Math.max(r.peakRssMiB, r1(p.hwmKiB / 1024));
    }
    const provider = [...monitor.procs.values()].find((p) => p.role === "provider");
    const engine = [...monitor.procs.values()].find((p) => p.role === "engine");
    const created = /Resources:\s*\n\s*\+ (\d+) (?:to create|created)/.exec(stdout);
    const result: Run = {
        label, variant, n, run, ok: status === 0, wallS: r2(wallS), resources: created ? Number(created[1]) : undefined, roles,
        providerCmd: provider ? providerKind(provider.cmd) : undefined,
        engineWriteMiB: engine?.writeBytes !== undefined ? r1(engine.writeBytes / 2 ** 20) : undefined,
        load: [r2(load0), r2(os.loadavg()[0])], cpu,
    };
    if (fs.existsSync(stackFile) && args[0] === "up") result.state = { ...state, ...stateContents(stackFile) };
    if (!result.ok) result.error = timedOut ? `not finished after ${o.timeoutMs / 1000} s` : `exit ${status}: ${(stderr + stdout).slice(-1500)}`;
    return result;
}

function providerKind(cmd: string): string {
    if (cmd.includes("dynamic-provider")) return "dynamic provider (node)";
    if (cmd.includes("no-deploy.ts")) return "nublar, bench no-deploy build (tsx)";
    if (/provider\/main\.js/.test(cmd)) return "nublar, compiled";
    if (/provider\/main\.ts/.test(cmd)) return "nublar, sources under tsx (build stale)";
    return cmd;
}

/** The stack's state file at the end: its size, and where the bytes are. */
function stateContents(file: string): Omit<StateInfo, "writes" | "backups" | "bytesRewritten"> {
    const finalBytes = fs.statSync(file).size;
    const resources: Record<string, unknown>[] = JSON.parse(fs.readFileSync(file, "utf8")).checkpoint?.latest?.resources ?? [];
    const byType: StateInfo["byType"] = {};
    const byField: Record<string, number> = {};
    for (const r of resources) {
        const t = (byType[String(r.type)] ??= { count: 0, bytes: 0, meanBytes: 0 });
        t.count++;
        t.bytes += JSON.stringify(r).length;
        for (const [k, v] of Object.entries(r)) byField[k] = (byField[k] ?? 0) + JSON.stringify(v ?? null).length;
    }
    for (const t of Object.values(byType)) t.meanBytes = Math.round(t.bytes / t.count);
    return { finalBytes, resources: resources.length, bytesPerResource: Math.round(finalBytes / Math.max(1, resources.length)), byType, byField };
}

// ---------------------------------------------------------------- the programs

/** Everything this benchmark makes outside the repository: removed at the end. */
class Scratch {
    readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-site-plan-"));
    readonly projects = new Set<TestProject>();
    oldCheckout?: string;

    constructor() {
        fs.chmodSync(this.dir, 0o755);
    }

    project(main?: string): TestProject {
        const p = new TestProject(main);
        this.projects.add(p);
        return p;
    }

    drop(p: TestProject) {
        p.remove();
        this.projects.delete(p);
    }

    /** --old-commit's program: a clone sharing this checkout's node_modules and .tools. */
    checkout(commit: string): string {
        if (this.oldCheckout) return this.oldCheckout;
        const dir = path.join(this.dir, "dynamic-checkout");
        const git = (args: string[]) => {
            const r = spawnSync("git", args, { encoding: "utf8" });
            if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
        };
        git(["clone", "-q", "--no-checkout", ROOT, dir]);
        git(["-C", dir, "checkout", "-q", commit]);
        fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
        fs.symlinkSync(path.join(ROOT, ".tools"), path.join(dir, ".tools"));
        this.oldCheckout = dir;
        return dir;
    }

    /** A program folder: its files, and this checkout's node_modules for @pulumi/pulumi. */
    program(name: string, files: Record<string, string>): string {
        const dir = path.join(this.dir, name);
        fs.mkdirSync(dir, { recursive: true });
        for (const [f, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), content);
        if (!fs.existsSync(path.join(dir, "node_modules"))) fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
        return dir;
    }

    remove() {
        for (const p of this.projects) p.remove();
        this.projects.clear();
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/** The engine's floor: `bench:components` ComponentResources; with `bench:root`, one root and the rest its children. */
const FLOOR_PROGRAM = `// The engine's floor: ComponentResources only, no provider (bench/site-plan.ts).
const pulumi = require("@pulumi/pulumi");
const config = new pulumi.Config("bench");
const count = config.requireNumber("components");
const tree = config.requireBoolean("root");
const root = tree ? new pulumi.ComponentResource("bench:floor:Root", "root", {}, {}) : undefined;
for (let i = tree ? 1 : 0; i < count; i++) {
    const c = new pulumi.ComponentResource("bench:floor:Node", "c-" + i, {}, { parent: root });
    c.registerOutputs({});
}
if (root) root.registerOutputs({});
`;

/** N LabFiles of one checkout's components/lab/providers.ts, each a small file under `bench:dir`. */
const labFileProgram = (checkout: string) => `// N LabFiles from ${checkout} (bench/site-plan.ts).
import * as pulumi from "@pulumi/pulumi";
import { LabFile } from ${JSON.stringify(path.join(checkout, "components", "lab", "providers"))};

const config = new pulumi.Config("bench");
const n = config.requireNumber("n");
const dir = config.require("dir");
for (let i = 0; i < n; i++) new LabFile(\`f-\${i}\`, { file: \`\${dir}/f-\${i}.txt\`, content: \`bench file \${i}\\n\`, mode: 0o644 });
`;

/** A bench-only build of nublar's provider: the real one, except that a Deployment deploys nothing. */
const NO_DEPLOY_PROVIDER = `// nublar's provider, except that nublar:nixos:Deployment deploys nothing: create returns the
// outputs a confirmed deploy would (bench/site-plan.ts: the state of a park's first up).
import { main } from "@pulumi/pulumi/provider";
import { NublarProvider } from ${JSON.stringify(path.join(ROOT, "provider", "provider"))};
import { HANDLERS } from ${JSON.stringify(path.join(ROOT, "provider", "resources"))};
import { deployment } from ${JSON.stringify(path.join(ROOT, "provider", "resources", "deployment"))};
import { bundleDigest, unpackBundle } from ${JSON.stringify(path.join(ROOT, "model", "nix", "bundle"))};
import { RESOURCE_TYPES } from ${JSON.stringify(path.join(ROOT, "provider", "tokens"))};

const noDeploy: typeof deployment = {
    ...deployment,
    async create(i) {
        const { files, secrets, release, ...rest } = i;
        return { id: i.node, outs: { ...rest, digest: bundleDigest(unpackBundle({ own: files, release })), secretsDigest: bundleDigest(secrets), generation: 1, confirmedInMs: 0 } };
    },
};
main(new NublarProvider({ ...HANDLERS, [RESOURCE_TYPES.deployment]: noDeploy }), process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(\`\${err.stack ?? err}\\n\`);
    process.exit(1);
});
`;

function writeStack(project: TestProject, config: Record<string, string>, stack = "bench") {
    fs.writeFileSync(project.stackFile(stack), stringify({ config }));
    const r = project.pulumi(["stack", "init", "--secrets-provider", "passphrase"], stack);
    if (r.status !== 0) throw new Error(`stack init ${stack}:\n${r.output}`);
}

/** Point a TestProject at a plain-JS program (no ts-node: the floor compiles nothing). */
// ---------------------------------------------------------------- 2. previews

const PREVIEW_ARGS = ["preview", "--suppress-outputs", "--diff=false"];

async function previewVariant(variant: Variant, n: number, run: number, floorCount: number | undefined, scratch: Scratch, o: Options): Promise<Run> {
    let project: TestProject | undefined;
    try {
        let env: NodeJS.ProcessEnv;
        if (variant === "floor") {
            const dir = scratch.program("floor", { "index.js": FLOOR_PROGRAM, "package.json": JSON.stringify({ name: "bench-floor", private: true, main: "index.js" }) });
            project = scratch.project(dir);
            project.setMain(dir, { typescript: false });
            // The stack is a resource too: one component fewer.
            writeStack(project, { "bench:components": String(floorCount! - 1), "bench:root": "true" });
            env = project.env();
        } else {
            project = scratch.project(variant === "dynamic" ? scratch.checkout(o.oldCommit) : ROOT);
            project.addStack("bench", benchSite(n), { siteFile: true });
            env = project.env();
            // At the old commit the program took pulumi.runtime.getRootDirectory() for the project
            // folder, which this engine's language host leaves as the placeholder "rootDirectory".
            if (variant === "dynamic") env.PULUMI_NODEJS_ROOT_DIRECTORY = project.work;
        }
        return await measurePulumi(`preview-${variant}-${n}`, variant, n, run, PREVIEW_ARGS, project, env, o);
    } finally {
        if (project) scratch.drop(project);
    }
}

// ---------------------------------------------------------------- 3. first ups of N resources

type CreateVariant = Variant | "native-nockpt";

async function createVariant(variant: CreateVariant, n: number, run: number, scratch: Scratch, o: Options): Promise<Run> {
    let project: TestProject | undefined;
    try {
        const kind = variant === "native-nockpt" ? "native" : variant;
        const env: NodeJS.ProcessEnv = {};
        if (kind === "floor") {
            const dir = scratch.program("floor", { "index.js": FLOOR_PROGRAM, "package.json": JSON.stringify({ name: "bench-floor", private: true, main: "index.js" }) });
            project = scratch.project(dir);
            project.setMain(dir, { typescript: false });
            writeStack(project, { "bench:components": String(n), "bench:root": "false" });
        } else {
            const checkout = kind === "dynamic" ? scratch.checkout(o.oldCommit) : ROOT;
            const dir = scratch.program(`labfile-${kind}`, {
                "index.ts": labFileProgram(checkout),
                "package.json": JSON.stringify({ name: `bench-labfile-${kind}`, private: true, main: "index.ts" }),
                "tsconfig.json": JSON.stringify({ extends: path.join(checkout, "tsconfig.json"), include: ["index.ts"] }),
            });
            project = scratch.project(dir);
            writeStack(project, { "bench:n": String(n), "bench:dir": path.join(project.stateDir, "bench-files") });
        }
        Object.assign(env, project.env());
        if (variant === "native-nockpt") env.PULUMI_SKIP_CHECKPOINTS = "true";
        const r = await measurePulumi(`up-${variant}-${n}`, variant, n, run, ["up", "--yes", "--skip-preview", "--suppress-outputs", "--diff=false"], project, env, o);
        if (kind !== "floor" && r.ok) {
            // Each LabFile wrote its file: check before the project (and its files) is removed.
            const dir = path.join(project.stateDir, "bench-files");
            const files = fs.existsSync(dir) ? fs.readdirSync(dir).length : 0;
            if (files !== n) Object.assign(r, { ok: false, error: `${files} files written, not ${n}` });
        }
        return r;
    } finally {
        if (project) scratch.drop(project);
    }
}

// ---------------------------------------------------------------- 4. first ups of a park

async function parkUp(n: number, checkpoints: boolean, scratch: Scratch, o: Options): Promise<Run> {
    const src = scratch.program("no-deploy-src", { "no-deploy.ts": NO_DEPLOY_PROVIDER });
    const plugin = path.join(scratch.dir, "no-deploy-plugin");
    fs.mkdirSync(plugin, { recursive: true });
    fs.writeFileSync(path.join(plugin, "pulumi-resource-nublar"), [
        "#!/bin/sh",
        `exec '${process.execPath}' --import 'file://${ROOT}/node_modules/tsx/dist/loader.mjs' '${path.join(src, "no-deploy.ts")}' "$@"`,
        "",
    ].join("\n"), { mode: 0o755 });
    const project = scratch.project();
    try {
        const install = spawnSync(PULUMI_BIN, ["plugin", "install", "resource", "nublar", PROVIDER_VERSION, "--file", plugin, "--reinstall"], { cwd: project.work, env: project.env(), encoding: "utf8" });
        if (install.status !== 0) throw new Error(`installing the no-deploy provider: ${install.stderr}`);
        project.addStack("bench", benchSite(n), { siteFile: true });
        const env = project.env();
        if (!checkpoints) env.PULUMI_SKIP_CHECKPOINTS = "true";
        return await measurePulumi(`park-up-${n}${checkpoints ? "" : "-nockpt"}`, checkpoints ? "native" : "native-nockpt", n, 0, ["up", "--yes", "--skip-preview", "--suppress-outputs", "--diff=false"], project, env, o);
    } finally {
        scratch.drop(project);
    }
}

// ---------------------------------------------------------------- summaries

function brief(r: Run): string {
    const rss = ROLES.filter((k) => r.roles[k]).map((k) => `${k} ${r.roles[k]!.peakRssMiB}`).join(", ");
    const st = r.state ? ` state ${r.state.finalBytes} B / ${r.state.resources} = ${r.state.bytesPerResource} B, ${r.state.writes} writes` : "";
    return `${r.label} run ${r.run}: ${r.ok ? "ok" : `FAILED (${r.error?.slice(0, 300)})`} ${r.wallS} s, ${r.resources ?? "?"} resources, peak RSS MiB: ${rss};${st} load ${r.load.join("→")}, steal ${r.cpu.stealPct}%`;
}

/** Per variant: median wall (p99≈max from 3 runs), resources, peak RSS per role (median). */
function variantSummary(runs: Run[]) {
    const ok = runs.filter((r) => r.ok);
    if (!ok.length) return { ok: 0, failed: runs.length, errors: runs.map((r) => r.error) };
    const roles = Object.fromEntries(ROLES.filter((k) => ok.some((r) => r.roles[k])).map((k) => [k, {
        peakRssMiB: median(ok.map((r) => r.roles[k]?.peakRssMiB ?? NaN)),
        cpuS: r1(median(ok.map((r) => r.roles[k]?.cpuS ?? NaN))),
    }]));
    return {
        ok: ok.length,
        failed: runs.length - ok.length,
        wallS: summary(ok.map((r) => r.wallS)),
        resources: ok[0].resources,
        roles,
        providerCmd: ok.find((r) => r.providerCmd)?.providerCmd,
        state: ok[0].state ? {
            bytesPerResource: median(ok.map((r) => r.state!.bytesPerResource)),
            finalBytes: median(ok.map((r) => r.state!.finalBytes)),
            resources: ok[0].state.resources,
            writes: median(ok.map((r) => r.state!.writes)),
            mibRewritten: r1(median(ok.map((r) => r.state!.bytesRewritten)) / 2 ** 20),
            byType: ok[0].state.byType,
        } : undefined,
        load: [Math.min(...ok.map((r) => r.load[0])), Math.max(...ok.map((r) => r.load[1]))],
        stealPct: summary(ok.map((r) => r.cpu.stealPct)),
    };
}

/** a/b of the medians, and the median of the per-run ratios (runs paired by their index). */
function ratio(a: Run[], b: Run[]) {
    const ok = (rs: Run[]) => rs.filter((r) => r.ok);
    const [ma, mb] = [median(ok(a).map((r) => r.wallS)), median(ok(b).map((r) => r.wallS))];
    const paired = ok(a).flatMap((ra) => ok(b).filter((rb) => rb.run === ra.run).map((rb) => ra.wallS / rb.wallS));
    return { ofMedians: r3(ma / mb), pairedMedian: paired.length ? r3(median(paired)) : null, paired: paired.map(r3) };
}

// ---------------------------------------------------------------- main

function requirePrerequisites() {
    const missing: string[] = [];
    for (const bin of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs"]) {
        if (!fs.existsSync(path.join(ROOT, ".tools", "bin", bin))) missing.push(`.tools/bin/${bin} (scripts/setup builds the engine)`);
    }
    const plugin = path.join(ROOT, ".tools", "provider", "plugin", "pulumi-resource-nublar");
    if (!fs.existsSync(plugin) || !fs.existsSync(path.join(ROOT, ".tools", "provider", "js", "provider", "main.js"))) {
        missing.push(".tools/provider (nublar's provider plugin: run scripts/build-provider)");
    }
    if (missing.length) fail(`missing: ${missing.join("; ")}`);
}

/** Whether the provider plugin will run its compiled build or, the build being stale, its sources under tsx. */
function providerBuild() {
    const stamp = spawnSync(path.join(ROOT, "scripts", "provider-stamp"), { encoding: "utf8" }).stdout.trim();
    const built = fs.readFileSync(path.join(ROOT, ".tools", "provider", "js", ".stamp"), "utf8").trim();
    return built === stamp ? "compiled (the build matches the sources)" : `sources under tsx (the build is stale: run scripts/build-provider); built: ${built.split("\n").join(" ")}`;
}

async function main() {
    if (process.argv[2] === "--child") {
        process.stdout.write(JSON.stringify(await measureOnce(Number(process.argv[3]))));
        return;
    }
    const argv = process.argv.slice(2);
    if (argv.includes("--help") || argv.includes("-h")) {
        process.stdout.write(`${HELP}\n`);
        return;
    }
    const o = parseOptions(argv);
    const pulumiRuns = o.previewSizes.length + o.createSizes.length + o.parkUp.length > 0;
    if (pulumiRuns) requirePrerequisites();
    const started = machine();
    const netnsBefore = netnsList();
    const result: Record<string, unknown> = {
        complete: false,
        options: { ...o, previewRuns: Object.fromEntries(o.previewSizes.map((n) => [n, o.previewRuns(n)])), createRuns: Object.fromEntries(o.createSizes.map((n) => [n, o.createRuns(n)])) },
        engine: pulumiRuns ? spawnSync(PULUMI_BIN, ["version"], { encoding: "utf8" }).stdout.trim() : undefined,
        providerBuild: pulumiRuns ? providerBuild() : undefined,
        started,
    };
    const save = () => writeResult(o.name, result);
    if (pulumiRuns) log(`engine ${result.engine}; nublar provider: ${result.providerBuild}`);

    // 1. plan+render
    if (o.sizes.length) {
        Object.assign(result, planRender(o.sizes, o.runs));
        save();
    }

    const scratch = new Scratch();
    const stop = (signal: NodeJS.Signals) => {
        for (const m of RUNNING) m.kill();
        scratch.remove();
        process.stderr.write(`site-plan: stopped by ${signal}; temp projects removed\n`);
        process.exit(1);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    try {
        // 2. previews, variants interleaved per size
        const preview: Record<number, Record<string, Run[]>> = {};
        result.previewRuns = preview;
        for (const n of o.previewSizes) {
            const runs = o.previewRuns(n);
            const byVariant: Record<string, Run[]> = Object.fromEntries(o.variants.map((v) => [v, []]));
            preview[n] = byVariant;
            for (let run = 0; run < runs; run++) {
                const order = o.variants.map((_, i) => o.variants[(i + run) % o.variants.length]);
                for (const v of order) {
                    // The floor registers as many resources as native's first preview at this size created.
                    const floorCount = byVariant.native?.find((r) => r.ok)?.resources ?? 3 * n + 4;
                    const r = await previewVariant(v, n, run, floorCount, scratch, o);
                    byVariant[v].push(r);
                    log(brief(r));
                    save();
                }
            }
        }

        // 3. first ups of N resources, variants interleaved per size
        const createVariants: CreateVariant[] = [...o.variants, ...(o.nockpt && o.variants.includes("native") ? ["native-nockpt" as const] : [])];
        const create: Record<number, Record<string, Run[]>> = {};
        result.createRuns = create;
        for (const n of o.createSizes) {
            const byVariant: Record<string, Run[]> = Object.fromEntries(createVariants.map((v) => [v, []]));
            create[n] = byVariant;
            for (let run = 0; run < o.createRuns(n); run++) {
                const order = createVariants.map((_, i) => createVariants[(i + run) % createVariants.length]);
                for (const v of order) {
                    const r = await createVariant(v, n, run, scratch, o);
                    byVariant[v].push(r);
                    log(brief(r));
                    save();
                }
            }
        }

        // 4. first ups of a park (no deploy): without checkpoints, and with them at the smallest
        const park: Record<number, { nockpt?: Run; checkpoints?: Run }> = {};
        result.parkRuns = park;
        const parkSizes = [...o.parkUp].sort((a, b) => a - b);
        for (const n of parkSizes) {
            park[n] = {};
            const modes = n === parkSizes[0] ? [false, true] : [false];
            for (const ckpt of modes) {
                const r = await parkUp(n, ckpt, scratch, o);
                park[n][ckpt ? "checkpoints" : "nockpt"] = r;
                log(brief(r));
                save();
            }
        }

        Object.assign(result, analyse(o, preview, create, park));
    } finally {
        scratch.remove();
    }
    // Nothing here creates a namespace (a park's preview and up deploy nothing; LabFiles are
    // files). Other work on the machine (a lab, engine tests) may add or remove some meanwhile:
    // a namespace of this benchmark's parks would carry their name (bench-N).
    const names = (l: string) => l.split("\n").map((x) => x.split(" ")[0]).filter(Boolean);
    const [before, after] = [names(netnsBefore), names(netnsList())];
    result.netns = {
        unchanged: before.join() === after.join(),
        added: after.filter((x) => !before.includes(x)),
        removed: before.filter((x) => !after.includes(x)),
        ofThisBenchmark: after.filter((x) => /bench/.test(x)),
    };
    log(`ip netns list: ${JSON.stringify(result.netns)}`);
    result.ended = machine();
    result.complete = true;
    log(`wrote ${save()}`);
    if (result.summary) process.stderr.write(`${JSON.stringify(result.summary, null, 2)}\n`);
}

// ---------------------------------------------------------------- analysis

function analyse(o: Options, preview: Record<number, Record<string, Run[]>>, create: Record<number, Record<string, Run[]>>, park: Record<number, { nockpt?: Run; checkpoints?: Run }>) {
    const med = (rs: Run[] | undefined) => median((rs ?? []).filter((r) => r.ok).map((r) => r.wallS));
    const summaryOut: Record<string, unknown> = {};

    // Previews: per size and variant; ratios; time per node and its growth.
    summaryOut.preview = Object.fromEntries(Object.entries(preview).map(([n, byV]) => [n, Object.fromEntries(Object.entries(byV).map(([v, rs]) => [v, variantSummary(rs)]))]));
    summaryOut.previewRatios = Object.fromEntries(Object.entries(preview).map(([n, byV]) => [n, {
        nativeOverDynamic: byV.native && byV.dynamic ? ratio(byV.native, byV.dynamic) : null,
        nativeOverFloor: byV.native && byV.floor ? ratio(byV.native, byV.floor) : null,
    }]));
    const msPerNode = Object.fromEntries(o.variants.map((v) => [v, Object.fromEntries(Object.entries(preview).map(([n, byV]) => [n, r2((med(byV[v]) * 1000) / Number(n))]))]));
    const sizes = Object.keys(preview).map(Number).sort((a, b) => a - b);
    const perNodeGrowth = Object.fromEntries(o.variants.map((v) => [v, Object.fromEntries(sizes.slice(1).map((n, i) => {
        const prev = sizes[i];
        return [`${prev}->${n}`, r2(msPerNode[v][n] / msPerNode[v][prev])];
    }))]));
    summaryOut.previewMsPerNode = msPerNode;
    summaryOut.previewMsPerNodeGrowth = perNodeGrowth;

    // Creates: per size and variant; growth between the two sizes; ratios at each size; state.
    summaryOut.create = Object.fromEntries(Object.entries(create).map(([n, byV]) => [n, Object.fromEntries(Object.entries(byV).map(([v, rs]) => [v, variantSummary(rs)]))]));
    summaryOut.createRatios = Object.fromEntries(Object.entries(create).map(([n, byV]) => [n, {
        nativeOverDynamic: byV.native && byV.dynamic ? ratio(byV.native, byV.dynamic) : null,
        nativeOverFloor: byV.native && byV.floor ? ratio(byV.native, byV.floor) : null,
        nockptOverNative: byV.native && byV["native-nockpt"] ? ratio(byV["native-nockpt"], byV.native) : null,
    }]));
    const cSizes = Object.keys(create).map(Number).sort((a, b) => a - b);
    if (cSizes.length >= 2) {
        const [a, b] = [cSizes[0], cSizes[cSizes.length - 1]];
        summaryOut.createGrowth = { sizes: `${a}->${b}`, resourcesRatio: b / a, time: Object.fromEntries(Object.keys(create[b]).map((v) => [v, r2(med(create[b][v]) / med(create[a]?.[v]))])) };
    }
    summaryOut.stateBytesPerResource = Object.fromEntries(Object.entries(create).map(([n, byV]) => [n, Object.fromEntries(Object.entries(byV).map(([v, rs]) => {
        const r = rs.find((x) => x.ok && x.state);
        if (!r?.state) return [v, null];
        const main = Object.entries(r.state.byType).sort((x, y) => y[1].count - x[1].count)[0];
        return [v, { file: r.state.bytesPerResource, [`mean ${main[0]} entry`]: main[1].meanBytes }];
    }))]));

    // The cost of the per-step state rewrites, seconds per MiB rewritten: from the creates
    // (checkpoints against none, same size) and from the park.
    const rewrite: Record<string, unknown> = {};
    for (const n of cSizes) {
        const [ck, no] = [create[n].native, create[n]["native-nockpt"]];
        const ckRun = ck?.find((r) => r.ok && r.state);
        if (!ckRun || !no?.some((r) => r.ok)) continue;
        const mib = median(ck.filter((r) => r.ok).map((r) => r.state!.bytesRewritten)) / 2 ** 20;
        rewrite[`labfile-${n}`] = { overheadS: r2(med(ck) - med(no)), mibRewritten: r1(mib), sPerMiB: r3((med(ck) - med(no)) / mib), writes: ckRun.state!.writes, resources: ckRun.state!.resources };
    }
    const pSizes = Object.keys(park).map(Number).sort((a, b) => a - b);
    const small = pSizes.length ? park[pSizes[0]] : undefined;
    let parkFit: { sPerMiB: number; writesPerResource: number; fill: number } | undefined;
    if (small?.checkpoints?.ok && small.nockpt?.ok && small.checkpoints.state) {
        const st = small.checkpoints.state;
        const mib = st.bytesRewritten / 2 ** 20;
        parkFit = {
            sPerMiB: (small.checkpoints.wallS - small.nockpt.wallS) / mib,
            writesPerResource: st.writes / st.resources,
            // How full the state is, on average, at each rewrite (0.5 if it grew evenly).
            fill: st.bytesRewritten / (st.writes * st.finalBytes),
        };
        rewrite[`park-${pSizes[0]}`] = { overheadS: r2(small.checkpoints.wallS - small.nockpt.wallS), mibRewritten: r1(mib), sPerMiB: r3(parkFit.sPerMiB), writes: st.writes, resources: st.resources, writesPerResource: r2(parkFit.writesPerResource), fill: r3(parkFit.fill) };
    }
    summaryOut.stateRewriteCost = rewrite;
    summaryOut.park = Object.fromEntries(Object.entries(park).map(([n, p]) => [n, Object.fromEntries(Object.entries(p).map(([mode, r]) => [mode, r && {
        ok: r.ok, error: r.error, wallS: r.wallS, resources: r.resources, roles: r.roles,
        state: r.state && { finalMiB: r2(r.state.finalBytes / 2 ** 20), resources: r.state.resources, bytesPerResource: r.state.bytesPerResource, writes: r.state.writes, mibRewritten: r1(r.state.bytesRewritten / 2 ** 20), byType: r.state.byType, byField: r.state.byField },
    }]))]));

    // The estimate: a first `up` of the largest park with per-step checkpoints = the same up
    // without them (measured) + its rewrites (writes per resource and fill from the smallest
    // park's checkpointed up; the final state measured) × the rewrite cost per MiB.
    const big = pSizes.length ? park[pSizes[pSizes.length - 1]]?.nockpt : undefined;
    if (parkFit && big?.ok && big.state) {
        const writes = parkFit.writesPerResource * big.state.resources;
        const mib = (parkFit.fill * writes * big.state.finalBytes) / 2 ** 20;
        const labfile = rewrite[`labfile-${cSizes[cSizes.length - 1]}`] as { sPerMiB: number } | undefined;
        summaryOut.firstUpEstimate = {
            nodes: pSizes[pSizes.length - 1],
            resources: big.state.resources,
            stateMiB: r1(big.state.finalBytes / 2 ** 20),
            bytesPerResource: big.state.bytesPerResource,
            measuredWithoutCheckpointsS: big.wallS,
            writes: Math.round(writes),
            gibRewritten: r1(mib / 1024),
            withCheckpointsS: {
                atParkRewriteCost: Math.round(big.wallS + mib * parkFit.sPerMiB),
                atLabFileRewriteCost: labfile ? Math.round(big.wallS + mib * labfile.sPerMiB) : null,
            },
        };
    }
    return { summary: summaryOut };
}

if (require.main === module) {
    main().catch((err) => {
        process.stderr.write(`${err.stack ?? err}\n`);
        process.exit(1);
    });
}
