// Benchmark: what the lab's Kubernetes cluster (lab/kube, components/lab/kube.ts) costs the park,
// and how fast it is. One run, one park, the real program through the real Pulumi engine:
//
//   node --import tsx bench/kube.ts [--idle-seconds 600] [--settle-seconds 60] [--pods 10]
//        [--requests 2000] [--rounds 10] [--cpu-seconds 60] [--name kube]
//
// 1. BFD false Downs, idle: the lab park at the lab's own timers (stacks/Pulumi.lab.yaml's
//    failover budget, 300 ms: 20 ms x 3), without the cluster, for --idle-seconds; then
//    `pulumi up` of the same stack with the lab's `kubernetes` block added, the LAMP pods
//    Ready, and the same count again. Downs are every node agent's
//    nublar_bfd_transitions_total{to="down"} (its /metrics, read as `nublar` reads an agent:
//    over SSH with the pinned key) and the provider routers' FRR bfdd `session-down` counters,
//    each read before and after the window. Peer: the park without the cluster.
// 2. Pod creation to Ready: --pods plain pods of the lab's LAMP image (readiness probe on
//    /health.php every second, an emptyDir at /var/www/data), one at a time, each deleted
//    before the next, timed through the API server's watch. Peer, interleaved: a pod of the
//    pause image with no probe (Kubernetes' own floor: scheduling, sandbox, a container start).
// 3. HTTP from inside the cluster's namespace: --requests sequential GETs of /health.php per
//    cell, through the LAMP Service's ClusterIP and straight to one of its pods (:8081, the
//    cache sidecar the Service targets), with a new connection per request and with
//    keep-alive, in --rounds interleaved rounds. Peer: the pod's own address.
// 4. Idle CPU and memory of every process in the cluster's cgroup tree (daemons, containerd's
//    shims, the pods), sampled every second for --cpu-seconds. Peer: the whole machine's busy
//    CPU in the same seconds (/proc/stat).
//
// The stack is destroyed and the lab cleaned in `finally` (and on SIGINT/SIGTERM). It uses its
// own project folder, stack, lab tag (kb...), ports and management prefix (engineLabSite).
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parse, stringify } from "yaml";
import { cleanLab } from "../lab/inspect";
import { labImages } from "../lab/images";
import { bfddRuntimeDir } from "../lab/daemons";
import { labKubePlan } from "../lab/layout";
import { cgroupPids } from "../lab/kube/host";
import { netnsExists } from "../lab/ops";
import type { LabKubePlan } from "../model/kube/plan";
import { timersForBudget } from "../model/network/agent-plan";
import { planLab, type LabPlan } from "../model/network/lab-plan";
import { parseSite } from "../model/site/load";
import { agentGet, type NodeAccess } from "../runtime/agent/client";
import { engineLabSite, ROOT, TestProject } from "../test/engine/project";
import { summary, writeResult } from "./machine";
import { CLK_TCK, readStat } from "./process-tree";

const { values: args } = parseArgs({
    options: {
        "idle-seconds": { type: "string", default: "600" },
        "settle-seconds": { type: "string", default: "60" },
        pods: { type: "string", default: "10" },
        requests: { type: "string", default: "2000" },
        rounds: { type: "string", default: "10" },
        "cpu-seconds": { type: "string", default: "60" },
        name: { type: "string", default: process.env.BENCH_QUICK === "1" ? "kube-quick" : "kube" },
    },
});
const IDLE_S = Number(args["idle-seconds"]);
const SETTLE_S = Number(args["settle-seconds"]);
const PODS = Number(args.pods);
const REQUESTS = Number(args.requests);
const ROUNDS = Number(args.rounds);
const CPU_S = Number(args["cpu-seconds"]);
for (const [k, v] of Object.entries({ IDLE_S, SETTLE_S, PODS, REQUESTS, ROUNDS, CPU_S })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`bench/kube.ts: ${k} must be a positive integer (got ${v})`);
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const started = Date.now();
const log = (s: string) => process.stderr.write(`[kube ${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${s}\n`);
const round2 = (x: number) => Math.round(x * 100) / 100;
const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

// ---- the park ----

