// Failover through the whole stack, at 10 ms x 3: from cutting a backend's uplink to
//   1. BFD Down on the edge (the agent's event, from node-bfd's state change),
//   2. the route withdrawn in the kernel (the agent's netlink event for the deletion),
//   3. Nginx no longer sending requests to the dead backend (its access log: the start of
//      the last request that tried that member).
// Client load runs through Nginx all along; every failed request is counted.
// In the same run, the baseline: the same park without the agent and BFD, with static
// routes and Nginx's passive health checks (max_fails=1, fail_timeout=10s).
//   node --import tsx bench/agent-failover.ts [trials] [baselineTrials]   (default 30 and 10)
//   BENCH_CUT=silent (default: drop every packet on the link, as a dead switch or a black
//   hole does; nothing answers) or BENCH_CUT=link (`ip link set down`: the router sees it
//   and answers with ICMP unreachable).
//
// Then, in the same run, a stall of the edge's own BFD thread (results/agent-failover-stall.json):
// nothing fails, but the thread stops for BENCH_STALL_MS (default 40; the stall seen in a run
// was 33 ms, against a detection time of 30 ms), long enough for its peers to declare it down.
// Every member of an upstream then looks dead at once. Two ingress services run side by side on
// the same edge, to the same two backends, under the same client load and the same stalls: one
// without panic routing (today's default: no live member, 503) and one with it
// (ingress[].panic: every member is used while none is live). Failed requests are counted for
// each, trial by trial.
//   BENCH_STALL=thread (default): only the BFD worker thread stops (ptrace's PTRACE_INTERRUPT on
//   its thread id, which stops that one thread; the agent's main thread, Nginx and the backends
//   run on), as when the thread's vCPU is taken away. BENCH_STALL=process: SIGSTOP and SIGCONT
//   of the whole agent process (every thread stops, the BFD worker with them).
//   BENCH_SCENARIO=cut or stall runs one of the two; BENCH_STALL_TRIALS (default 20, 3 with
//   BENCH_QUICK=1).
import { spawn } from "node:child_process";
import * as readline from "node:readline";
import { agentDaemon, daemonPid } from "../lab/daemons";
import { Park, requireParkTools, testSite, type LoadResult } from "../test/network/park";
import { summary, writeResult } from "./machine";

const trials = Number(process.argv[2] ?? 30);
const baselineTrials = Number(process.argv[3] ?? 10);
const cutMode = (process.env.BENCH_CUT ?? "silent") as "silent" | "link";
const scenario = (process.env.BENCH_SCENARIO ?? "all") as "all" | "cut" | "stall";
const stallTrials = Number(process.env.BENCH_STALL_TRIALS ?? (process.env.BENCH_QUICK === "1" ? 3 : 20));
const stallMs = Number(process.env.BENCH_STALL_MS ?? 40);
const stallMode = (process.env.BENCH_STALL ?? "thread") as "thread" | "process";
const RATE = 200;
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const site = (tag: string) => testSite(tag, {
    nodes: [
        { name: "gate", role: "edge", uplinks: ["provider-a", "provider-b"] },
        { name: "vc", uplinks: ["provider-a"] },
        { name: "cr", uplinks: ["provider-b"] },
    ],
    ingress: [{ name: "web", port: 8080, upstreams: ["vc", "cr"] }],
    failoverBudgetMs: 100, // 10 ms x 3
});

/**
 * Cut vc's uplink at the provider's router, and undo it. The commands go to long-lived
 * `nft -i` and `ip -batch` processes in the router's namespace, so a cut takes effect within
 * a millisecond of the time we record (spawning a command per cut took 10-20 ms here).
 */
