// Profile first (issue 20, a native provider): where the time and the memory of a Pulumi run go,
// split between the program, the engine, the provider and the state writes.
//
//   node --import tsx bench/profile-engine.ts [--nodes 1000] [--create 500] [--runs 3] [--out DIR]
//       [--kinds dynamic,dynamic-nockpt,component,component-nockpt,native,native-nockpt]
//       [--scale 2000] [--scale-kinds component,component-nockpt]
//       [--no-profile] [--timeout-s 900] [--poll-ms 100] [--keep]      (--help: the options)
//
// With the defaults it takes about 15 minutes on 2 shared vCPUs (a 1,000-node preview is about
// a minute, a first `up` of 2,000 components about 3); --nodes 0, --create 0 or --scale 0 skip
// a part.
//
// (a) `pulumi preview` of a park of --nodes nodes (bench/site-plan.ts's benchSite, in a
//     TestProject with `nublar:siteFile`, text output, --suppress-outputs --diff=false).
// (b) a first `pulumi up --skip-preview` of --create trivial resources, from a synthetic program
//     (plain JS, no ts-node) in a temp project: `dynamic` = pulumi.dynamic.Resource whose create
//     returns its inputs; `component` = pulumi.ComponentResource (the floor: no provider at all);
//     `native` = a custom resource of a minimal Go provider (Check and Create echo the inputs),
//     built here from the Go module cache (skipped if Go or the modules are missing); a `-nockpt`
//     suffix runs the same with PULUMI_SKIP_CHECKPOINTS=true (one state write at the end instead
//     of one per step), so the difference is the cost of the per-step state writes.
//     --scale adds one run per --scale-kinds at a larger N, to show the growth.
//
// Every run (--runs timed runs per case, medians reported) polls the whole process tree every
// --poll-ms: per process its role (engine, language host, program, provider, provider shim),
// CPU time (utime+stime), peak RSS (VmHWM) and lifetime; the stack file's renames are counted
// with inotify (each one is a full rewrite of the state) and their sizes summed, beside the
// engine's write_bytes (/proc/<pid>/io: the .bak copies too) and its automatic debug log. A
// preload hook (NODE_OPTIONS=--require) in the program records its start, ts-node's compile time,
// the synchronous load of the program, every gRPC call's latency and its memory maxima (heap,
// external); in the dynamic provider, every RPC's handling time. Then one profiled run per case
// (unless --no-profile; not for -nockpt or --scale): `pulumi --profiling` (Go CPU and allocation
// profiles, summarized with `go tool pprof`: flat top and the cumulative share of named engine
// parts) and, in the program and the provider, V8's CPU profiler and sampling heap profiler
// (started by the hook through the inspector: --cpu-prof is refused in NODE_OPTIONS), summarized
// by self time per function and category, inclusive time of named SDK frames, and what the heap
// near its peak was allocated by. The profiled run is slower; its time is not mixed into the
// timed runs. Needs root or the same user to read /proc/<pid>/io (else that column is empty).
//
// The preview sets PULUMI_NODEJS_ROOT_DIRECTORY: this engine's language host does not pass the
// project root, so pulumi.runtime.getRootDirectory() is the literal "rootDirectory" and index.ts
// refuses `nublar:siteFile` (it must lie inside the project folder).
//
// Output: DIR/results.json (every sample), DIR/summary.md (the tables), the profiles under DIR/.
// DIR defaults to a new folder under the system temp dir. Nothing is written inside the repo.
// Needs .tools/bin/pulumi (scripts/setup builds it). The machine is shared: the load average is
// recorded before and after each case.
import { CLK_TCK, median, processTree, roleOf, type Role } from "./process-tree";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { TestProject } from "../test/engine/project";
import { benchSite } from "./site-plan";
import { machine } from "./machine";
import { engineEnv, PROJECT_DIR, PULUMI_BIN } from "../runtime/pulumi-engine";

// ---------------------------------------------------------------- options

const HELP = `Usage: node --import tsx bench/profile-engine.ts [options]

Where the time and memory of a Pulumi run go: program, engine, provider, state writes.

  --nodes N          (a) preview a park of N nodes (default 1000; 0 skips (a))
  --create N         (b) first \`pulumi up\` of N trivial resources (default 500; 0 skips (b))
  --kinds LIST       (b) cases: dynamic, dynamic-nockpt, component, component-nockpt, native,
                     native-nockpt (default: all six)
  --scale N          one more run per --scale-kinds at N resources (default 2000; 0 skips)
  --scale-kinds LIST cases for --scale (default component,component-nockpt)
  --runs R           timed runs per case, medians reported (default 3)
  --no-profile       skip the profiled run of each case
  --out DIR          results, summary and profiles (default: a new folder under ${os.tmpdir()})
  --timeout-s S      limit per pulumi command (default 900)
  --poll-ms MS       process-tree sampling period (default 100)
  --keep             keep the temp Pulumi projects
  --help             this text

Needs ${path.relative(process.cwd(), PULUMI_BIN) || PULUMI_BIN} (scripts/setup); Go for the native case and the engine's profile summary.`;

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
}
const KNOWN = new Set(["--nodes", "--create", "--kinds", "--scale", "--scale-kinds", "--runs", "--out", "--timeout-s", "--poll-ms"]);
const FLAGS = new Set(["--no-profile", "--keep"]);
for (let i = 0; i < argv.length; i++) {
    if (FLAGS.has(argv[i])) continue;
    if (KNOWN.has(argv[i]) && i + 1 < argv.length) {
        i++;
        continue;
    }
    fail(`unknown or incomplete option: ${argv[i]} (see --help)`);
}
function opt(name: string, fallback: string): string {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : fallback;
}
function num(name: string, fallback: number): number {
    const v = Number(opt(name, String(fallback)));
    if (!Number.isFinite(v) || v < 0) fail(`--${name} must be a number ≥ 0`);
    return v;
}
function fail(message: string): never {
    process.stderr.write(`profile-engine: ${message}\n`);
    process.exit(2);
}

const NODES = num("nodes", 1000);
const CREATE = num("create", 500);
const RUNS = Math.max(1, num("runs", 3));
const SCALE = num("scale", 2000);
const KINDS = opt("kinds", "dynamic,dynamic-nockpt,component,component-nockpt,native,native-nockpt").split(",").filter(Boolean);
const SCALE_KINDS = opt("scale-kinds", "component,component-nockpt").split(",").filter(Boolean);
const PROFILE = !argv.includes("--no-profile");
const KEEP = argv.includes("--keep");
const TIMEOUT_MS = num("timeout-s", 900) * 1000;
const POLL_MS = Math.max(10, num("poll-ms", 100));
const OUT = path.resolve(opt("out", path.join(os.tmpdir(), `nublar-profile-${new Date().toISOString().replace(/[:.]/g, "-")}`)));
for (const k of [...KINDS, ...SCALE_KINDS]) {
    if (!/^(dynamic|component|native)(-nockpt)?$/.test(k)) fail(`unknown case ${k}: dynamic, component or native, optionally with -nockpt`);
}

const log = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

// ---------------------------------------------------------------- process tree sampling

interface Proc {
    pid: number;
    start: string; // /proc starttime, to tell a reused pid
    role: Role;
    cmd: string;
    firstMs: number;
    lastMs: number;
    cpuMs: number;
    hwmKiB: number;
    io?: Record<string, number>;
}

