// Detection time from a link cut to Down, node-bfd and FRR bfdd measured in the same
// run on the same link: one session between them, the link is cut, and each side's
// Down is timestamped (node-bfd's state event; FRR's log with microsecond precision).
//   node --import tsx bench/bfd-detection.ts [trials]       (default 50 per timer setting)
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { Lab, requireTools } from "../packages/node-bfd/test/network/harness";
import { summary, writeResult } from "./machine";

const trials = Number(process.argv[2] ?? 50);
const settings = [10, 50];
const preciseNow = () => performance.timeOrigin + performance.now();

function frrDownTimes(logFile: string): number[] {
    if (!fs.existsSync(logFile)) return [];
    return fs.readFileSync(logFile, "utf8").split("\n")
        .filter((l) => l.includes("state-change") && l.includes("up -> down"))
        .map((l) => {
            const m = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})/.exec(l);
            if (!m) return NaN;
            // FRR logs local time; this machine runs in UTC (checked below).
            return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) + Number(m[7]) / 1000;
        });
}

async function main() {
    requireTools("ip", "vtysh", "/usr/lib/frr/bfdd");
    if (new Date().getTimezoneOffset() !== 0) throw new Error("run in UTC (TZ=UTC): FRR's log times are local");
    const results: Record<string, unknown> = {};
    for (const ms of settings) {
        const lab = new Lab();
        try {
            const n = lab.ns("n");
            const f = lab.ns("f");
            const { ifA } = lab.link({ a: n, b: f, addresses: [["2001:db8:d::1/64", "2001:db8:d::2/64"]] });
            const frr = lab.frr(f, `bfd\n peer 2001:db8:d::1 local-address 2001:db8:d::2\n  receive-interval ${ms}\n  transmit-interval ${ms}\n  detect-multiplier 3\n !\n!\n`);
            const logFile = path.join(frr.dir, "precise.log");
            frr.vtysh("configure terminal", "log timestamp precision 6", `log file ${logFile} debugging`);
            frr.vtysh("debug bfd peer");
            const bfd = await lab.speaker(n);
            await bfd.call({ op: "add", id: "x", spec: { peer: "2001:db8:d::2", local: "2001:db8:d::1", transmitIntervalMs: ms, receiveIntervalMs: ms, detectMultiplier: 3 } });
            await bfd.waitState("x", "up", 15_000);
            await frr.waitPeer("2001:db8:d::1", (p) => p.status === "up" && p["remote-transmit-interval"] === ms, 10_000);

            // One long-lived `ip -batch` process, so that a cut is one line on a pipe, not a process start.
            const ip = spawn("ip", ["-n", n, "-batch", "-"], { stdio: ["pipe", "inherit", "inherit"] });
            const ours: number[] = [];
            const theirs: number[] = [];
            for (let t = 0; t < trials; t++) {
                // A random phase relative to the packet schedule.
                await new Promise((r) => setTimeout(r, 200 + Math.random() * ms));
                const frrBefore = frrDownTimes(logFile).length;
                const since = bfd.events.length;
                const cutAt = preciseNow();
                ip.stdin.write(`link set dev ${ifA} down\n`);
                const down = await bfd.waitState("x", "down", 10_000, since);
                const deadline = Date.now() + 5_000;
                while (frrDownTimes(logFile).length === frrBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
                const frrDown = frrDownTimes(logFile)[frrBefore];
                ours.push(down.at - cutAt);
                if (frrDown !== undefined) theirs.push(frrDown - cutAt);
                ip.stdin.write(`link set dev ${ifA} up\n`);
                await bfd.waitState("x", "up", 15_000, since);
                await frr.waitPeer("2001:db8:d::1", (p) => p.status === "up", 10_000);
                process.stderr.write(`\r${ms} ms x 3: trial ${t + 1}/${trials}  node-bfd ${ours[ours.length - 1].toFixed(1)} ms  frr ${theirs[theirs.length - 1]?.toFixed(1)} ms   `);
            }
            ip.stdin.end();
            process.stderr.write("\n");
            const o = summary(ours);
            const f2 = summary(theirs);
            results[`${ms}ms x 3`] = {
                nodeBfd: o,
                frr: f2,
                p99Ratio: Math.round((o.p99 / f2.p99) * 100) / 100,
                target: "node-bfd p99 <= 1.2 x FRR p99",
                meetsTarget: o.p99 <= 1.2 * f2.p99,
                rawMs: { nodeBfd: ours.map((x) => Math.round(x * 100) / 100), frr: theirs.map((x) => Math.round(x * 100) / 100) },
            };
        } finally {
            await lab.close();
        }
    }
    const file = writeResult("bfd-detection", { trialsPerSetting: trials, method: "cut = `ip link set down` on node-bfd's side of the veth; both sides lose the peer's packets at once", ...results });
    const brief = Object.fromEntries(Object.entries(results).map(([k, v]: [string, any]) => [k, { nodeBfd: v.nodeBfd, frr: v.frr, p99Ratio: v.p99Ratio, meetsTarget: v.meetsTarget }]));
    console.log(JSON.stringify(brief, null, 2));
    console.log(`written to ${file}`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