function cutter(park: Park) {
    const { netns, ifname } = park.uplink("vc", "provider-a");
    const table = "nublar_bench_cut";
    const nft = spawn("ip", ["netns", "exec", netns, "nft", "-i"], { stdio: ["pipe", "ignore", "inherit"] });
    const ip = spawn("ip", ["-n", netns, "-batch", "-"], { stdio: ["pipe", "ignore", "inherit"] });
    // Chains ready, without rules: the cut adds the rules in one line (one transaction).
    nft.stdin!.write([`add table inet ${table}`,
        `add chain inet ${table} cut_forward { type filter hook forward priority -10; }`,
        `add chain inet ${table} cut_input { type filter hook input priority -10; }`,
        `add chain inet ${table} cut_output { type filter hook output priority -10; }`, ""].join("\n"));
    return {
        cut(): number {
            const at = now();
            if (cutMode === "link") ip.stdin!.write(`link set ${ifname} down\n`);
            else nft.stdin!.write(`add rule inet ${table} cut_forward iifname "${ifname}" drop; add rule inet ${table} cut_forward oifname "${ifname}" drop; add rule inet ${table} cut_input iifname "${ifname}" drop; add rule inet ${table} cut_output oifname "${ifname}" drop\n`);
            return at;
        },
        restore(): void {
            if (cutMode === "link") {
                ip.stdin!.write(`link set ${ifname} up\n`);
            } else {
                nft.stdin!.write(`flush table inet ${table}\n`);
            }
        },
        close(): void {
            nft.stdin!.end(`delete table inet ${table}\n`);
            ip.stdin!.end();
        },
    };
}

interface Trial { cutAt: number; restoreAt: number }