const tag = `kb${(process.pid % 46656).toString(36)}`;
const STACK = `kube-bench-${tag}`;
const LAB_SITE = parse(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.lab.yaml"), "utf8")).config["nublar:site"];
/** The test site, with the lab's own failover budget back (engineLabSite relaxes it to 1000 ms for the tests). */
function benchSite(kubernetes: boolean) {
    const site = engineLabSite(tag, process.pid + 23, { kubernetes });
    site.sla = { ...site.sla, failoverBudgetMs: LAB_SITE.sla.failoverBudgetMs };
    if (kubernetes) site.kubernetes = LAB_SITE.kubernetes;
    return site;
}
const siteWithout = benchSite(false);
const siteWith = benchSite(true);
const plan: LabPlan = planLab(parseSite(siteWithout));
const timers = timersForBudget(siteWithout.sla.failoverBudgetMs);
const LAMP = LAB_SITE.kubernetes.lamp[0].name as string;
const LAMP_NS = "nublar";
const BENCH_NS = "default";

// ---- reading the BFD counters ----

/** Prometheus text: every sample of `metric`, as label-set -> value; throws if the metric is not exposed at all. */
function samples(text: string, metric: string): Map<string, { labels: Record<string, string>; value: number }> {
    if (!new RegExp(`^# TYPE ${metric} counter$`, "m").test(text)) throw new Error(`the agent's /metrics has no counter ${metric}`);
    const out = new Map<string, { labels: Record<string, string>; value: number }>();
    for (const line of text.split("\n")) {
        if (!line.startsWith(`${metric}{`)) continue;
        const m = /^[^{]+\{(.*)\} (\S+)$/.exec(line);
        if (!m) throw new Error(`cannot parse the metrics line '${line}'`);
        const labels: Record<string, string> = {};
        for (const l of m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
        const value = Number(m[2]);
        if (!Number.isFinite(value)) throw new Error(`the metrics line '${line}' has no number`);
        out.set(m[1], { labels, value });
    }
    return out;
}

interface AgentReading {
    startedAt: unknown;
    transitions: Map<string, { labels: Record<string, string>; value: number }>;
    sessions: { id: string; status: string }[];
    loopDelayMs: { p50: number; p99: number; max: number };
}
interface FrrReading { peers: Map<string, { down: number; up: number; status: string }> }
interface Reading { at: number; agents: Map<string, AgentReading>; frr: Map<string, FrrReading> }

function nodeAccess(project: TestProject): Map<string, NodeAccess> {
    const r = project.pulumi(["stack", "output", "nodes", "--json"], STACK);
    if (r.status !== 0) throw new Error(`reading the stack's nodes output:\n${r.output.slice(-3000)}`);
    const nodes = JSON.parse(r.stdout) as Record<string, { access?: NodeAccess }>;
    const out = new Map<string, NodeAccess>();
    for (const n of plan.nodes) {
        const access = nodes[n.name]?.access;
        if (!access) throw new Error(`the stack's nodes output has no access for node '${n.name}'`);
        out.set(n.name, access);
    }
    return out;
}

/** GET from a node's agent, as `nublar --node` does: SSH with the pinned host key, the socket forwarded. */
async function agentText(node: string, access: NodeAccess, what: string): Promise<string> {
    const { res, close } = await agentGet({ node, access }, what, 15_000);
    let body = "";
    res.setEncoding("utf8");
    for await (const chunk of res) body += chunk;
    close();
    return body;
}

function vtysh(provider: string, command: string): string {
    const rt = bfddRuntimeDir(path.join(project.stateDir, plan.stateSubdir, "routers", provider, "bfdd"));
    const r = spawnSync("vtysh", ["--vty_socket", rt, "-d", "bfdd", "-c", command], { encoding: "utf8", timeout: 20_000 });
    if (r.status !== 0) throw new Error(`vtysh on ${provider}'s bfdd (${rt}): ${command}: ${r.stderr || r.stdout || r.error}`);
    return r.stdout;
}

function frrReading(provider: string): FrrReading {
    const counters = JSON.parse(vtysh(provider, "show bfd peers counters json")) as Record<string, unknown>[];
    const status = new Map((JSON.parse(vtysh(provider, "show bfd peers json")) as { peer: string; local: string; status: string }[]).map((p) => [`${p.peer} ${p.local}`, p.status]));
    if (!Array.isArray(counters) || counters.length === 0) throw new Error(`${provider}'s bfdd lists no peers`);
    const peers = new Map<string, { down: number; up: number; status: string }>();
    for (const c of counters) {
        const down = c["session-down"];
        const up = c["session-up"];
        if (typeof down !== "number" || typeof up !== "number") throw new Error(`${provider}'s bfdd counters have no session-down/session-up: ${JSON.stringify(c)}`);
        const key = `${c.peer} ${c.local}`;
        peers.set(key, { down, up, status: status.get(key) ?? "?" });
    }
    return { peers };
}

async function readCounters(access: Map<string, NodeAccess>): Promise<Reading> {
    const agents = new Map<string, AgentReading>();
    for (const [node, a] of access) {
        // /state first: its loop-delay figures cover the time since the previous /state.
        const state = JSON.parse(await agentText(node, a, "/state"));
        const metrics = await agentText(node, a, "/metrics");
        agents.set(node, {
            startedAt: state.startedAt,
            transitions: samples(metrics, "nublar_bfd_transitions_total"),
            sessions: state.sessions.map((s: any) => ({ id: s.id, status: s.bfd?.status ?? "none" })),
            loopDelayMs: state.bfdWorker.loopDelayMs,
        });
    }
    const frr = new Map(plan.routers.map((r) => [r.provider, frrReading(r.provider)]));
    return { at: Date.now(), agents, frr };
}

/** Downs (and Ups) between two readings; an agent or bfdd that restarted, or a counter that went back, is an error. */
function countDowns(a: Reading, b: Reading) {
    const agents: Record<string, unknown> = {};
    let agentDowns = 0;
    let agentUps = 0;
    for (const [node, before] of a.agents) {
        const after = b.agents.get(node)!;
        if (JSON.stringify(after.startedAt) !== JSON.stringify(before.startedAt)) throw new Error(`node ${node}'s agent restarted during the window (startedAt ${before.startedAt} -> ${after.startedAt}): its counters cannot be compared`);
        const bySession: Record<string, number> = {};
        let downs = 0;
        let ups = 0;
        for (const [key, s] of after.transitions) {
            const was = before.transitions.get(key)?.value ?? 0;
            if (s.value < was) throw new Error(`node ${node}: ${key} went back from ${was} to ${s.value}`);
            const d = s.value - was;
            if (s.labels.to === "down") {
                downs += d;
                if (d) bySession[s.labels.session] = d;
            }
            if (s.labels.to === "up") ups += d;
        }
        for (const key of before.transitions.keys()) if (!after.transitions.has(key)) throw new Error(`node ${node}: the series ${key} disappeared`);
        agentDowns += downs;
        agentUps += ups;
        agents[node] = {
            downs, ups, downsBySession: bySession, sessions: after.sessions.length,
            notUpAtEnd: after.sessions.filter((s) => s.status !== "up").map((s) => s.id),
            bfdThreadLoopDelayMs: after.loopDelayMs,
        };
    }
    const frr: Record<string, unknown> = {};
    let frrDowns = 0;
    for (const [provider, before] of a.frr) {
        const after = b.frr.get(provider)!;
        const byPeer: Record<string, number> = {};
        let downs = 0;
        for (const [key, p] of after.peers) {
            const was = before.peers.get(key);
            if (!was) throw new Error(`${provider}'s bfdd has a new peer ${key} during the window`);
            if (p.down < was.down) throw new Error(`${provider}'s bfdd: session-down of ${key} went back (restarted?)`);
            if (p.down > was.down) byPeer[key] = p.down - was.down;
            downs += p.down - was.down;
        }
        frrDowns += downs;
        frr[provider] = { downs, downsByPeer: byPeer, peers: after.peers.size, notUpAtEnd: [...after.peers].filter(([, p]) => p.status !== "up").map(([k]) => k) };
    }
    return { seconds: Math.round((b.at - a.at) / 1000), agentDowns, agentUps, frrDowns, agents, frr };
}

// ---- the machine's CPU (/proc/stat) ----

function procStat(): { busy: number; total: number; steal: number } {
    const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq + steal, steal };
}

/** Every process's CPU time now (ticks), with its start time (a reused pid is another process) and name. */
function processCpu(): Map<number, { cpu: number; start: string; comm: string }> {
    const out = new Map<number, { cpu: number; start: string; comm: string }>();
    for (const d of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const s = fs.readFileSync(`/proc/${d}/stat`, "utf8");
            const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
            out.set(Number(d), { cpu: Number(f[11]) + Number(f[12]), start: f[19], comm: s.slice(s.indexOf("(") + 1, s.lastIndexOf(")")) });
        } catch {
            // gone meanwhile
        }
    }
    return out;
}

/**
 * The processes that used the most CPU between two snapshots (those alive at both ends), so a
 * busy window can be attributed: the park, the cluster, this benchmark, or someone else's work.
 */
function topProcesses(a: ReturnType<typeof processCpu>, b: ReturnType<typeof processCpu>, secs: number, cluster: Set<number>, n = 10) {
    const rows: { pid: number; comm: string; cmd: string; inCluster: boolean; coresPerSecond: number }[] = [];
    for (const [pid, x] of b) {
        const y = a.get(pid);
        if (!y || y.start !== x.start) continue;
        const d = (x.cpu - y.cpu) / CLK_TCK / secs;
        if (d <= 0) continue;
        let cmd = "";
        try {
            cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim().slice(0, 120);
        } catch {
            // gone meanwhile
        }
        rows.push({ pid, comm: x.comm, cmd, inCluster: cluster.has(pid), coresPerSecond: round4(d) });
    }
    return rows.sort((p, q) => q.coresPerSecond - p.coresPerSecond).slice(0, n);
}

/**
 * Samples the machine's busy CPU every second until stop(): cores' worth of CPU per second, and
 * steal; and the processes that used the most over the whole time.
 */
function machineSampler(clusterRoot?: string) {
    const busy: number[] = [];
    const steal: number[] = [];
    const firstProcs = processCpu();
    const firstAt = now();
    let prev = procStat();
    let prevAt = firstAt;
    const timer = setInterval(() => {
        const s = procStat();
        const t = now();
        const secs = (t - prevAt) / 1000;
        busy.push((s.busy - prev.busy) / CLK_TCK / secs);
        steal.push((s.steal - prev.steal) / CLK_TCK / secs);
        prev = s;
        prevAt = t;
    }, 1000);
    return {
        stop() {
            clearInterval(timer);
            const mean = (xs: number[]) => round4(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
            const cluster = new Set(clusterRoot ? cgroupPids(clusterRoot) : []);
            return {
                busyCoresPerSecond: { mean: mean(busy), ...summary(busy.map(round4)) },
                stealCoresPerSecond: { mean: mean(steal), ...summary(steal.map(round4)) },
                loadAverage1m: fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0],
                topProcesses: topProcesses(firstProcs, processCpu(), (now() - firstAt) / 1000, cluster),
            };
        },
    };
}

/**
 * What stalls in a window, each with its time, to set beside the Downs' times: this process's own
 * timer lag (a 10 ms timer: a stall of the whole machine shows here too) and the kernel's pressure
 * stall counters (/proc/pressure/{cpu,memory,io} "some", sampled every 100 ms). Only samples
 * over the thresholds are kept, so memory stays bounded.
 */
function stallSampler() {
    const lags: { at: number; ms: number }[] = [];
    const pressure: { at: number; resource: string; stalledMs: number }[] = [];
    const psiTotal = (r: string) => {
        try {
            return Number(/^some .* total=(\d+)/m.exec(fs.readFileSync(`/proc/pressure/${r}`, "utf8"))?.[1]);
        } catch {
            return NaN;
        }
    };
    const RESOURCES = ["cpu", "memory", "io"];
    let last = now();
    const lagTimer = setInterval(() => {
        const t = now();
        const lag = t - last - 10;
        if (lag > 30 && lags.length < 1000) lags.push({ at: Math.round(t), ms: Math.round(lag) });
        last = t;
    }, 10);
    let prev = RESOURCES.map(psiTotal);
    const psiTimer = setInterval(() => {
        const cur = RESOURCES.map(psiTotal);
        cur.forEach((v, i) => {
            const stalledMs = (v - prev[i]) / 1000;
            if (stalledMs > 20 && pressure.length < 1000) pressure.push({ at: Math.round(now()), resource: RESOURCES[i], stalledMs: Math.round(stalledMs) });
        });
        prev = cur;
    }, 100);
    return {
        stop() {
            clearInterval(lagTimer);
            clearInterval(psiTimer);
            return { timerLagOver30ms: lags, pressureOver20msPer100ms: pressure, psiAvailable: RESOURCES.filter((r) => !Number.isNaN(psiTotal(r))) };
        },
    };
}

/** The agents' own records of their sessions going Down in [from, to] (their event logs, GET /events). */
async function downEvents(access: Map<string, NodeAccess>, from: number, to: number) {
    const out: { node: string; session: string; at: number; diagnostic: string }[] = [];
    for (const [node, a] of access) {
        const text = await agentText(node, a, "/events?limit=2000");
        for (const line of text.split("\n")) {
            if (!line.trim()) continue;
            const e = JSON.parse(line) as { type: string; at: number; to?: string; session?: string; diagnostic?: string };
            if (e.type === "bfd" && e.to === "down" && e.at >= from && e.at <= to) out.push({ node, session: e.session!, at: Math.round(e.at), diagnostic: String(e.diagnostic) });
        }
    }
    return out.sort((x, y) => x.at - y.at);
}

async function idleWindow(what: string, access: Map<string, NodeAccess>, clusterRoot?: string) {
    log(`${what}: settling ${SETTLE_S} s, then counting Downs for ${IDLE_S} s`);
    await sleep(SETTLE_S * 1000);
    const before = await readCounters(access);
    const notUp = [...before.agents].flatMap(([n, a]) => a.sessions.filter((s) => s.status !== "up").map((s) => `${n}:${s.id}`));
    if (notUp.length) throw new Error(`${what}: sessions not Up when the window starts: ${notUp.join(", ")}`);
    const cpu = machineSampler(clusterRoot);
    const stalls = stallSampler();
    const from = Date.now();
    for (let t = 0; t < IDLE_S; t += 30) {
        await sleep(Math.min(30, IDLE_S - t) * 1000);
        process.stderr.write(`\r  ${Math.min(IDLE_S, t + 30)}/${IDLE_S} s  `);
    }
    process.stderr.write("\n");
    const machine = cpu.stop();
    const stalled = stalls.stop();
    const after = await readCounters(access);
    const downs = await downEvents(access, from, Date.now());
    const r = { ...countDowns(before, after), machine, downs, stalls: stalled };
    if (downs.length) log(`${what}: Downs at ${[...new Set(downs.map((d) => new Date(d.at).toISOString()))].join(", ")}; timer lags > 30 ms: ${stalled.timerLagOver30ms.map((l) => `${new Date(l.at).toISOString()} ${l.ms} ms`).join(", ") || "none"}`);
    log(`${what}: ${r.agentDowns} Down(s) on the agents, ${r.frrDowns} on FRR, in ${r.seconds} s`);
    return r;
}

async function waitSessionsUp(access: Map<string, NodeAccess>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
        try {
            const r = await readCounters(access);
            const down = [...r.agents].flatMap(([n, a]) => a.sessions.filter((s) => s.status !== "up").map((s) => `${n}:${s.id}=${s.status}`));
            const frrDown = [...r.frr].flatMap(([p, f]) => [...f.peers].filter(([, x]) => x.status !== "up").map(([k]) => `${p}:${k}`));
            if (!down.length && !frrDown.length) return;
            last = [...down, ...frrDown].join(", ");
        } catch (err) {
            last = (err as Error).message;
        }
        if (Date.now() > deadline) throw new Error(`BFD sessions not all Up within ${timeoutMs / 1000} s: ${last}`);
        await sleep(2000);
    }
}