/** Polls /proc for a process and all its descendants (kept by pid once seen, even if orphaned). */
class TreeMonitor {
    readonly procs = new Map<number, Proc>();
    private timer?: NodeJS.Timeout;
    constructor(private readonly rootPid: number, private readonly t0: number) {}

    start() {
        this.poll();
        this.timer = setInterval(() => this.poll(), POLL_MS);
    }

    stop() {
        clearInterval(this.timer);
    }

    poll() {
        const now = performance.now() - this.t0;
        const { stats, tree } = processTree(this.rootPid, this.procs);
        for (const pid of tree) {
            const s = stats.get(pid)!;
            let p = this.procs.get(pid);
            if (p && p.start !== s.start) p = undefined; // reused pid: a new process
            if (!p) {
                let cmd: string[] = [];
                try {
                    cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
                } catch {
                    continue;
                }
                if (cmd.length === 0) continue; // zombie
                p = { pid, start: s.start, role: roleOf(cmd), cmd: cmd.join(" ").slice(0, 300), firstMs: now, lastMs: now, cpuMs: 0, hwmKiB: 0 };
                this.procs.set(pid, p);
            }
            p.lastMs = now;
            p.cpuMs = (s.cpu * 1000) / CLK_TCK;
            try {
                const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
                const hwm = /VmHWM:\s+(\d+)/.exec(status);
                if (hwm) p.hwmKiB = Math.max(p.hwmKiB, Number(hwm[1]));
                if (p.role === "engine") {
                    const io = fs.readFileSync(`/proc/${pid}/io`, "utf8");
                    p.io = Object.fromEntries(io.trim().split("\n").map((l) => l.split(": ")).map(([k, v]) => [k, Number(v)]));
                }
            } catch {
                // exited between reads
            }
        }
    }
}

// ---------------------------------------------------------------- the Node preload hook

/**
 * Loaded with NODE_OPTIONS=--require in every Node process of the run. In the program (Pulumi's
 * cmd/run) it times ts-node's compile, the synchronous load of the program, closure serialization
 * and every gRPC call to the engine; in the dynamic provider, the handling of every RPC. Each
 * process writes PROF_HOOK_DIR/<role>.<pid>.json at exit (and on SIGINT, with which the engine
 * stops its plugins; exiting normally also lets --cpu-prof write its profile).
 */
const HOOK = String.raw`"use strict";
const fs = require("fs"), path = require("path"), Module = require("module");
const script = process.argv[1] || "";
const role = /@pulumi[\\/]pulumi[\\/]cmd[\\/]run[\\/]/.test(script) ? "program" : /cmd[\\/]dynamic-provider/.test(script) ? "provider" : null;
if (role && process.env.PROF_HOOK_DIR) {
    const now = () => performance.timeOrigin + performance.now();
    const out = { role, pid: process.pid, startMs: performance.timeOrigin, hookMs: now(), rpc: {} };
    const from = (id) => { try { return require(id.startsWith(".") ? path.resolve(path.dirname(script), id) : require.resolve(id, { paths: [path.dirname(script)] })); } catch { return undefined; } };
    const rec = (table, name, ms) => { const r = table[name] || (table[name] = { n: 0, ms: 0, maxMs: 0 }); r.n++; r.ms += ms; if (ms > r.maxMs) r.maxMs = ms; };
    // --cpu-prof is not allowed in NODE_OPTIONS: the same V8 sampling profiler, through the inspector.
    let session;
    if (process.env.PROF_CPU_DIR) {
        session = new (require("inspector").Session)();
        session.connect();
        session.post("Profiler.enable");
        session.post("Profiler.start");
        // And the sampling heap profiler: what the memory still held at exit was allocated by.
        session.post("HeapProfiler.enable");
        session.post("HeapProfiler.startSampling", { samplingInterval: 262144 });
    }
    const grpc = from("@grpc/grpc-js");
    if (role === "program") {
        out.ts = { compileMs: 0, files: 0, loadTypescriptMs: 0, loadTsNodeMs: 0 };
        out.closure = { n: 0, bytes: 0, maxBytes: 0 };
        let inFlight = 0;
        out.maxInFlight = 0;
        // The SDK's generated clients (grpc-js binds makeUnaryRequest when it loads, so wrap their methods).
        for (const file of ["proto/resource_grpc_pb.js", "proto/engine_grpc_pb.js"]) {
            const mod = from("../../" + file);
            for (const [cls, Client] of Object.entries(mod || {})) {
                if (!/Client$/.test(cls) || typeof Client !== "function") continue;
                for (const name of Object.keys(Client.prototype)) {
                    const orig = Client.prototype[name];
                    if (typeof orig !== "function") continue;
                    Client.prototype[name] = function (...args) {
                        const i = args.findIndex((a) => typeof a === "function");
                        if (i >= 0) {
                            const cb = args[i], t = now();
                            inFlight++; if (inFlight > out.maxInFlight) out.maxInFlight = inFlight;
                            if (out.firstRpcMs === undefined) out.firstRpcMs = t;
                            args[i] = function (...a) { inFlight--; const e = now(); out.lastRpcMs = e; rec(out.rpc, name, e - t); return cb.apply(this, a); };
                        }
                        return orig.apply(this, args);
                    };
                }
            }
        }
        const origLoad = Module._load;
        let programLoad = false;
        Module._load = function (request, parent, isMain) {
            const t = now();
            const first = (request === "typescript" || request === "ts-node" || /typescript\.js$/.test(request)) && !Module._cache[safeResolve(request, parent)];
            const isProgram = !programLoad && parent && /cmd[\\/]run[\\/]run\.js$/.test(parent.filename || "") && path.isAbsolute(request);
            if (isProgram) { programLoad = true; out.programLoadStartMs = t; }
            try {
                const m = origLoad.apply(this, arguments);
                if (request === "ts-node" && m && typeof m.register === "function" && !m.__profWrapped) {
                    const register = m.register;
                    m.register = function (...a) {
                        const svc = register.apply(this, a);
                        const compile = svc.compile;
                        svc.compile = function (...c) { const s = now(); try { return compile.apply(this, c); } finally { out.ts.compileMs += now() - s; out.ts.files++; } };
                        return svc;
                    };
                    m.__profWrapped = true;
                }
                if (/serializeClosure$/.test(request) && m && m.serializeFunction && !m.__profWrapped) {
                    const sf = m.serializeFunction;
                    m.serializeFunction = function (...a) {
                        return sf.apply(this, a).then((r) => { out.closure.n++; const b = Buffer.byteLength(r.text || ""); out.closure.bytes += b; if (b > out.closure.maxBytes) out.closure.maxBytes = b; return r; });
                    };
                    m.__profWrapped = true;
                }
                return m;
            } finally {
                const e = now();
                if (first) out.ts[request === "ts-node" ? "loadTsNodeMs" : "loadTypescriptMs"] += e - t;
                if (isProgram) out.programLoadEndMs = e;
            }
        };
        function safeResolve(r, p) { try { return Module._resolveFilename(r, p); } catch { return ""; } }
    } else if (grpc) {
        const register = grpc.Server.prototype.register;
        grpc.Server.prototype.register = function (name, handler, ...rest) {
            const method = name.split("/").pop();
            const wrapped = function (call, cb) {
                const t = now();
                return handler.call(this, call, function (...a) { rec(out.rpc, method, now() - t); return cb.apply(this, a); });
            };
            return register.call(this, name, handler.length >= 2 ? wrapped : handler, ...rest);
        };
    }
    // Memory maxima, sampled: is the peak RSS the JS heap or memory outside it (buffers, native)?
    // In a profiled run, also the sampling heap profile each time the heap grows by 15%: the last
    // one shows what the memory at (about) the peak was allocated by.
    out.memMaxMiB = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
    let peakProfile, snapAt = 64 * 2 ** 20;
    setInterval(() => {
        const m = process.memoryUsage();
        for (const k of Object.keys(out.memMaxMiB)) out.memMaxMiB[k] = Math.max(out.memMaxMiB[k], m[k] / 2 ** 20);
        if (session && m.heapUsed > snapAt) {
            snapAt = m.heapUsed * 1.15;
            session.post("HeapProfiler.getSamplingProfile", (err, res) => { if (!err) peakProfile = { heapUsedMiB: m.heapUsed / 2 ** 20, profile: res.profile }; });
        }
    }, 200).unref();
    let written = false;
    const write = () => {
        if (written) return;
        written = true;
        out.exitMs = now();
        out.heapUsedMiB = process.memoryUsage().heapUsed / 2 ** 20;
        out.maxRssMiB = process.resourceUsage().maxRSS / 1024;
        if (session) {
            // Synchronous within this thread: the callback runs before post returns.
            session.post("Profiler.stop", (err, res) => {
                if (!err) try { fs.writeFileSync(path.join(process.env.PROF_CPU_DIR, role + "." + process.pid + ".cpuprofile"), JSON.stringify(res.profile)); } catch {}
            });
            if (peakProfile) try { fs.writeFileSync(path.join(process.env.PROF_CPU_DIR, role + "." + process.pid + ".peak.heapprofile"), JSON.stringify(peakProfile.profile)); out.peakHeapProfileAtMiB = peakProfile.heapUsedMiB; } catch {}
            session.post("HeapProfiler.stopSampling", (err, res) => {
                if (!err) try { fs.writeFileSync(path.join(process.env.PROF_CPU_DIR, role + "." + process.pid + ".heapprofile"), JSON.stringify(res.profile)); } catch {}
            });
        }
        try { fs.writeFileSync(path.join(process.env.PROF_HOOK_DIR, role + "." + process.pid + ".json"), JSON.stringify(out)); } catch {}
    };
    process.on("exit", write);
    if (role === "provider") process.on("SIGINT", () => { write(); process.exit(0); });
}
`;

