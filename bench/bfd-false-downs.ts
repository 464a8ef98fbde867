// False Downs at 10 ms x 3 with both cores loaded: a node-bfd <-> FRR session runs for
// 10 minutes while two busy processes load both cores and node-bfd's own main thread is
// kept 90% busy. Any Down on either side is false (the link never fails).
//   node --import tsx bench/bfd-false-downs.ts [seconds]        (default 600)
//   BFD_NICE=-10 runs the BFD timers at that niceness, above the load, as a production BFD
//   speaker would be deployed: FRR's bfdd (every thread) and node-bfd's worker thread. The
//   busy node-bfd main thread (the "application") stays at 0. The result records it.
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { Lab, requireTools, sh } from "../packages/node-bfd/test/network/harness";
import { writeResult } from "./machine";

const nice = process.env.BFD_NICE ? Number(process.env.BFD_NICE) : undefined;

/** renice every thread of a process (setpriority on a PID only reaches one thread on Linux). */
function reniceAll(pid: number, value: number): void {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) sh(["renice", "-n", String(value), "-p", tid]);
}

const seconds = Number(process.argv[2] ?? 600);

async function main() {
    requireTools("ip", "vtysh", "/usr/lib/frr/bfdd");
    const lab = new Lab();
    const hogs: ChildProcess[] = [];
    try {
        const n = lab.ns("n");
        const f = lab.ns("f");
        lab.link({ a: n, b: f, addresses: [["2001:db8:d::1/64", "2001:db8:d::2/64"]] });
        const frr = lab.frr(f, "bfd\n peer 2001:db8:d::1 local-address 2001:db8:d::2\n  receive-interval 10\n  transmit-interval 10\n  detect-multiplier 3\n !\n!\n");
        const logFile = path.join(frr.dir, "precise.log");
        frr.vtysh("configure terminal", "log timestamp precision 6", `log file ${logFile} debugging`);
        frr.vtysh("debug bfd peer");
        if (nice !== undefined) process.env.NODE_BFD_WORKER_NICE = String(nice);
        const bfd = await lab.speaker(n);
        await bfd.call({ op: "add", id: "x", spec: { peer: "2001:db8:d::2", local: "2001:db8:d::1", transmitIntervalMs: 10, receiveIntervalMs: 10, detectMultiplier: 3 } });
        await bfd.waitState("x", "up", 15_000);
        await frr.waitPeer("2001:db8:d::1", (p) => p.status === "up" && p["remote-transmit-interval"] === 10, 10_000);

        if (nice !== undefined) reniceAll(Number(fs.readFileSync(path.join(frr.dir, "bfdd.pid"), "utf8").trim()), nice);
        // Load: one busy process per core, and node-bfd's main thread 90% busy.
        for (let i = 0; i < 2; i++) hogs.push(spawn(process.execPath, ["-e", `const end = Date.now() + ${seconds * 1000 + 5000}; while (Date.now() < end) {}`], { stdio: "ignore" }));
        await bfd.call({ op: "burn", seconds, duty: 0.9 });
        const since = bfd.events.length;
        const start = Date.now();
        const before = await bfd.session("x");
        while (Date.now() - start < seconds * 1000) {
            await new Promise((r) => setTimeout(r, 5_000));
            process.stderr.write(`\r${Math.round((Date.now() - start) / 1000)}/${seconds} s  `);
        }
        process.stderr.write("\n");
        const after = await bfd.session("x");
        const ourDowns = bfd.events.slice(since).filter((e) => e.event === "state" && e.to === "down");
        const frrDowns = fs.readFileSync(logFile, "utf8").split("\n").filter((l) => l.includes("up -> down"));
        const result = {
            seconds,
            timers: "10 ms x 3",
            load: "2 busy processes (one per core) + node-bfd's main thread 90% busy",
            bfdDaemonNiceness: nice ?? 0,
            nodeBfdWorker: (await bfd.call({ op: "snapshot" })).priority,
            nodeBfd: {
                falseDowns: ourDowns.length,
                byDiagnostic: ourDowns.reduce((m: Record<string, number>, e) => ((m[e.diagnostic] = (m[e.diagnostic] ?? 0) + 1), m), {}),
                packetsIn: after.counters["control-packet-input"] - before.counters["control-packet-input"],
                packetsOut: after.counters["control-packet-output"] - before.counters["control-packet-output"],
                drops: after.counters.drops,
            },
            frr: {
                falseDowns: frrDowns.length,
                byReason: frrDowns.reduce((m: Record<string, number>, l) => { const r = /reason:(\S+)/.exec(l)?.[1] ?? "?"; m[r] = (m[r] ?? 0) + 1; return m; }, {}),
                peer: frr.peer("2001:db8:d::1")?.status,
            },
            target: "zero false Downs",
            meetsTarget: ourDowns.length === 0,
        };
        const file = writeResult(nice === undefined ? "bfd-false-downs" : `bfd-false-downs-nice${nice}`, result);
        console.log(JSON.stringify(result, null, 2));
        console.log(`written to ${file}`);
    } finally {
        for (const h of hogs) if (h.exitCode === null && h.pid) process.kill(h.pid, "SIGKILL");
        await lab.close();
    }
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
