// The lab cluster's daemons: each started detached (its own session) inside the cluster's
// network and mount namespaces (nsenter into the holder's) and its cgroup, with its log and
// pid file in plan.dir. A PID is ours only while its command line is that daemon's binary
// with plan.dir in its arguments, so a stale pid file never ends someone else's process.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { LabKubeDaemon, LabKubePlan } from "../../model/kube/plan";
import { LabCommandError } from "../ops";
import { daemonArgs } from "./config";
import { cmdline, JOIN_CGROUPS, logFile, logTail, readPidFile, runFile, sleep } from "./host";

/** What the daemons find on PATH: runc and the shim (containerd), nft (kube-proxy), mount. */
const DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** containerd, runc and the shim are Debian's (scripts/setup installs them); the rest are built. */
export const CONTAINERD = "/usr/bin/containerd";

export function daemonBinary(bin: string, daemon: LabKubeDaemon): string {
    return daemon === "containerd" ? CONTAINERD : path.join(bin, daemon);
}

/** The cgroup the daemons (and containerd's shims, its children) run in, under plan.cgroupRoot. */
export function daemonsCgroup(plan: LabKubePlan): string {
    return `${plan.cgroupRoot}/daemons`;
}

export function daemonPid(plan: LabKubePlan, daemon: LabKubeDaemon): number | undefined {
    const pid = readPidFile(runFile(plan, `${daemon}.pid`));
    if (pid === undefined) return undefined;
    const argv = cmdline(pid);
    if (!argv?.length || path.basename(argv[0]) !== daemon) return undefined;
    return argv.slice(1).some((a) => a.includes(plan.dir)) ? pid : undefined;
}

/** Start one daemon (unless it runs); throws with its log's tail if it exits at once. */
export async function startDaemon(plan: LabKubePlan, bin: string, daemon: LabKubeDaemon, holder: number, cgroupProcs: string[]): Promise<number> {
    const running = daemonPid(plan, daemon);
    if (running) return running;
    const exe = daemonBinary(bin, daemon);
    const log = logFile(plan, daemon);
    const out = fs.openSync(log, "a");
    fs.writeSync(out, `---- ${new Date().toISOString()} starting ${daemon}\n`);
    // nsenter execs the daemon, and the cgroup prologue execs nsenter: the child's PID is the daemon's.
    const cmd = ["nsenter", `--target=${holder}`, "--mount", "--net", "--", exe, ...daemonArgs(plan, daemon)];
    const child = spawn("sh", ["-c", JOIN_CGROUPS, "sh", ...cmd], {
        detached: true,
        stdio: ["ignore", out, out],
        cwd: plan.dir,
        env: { PATH: DAEMON_PATH, HOME: "/root", NUBLAR_KUBE_CGROUPS: cgroupProcs.join(" ") },
    });
    fs.closeSync(out);
    child.unref();
    const pid = child.pid!;
    fs.writeFileSync(runFile(plan, `${daemon}.pid`), `${pid}\n`);
    // A bad flag or config fails within moments; later deaths are caught by the caller's waits.
    await sleep(150);
    if (daemonPid(plan, daemon) !== pid) throw daemonError(plan, daemon, "it exited at once");
    return pid;
}

export function daemonError(plan: LabKubePlan, daemon: LabKubeDaemon | "holder", detail: string): LabCommandError {
    const log = logFile(plan, daemon);
    return new LabCommandError(`running the lab cluster's ${daemon}`, [daemon], `${detail}. Log ${log}:\n${logTail(log)}`);
}

/** SIGTERM one daemon and wait up to graceMs for it to go; SIGKILL after. */
export async function stopDaemon(plan: LabKubePlan, daemon: LabKubeDaemon, graceMs = 10_000): Promise<void> {
    const pid = daemonPid(plan, daemon);
    if (pid !== undefined) {
        process.kill(pid, "SIGTERM");
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline && daemonPid(plan, daemon) === pid) await sleep(50);
        if (daemonPid(plan, daemon) === pid) process.kill(pid, "SIGKILL");
        while (daemonPid(plan, daemon) === pid) await sleep(20);
    }
    fs.rmSync(runFile(plan, `${daemon}.pid`), { force: true });
}