async function runVariant(kind: "nublar" | "baseline", n: number) {
    const tag = `b${kind[0]}${process.pid.toString(36).slice(-3)}`;
    const park = new Park(site(tag), kind === "baseline"
        ? { baseline: { maxFails: 1, failTimeoutS: 10 }, unbufferedAccessLog: true }
        : { holdDownMs: 500, unbufferedAccessLog: true });
    const log = (s: string) => process.stderr.write(`[${kind}] ${s}\n`);
    try {
        await park.up();
        const vcAddress = park.config("gate").ingress[0].members.find((m) => m.node === "vc")!.address;
        const vcLoopback = park.config("vc").loopback;
        let worstLoopDelayMs = 0;
        const vcLive = async () => {
            if (kind === "baseline") return true;
            const st = await park.agent("gate", "/state");
            worstLoopDelayMs = Math.max(worstLoopDelayMs, st.bfdWorker.loopDelayMs.max);
            return st.ingress[0].members.every((m: any) => m.live);
        };
        if (kind === "nublar") await park.waitFor("gate", "both members live", (s) => s.ingress[0].members.every((m: any) => m.live), 30_000);
        const load = park.load("gate", "http://[::1]:8080/", RATE);
        await sleep(2000);
        const c = cutter(park);
        const done: Trial[] = [];
        for (let i = 0; i < n; i++) {
            await sleep(300 + Math.random() * 500); // a random phase against the BFD and request schedules
            const cutAt = c.cut();
            await sleep(kind === "nublar" ? 1000 : 2000);
            const restoreAt = now();
            c.restore();
            done.push({ cutAt, restoreAt });
            // Before the next cut, vc must be back in use: after the hold-down (nublar), or
            // after fail_timeout, when Nginx tries it again (baseline).
            if (kind === "baseline") await sleep(11_000);
            const deadline = Date.now() + 30_000;
            while (!(await vcLive()) && Date.now() < deadline) await sleep(50);
            await sleep(500);
            log(`trial ${i + 1}/${n}`);
        }
        c.close();
        await sleep(1000);
        const results = await load.stop();
        const access = park.accessLog("gate");
        const events = kind === "nublar"
            ? (await park.agent("gate", "/events?limit=2000")).trim().split("\n").map((l: string) => JSON.parse(l))
            : [];
        const rows = done.map(({ cutAt, restoreAt }) => {
            const inWindow = (t: number) => t >= cutAt && t < restoreAt;
            const bfdDown = events.find((e: any) => e.type === "bfd" && e.session === "path/vc/provider-a" && e.to === "down" && inWindow(e.at));
            const withdrawn = events.find((e: any) => e.type === "route" && e.event === "route-removed" && e.destination === `${vcLoopback}/128` && inWindow(e.at));
            const pushed = events.find((e: any) => e.type === "nginx" && (e.removed ?? []).includes(vcAddress) && inWindow(e.at));
            const triedVc = access.filter((r) => inWindow(r.startMs) && r.upstreams.includes(vcAddress));
            const lastTry = triedVc.length ? Math.max(...triedVc.map((r) => r.startMs)) : undefined;
            const failed = results.filter((r) => r.status !== 200 && r.t >= cutAt - 50 && r.t < restoreAt);
            return {
                bfdDownMs: bfdDown ? bfdDown.at - cutAt : null,
                routeWithdrawnMs: withdrawn ? withdrawn.at - cutAt : null,
                nginxPushMs: pushed ? pushed.at - cutAt : null,
                // 0 when no request tried vc after the cut (none happened to be sent its way).
                nginxExcludedMs: lastTry === undefined ? 0 : Math.max(0, lastTry - cutAt),
                requestsTriedDeadPeer: triedVc.length,
                failedRequests: failed.length,
            };
        });
        // Downs the cuts do not explain: another session, or outside every cut window.
        const explained = (e: any) => e.session === "path/vc/provider-a" && done.some((t) => e.at >= t.cutAt && e.at < t.restoreAt + 2000);
        const falseDowns = events.filter((e: any) => e.type === "bfd" && e.to === "down" && !explained(e))
            .map((e: any) => ({ session: e.session, diagnostic: e.diagnostic, at: e.at }));
        // What clients felt: latency of the requests sent while a cut was in place.
        const duringCuts = results.filter((r) => done.some((t) => r.t >= t.cutAt && r.t < t.restoreAt)).map((r) => r.ms);
        const vals = (k: keyof (typeof rows)[number]) => rows.map((r) => r[k]).filter((x): x is number => typeof x === "number");
        return {
            kind, trials: rows.length, ratePerSecond: RATE, requests: results.length,
            failedRequests: results.filter((r) => r.status !== 200).length,
            failedExamples: results.filter((r) => r.status !== 200).slice(0, 5),
            clientLatencyDuringCutsMs: summary(duringCuts),
            clientLatencyOverallMs: summary(results.map((r) => r.ms)),
            falseDowns: falseDowns.length,
            gateBfdWorkerWorstLoopDelayMs: worstLoopDelayMs,
            falseDownExamples: falseDowns.slice(0, 10),
            bfdDownMs: summary(vals("bfdDownMs")),
            routeWithdrawnMs: summary(vals("routeWithdrawnMs")),
            nginxPushMs: summary(vals("nginxPushMs")),
            nginxExcludedMs: summary(vals("nginxExcludedMs")),
            rows,
        };
    } finally {
        await park.close();
    }
}

// --- The stall of the edge's BFD thread: panic routing off and on, side by side ---

/**
 * Stops one thread for a while and resumes it, from a small long-lived Python helper (Node has
 * no ptrace). PTRACE_SEIZE then PTRACE_INTERRUPT stops exactly that thread, unlike SIGSTOP,
 * which stops the whole process; PTRACE_DETACH resumes it. If the helper dies, the kernel
 * detaches, and the thread runs on.
 */
const PTRACE_STALL = `
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
SEIZE, INTERRUPT, DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000
def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
for line in sys.stdin:
    tid, ms = line.split()
    tid, ms = int(tid), float(ms)
    try:
        ptrace(SEIZE, tid)
        try:
            ptrace(INTERRUPT, tid)
            os.waitpid(tid, WALL)
            start = time.time() * 1000
            time.sleep(ms / 1000)
            end = time.time() * 1000
        finally:
            ptrace(DETACH, tid)
        print(json.dumps({"start": start, "end": end}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
`;

interface Stall { start: number; end: number }

