// How many sessions one node-bfd process holds at 50 ms x 3 with no false Down, and its
// CPU share at that load. Two peers, each in the same run: FRR's bfdd (one peer per
// session; node-bfd uses one local address per session, as FRR keys single-hop sessions by
// peer address), and a second node-bfd process. The peer's CPU share is measured too: on
// one machine both ends share the cores, so the weaker end sets the limit.
//   node --import tsx bench/bfd-scale.ts [sizes...]           (default 100 250 500 750 1000)
//   BFD_SCALE_PEERS=frr,node-bfd (default both)
//   BFD_NICE=-10 runs both ends' BFD timers at that niceness (node-bfd's worker thread, every
//   thread of FRR's bfdd), as bench/bfd-false-downs.ts does; results go to bfd-scale-nice-10.json.
import * as fs from "node:fs";
import * as os from "node:os";
import { spawnSync } from "node:child_process";
import { Lab, requireTools, sh } from "../packages/node-bfd/test/network/harness";
import { writeResult } from "./machine";

const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
if (sizes.length === 0) sizes.push(100, 250, 500, 750, 1000);
const MEASURE_S = 30;
const nice = process.env.BFD_NICE ? Number(process.env.BFD_NICE) : undefined;
if (nice !== undefined) process.env.NODE_BFD_WORKER_NICE = String(nice);
const TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

function cpuTicks(pid: number): number {
    // /proc/<pid>/stat fields 14 and 15: utime and stime, in clock ticks (all threads).
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return Number(fields[11]) + Number(fields[12]);
}

async function measure(n: number, peerKind: "frr" | "node-bfd") {
    const lab = new Lab();
    try {
        const a = lab.ns("n");
        const f = lab.ns("f");
        const { ifA } = lab.link({ a, b: f, addresses: [["2001:db8:e::1/64", "2001:db8:e::2/64"]] });
        const ourAddr = (i: number) => `2001:db8:e::1:${(i + 1).toString(16)}`;
        sh(["ip", "-n", a, "-batch", "-"], { input: Array.from({ length: n }, (_, i) => `addr add ${ourAddr(i)}/64 dev ${ifA} nodad`).join("\n") + "\n" });
        let peerPid: number;
        let peerNotUp: () => Promise<number>;
        if (peerKind === "frr") {
            const peers = Array.from({ length: n }, (_, i) =>
                ` peer ${ourAddr(i)} local-address 2001:db8:e::2\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !`).join("\n");
            const frr = lab.frr(f, `bfd\n${peers}\n!\n`);
            peerPid = Number(fs.readFileSync(`${frr.dir}/bfdd.pid`, "utf8").trim());
            if (nice !== undefined) for (const tid of fs.readdirSync(`/proc/${peerPid}/task`)) sh(["renice", "-n", String(nice), "-p", tid]);
            peerNotUp = async () => frr.peers().filter((p) => p.status !== "up").length;
        } else {
            const other = await lab.speaker(f);
            for (let i = 0; i < n; i++) {
                await other.call({ op: "add", id: `s${i}`, spec: { peer: ourAddr(i), local: "2001:db8:e::2", transmitIntervalMs: 50, receiveIntervalMs: 50, detectMultiplier: 3 } });
            }
            peerPid = other.pid;
            peerNotUp = async () => (await other.call({ op: "snapshot" })).sessions.filter((s: any) => s.status !== "up").length;
        }
        const bfd = await lab.speaker(a);
        const addStart = Date.now();
        for (let i = 0; i < n; i++) {
            await bfd.call({ op: "add", id: `s${i}`, spec: { peer: "2001:db8:e::2", local: ourAddr(i), transmitIntervalMs: 50, receiveIntervalMs: 50, detectMultiplier: 3 } });
        }
        const addSeconds = (Date.now() - addStart) / 1000;
        // Every session Up, on both sides.
        const deadline = Date.now() + 120_000;
        let up = 0;
        while (Date.now() < deadline) {
            const snap = await bfd.call({ op: "snapshot" });
            up = snap.sessions.filter((s: any) => s.status === "up" && s["remote-transmit-interval"] === 50 && !s["poll-active"]).length;
            if (up === n) break;
            await new Promise((r) => setTimeout(r, 1_000));
        }
        const upSeconds = (Date.now() - addStart) / 1000;
        const ourPid = bfd.pid;
        await bfd.call({ op: "snapshot" }); // resets the worker's loop-delay histogram
        const since = bfd.events.length;
        const t0 = Date.now();
        const c0 = cpuTicks(ourPid);
        const f0 = cpuTicks(peerPid);
        await new Promise((r) => setTimeout(r, MEASURE_S * 1000));
        const wall = (Date.now() - t0) / 1000;
        const ourCpu = ((cpuTicks(ourPid) - c0) / TICKS / wall) * 100;
        const peerCpu = ((cpuTicks(peerPid) - f0) / TICKS / wall) * 100;
        const downs = bfd.events.slice(since).filter((e) => e.event === "state" && e.to === "down").length;
        const end = await bfd.call({ op: "snapshot" });
        const peerDown = await peerNotUp();
        const r = {
            peer: peerKind, sessions: n, allUp: up === n, upAfterSeconds: Math.round(upSeconds), addSeconds: Math.round(addSeconds * 10) / 10,
            falseDownsIn30s: downs, peerSessionsNotUp: peerDown,
            cpuPercentOfOneCore: { nodeBfd: Math.round(ourCpu * 10) / 10, peer: Math.round(peerCpu * 10) / 10 },
            packetsPerSecondEachWay: Math.round(n * 20),
            workerLoopDelayMs: end.loopDelayMs,
        };
        process.stderr.write(`${JSON.stringify(r)}\n`);
        return r;
    } finally {
        await lab.close();
    }
}

async function main() {
    requireTools("ip", "vtysh", "/usr/lib/frr/bfdd");
    const peerKinds = (process.env.BFD_SCALE_PEERS ?? "frr,node-bfd").split(",") as ("frr" | "node-bfd")[];
    const rows: Awaited<ReturnType<typeof measure>>[] = [];
    for (const peer of peerKinds) for (const n of sizes) rows.push(await measure(n, peer));
    const held = rows.filter((r) => r.allUp && r.falseDownsIn30s === 0 && r.peerSessionsNotUp === 0).map((r) => r.sessions);
    const result = {
        timers: "50 ms x 3",
        bfdTimerNiceness: nice ?? 0,
        measureSeconds: MEASURE_S,
        cores: os.cpus().length,
        rows,
        mostSessionsHeld: held.length ? Math.max(...held) : 0,
        mostSessionsHeldByPeer: Object.fromEntries(peerKinds.map((p) => [p, Math.max(0, ...rows.filter((r) => r.peer === p && r.allUp && r.falseDownsIn30s === 0 && r.peerSessionsNotUp === 0).map((r) => r.sessions))])),
        target: "at least 1,000 sessions with no false Down",
        meetsTarget: held.some((n) => n >= 1000),
    };
    const file = writeResult(nice === undefined ? "bfd-scale" : `bfd-scale-nice${nice}`, result);
    console.log(JSON.stringify(result, null, 2));
    console.log(`written to ${file}`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