// ---------------------------------------------------------------- one measured run

interface RoleSummary { procs: number; cpuMs: number; aliveMs: number; peakRssMiB: number[] }

interface Sample {
    case: string;
    n: number;
    profiled: boolean;
    ok: boolean;
    error?: string;
    wallMs: number;
    resources?: number;
    byType?: Record<string, number>;
    roles: Record<string, RoleSummary>;
    phases: Record<string, number>;
    state?: { writes: number; backups: number; bytesObserved: number; finalBytes: number; engineWriteBytes?: number; engineCancelledWriteBytes?: number; autoLogBytes: number };
    program?: Record<string, unknown>;
    provider?: Record<string, unknown>;
    processes: Proc[];
    load: [number, number];
}

const r1 = (x: number) => Math.round(x * 10) / 10;

/**
 * Run `pulumi <args>` in `cwd` with `env`, sampling its process tree, the stack file and the hooks.
 * `stackDir`/`stackName`: the file backend's folder and stack, to watch its rewrites.
 */
async function measure(label: string, n: number, args: string[], cwd: string, env: NodeJS.ProcessEnv, stackDir: string, stackName: string, profileDir?: string): Promise<Sample> {
    const hookDir = fs.mkdtempSync(path.join(OUT, "hook-"));
    const hookFile = path.join(OUT, "hook.cjs");
    const nodeOptions = [env.NODE_OPTIONS ?? "", `--require=${hookFile}`];
    const pulumiArgs = [...args];
    if (profileDir) {
        fs.mkdirSync(profileDir, { recursive: true });
        pulumiArgs.unshift("--profiling", path.join(profileDir, "engine"));
    }
    const fullEnv: NodeJS.ProcessEnv = { ...env, NODE_OPTIONS: nodeOptions.join(" ").trim(), PROF_HOOK_DIR: hookDir };
    if (profileDir) fullEnv.PROF_CPU_DIR = profileDir;
    const loadBefore = os.loadavg()[0];
    // This engine also writes an automatic debug-level log of every operation (gzip, encrypted)
    // under PULUMI_HOME/logs: another write per engine event, counted apart from the state.
    const logsDir = path.join(env.PULUMI_HOME ?? "", "logs");
    const logsBefore = new Set(fs.existsSync(logsDir) ? fs.readdirSync(logsDir) : []);

    // Each rename onto <stack>.json is one full rewrite of the state (fileblob writes a temp
    // file and renames it); <stack>.json.bak is the copy of the previous one, made before.
    const state = { writes: 0, backups: 0, bytesObserved: 0, finalBytes: 0 };
    const stackFile = path.join(stackDir, `${stackName}.json`);
    fs.mkdirSync(stackDir, { recursive: true });
    const watcher = fs.watch(stackDir, (event, file) => {
        if (event !== "rename" || !file) return;
        if (file === `${stackName}.json`) {
            try {
                state.bytesObserved += fs.statSync(stackFile).size;
                state.writes++;
            } catch {
                // between the backup and the write
            }
        } else if (file === `${stackName}.json.bak`) state.backups++;
    });

    const t0 = performance.now();
    const child = spawn(PULUMI_BIN, pulumiArgs, { cwd, env: fullEnv, stdio: ["ignore", "pipe", "pipe"] });
    const monitor = new TreeMonitor(child.pid!, t0);
    monitor.start();
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
        stdout += d;
        if (stdout.length > 1 << 26) stdout = stdout.slice(-(1 << 24)); // keep the tail: the summary
    });
    child.stderr.on("data", (d) => (stderr += d));
    const killer = setTimeout(() => {
        for (const p of monitor.procs.values()) {
            try {
                process.kill(p.pid, "SIGKILL");
            } catch {
                // gone
            }
        }
    }, TIMEOUT_MS);
    const status: number | null = await new Promise((resolve) => child.on("close", (code) => resolve(code)));
    const wallMs = performance.now() - t0;
    clearTimeout(killer);
    monitor.stop();
    monitor.poll(); // nothing left, but the tree is final
    watcher.close();
    try {
        state.finalBytes = fs.statSync(stackFile).size;
    } catch {
        // preview: no state
    }

    let autoLogBytes = 0;
    for (const f of fs.existsSync(logsDir) ? fs.readdirSync(logsDir) : []) if (!logsBefore.has(f)) autoLogBytes += fs.statSync(path.join(logsDir, f)).size;
    const processes = [...monitor.procs.values()];
    const roles: Record<string, RoleSummary> = {};
    for (const p of processes) {
        const r = (roles[p.role] ??= { procs: 0, cpuMs: 0, aliveMs: 0, peakRssMiB: [] });
        r.procs++;
        r.cpuMs += p.cpuMs;
        r.peakRssMiB.push(r1(p.hwmKiB / 1024));
    }
    for (const [role, r] of Object.entries(roles)) {
        const ps = processes.filter((p) => p.role === role);
        r.aliveMs = Math.max(...ps.map((p) => p.lastMs)) - Math.min(...ps.map((p) => p.firstMs));
        r.peakRssMiB.sort((a, b) => b - a);
    }

    // The hooks' reports, by role (the program and provider run once each per operation).
    const hooks = fs.readdirSync(hookDir).map((f) => JSON.parse(fs.readFileSync(path.join(hookDir, f), "utf8")));
    fs.rmSync(hookDir, { recursive: true, force: true });
    const program = hooks.find((h) => h.role === "program");
    const provider = hooks.find((h) => h.role === "provider");
    const epoch0 = performance.timeOrigin + t0;
    const programProc = processes.find((p) => p.role === "program");
    const providerProc = processes.find((p) => p.role === "provider");
    const programStart = program ? program.startMs - epoch0 : programProc?.firstMs ?? NaN;
    const programEnd = program ? program.exitMs - epoch0 : programProc?.lastMs ?? NaN;
    const phases: Record<string, number> = {
        // The engine alone: CLI start, stack and secrets, plugins, the language host.
        beforeProgram: programStart,
        program: programEnd - programStart,
        // After the program exits: the engine finishing its steps, the final state, the summary.
        afterProgram: wallMs - programEnd,
    };
    if (program) {
        phases.programBoot = program.hookMs - program.startMs;
        if (program.programLoadStartMs) {
            phases.programSetup = program.programLoadStartMs - program.hookMs; // run.js, ts-node and typescript loaded
            phases.programLoad = program.programLoadEndMs - program.programLoadStartMs; // require(main): compile + top level
            phases.programAsync = program.exitMs - program.programLoadEndMs; // outputs, RPCs, waiting for the engine
        }
    }
    if (providerProc) phases.providerStart = providerProc.firstMs;

    const resources = /Resources:\s*\n\s*\+ (\d+) (?:to create|created)/.exec(stdout);
    const byType: Record<string, number> = {};
    const seen = new Set<string>();
    for (const m of stdout.matchAll(/^ \+ {2}(\S+) (\S+) (?:create|created)\b/gm)) {
        if (seen.has(`${m[1]} ${m[2]}`)) continue;
        seen.add(`${m[1]} ${m[2]}`);
        byType[m[1]] = (byType[m[1]] ?? 0) + 1;
    }
    const engine = processes.find((p) => p.role === "engine");
    const ok = status === 0;
    const sample: Sample = {
        case: label, n, profiled: Boolean(profileDir), ok, wallMs, resources: resources ? Number(resources[1]) : undefined, byType,
        roles, phases,
        state: { ...state, engineWriteBytes: engine?.io?.write_bytes, engineCancelledWriteBytes: engine?.io?.cancelled_write_bytes, autoLogBytes },
        program, provider, processes, load: [loadBefore, os.loadavg()[0]],
    };
    if (!ok) sample.error = wallMs >= TIMEOUT_MS ? `not finished after ${TIMEOUT_MS / 1000} s` : `exit ${status}: ${(stderr + stdout).slice(-1500)}`;
    return sample;
}