function staller(mode: "thread" | "process") {
    if (mode === "process") {
        let stopped: number | undefined;
        return {
            async stall(pid: number, ms: number): Promise<Stall> {
                const start = now();
                stopped = pid;
                process.kill(pid, "SIGSTOP");
                try {
                    await sleep(ms);
                } finally {
                    process.kill(pid, "SIGCONT");
                    stopped = undefined;
                }
                return { start, end: now() };
            },
            close(): void {
                if (stopped !== undefined) try { process.kill(stopped, "SIGCONT"); } catch { /* gone */ }
            },
        };
    }
    const py = spawn("python3", ["-u", "-c", PTRACE_STALL], { stdio: ["pipe", "pipe", "inherit"] });
    const waiting: ((line: string) => void)[] = [];
    readline.createInterface({ input: py.stdout! }).on("line", (line) => waiting.shift()?.(line));
    return {
        async stall(tid: number, ms: number): Promise<Stall> {
            const reply = new Promise<string>((resolve) => waiting.push(resolve));
            py.stdin!.write(`${tid} ${ms}\n`);
            const r = JSON.parse(await reply);
            if (r.error) throw new Error(`cannot stall thread ${tid}: ${r.error}`);
            return r;
        },
        close(): void {
            py.stdin!.end();
        },
    };
}

/** Two services on the edge, to the same two backends: today's default, and with panic routing. */
const UPSTREAMS = [{ name: "web", port: 8080, panic: false }, { name: "web-panic", port: 8081, panic: true }] as const;

function stallSite(tag: string) {
    const s = testSite(tag, {
        nodes: [
            { name: "gate", role: "edge", uplinks: ["provider-a", "provider-b"] },
            { name: "vc", uplinks: ["provider-a"] },
            { name: "cr", uplinks: ["provider-b"] },
        ],
        ingress: UPSTREAMS.map((u) => ({ name: u.name, port: u.port, upstreams: ["vc", "cr"] })),
        failoverBudgetMs: 100, // 10 ms x 3
    });
    s.ingress.forEach((svc, i) => {
        if (UPSTREAMS[i].panic) svc.panic = true;
    });
    return s;
}