// ---- the Kubernetes API, from the host (the admin kubeconfig's certificates) ----

class KubeApi {
    private readonly agent: https.Agent;
    private readonly server: URL;

    constructor(kubeconfigFile: string) {
        const kc = parse(fs.readFileSync(kubeconfigFile, "utf8"));
        const b64 = (s: string) => Buffer.from(s, "base64");
        this.server = new URL(kc.clusters[0].cluster.server);
        this.agent = new https.Agent({
            keepAlive: true,
            ca: b64(kc.clusters[0].cluster["certificate-authority-data"]),
            cert: b64(kc.users[0].user["client-certificate-data"]),
            key: b64(kc.users[0].user["client-key-data"]),
        });
    }

    private open(method: string, p: string, body?: unknown): Promise<import("node:http").IncomingMessage> {
        return new Promise((resolve, reject) => {
            const req = https.request({
                agent: this.agent, hostname: this.server.hostname.replace(/^\[|\]$/g, ""), port: this.server.port, method, path: p,
                headers: { accept: "application/json", ...(body ? { "content-type": "application/json" } : {}) },
            }, resolve);
            req.on("error", (err) => reject(new Error(`${method} ${p} on the lab cluster's API server (${this.server.host}): ${err.message}`)));
            req.end(body ? JSON.stringify(body) : undefined);
        });
    }