// ---------------------------------------------------------------- (a) preview of a park

async function previewRun(n: number, profileDir?: string): Promise<Sample> {
    const project = new TestProject();
    try {
        project.addStack("bench", benchSite(n), { siteFile: true });
        const env: NodeJS.ProcessEnv = {
            ...project.env(),
            // The Node SDK reads the project's root from this variable, which this engine's
            // language host does not set: without it getRootDirectory() is the literal
            // "rootDirectory" and index.ts refuses the site file (it must lie inside the project).
            PULUMI_NODEJS_ROOT_DIRECTORY: project.work,
        };
        const stackDir = path.join(project.work, "state", ".pulumi", "stacks", "nublar");
        return await measure(`preview-${n}`, n, ["preview", "--stack", "bench", "--non-interactive", "--suppress-outputs", "--diff=false"], project.work, env, stackDir, "bench", profileDir);
    } finally {
        if (!KEEP) project.remove();
    }
}

// ---------------------------------------------------------------- (b) first `pulumi up` of N resources

const SYNTHETIC = `// N trivial resources of one kind: prof:kind = dynamic | component | native.
const pulumi = require("@pulumi/pulumi");
const config = new pulumi.Config("prof");
const n = config.requireNumber("n");
const kind = config.require("kind");
const provider = { async create(inputs) { return { id: inputs.name, outs: inputs }; } };
class Trivial extends pulumi.dynamic.Resource {
    constructor(name) { super(provider, name, { name }, {}); }
}
class Floor extends pulumi.ComponentResource {
    constructor(name) { super("prof:index:Floor", name, {}, {}); this.registerOutputs({}); }
}
for (let i = 0; i < n; i++) {
    const name = "r-" + i;
    if (kind === "dynamic") new Trivial(name);
    else if (kind === "component") new Floor(name);
    else new pulumi.CustomResource("profnative:index:Thing", name, { name });
}
`;

const NATIVE_GO = `// A trivial native Pulumi provider: Check echoes the inputs, Create returns them as outputs.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	rpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

type prov struct{ rpc.UnimplementedResourceProviderServer }

func (*prov) GetPluginInfo(context.Context, *emptypb.Empty) (*rpc.PluginInfo, error) {
	return &rpc.PluginInfo{Version: "0.0.1"}, nil
}
func (*prov) Configure(context.Context, *rpc.ConfigureRequest) (*rpc.ConfigureResponse, error) {
	return &rpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true}, nil
}
func (*prov) CheckConfig(_ context.Context, r *rpc.CheckRequest) (*rpc.CheckResponse, error) {
	return &rpc.CheckResponse{Inputs: r.News}, nil
}
func (*prov) DiffConfig(context.Context, *rpc.DiffRequest) (*rpc.DiffResponse, error) {
	return &rpc.DiffResponse{}, nil
}
func (*prov) Check(_ context.Context, r *rpc.CheckRequest) (*rpc.CheckResponse, error) {
	return &rpc.CheckResponse{Inputs: r.News}, nil
}
func (*prov) Diff(context.Context, *rpc.DiffRequest) (*rpc.DiffResponse, error) {
	return &rpc.DiffResponse{}, nil
}
func (*prov) Create(_ context.Context, r *rpc.CreateRequest) (*rpc.CreateResponse, error) {
	return &rpc.CreateResponse{Id: r.Urn[strings.LastIndex(r.Urn, "::")+2:], Properties: r.Properties}, nil
}
func (*prov) Read(_ context.Context, r *rpc.ReadRequest) (*rpc.ReadResponse, error) {
	return &rpc.ReadResponse{Id: r.Id, Properties: r.Properties, Inputs: r.Inputs}, nil
}
func (*prov) Update(_ context.Context, r *rpc.UpdateRequest) (*rpc.UpdateResponse, error) {
	return &rpc.UpdateResponse{Properties: r.News}, nil
}
func (*prov) Delete(context.Context, *rpc.DeleteRequest) (*emptypb.Empty, error) { return &emptypb.Empty{}, nil }
func (*prov) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error)      { return &emptypb.Empty{}, nil }
func (*prov) Attach(context.Context, *rpc.PluginAttach) (*emptypb.Empty, error)   { return &emptypb.Empty{}, nil }

func main() {
	// The plugin protocol: serve gRPC on a free port and print the port on stdout.
	h, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{Init: func(s *grpc.Server) error {
		rpc.RegisterResourceProviderServer(s, &prov{})
		return nil
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(h.Port)
	if err := <-h.Done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`;

function goBin(): string | undefined {
    for (const g of ["go", "/usr/local/go/bin/go"]) {
        if (spawnSync(g, ["version"], { encoding: "utf8" }).status === 0) return g;
    }
    return undefined;
}