async function runStall(n: number) {
    const tag = `bs${process.pid.toString(36).slice(-3)}`;
    const park = new Park(stallSite(tag), { holdDownMs: 500, unbufferedAccessLog: true });
    const log = (s: string) => process.stderr.write(`[stall] ${s}\n`);
    const st = staller(stallMode);
    try {
        await park.up();
        // Steady: every session Up, and every member of both upstreams used (no hold-down left).
        const steady = (s: any) => s.sessions.every((x: any) => x.bfd?.status === "up") && s.ingress.every((u: any) => u.members.every((m: any) => m.decision === "use"));
        await park.waitFor("gate", "every session up and every member live", steady, 30_000);
        const loads = UPSTREAMS.map((u) => park.load("gate", `http://[::1]:${u.port}/`, RATE));
        await sleep(2000);
        const events = new Map<number, any>();
        const collect = async () => {
            const text: string = await park.agent("gate", "/events?limit=2000");
            for (const l of text.trim().split("\n").filter(Boolean)) {
                const e = JSON.parse(l);
                events.set(e.seq, e);
            }
        };
        const done: { stallStart: number; stallEnd: number; recoveredAt: number; loopDelayMaxMs: number }[] = [];
        for (let i = 0; i < n; i++) {
            await sleep(500 + Math.random() * 500); // a random phase against the BFD and request schedules
            const before = await park.agent("gate", "/state");
            let target: number;
            if (stallMode === "thread") {
                const m = /worker thread (\d+)/.exec(String(before.bfdWorker.priority));
                if (!m) throw new Error(`the BFD worker's thread id is not in /state (priority: ${before.bfdWorker.priority})`);
                target = Number(m[1]);
            } else {
                const pid = daemonPid(agentDaemon(park.paths("gate").agentDir));
                if (!pid) throw new Error("the edge's agent is not running");
                target = pid;
            }
            const s = await st.stall(target, stallMs);
            // The peers' Downs arrive within a few ms of the resume; then wait until steady again.
            await sleep(100);
            let loopDelayMaxMs = 0;
            const deadline = Date.now() + 30_000;
            for (;;) {
                const state = await park.agent("gate", "/state");
                loopDelayMaxMs = Math.max(loopDelayMaxMs, state.bfdWorker.loopDelayMs.max);
                if (steady(state) || Date.now() > deadline) break;
                await sleep(50);
            }
            done.push({ stallStart: s.start, stallEnd: s.end, recoveredAt: now(), loopDelayMaxMs });
            await collect();
            log(`trial ${i + 1}/${n}: stalled ${(s.end - s.start).toFixed(1)} ms, BFD thread's worst loop delay ${loopDelayMaxMs.toFixed(1)} ms`);
        }
        await sleep(1000);
        const results = await Promise.all(loads.map((l) => l.stop()));
        await collect();
        const all = [...events.values()].sort((a, b) => a.seq - b.seq);
        const inWindow = (t: number, w: (typeof done)[number]) => t >= w.stallStart - 50 && t < w.recoveredAt;
        const failed = (r: LoadResult[], w: (typeof done)[number]) => r.filter((x) => x.status !== 200 && inWindow(x.t, w));
        const rows = done.map((w) => {
            const downs = all.filter((e) => e.type === "bfd" && e.to === "down" && e.at >= w.stallStart && e.at < w.recoveredAt);
            const nginx = all.filter((e) => e.type === "nginx" && e.at >= w.stallStart && e.at < w.recoveredAt);
            const emptyAt = nginx.find((e) => e.upstream === "web" && Array.isArray(e.members) && e.members.length === 0 && e.event === undefined)?.at;
            const refilledAt = emptyAt === undefined ? undefined : nginx.find((e) => e.upstream === "web" && e.at > emptyAt && Array.isArray(e.members) && e.members.length > 0 && e.event === undefined)?.at;
            const panicStart = nginx.find((e) => e.upstream === "web-panic" && e.event === "panic-start")?.at;
            const panicEnd = nginx.find((e) => e.upstream === "web-panic" && e.event === "panic-end")?.at;
            return {
                stalledMs: Math.round((w.stallEnd - w.stallStart) * 100) / 100,
                bfdThreadWorstLoopDelayMs: w.loopDelayMaxMs,
                recoveredAfterMs: Math.round(w.recoveredAt - w.stallStart),
                sessionsDown: downs.map((e) => `${e.session} (${e.diagnostic})`),
                // How long the default upstream had no member (Nginx answering 503), and how long
                // the panic upstream was in panic.
                noMemberMs: emptyAt === undefined ? 0 : Math.round((refilledAt ?? w.recoveredAt) - emptyAt),
                panicMs: panicStart === undefined ? 0 : Math.round((panicEnd ?? w.recoveredAt) - panicStart),
                failed: Object.fromEntries(UPSTREAMS.map((u, k) => [u.name, failed(results[k], w).length])),
            };
        });
        const perUpstream = UPSTREAMS.map((u, k) => {
            const r = results[k];
            const bad = r.filter((x) => x.status !== 200);
            const during = r.filter((x) => done.some((w) => inWindow(x.t, w)));
            return {
                upstream: u.name, panic: u.panic, requests: r.length,
                failedRequests: bad.length,
                failed503: bad.filter((x) => x.status === 503).length,
                failedOther: bad.filter((x) => x.status !== 503).length,
                failedInStallWindows: done.reduce((sum, w) => sum + failed(r, w).length, 0),
                trialsWithFailures: rows.filter((row) => row.failed[u.name] > 0).length,
                failedExamples: bad.slice(0, 5),
                clientLatencyDuringStallsMs: summary(during.map((x) => x.ms)),
                clientLatencyOverallMs: summary(r.map((x) => x.ms)),
            };
        });
        return {
            stall: stallMode === "thread"
                ? "the edge agent's BFD worker thread alone, stopped with ptrace (PTRACE_INTERRUPT) and resumed (PTRACE_DETACH)"
                : "the edge's whole agent process, SIGSTOP then SIGCONT",
            stallRequestedMs: stallMs,
            trials: rows.length,
            ratePerSecondPerUpstream: RATE,
            holdDownMs: 500,
            trialsWithFalseDowns: rows.filter((r) => r.sessionsDown.length > 0).length,
            stalledMs: summary(rows.map((r) => r.stalledMs)),
            bfdThreadWorstLoopDelayMs: summary(rows.map((r) => r.bfdThreadWorstLoopDelayMs)),
            noMemberMs: summary(rows.map((r) => r.noMemberMs).filter((x) => x > 0)),
            panicMs: summary(rows.map((r) => r.panicMs).filter((x) => x > 0)),
            panicOff: perUpstream[0],
            panicOn: perUpstream[1],
            // The peer in the same run is the default; 0 is the target.
            failedRatioPanicOnToOff: perUpstream[0].failedRequests ? Math.round((perUpstream[1].failedRequests / perUpstream[0].failedRequests) * 1000) / 1000 : null,
            rows,
        };
    } finally {
        st.close();
        await park.close();
    }
}

