// How many sessions one node-bfd process holds at 50 ms x 3 with no false Down, and its
// CPU share at that load. The peer is FRR's bfdd with one peer per session, in another
// namespace; node-bfd uses one local address per session (FRR keys single-hop sessions by
// peer address). FRR's CPU share is measured in the same run.
//   node --import tsx bench/bfd-scale.ts [sizes...]           (default 100 250 500 1000)
import * as fs from "node:fs";
import * as os from "node:os";
import { spawnSync } from "node:child_process";
import { Lab, requireTools, sh } from "../packages/node-bfd/test/network/harness";
import { writeResult } from "./machine";

const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
if (sizes.length === 0) sizes.push(100, 250, 500, 1000);
const MEASURE_S = 30;
const TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

function cpuTicks(pid: number): number {
    // /proc/<pid>/stat fields 14 and 15: utime and stime, in clock ticks (all threads).
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return Number(fields[11]) + Number(fields[12]);
}

async function measure(n: number) {
    const lab = new Lab();
    try {
        const a = lab.ns("n");
        const f = lab.ns("f");
        const { ifA } = lab.link({ a, b: f, addresses: [["2001:db8:e::1/64", "2001:db8:e::2/64"]] });
        const ourAddr = (i: number) => `2001:db8:e::1:${(i + 1).toString(16)}`;
        sh(["ip", "-n", a, "-batch", "-"], { input: Array.from({ length: n }, (_, i) => `addr add ${ourAddr(i)}/64 dev ${ifA} nodad`).join("\n") + "\n" });
        const peers = Array.from({ length: n }, (_, i) =>
            ` peer ${ourAddr(i)} local-address 2001:db8:e::2\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !`).join("\n");
        const frr = lab.frr(f, `bfd\n${peers}\n!\n`);
        const frrPid = Number(fs.readFileSync(`${frr.dir}/bfdd.pid`, "utf8").trim());
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
        const f0 = cpuTicks(frrPid);
        await new Promise((r) => setTimeout(r, MEASURE_S * 1000));
        const wall = (Date.now() - t0) / 1000;
        const ourCpu = ((cpuTicks(ourPid) - c0) / TICKS / wall) * 100;
        const frrCpu = ((cpuTicks(frrPid) - f0) / TICKS / wall) * 100;
        const downs = bfd.events.slice(since).filter((e) => e.event === "state" && e.to === "down").length;
        const end = await bfd.call({ op: "snapshot" });
        const frrDown = frr.peers().filter((p) => p.status !== "up").length;
        const r = {
            sessions: n, allUp: up === n, upAfterSeconds: Math.round(upSeconds), addSeconds: Math.round(addSeconds * 10) / 10,
            falseDownsIn30s: downs, frrPeersNotUp: frrDown,
            cpuPercentOfOneCore: { nodeBfd: Math.round(ourCpu * 10) / 10, frr: Math.round(frrCpu * 10) / 10 },
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
    const rows = [];
    for (const n of sizes) rows.push(await measure(n));
    const held = rows.filter((r) => r.allUp && r.falseDownsIn30s === 0 && r.frrPeersNotUp === 0).map((r) => r.sessions);
    const result = {
        timers: "50 ms x 3",
        measureSeconds: MEASURE_S,
        cores: os.cpus().length,
        rows,
        mostSessionsHeld: held.length ? Math.max(...held) : 0,
        target: "at least 1,000 sessions with no false Down",
        meetsTarget: held.some((n) => n >= 1000),
    };
    const file = writeResult("bfd-scale", result);
    console.log(JSON.stringify(result, null, 2));
    console.log(`written to ${file}`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