/**
 * Build the native provider (the engine's own SDK version, from the Go module cache; requiring
 * pkg/v3 too pins its dependencies to the versions the engine was built with, which are cached).
 * Returns the folder holding pulumi-resource-profnative, or undefined with the reason logged.
 */
function buildNative(): string | undefined {
    const go = goBin();
    if (!go) {
        log("native: no Go toolchain, case skipped");
        return undefined;
    }
    const version = spawnSync(PULUMI_BIN, ["version"], { encoding: "utf8" }).stdout.trim();
    const dir = path.join(OUT, "native-provider");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "main.go"), NATIVE_GO);
    fs.writeFileSync(path.join(dir, "go.mod"), `module profnative\n\ngo 1.24\n\nrequire (\n\tgithub.com/pulumi/pulumi/pkg/v3 ${version}\n\tgithub.com/pulumi/pulumi/sdk/v3 ${version}\n)\n`);
    const build = (extra: NodeJS.ProcessEnv) => spawnSync(go, ["build", "-o", "pulumi-resource-profnative", "."], { cwd: dir, encoding: "utf8", env: { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: "local", ...extra }, timeout: 600_000 });
    log("native: building the Go provider (offline, from the module cache)");
    let r = build({ GOPROXY: "off", GOSUMDB: "off" });
    if (r.status !== 0) {
        log("native: offline build failed, trying the Go module proxy");
        r = build({});
    }
    if (r.status !== 0) {
        log(`native: build failed, case skipped:\n${(r.stderr || "").split("\n").slice(-8).join("\n")}`);
        return undefined;
    }
    return dir;
}

async function upRun(kindSpec: string, n: number, nativeDir: string | undefined, profileDir?: string): Promise<Sample> {
    const kind = kindSpec.replace(/-nockpt$/, "");
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-prof-up-"));
    try {
        fs.writeFileSync(path.join(work, "Pulumi.yaml"), stringify({
            name: "prof",
            runtime: { name: "nodejs", options: { typescript: false } },
            main: "index.js",
            backend: { url: `file://${path.join(work, "state")}` },
        }));
        fs.writeFileSync(path.join(work, "package.json"), JSON.stringify({ name: "prof", version: "0.0.0", private: true }));
        fs.writeFileSync(path.join(work, "index.js"), SYNTHETIC);
        fs.writeFileSync(path.join(work, "Pulumi.s.yaml"), stringify({ config: { "prof:n": String(n), "prof:kind": kind } }));
        fs.mkdirSync(path.join(work, "state"));
        const env: NodeJS.ProcessEnv = {
            ...process.env,
            ...engineEnv(""),
            PULUMI_HOME: path.join(work, "pulumi-home"),
            PULUMI_CONFIG_PASSPHRASE: "profile",
            // The program and the provider shims resolve @pulumi/pulumi from the repo.
            NODE_PATH: path.join(PROJECT_DIR, "node_modules"),
        };
        delete env.PULUMI_BACKEND_URL;
        if (nativeDir) env.PATH = `${nativeDir}:${env.PATH}`;
        if (kindSpec.endsWith("-nockpt")) env.PULUMI_SKIP_CHECKPOINTS = "true";
        const init = spawnSync(PULUMI_BIN, ["stack", "init", "s", "--secrets-provider", "passphrase", "--non-interactive"], { cwd: work, env, encoding: "utf8" });
        if (init.status !== 0) throw new Error(`stack init: ${init.stderr}`);
        const stackDir = path.join(work, "state", ".pulumi", "stacks", "prof");
        return await measure(`up-${kindSpec}-${n}`, n, ["up", "--yes", "--skip-preview", "--stack", "s", "--non-interactive", "--suppress-outputs"], work, env, stackDir, "s", profileDir);
    } finally {
        if (!KEEP) fs.rmSync(work, { recursive: true, force: true });
    }
}

// ---------------------------------------------------------------- profiles

interface CpuProfile {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
    endTime: number;
}

/** Where a V8 profile node's time goes, by the file its function lives in. */
function category(url: string, fn: string): string {
    if (fn === "(garbage collector)") return "GC";
    if (fn === "(idle)") return "idle";
    if (fn === "(program)") return "V8/native (program)";
    if (fn === "(root)") return "idle";
    if (/node_modules\/typescript\//.test(url)) return "TypeScript compile";
    if (/node_modules\/ts-node\//.test(url)) return "ts-node";
    if (/@pulumi\/pulumi\/runtime\/closure\//.test(url)) return "closure serialization";
    if (/@grpc\/|google-protobuf|protobufjs|@protobufjs/.test(url)) return "gRPC + protobuf";
    if (/@pulumi\/pulumi\//.test(url)) return "Pulumi SDK";
    if (/@opentelemetry\//.test(url)) return "OpenTelemetry";
    if (/source-map-support/.test(url)) return "source maps (stack traces)";
    if ((url.startsWith("node:") || !url) && /^(wrapSafe|compileFunction|compileForInternalLoader|readFileUtf8|internalModuleStat|lstat|stat|realpathSync|readFileSync|tryStat|tryExtensions|tryFile|tryPackage|_findPath|_resolveFilename|_nodeModulePaths|Module\._load|Module\._compile|Module\.require|Module\._extensions\.\.js|toRealPath|readPackage|readPackageScope)$/.test(fn)) return "module loading";
    if (url.startsWith("node:") || (!url && fn)) return "Node internals";
    if (/node_modules\//.test(url)) return "other deps";
    if (url.startsWith("file://") || url.startsWith("/")) return url.includes(PROJECT_DIR) || /\/(model|components|index\.ts)/.test(url) ? "nublar code" : "program/provider code";
    return "program/provider code"; // eval'd: the dynamic provider's deserialized closure
}

function summarizeCpuProfile(file: string) {
    const prof = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000));
    const cats: Record<string, number> = {};
    const fns = new Map<string, number>();
    let busy = 0;
    for (const [id, ms] of self) {
        const n = byId.get(id)!;
        const { functionName, url, lineNumber } = n.callFrame;
        const cat = category(url, functionName);
        cats[cat] = (cats[cat] ?? 0) + ms;
        if (cat === "idle") continue;
        busy += ms;
        const short = url.replace(/^file:\/\//, "").replace(/.*node_modules\//, "").replace(`${PROJECT_DIR}/`, "");
        const key = `${functionName || "(anonymous)"} ${short ? `${short}:${lineNumber + 1}` : ""}`.trim();
        fns.set(key, (fns.get(key) ?? 0) + ms);
    }
    const top = [...fns].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([fn, ms]) => ({ fn, ms: r1(ms), pct: r1((100 * ms) / busy) }));

    // Inclusive (total) time per frame: each busy sample counts once for every distinct frame on
    // its stack. Answers "what calls the hot code": the labels below, and the program's own frames.
    const parent = new Map<number, number>();
    for (const n of prof.nodes) for (const c of (n as { children?: number[] }).children ?? []) parent.set(c, n.id);
    const incl = new Map<string, number>();
    for (const [id, ms] of self) {
        const fn0 = byId.get(id)!.callFrame.functionName;
        if (fn0 === "(idle)" || fn0 === "(root)") continue;
        const seen = new Set<string>();
        for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
            const cf = byId.get(x)!.callFrame;
            const key = `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^file:\/\//, "").replace(/.*node_modules\//, "").replace(`${PROJECT_DIR}/`, "")}:${cf.lineNumber + 1}`;
            if (seen.has(key)) continue;
            seen.add(key);
            incl.set(key, (incl.get(key) ?? 0) + ms);
        }
    }
    const inclusive: Record<string, { ms: number; pct: number }> = {};
    for (const [label, re] of NODE_INCLUSIVE) {
        const ms = Math.max(0, ...[...incl].filter(([k]) => re.test(k)).map(([, v]) => v));
        if (ms > 0) inclusive[label] = { ms: r1(ms), pct: r1((100 * ms) / busy) };
    }
    const ownFrames = [...incl].filter(([k]) => /^\S+ (components|model|index\.ts|lab|runtime)\//.test(k) || / index\.ts:/.test(k))
        .sort((a, b) => b[1] - a[1]).slice(0, 10).map(([fn, ms]) => ({ fn, ms: r1(ms), pct: r1((100 * ms) / busy) }));
    return {
        wallMs: r1((prof.endTime - prof.startTime) / 1000),
        busyMs: r1(busy),
        categories: Object.fromEntries(Object.entries(cats).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, r1(v)])),
        top,
        inclusive,
        ownFramesInclusive: ownFrames,
    };
}

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

/**
 * A sampling heap profile taken at exit: the memory still live then, by the function that
 * allocated it (self) and by category; and by the frames on the allocating stacks (inclusive).
 */
function summarizeHeapProfile(file: string) {
    const head = (JSON.parse(fs.readFileSync(file, "utf8")) as { head: HeapNode }).head;
    const self = new Map<string, number>();
    const cats: Record<string, number> = {};
    const incl = new Map<string, number>();
    let total = 0;
    const walk = (n: HeapNode, stack: string[]) => {
        const { functionName, url, lineNumber } = n.callFrame;
        const key = `${functionName || "(anonymous)"} ${url.replace(/^file:\/\//, "").replace(/.*node_modules\//, "").replace(`${PROJECT_DIR}/`, "")}:${lineNumber + 1}`;
        const here = stack.includes(key) ? stack : [...stack, key];
        if (n.selfSize) {
            total += n.selfSize;
            self.set(key, (self.get(key) ?? 0) + n.selfSize);
            const cat = category(url, functionName);
            cats[cat] = (cats[cat] ?? 0) + n.selfSize;
            for (const k of here) incl.set(k, (incl.get(k) ?? 0) + n.selfSize);
        }
        for (const c of n.children ?? []) walk(c, here);
    };
    walk(head, []);
    const mib = (b: number) => r1(b / 2 ** 20);
    const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([fn, b]) => ({ fn, MiB: mib(b) }));
    return {
        liveAtExitMiB: mib(total),
        categoriesMiB: Object.fromEntries(Object.entries(cats).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, mib(v)])),
        topSelf: top(self, 10),
        topInclusive: top(new Map([...incl].filter(([k]) => !/^\((root|anonymous)\) :0$|^Module\.|^require |^Module\._load|^runMicrotasks|^processTicksAndRejections/.test(k))), 15),
    };
}