    async call(method: string, p: string, body?: unknown): Promise<any> {
        const res = await this.open(method, p, body);
        let text = "";
        res.setEncoding("utf8");
        for await (const c of res) text += c;
        if (!res.statusCode || res.statusCode >= 300) throw new Error(`${method} ${p}: HTTP ${res.statusCode}: ${text.slice(0, 2000)}`);
        return JSON.parse(text);
    }

    /** A watch: onEvent(type, object, arrival time) for each event until close(). */
    async watch(p: string, onEvent: (type: string, obj: any, at: number) => void): Promise<{ close(): void }> {
        const res = await this.open("GET", p);
        if (res.statusCode !== 200) {
            let text = "";
            for await (const c of res) text += c;
            throw new Error(`watch ${p}: HTTP ${res.statusCode}: ${text.slice(0, 2000)}`);
        }
        let buf = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
            const at = now();
            buf += d;
            let i;
            while ((i = buf.indexOf("\n")) >= 0) {
                const line = buf.slice(0, i);
                buf = buf.slice(i + 1);
                if (!line.trim()) continue;
                const e = JSON.parse(line);
                onEvent(e.type, e.object, at);
            }
        });
        res.on("error", () => { /* closed */ });
        return { close: () => res.destroy() };
    }

    close(): void {
        this.agent.destroy();
    }
}

const isReady = (pod: any) => pod?.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True") ?? false;

