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
import { spawn } from "node:child_process";
import { Park, requireParkTools, testSite } from "../test/network/park";
import { summary, writeResult } from "./machine";

const trials = Number(process.argv[2] ?? 30);
const baselineTrials = Number(process.argv[3] ?? 10);
const cutMode = (process.env.BENCH_CUT ?? "silent") as "silent" | "link";
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

async function main() {
    requireParkTools();
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

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