/** Inclusive time of these frames in a Node profile (the largest matching frame). */
const NODE_INCLUSIVE: [string, RegExp][] = [
    ["program: require(main) and its top level", /^runProgram @pulumi\/pulumi\/cmd\/run\/run\.js/],
    ["SDK Resource constructors", /^Resource @pulumi\/pulumi\/resource\.js/],
    ["SDK debuggablePromise (captures new Error().stack per promise)", /^debuggablePromise @pulumi\/pulumi\/runtime\/debuggable\.js/],
    ["stack traces (Error.stack getter)", /^get stack :/],
    ["  source-map-support prepareStackTrace (ts-node's)", /^prepareStackTrace @cspotcode\/source-map-support/],
    ["SDK property serialization (serializeProperty)", /^serializeProperty @pulumi\/pulumi\/runtime\/rpc\.js/],
    ["SDK debug logs sent to the engine (log.debug)", /^debug @pulumi\/pulumi\/log\/index\.js/],
    ["gRPC client calls (makeUnaryRequest)", /^makeUnaryRequest @grpc\/grpc-js/],
    ["ts-node compile", /^compile ts-node\/dist\/index\.js/],
    ["closure serialization (dynamic providers)", /^serializeFunction @pulumi\/pulumi\/runtime\/closure/],
    ["dynamic provider RPC handlers (check/create/diff)", /^(check|create|diff|update|read) @pulumi\/pulumi\/cmd\/dynamic-provider\/index\.js/],
    ["garbage collector", /^\(garbage collector\) :/],
];

/** Cumulative shares of the engine's CPU profile that answer "where": each label, its first match. */
const ENGINE_CUM: [string, RegExp][] = [
    ["state writes: SnapshotManager.saveSnapshot", /backend\.\(\*SnapshotManager\)\.saveSnapshot$/],
    ["  serialize the snapshot (SnapshotManager.Deployment)", /backend\.\(\*SnapshotManager\)\.Deployment$/],
    ["  verify its integrity (snapshot.VerifyIntegrity)", /snapshot\.VerifyIntegrity$/],
    ["  diy backend saveStack (marshal, backup, write)", /diy\.\(\*diyBackend\)\.saveStack$/],
    ["  backup copy (backupTarget)", /diy\.backupTarget$/],
    ["  MD5 of each blob written (fileblob attrs)", /^crypto\/md5\.\(\*digest\)\.Write$/],
    ["automatic debug log (slog JSON, gzip, encrypted; PULUMI_HOME/logs)", /encryptedlog\.\(\*Writer\)\.(Write|writeChunk)$|logging\.\(\*Logger\)\.Write$/],
    ["passphrase key derivation (pbkdf2)", /^golang\.org\/x\/crypto\/pbkdf2\.Key$/],
    ["logging (slog handlers, VerboseLogger.Infof)", /logging\.VerboseLogger\.Infof$/],
    ["step executor (steps, provider calls)", /deploy\.\(\*stepExecutor\)\.executeChain$/],
    ["resource monitor (the program's RPCs)", /deploy\.\(\*resmon\)\.RegisterResource$/],
    ["provider plugin calls (plugin.(*provider))", /plugin\.\(\*provider\)\.(Check|Create)$/],
    ["display (progress, text output)", /display\.\(\*ProgressDisplay\)\.processEvents$|display\.ShowProgressEvents$/],
    ["gRPC transport", /google\.golang\.org\/grpc\/internal\/transport\.\(\*http2Server\)\.operateHeaders$|grpc\.\(\*Server\)\.handleStream$/],
    ["JSON (encoding/json.Marshal)", /^encoding\/json\.Marshal$/],
    ["GC (runtime.gcBgMarkWorker)", /runtime\.gcBgMarkWorker$/],
];

/** A row of `go tool pprof -top`: flat flat% sum% cum cum% name. */
const PPROF_ROW = /^\s*[\d.]+[a-zA-Z]*\s+[\d.]+%\s+[\d.]+%\s+[\d.]+[a-zA-Z]*\s+[\d.]+%\s+\S/;

function pprofTop(go: string, file: string, extra: string[]): string[] {
    const r = spawnSync(go, ["tool", "pprof", ...extra, file], { encoding: "utf8", maxBuffer: 1 << 26, timeout: 300_000 });
    return r.status === 0 ? r.stdout.split("\n") : [`pprof failed: ${r.stderr.slice(-400)}`];
}