async function lampPodsReady(api: KubeApi, timeoutMs: number): Promise<any[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const list = await api.call("GET", `/api/v1/namespaces/${LAMP_NS}/pods?labelSelector=${encodeURIComponent(`app.kubernetes.io/name=${LAMP}`)}`).catch(() => ({ items: [] }));
        const ready = list.items.filter((p: any) => isReady(p) && !p.metadata.deletionTimestamp);
        if (ready.length >= 2) return ready;
        if (Date.now() > deadline) throw new Error(`the LAMP app's pods not Ready within ${timeoutMs / 1000} s: ${list.items.map((p: any) => `${p.metadata.name} ${p.status?.phase}`).join(", ")}`);
        await sleep(1000);
    }
}

// ---- 2. pod creation to Ready ----

interface PodTiming { kind: string; acceptedMs: number; scheduledMs: number; runningMs: number; readyMs: number; deletedMs: number }

function benchPod(kind: "lamp" | "floor", name: string, images: ReturnType<typeof labImages>) {
    const base = { apiVersion: "v1", kind: "Pod", metadata: { name, namespace: BENCH_NS, labels: { "nublar.bench": tag } } };
    if (kind === "floor") {
        // The pause image (catatonit -P), no probe: Ready as soon as its container runs.
        return { ...base, spec: { terminationGracePeriodSeconds: 1, enableServiceLinks: false, containers: [{ name: "pause", image: images.pause.ref, imagePullPolicy: "Never" }] } };
    }
    return {
        ...base,
        spec: {
            terminationGracePeriodSeconds: 1,
            enableServiceLinks: false,
            securityContext: { fsGroup: 48 },
            containers: [{
                name: "app", image: images.lamp.ref, imagePullPolicy: "Never",
                ports: [{ name: "http-app", containerPort: 8080 }],
                // The shortest probe period Kubernetes allows: Ready is seen within a second of serving.
                readinessProbe: { httpGet: { path: "/health.php", port: 8080 }, initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, successThreshold: 1 },
                volumeMounts: [{ name: "data", mountPath: "/var/www/data" }],
            }],
            volumes: [{ name: "data", emptyDir: {} }],
        },
    };
}

async function timePod(api: KubeApi, kind: "lamp" | "floor", i: number, images: ReturnType<typeof labImages>): Promise<PodTiming> {
    const name = `kbench-${tag}-${kind}-${i}`;
    const t0 = now();
    const created = await api.call("POST", `/api/v1/namespaces/${BENCH_NS}/pods`, benchPod(kind, name, images));
    const acceptedMs = now() - t0;
    const seen: { scheduled?: number; running?: number; ready?: number; deleted?: number } = {};
    let last: any = created;
    let error: string | undefined;
    // From the creation's resourceVersion: every later change, even one before the watch connects.
    const w = await api.watch(`/api/v1/namespaces/${BENCH_NS}/pods?watch=1&fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}&resourceVersion=${created.metadata.resourceVersion}`, (type, obj, at) => {
        if (type === "ERROR") error = JSON.stringify(obj);
        if (type === "DELETED") seen.deleted ??= at;
        if (!obj?.status) return;
        last = obj;
        if (obj.spec?.nodeName) seen.scheduled ??= at;
        if (obj.status.containerStatuses?.every((c: any) => c.state?.running)) seen.running ??= at;
        if (isReady(obj)) seen.ready ??= at;
    });
    try {
        const deadline = Date.now() + 180_000;
        while (seen.ready === undefined) {
            if (error) throw new Error(`watching pod ${name}: ${error}`);
            if (Date.now() > deadline) throw new Error(`pod ${name} not Ready within 180 s; last status: ${JSON.stringify(last?.status).slice(0, 3000)}`);
            await sleep(5);
        }
        const d0 = now();
        await api.call("DELETE", `/api/v1/namespaces/${BENCH_NS}/pods/${name}`);
        const deadline2 = Date.now() + 120_000;
        while (seen.deleted === undefined) {
            if (Date.now() > deadline2) throw new Error(`pod ${name} not gone within 120 s of its deletion`);
            await sleep(5);
        }
        return {
            kind, acceptedMs: round2(acceptedMs), scheduledMs: round2((seen.scheduled ?? NaN) - t0), runningMs: round2((seen.running ?? NaN) - t0),
            readyMs: round2(seen.ready - t0), deletedMs: round2(seen.deleted - d0),
        };
    } finally {
        w.close();
    }
}

async function podStarts(api: KubeApi) {
    const images = labImages();
    const rows: PodTiming[] = [];
    for (let i = 0; i < PODS; i++) {
        // Alternate which goes first, so neither always follows the other's deletion.
        for (const kind of (i % 2 ? ["floor", "lamp"] : ["lamp", "floor"]) as ("lamp" | "floor")[]) {
            const r = await timePod(api, kind, i, images);
            rows.push(r);
            log(`pod ${kind} ${i + 1}/${PODS}: scheduled ${r.scheduledMs} ms, running ${r.runningMs} ms, Ready ${r.readyMs} ms, deleted in ${r.deletedMs} ms`);
        }
    }
    const of = (kind: string, k: keyof PodTiming) => summary(rows.filter((r) => r.kind === kind).map((r) => r[k] as number).filter(Number.isFinite));
    const lamp = { acceptedMs: of("lamp", "acceptedMs"), scheduledMs: of("lamp", "scheduledMs"), runningMs: of("lamp", "runningMs"), readyMs: of("lamp", "readyMs"), deletedMs: of("lamp", "deletedMs") };
    const floor = { acceptedMs: of("floor", "acceptedMs"), scheduledMs: of("floor", "scheduledMs"), runningMs: of("floor", "runningMs"), readyMs: of("floor", "readyMs"), deletedMs: of("floor", "deletedMs") };
    return {
        method: "pods created with a POST to the API server from the host; each change seen on a watch of that pod (from the creation's resourceVersion), timed on arrival with this process's clock (sub-millisecond). Times are from just before the POST. Ready of the LAMP pod also waits for its readiness probe, which runs every 1 s (the shortest period): up to 1 s of it is the probe's schedule",
        lamp: { image: "the lab's LAMP image (Apache + PHP, its entrypoint starts MariaDB first)", probe: "GET /health.php :8080, initialDelay 0, period 1 s", ...lamp },
        floor: { image: "the pause image (catatonit -P), no probe", ...floor },
        readyRatioLampToFloor: { p50: round2(lamp.readyMs.p50 / floor.readyMs.p50), p99: round2(lamp.readyMs.p99 / floor.readyMs.p99) },
        rows,
    };
}