async function main() {
    requireParkTools();
    if (scenario !== "stall") {
        const ours = await runVariant("nublar", trials);
        const baseline = await runVariant("baseline", baselineTrials);
        const result = {
            timers: "10 ms x 3",
            cut: cutMode === "silent" ? "every packet on vc's uplink dropped at the provider's router (nftables); nothing answers" : "vc's uplink set down at the provider's router",
            nublar: ours,
            baseline,
            target: "Nginx exclusion within 50 ms p99 of the cut, and zero failed requests",
            meetsTarget: ours.nginxExcludedMs.p99 <= 50 && ours.failedRequests === 0,
        };
        const file = writeResult(`agent-failover-${cutMode}`, result);
        const line = (r: typeof ours) => `${r.kind}: failed ${r.failedRequests}/${r.requests}; latency during cuts p50 ${r.clientLatencyDuringCutsMs.p50} p99 ${r.clientLatencyDuringCutsMs.p99} ms; BFD Down p50 ${r.bfdDownMs.p50} p99 ${r.bfdDownMs.p99}; route withdrawn p50 ${r.routeWithdrawnMs.p50} p99 ${r.routeWithdrawnMs.p99}; Nginx excluded p50 ${r.nginxExcludedMs.p50} p99 ${r.nginxExcludedMs.p99} ms`;
        console.log(line(ours));
        console.log(line(baseline));
        console.log(`written to ${file}`);
    }
    if (scenario !== "cut") {
        const stall = await runStall(stallTrials);
        const file = writeResult("agent-failover-stall", {
            timers: "10 ms x 3",
            ...stall,
            target: "with panic routing, zero failed requests when a stall of the edge's BFD thread makes every member look down",
            meetsTarget: stall.panicOn.failedRequests === 0,
        });
        const line = (r: typeof stall.panicOn) => `${r.upstream} (panic ${r.panic ? "on" : "off"}): failed ${r.failedRequests}/${r.requests} (503: ${r.failed503}, other: ${r.failedOther}; in stall windows ${r.failedInStallWindows}, in ${r.trialsWithFailures} trials); latency during stalls p50 ${r.clientLatencyDuringStallsMs.p50} p99 ${r.clientLatencyDuringStallsMs.p99} max ${r.clientLatencyDuringStallsMs.max} ms`;
        console.log(`stall ${stall.stallRequestedMs} ms (${stallMode}) x ${stall.trials}: false Downs in ${stall.trialsWithFalseDowns} trials; stalled p50 ${stall.stalledMs.p50} max ${stall.stalledMs.max} ms; BFD thread worst loop delay p50 ${stall.bfdThreadWorstLoopDelayMs.p50} max ${stall.bfdThreadWorstLoopDelayMs.max} ms`);
        console.log(line(stall.panicOff));
        console.log(line(stall.panicOn));
        console.log(`written to ${file}`);
    }
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
