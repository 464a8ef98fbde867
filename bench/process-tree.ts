// What the Pulumi benchmarks (profile-engine.ts, site-plan.ts) read of a run's processes: the
// process tree under a root pid from /proc, each process's role from its command line, and a
// median. Each benchmark keeps its own monitor over these (what it records per process differs).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

export type Role = "engine" | "language host" | "program" | "provider" | "provider shim" | "other";

/** What a process of a Pulumi run is, from its command line. */
export function roleOf(cmd: string[]): Role {
    const bin = path.basename(cmd[0] ?? "");
    const all = cmd.join(" ");
    if (bin === "pulumi") return "engine";
    if (bin === "pulumi-language-nodejs" || all.includes("require.resolve('@pulumi/pulumi/cmd/run')")) return "language host";
    if (/@pulumi\/pulumi\/cmd\/run(\/index\.js)?( |$)/.test(all)) return "program";
    // nublar's provider (compiled, or its sources under tsx), site-plan's no-deploy build, a
    // dynamic provider, profile-engine's Go provider.
    if (/provider\/main\.(js|ts)( |$)|no-deploy\.ts( |$)|@pulumi\/pulumi\/cmd\/dynamic-provider\/index\.js/.test(all) || bin.startsWith("pulumi-resource-profnative")) return "provider";
    if (all.includes("pulumi-resource-") || all.includes("cmd/dynamic-provider'")) return "provider shim";
    return "other";
}

export interface Stat { ppid: number; cpu: number; start: string }

export function readStat(pid: number): Stat | undefined {
    try {
        const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
        return { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]), start: f[19] };
    } catch {
        return undefined;
    }
}

/**
 * Every process now, and the pids of the tree under `root` plus those already `known` (pid ->
 * start time; kept even when orphaned, unless the pid now names another process).
 */
export function processTree(root: number, known: ReadonlyMap<number, { start: string }>): { stats: Map<number, Stat>; tree: Set<number> } {
    const stats = new Map<number, Stat>();
    for (const d of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(d)) continue;
        const s = readStat(Number(d));
        if (s) stats.set(Number(d), s);
    }
    const children = new Map<number, number[]>();
    for (const [pid, s] of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid]);
    const queue = [root, ...[...known.keys()].filter((p) => stats.get(p)?.start === known.get(p)!.start)];
    const tree = new Set<number>();
    while (queue.length) {
        const p = queue.pop()!;
        if (tree.has(p) || !stats.has(p)) continue;
        tree.add(p);
        queue.push(...(children.get(p) ?? []));
    }
    return { stats, tree };
}

export function median(xs: number[]): number {
    const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    if (!s.length) return NaN;
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