// ---- 3. HTTP through the Service vs straight to a pod ----

/** Runs inside the cluster's namespace: sequential GETs per cell, cells interleaved round by round. */
const HTTP_CLIENT = `
const http = require("node:http");
const { cells, perRound, rounds, warmup } = JSON.parse(process.argv[1]);
function get(url, agent) {
    return new Promise((resolve) => {
        const t = process.hrtime.bigint();
        const req = http.get(url, { agent, headers: agent ? {} : { connection: "close" } }, (res) => {
            res.resume();
            res.on("end", () => resolve({ ms: Number(process.hrtime.bigint() - t) / 1e6, status: res.statusCode }));
        });
        req.setTimeout(10000, () => req.destroy(new Error("timeout after 10 s")));
        req.on("error", (e) => resolve({ ms: Number(process.hrtime.bigint() - t) / 1e6, status: 0, error: e.message }));
    });
}
(async () => {
    const out = {};
    const agents = {};
    for (const c of cells) {
        out[c.name] = { ms: [], errors: [] };
        agents[c.name] = c.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
        for (let i = 0; i < warmup; i++) await get(c.url, agents[c.name]);
    }
    for (let r = 0; r < rounds; r++) {
        const order = cells.map((_, k) => cells[(k + r) % cells.length]);
        for (const c of order) {
            for (let i = 0; i < perRound; i++) {
                const x = await get(c.url, agents[c.name]);
                if (x.status === 200) out[c.name].ms.push(x.ms);
                else out[c.name].errors.push(x.error || "HTTP " + x.status);
            }
        }
    }
    process.stdout.write(JSON.stringify(out));
})();
`;

async function httpCompare(kube: LabKubePlan, api: KubeApi) {
    const svcs = await api.call("GET", `/api/v1/namespaces/${LAMP_NS}/services?labelSelector=${encodeURIComponent(`app.kubernetes.io/name=${LAMP}`)}`);
    const svc = svcs.items.find((s: any) => s.spec.clusterIP && s.spec.clusterIP !== "None");
    if (!svc) throw new Error(`no Service with a ClusterIP for ${LAMP} in namespace ${LAMP_NS}`);
    const pods = await lampPodsReady(api, 60_000);
    const podIp = pods[0].status.podIPs?.map((p: any) => p.ip).find((ip: string) => ip.includes(":"));
    if (!podIp) throw new Error(`pod ${pods[0].metadata.name} has no IPv6 address`);
    const service = `http://[${svc.spec.clusterIP}]/health.php`;
    const pod = `http://[${podIp}]:8081/health.php`;
    const cells = [
        { name: "service-fresh", url: service, keepAlive: false },
        { name: "pod-fresh", url: pod, keepAlive: false },
        { name: "service-keepalive", url: service, keepAlive: true },
        { name: "pod-keepalive", url: pod, keepAlive: true },
    ];
    const perRound = Math.ceil(REQUESTS / ROUNDS);
    log(`HTTP: ${perRound * ROUNDS} GETs per cell (${cells.map((c) => c.name).join(", ")}), ${ROUNDS} rounds; ${service} and ${pod}`);
    const child = spawn("ip", ["netns", "exec", kube.netns, process.execPath, "-e", HTTP_CLIENT, JSON.stringify({ cells, perRound, rounds: ROUNDS, warmup: 20 })], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    if (code !== 0) throw new Error(`the HTTP client in ${kube.netns} exited with ${code}`);
    const res = JSON.parse(out) as Record<string, { ms: number[]; errors: string[] }>;
    const cell = (n: string) => ({ ...summary(res[n].ms), failed: res[n].errors.length, failedExamples: res[n].errors.slice(0, 5) });
    const ratio = (a: string, b: string) => {
        const x = summary(res[a].ms);
        const y = summary(res[b].ms);
        return { p50: round2(x.p50 / y.p50), p99: round2(x.p99 / y.p99) };
    };
    return {
        method: "a Node client inside the cluster's network namespace (ip netns exec), sequential GETs of /health.php, timed from the request to the body's end; 20 unrecorded warm-up requests per cell; cells interleaved round by round, their order rotated each round. The pod's :8081 is the cache sidecar (Nginx) the Service targets, in front of Apache; /health.php is cacheable there (proxy_cache_valid 200 30s), so both paths mostly measure the network path and Nginx",
        service, pod: { url: pod, name: pods[0].metadata.name },
        perCell: perRound * ROUNDS, rounds: ROUNDS,
        latencyMs: Object.fromEntries(cells.map((c) => [c.name, cell(c.name)])),
        serviceToPod: { fresh: ratio("service-fresh", "pod-fresh"), keepAlive: ratio("service-keepalive", "pod-keepalive") },
    };
}

// ---- 4. idle CPU and memory of the cluster ----

function cgroupFile(controller: string, rel: string, file: string): string {
    const p = path.join("/sys/fs/cgroup", controller, rel, file);
    if (!fs.existsSync(p)) throw new Error(`no ${p}: cannot read the cluster's ${controller} cgroup`);
    return fs.readFileSync(p, "utf8");
}

/** What a process of the cluster is: a daemon by its binary, or the pod it is in (its cgroup). */
function groupOf(pid: number, pods: Map<string, string>): { group: string; comm: string } | undefined {
    let comm: string;
    let cg: string;
    try {
        comm = fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
        cg = fs.readFileSync(`/proc/${pid}/cgroup`, "utf8");
    } catch {
        return undefined;
    }
    const mem = cg.split("\n").find((l) => l.split(":")[1] === "memory")?.split(":")[2] ?? "";
    const pod = /\/pod([0-9a-f_-]{36})/.exec(mem)?.[1]?.replace(/_/g, "-");
    if (pod) return { group: `pod ${pods.get(pod) ?? pod}`, comm };
    if (comm.startsWith("containerd-shim")) return { group: "containerd shims", comm };
    const daemons = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"];
    if (daemons.includes(comm) || daemons.some((d) => comm === d.slice(0, 15))) return { group: daemons.find((d) => d.slice(0, 15) === comm)!, comm };
    return { group: `other (${comm})`, comm };
}

function rssKiB(pid: number): number | undefined {
    try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        return m ? Number(m[1]) : 0; // kernel threads and zombies have none
    } catch {
        return undefined;
    }
}