function summarizeEngineProfile(profileDir: string) {
    const go = goBin();
    const cpu = fs.readdirSync(profileDir).find((f) => /^engine\.\d+\.cpu$/.test(f));
    const mem = fs.readdirSync(profileDir).find((f) => /^engine\.\d+\.mem$/.test(f));
    for (const f of fs.readdirSync(profileDir)) if (/^engine\.\d+\.trace$/.test(f) && !KEEP) fs.rmSync(path.join(profileDir, f)); // large; --keep keeps it
    if (!go || !cpu) return { note: go ? "no engine CPU profile" : "no Go toolchain: profiles kept, not summarized" };
    const cpuFile = path.join(profileDir, cpu);
    const head = pprofTop(go, cpuFile, ["-top", "-nodecount=0"]).filter((l) => /Duration|Showing nodes/.test(l));
    const flat = pprofTop(go, cpuFile, ["-top", "-nodecount=20"]).filter((l) => PPROF_ROW.test(l)).map((l) => l.trim().replace(/\s+/g, " "));
    const cumLines = pprofTop(go, cpuFile, ["-top", "-cum", "-nodecount=3000"]).filter((l) => PPROF_ROW.test(l));
    const cum: Record<string, string> = {};
    for (const [label, re] of ENGINE_CUM) {
        const line = cumLines.find((l) => re.test(l.trim().split(/\s+/).slice(5).join(" ")));
        if (line) {
            const f = line.trim().split(/\s+/);
            cum[label] = `${f[3]} (${f[4]})`;
        }
    }
    const memTop = mem ? pprofTop(go, path.join(profileDir, mem), ["-top", "-sample_index=alloc_space", "-nodecount=12"]).filter((l) => PPROF_ROW.test(l) || /Showing nodes/.test(l)).map((l) => l.trim().replace(/\s+/g, " ")) : [];
    return { header: head.map((l) => l.trim()), flatTop: flat, cumulative: cum, allocSpaceTop: memTop };
}

function summarizeProfiles(profileDir: string, sample: Sample) {
    const roleByPid = new Map(sample.processes.map((p) => [p.pid, p.role]));
    const node: Record<string, unknown> = {};
    for (const f of fs.readdirSync(profileDir).filter((x) => x.endsWith(".cpuprofile"))) {
        const [role, pid] = f.split(".");
        if (!roleByPid.has(Number(pid))) continue;
        const heap = path.join(profileDir, f.replace(/\.cpuprofile$/, ".heapprofile"));
        const peak = path.join(profileDir, f.replace(/\.cpuprofile$/, ".peak.heapprofile"));
        const hook = (role === "program" ? sample.program : sample.provider) as { peakHeapProfileAtMiB?: number } | undefined;
        node[role] = {
            ...summarizeCpuProfile(path.join(profileDir, f)),
            heap: fs.existsSync(heap) ? summarizeHeapProfile(heap) : undefined,
            heapAtPeak: fs.existsSync(peak) ? { heapUsedMiB: r1(hook?.peakHeapProfileAtMiB ?? NaN), ...summarizeHeapProfile(peak) } : undefined,
        };
    }
    return { engine: summarizeEngineProfile(profileDir), node };
}

// ---------------------------------------------------------------- report

const ROLES: Role[] = ["engine", "language host", "program", "provider", "provider shim", "other"];
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) : "–");

function caseSummary(samples: Sample[]) {
    const ok = samples.filter((x) => x.ok && !x.profiled);
    const m = (f: (x: Sample) => number | undefined) => median(ok.map((x) => f(x) ?? NaN));
    const roles = Object.fromEntries(ROLES.filter((r) => ok.some((x) => x.roles[r])).map((r) => [r, {
        cpuMs: r1(m((x) => x.roles[r]?.cpuMs ?? 0)),
        aliveMs: r1(m((x) => x.roles[r]?.aliveMs ?? 0)),
        peakRssMiB: ok.find((x) => x.roles[r])!.roles[r].peakRssMiB.map((_, i) => r1(m((x) => x.roles[r]?.peakRssMiB[i]))),
    }]));
    const phases = Object.fromEntries(Object.keys(ok[0]?.phases ?? {}).map((k) => [k, r1(m((x) => x.phases[k]))]));
    const rpc = (side: "program" | "provider") => {
        const names = new Set(ok.flatMap((x) => Object.keys(((x[side] as any)?.rpc ?? {}) as object)));
        return Object.fromEntries([...names].map((name) => [name, {
            n: m((x) => (x[side] as any)?.rpc?.[name]?.n),
            meanMs: r1(m((x) => ((x[side] as any)?.rpc?.[name]?.ms ?? NaN) / ((x[side] as any)?.rpc?.[name]?.n ?? NaN))),
            totalMs: r1(m((x) => (x[side] as any)?.rpc?.[name]?.ms)),
        }]));
    };
    return {
        runs: ok.length, failed: samples.filter((x) => !x.ok).map((x) => x.error),
        wallMs: r1(m((x) => x.wallMs)), wallMsAll: ok.map((x) => r1(x.wallMs)), resources: ok[0]?.resources, byType: ok[0]?.byType,
        roles, phases,
        state: ok[0]?.state ? {
            writes: m((x) => x.state!.writes), backups: m((x) => x.state!.backups),
            bytesObservedMiB: r1(m((x) => x.state!.bytesObserved) / 2 ** 20), finalKiB: r1(m((x) => x.state!.finalBytes) / 1024),
            engineWriteMiB: r1(m((x) => x.state!.engineWriteBytes) / 2 ** 20), autoLogKiB: r1(m((x) => x.state!.autoLogBytes) / 1024),
        } : undefined,
        program: ok[0]?.program ? {
            ts: Object.fromEntries(Object.keys((ok[0].program as any).ts ?? {}).map((k) => [k, r1(m((x) => (x.program as any)?.ts?.[k]))])),
            closure: (ok[0].program as any).closure, maxInFlight: m((x) => (x.program as any)?.maxInFlight), rpc: rpc("program"),
            memMaxMiB: Object.fromEntries(Object.keys((ok[0].program as any).memMaxMiB ?? {}).map((k) => [k, r1(m((x) => (x.program as any)?.memMaxMiB?.[k]))])),
        } : undefined,
        provider: ok.some((x) => x.provider) ? { rpc: rpc("provider"), memMaxMiB: Object.fromEntries(Object.keys((ok.find((x) => x.provider)!.provider as any).memMaxMiB ?? {}).map((k) => [k, r1(m((x) => (x.provider as any)?.memMaxMiB?.[k]))])) } : undefined,
        load: ok.map((x) => x.load),
    };
}

