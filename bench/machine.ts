// Describe the machine a benchmark ran on, and write its results beside the others.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";

export function machine() {
    const load = os.loadavg();
    return {
        host: os.hostname(),
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(),
        node: process.version,
        frr: firstLine(["/usr/lib/frr/bfdd", "--version"]),
        loadAverage1m: load[0],
        date: new Date().toISOString(),
    };
}

function firstLine(cmd: string[]): string | undefined {
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
    return r.status === 0 ? r.stdout.split("\n")[0] : undefined;
}

export function percentile(sorted: number[], p: number): number {
    if (sorted.length === 0) return NaN;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i];
}

export function summary(values: number[]) {
    const s = [...values].sort((a, b) => a - b);
    const round = (x: number) => Math.round(x * 100) / 100;
    return { n: s.length, p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), max: round(s[s.length - 1]), min: round(s[0]) };
}

export function writeResult(name: string, result: unknown): string {
    const dir = path.join(__dirname, "results");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, `${JSON.stringify({ benchmark: name, machine: machine(), result }, null, 2)}\n`);
    return file;
}