async function clusterCost(kube: LabKubePlan, api: KubeApi) {
    const podList = await api.call("GET", "/api/v1/pods");
    const pods = new Map<string, string>(podList.items.map((p: any) => [p.metadata.uid, `${p.metadata.namespace}/${p.metadata.name}`]));
    const cpuSeries = new Map<string, number[]>();
    const rssSeries = new Map<string, number[]>();
    const cgCpu = { total: [] as number[], daemons: [] as number[], pods: [] as number[] };
    const procsSeen = new Map<string, Set<string>>();
    const usage = (rel: string) => Number(cgroupFile("cpuacct", rel, "cpuacct.usage").trim()) / 1e9;
    const cg = () => ({ total: usage(kube.cgroupRoot), daemons: usage(`${kube.cgroupRoot}/daemons`), pods: usage(`${kube.cgroupRoot}/kubepods`) });
    const sample = () => {
        const m = new Map<string, { group: string; cpu: number; start: string; rss: number }>();
        for (const pid of cgroupPids(kube.cgroupRoot)) {
            const g = groupOf(pid, pods);
            const st = readStat(pid);
            const rss = rssKiB(pid);
            if (!g || !st || rss === undefined) continue;
            m.set(`${pid}`, { group: g.group, cpu: st.cpu, start: st.start, rss });
            if (!procsSeen.has(g.group)) procsSeen.set(g.group, new Set());
            procsSeen.get(g.group)!.add(g.comm);
        }
        return { at: now(), procs: m, cg: cg(), machine: procStat() };
    };
    log(`cluster CPU and memory: sampling every second for ${CPU_S} s`);
    const machineBusy: number[] = [];
    const procsAtStart = processCpu();
    let prev = sample();
    const first = prev;
    for (let s = 0; s < CPU_S; s++) {
        await sleep(1000);
        const cur = sample();
        const secs = (cur.at - prev.at) / 1000;
        const perGroup = new Map<string, number>();
        const rssGroup = new Map<string, number>();
        for (const [pid, p] of cur.procs) {
            rssGroup.set(p.group, (rssGroup.get(p.group) ?? 0) + p.rss);
            const was = prev.procs.get(pid);
            // A process that started in this second counts from its start: all its time is in it.
            const d = was && was.start === p.start ? p.cpu - was.cpu : p.cpu;
            perGroup.set(p.group, (perGroup.get(p.group) ?? 0) + d / CLK_TCK / secs);
        }
        for (const g of new Set([...perGroup.keys(), ...cpuSeries.keys()])) {
            if (!cpuSeries.has(g)) cpuSeries.set(g, Array(s).fill(0));
            cpuSeries.get(g)!.push(perGroup.get(g) ?? 0);
        }
        for (const [g, v] of rssGroup) rssSeries.set(g, [...(rssSeries.get(g) ?? []), v / 1024]);
        cgCpu.total.push((cur.cg.total - prev.cg.total) / secs);
        cgCpu.daemons.push((cur.cg.daemons - prev.cg.daemons) / secs);
        cgCpu.pods.push((cur.cg.pods - prev.cg.pods) / secs);
        machineBusy.push((cur.machine.busy - prev.machine.busy) / CLK_TCK / secs);
        prev = cur;
    }
    const secs = (prev.at - first.at) / 1000;
    const mean = (xs: number[]) => round4(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
    const s4 = (xs: number[]) => ({ mean: mean(xs), ...summary(xs.map(round4)) });
    const groups = [...new Set([...cpuSeries.keys(), ...rssSeries.keys()])].sort();
    const byGroup = Object.fromEntries(groups.map((g) => [g, {
        processes: [...(procsSeen.get(g) ?? [])].sort(),
        cpuCoresPerSecond: s4(cpuSeries.get(g) ?? []),
        rssMiB: summary((rssSeries.get(g) ?? []).map(round2)),
    }]));
    const memStat = Object.fromEntries(cgroupFile("memory", kube.cgroupRoot, "memory.stat").trim().split("\n").map((l) => l.split(" ")).map(([k, v]) => [k, Number(v)]));
    const clusterMean = (prev.cg.total - first.cg.total) / secs;
    const machineMean = (prev.machine.busy - first.machine.busy) / CLK_TCK / secs;
    return {
        method: "every process in the cluster's cgroup tree (plan.cgroupRoot, all hierarchies: the daemons, containerd's shims, the pods), sampled every second: CPU from /proc/<pid>/stat utime+stime (resolution 1/CLK_TCK s), RSS from /proc/<pid>/status VmRSS (summed per group: pages shared between processes count once per process). The cgroup's cpuacct.usage (nanoseconds, includes processes that came and went between samples) and memory.stat are the cross-check",
        seconds: round2(secs),
        byGroup,
        cgroupCpuCoresPerSecond: { total: s4(cgCpu.total), daemons: s4(cgCpu.daemons), pods: s4(cgCpu.pods) },
        cgroupMemoryMiB: { rss: round2(memStat.total_rss / 2 ** 20), cache: round2(memStat.total_cache / 2 ** 20), mappedFile: round2(memStat.total_mapped_file / 2 ** 20) },
        rssMiBSummedOverProcesses: round2(groups.reduce((a, g) => a + (rssSeries.get(g)?.at(-1) ?? 0), 0)),
        machineBusyCoresPerSecond: s4(machineBusy),
        // The peer: the whole machine's busy CPU in the same seconds (the park, the bench, everything else).
        clusterShareOfMachineBusy: round4(clusterMean / machineMean),
        machineTopProcesses: topProcesses(procsAtStart, processCpu(), secs, new Set(cgroupPids(kube.cgroupRoot))),
    };
}

// ---- the run ----

const project = new TestProject(ROOT);
const kubePlan = labKubePlan(planLab(parseSite(siteWith)), project.stateDir)!;
let cleaned = false;

function cleanup(): void {
    if (cleaned) return;
    cleaned = true;
    log("cleaning up: pulumi destroy, then cleanLab");
    try {
        if (plan.nodes.some((n) => netnsExists(n.netns)) || netnsExists(kubePlan.netns)) {
            const r = project.pulumi(["destroy", "--yes", "--skip-preview"], STACK, 15 * 60_000);
            if (r.status !== 0) log(`pulumi destroy failed (cleanLab follows):\n${r.output.slice(-3000)}`);
        }
    } finally {
        const c = cleanLab(tag, project.stateDir);
        if (c.kept.length) log(`cleanLab kept: ${c.kept.join("; ")}`);
        project.remove();
        log("cleaned up");
    }
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
        log(`${sig}: stopping`);
        cleanup();
        process.exit(130);
    });
}