function markdown(results: Record<string, ReturnType<typeof caseSummary> & { profile?: ReturnType<typeof summarizeProfiles> }>): string {
    const lines: string[] = [];
    const cases = Object.keys(results);
    lines.push(`| case | wall (s) | before program | program | after program | engine CPU | lang host CPU | program CPU | provider CPU (+shim) | state writes | state MiB written (observed / engine) |`);
    lines.push(`| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`);
    for (const c of cases) {
        const r = results[c];
        const cpu = (role: string) => s(r.roles[role]?.cpuMs ?? NaN);
        const prov = (r.roles.provider?.cpuMs ?? 0) + (r.roles["provider shim"]?.cpuMs ?? 0);
        lines.push(`| ${c} (${r.runs} runs) | ${s(r.wallMs)} | ${s(r.phases.beforeProgram)} | ${s(r.phases.program)} | ${s(r.phases.afterProgram)} | ${cpu("engine")} | ${cpu("language host")} | ${cpu("program")} | ${r.roles.provider ? s(prov) : "–"} | ${r.state?.writes ?? "–"} | ${r.state ? `${r.state.bytesObservedMiB} / ${r.state.engineWriteMiB}` : "–"} |`);
    }
    lines.push("", "Program phases (s): boot, setup (run.js, ts-node, typescript), require(main) (compile + top level), async (outputs, RPCs, waiting for the engine); ts-node compile; RPCs:", "");
    for (const c of cases) {
        const r = results[c];
        const ph = r.phases;
        const pr = r.program as any;
        const rpc = Object.entries((pr?.rpc ?? {}) as Record<string, { n: number; meanMs: number }>).filter(([, v]) => v.n > 1).map(([k, v]) => `${k} ${v.n} × ${v.meanMs} ms`).join(", ");
        const prv = Object.entries(((r.provider as any)?.rpc ?? {}) as Record<string, { n: number; totalMs: number }>).filter(([, v]) => v.n > 1).map(([k, v]) => `${k} ${v.n} in ${s(v.totalMs)} s`).join(", ");
        lines.push(`- ${c}: ${s(ph.programBoot)} / ${s(ph.programSetup)} / ${s(ph.programLoad)} / ${s(ph.programAsync)}; ts-node ${s(pr?.ts?.compileMs ?? NaN)} s for ${pr?.ts?.files ?? 0} files; program RPCs (mean latency): ${rpc}${prv ? `; provider handled ${prv}` : ""}; auto log ${r.state?.autoLogKiB} KiB`);
    }
    lines.push("", "Peak RSS (MiB) per process, largest first (and the Node processes' sampled maxima: heapUsed / external+arrayBuffers):", "");
    for (const c of cases) {
        const mm = (x: any) => (x?.memMaxMiB?.heapUsed ? ` (heap ${x.memMaxMiB.heapUsed} / ext ${x.memMaxMiB.external})` : "");
        lines.push(`- ${c}: ${Object.entries(results[c].roles).map(([role, x]) => `${role} ${x.peakRssMiB.join(", ")}${role === "program" ? mm(results[c].program) : role === "provider" ? mm(results[c].provider) : ""}`).join("; ")}`);
    }
    for (const c of cases) {
        const p = results[c].profile;
        if (!p) continue;
        lines.push("", `Profile of ${c}:`);
        const e = p.engine as any;
        if (e.cumulative) lines.push(`- engine (${(e.header ?? []).join(" ")}): ${Object.entries(e.cumulative).map(([k, v]) => `${k.trim()} ${v}`).join("; ")}`);
        if (e.flatTop) lines.push(`- engine flat top: ${e.flatTop.slice(0, 8).join(" | ")}`);
        for (const [k, v] of Object.entries(p.node) as [string, any][]) {
            lines.push(`- ${k}: busy ${s(v.busyMs)} s of ${s(v.wallMs)} s; ${Object.entries(v.categories).slice(0, 8).map(([cat, ms]) => `${cat} ${s(ms as number)}`).join(", ")}`);
            lines.push(`  top (self): ${v.top.slice(0, 6).map((t: any) => `${t.fn} ${s(t.ms)} s`).join("; ")}`);
            lines.push(`  inclusive: ${Object.entries(v.inclusive).map(([k, x]: [string, any]) => `${k.trim()} ${s(x.ms)} s (${x.pct}%)`).join("; ")}`);
            if (v.heapAtPeak) lines.push(`  heap near its peak (heapUsed ${v.heapAtPeak.heapUsedMiB} MiB; sampled live ${v.heapAtPeak.liveAtExitMiB} MiB): ${Object.entries(v.heapAtPeak.categoriesMiB).slice(0, 5).map(([k, x]) => `${k} ${x}`).join(", ")}; allocated under: ${v.heapAtPeak.topInclusive.slice(0, 8).map((t: any) => `${t.fn} ${t.MiB}`).join("; ")}`);
            if (v.heap) lines.push(`  heap live at exit (sampled) ${v.heap.liveAtExitMiB} MiB: ${Object.entries(v.heap.categoriesMiB).slice(0, 5).map(([k, x]) => `${k} ${x}`).join(", ")}; allocated under: ${v.heap.topInclusive.slice(0, 6).map((t: any) => `${t.fn} ${t.MiB}`).join("; ")}`);
            if (v.ownFramesInclusive.length) lines.push(`  own code (inclusive): ${v.ownFramesInclusive.slice(0, 5).map((t: any) => `${t.fn} ${s(t.ms)} s`).join("; ")}`);
        }
    }
    return lines.join("\n");
}

// ---------------------------------------------------------------- main

async function main() {
    if (!fs.existsSync(PULUMI_BIN)) fail(`${PULUMI_BIN} is missing: run scripts/setup first (it builds the engine into .tools/bin)`);
    try {
        fs.accessSync(PULUMI_BIN, fs.constants.X_OK);
    } catch {
        fail(`${PULUMI_BIN} is not executable`);
    }
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, "hook.cjs"), HOOK);
    const started = Date.now();
    log(`output in ${OUT}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    const all: Record<string, Sample[]> = {};
    const results: Record<string, any> = {};

    async function runCase(label: string, runs: number, profile: boolean, once: (profileDir?: string) => Promise<Sample>) {
        all[label] = [];
        for (let i = 0; i < runs; i++) {
            const x = await once();
            all[label].push(x);
            log(`${label} run ${i + 1}/${runs}: ${x.ok ? `${s(x.wallMs)} s, ${x.resources ?? "?"} resources` : `FAILED ${x.error}`} (load ${x.load.map((l) => l.toFixed(2)).join(" → ")})`);
            if (!x.ok) break;
        }
        results[label] = caseSummary(all[label]);
        if (profile && all[label].every((x) => x.ok)) {
            const dir = path.join(OUT, "profiles", label);
            const x = await once(dir);
            all[label].push(x);
            log(`${label} profiled run: ${x.ok ? `${s(x.wallMs)} s` : `FAILED ${x.error}`}`);
            if (x.ok) results[label].profile = { wallMs: r1(x.wallMs), ...summarizeProfiles(dir, x) };
        }
        fs.writeFileSync(path.join(OUT, "results.json"), `${JSON.stringify({ machine: machine(), options: { NODES, CREATE, RUNS, SCALE, KINDS, SCALE_KINDS, PROFILE, POLL_MS }, results, samples: all }, null, 2)}\n`);
    }

    if (NODES > 0) await runCase(`preview-${NODES}`, RUNS, PROFILE, (dir) => previewRun(NODES, dir));
    const needNative = (CREATE > 0 && KINDS.some((k) => k.startsWith("native"))) || (SCALE > 0 && SCALE_KINDS.some((k) => k.startsWith("native")));
    const nativeDir = needNative ? buildNative() : undefined;
    const ready = (k: string) => !k.startsWith("native") || nativeDir !== undefined;
    if (CREATE > 0) {
        for (const k of KINDS.filter(ready)) await runCase(`up-${k}-${CREATE}`, RUNS, PROFILE && !k.endsWith("-nockpt"), (dir) => upRun(k, CREATE, nativeDir, dir));
    }
    if (SCALE > 0) {
        for (const k of SCALE_KINDS.filter(ready)) await runCase(`up-${k}-${SCALE}`, 1, false, () => upRun(k, SCALE, nativeDir));
    }
    const md = markdown(results);
    fs.writeFileSync(path.join(OUT, "summary.md"), `${md}\n`);
    process.stdout.write(`${md}\n`);
    log(`done in ${((Date.now() - started) / 60000).toFixed(1)} min; results ${path.join(OUT, "results.json")}, summary ${path.join(OUT, "summary.md")}`);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
});