function up(what: string): number {
    const t = Date.now();
    const r = project.pulumi(["up", "--yes", "--skip-preview"], STACK, 20 * 60_000);
    if (r.status !== 0) throw new Error(`pulumi up (${what}) failed:\n${r.output.slice(-6000)}`);
    const ms = Date.now() - t;
    log(`pulumi up (${what}) took ${(ms / 1000).toFixed(1)} s`);
    return ms;
}

async function main() {
    if (process.getuid?.() !== 0) throw new Error("bench/kube.ts needs root (it runs a lab park and a cluster)");
    for (const f of [path.join(ROOT, ".tools", "kube", "bin", "kubelet"), path.join(ROOT, ".tools", "pulumi-kubernetes", "pulumi-resource-kubernetes")]) {
        if (!fs.existsSync(f)) throw new Error(`${f} is missing: run scripts/setup`);
    }
    labImages(); // says what is missing, if anything
    log(`tag ${tag}, stack ${STACK}, timers ${timers.transmitIntervalMs} ms x ${timers.detectMultiplier} (failover budget ${siteWithout.sla.failoverBudgetMs} ms)`);
    project.addStack(STACK, siteWithout);

    // 1a. The park alone.
    const upParkMs = up("the park, without the cluster");
    const access = nodeAccess(project);
    await waitSessionsUp(access, 180_000);
    const without = await idleWindow("without the cluster", access);

    // 1b. The same stack with the lab's kubernetes block.
    const file = project.stackFile(STACK);
    const stackYaml = parse(fs.readFileSync(file, "utf8"));
    stackYaml.config["nublar:site"] = siteWith;
    fs.writeFileSync(file, stringify(stackYaml));
    const upKubeMs = up("adding the cluster and the LAMP app");
    const api = new KubeApi(kubePlan.paths.adminKubeconfig);
    try {
        const t = Date.now();
        await lampPodsReady(api, 300_000);
        const lampReadyAfterUpMs = Date.now() - t;
        await waitSessionsUp(access, 180_000);
        const withCluster = await idleWindow("with the cluster", access, kubePlan.cgroupRoot);

        // 4, 2, 3: the cluster idle first, then busy.
        const cost = await clusterCost(kubePlan, api);
        const pods = await podStarts(api);
        const http = await httpCompare(kubePlan, api);

        const result = {
            tag,
            timers: `${timers.transmitIntervalMs} ms x ${timers.detectMultiplier} (the lab's failover budget, ${siteWithout.sla.failoverBudgetMs} ms)`,
            upMs: { park: upParkMs, addCluster: upKubeMs, lampReadyAfterUp: lampReadyAfterUpMs },
            falseDowns: {
                method: "every node agent's nublar_bfd_transitions_total{to=\"down\"} (GET /metrics over SSH, as `nublar --node` reaches an agent) and each provider router's FRR bfdd `session-down` counter (show bfd peers counters json), read before and after each idle window; the agents' startedAt must not change. bfdThreadLoopDelayMs is the agent's BFD worker loop delay over the window (its /state resets it per read)",
                settleSeconds: SETTLE_S,
                withoutCluster: without,
                withCluster,
                target: "zero in both",
                meetsTarget: without.agentDowns + without.frrDowns + withCluster.agentDowns + withCluster.frrDowns === 0,
            },
            clusterIdleCost: cost,
            podStart: pods,
            http,
        };
        const out = writeResult(args.name!, result);
        console.log(JSON.stringify({
            falseDowns: { without: [without.agentDowns, without.frrDowns], with: [withCluster.agentDowns, withCluster.frrDowns] },
            podReadyMs: { lamp: pods.lamp.readyMs, floor: pods.floor.readyMs },
            http: http.latencyMs, serviceToPod: http.serviceToPod,
            clusterCpu: cost.cgroupCpuCoresPerSecond.total, clusterShareOfMachineBusy: cost.clusterShareOfMachineBusy,
        }, null, 2));
        console.log(`written to ${out}`);
    } finally {
        api.close();
    }
}

main()
    .then(() => cleanup())
    .catch((err) => {
        console.error(err);
        try {
            cleanup();
        } catch (e) {
            console.error(`cleanup failed too: ${e}`);
        }
        process.exit(1);
    });
