// What the lab cluster touches on this machine outside its namespaces, kept to the minimum and
// undone at down: the holder of its private mount namespace, the mount points its fixed paths
// need, its cgroup tree (one per cluster: plan.cgroupRoot), and the global sysctls the kubelet
// sets. Everything else (mounts, the cni0 bridge, nftables rules, forwarding) lives in the
// cluster's network and mount namespaces and goes with them.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { KUBELET_GLOBAL_SYSCTLS, type LabKubePlan } from "../../model/kube/plan";
import { LabCommandError } from "../ops";

/** The holder's command line starts with this and the cluster's folder. */
export const HOLDER_MARKER = "nublar-kube-holder";

export function runFile(plan: LabKubePlan, name: string): string {
    return path.join(plan.paths.run, name);
}

export function logFile(plan: LabKubePlan, name: string): string {
    return path.join(plan.paths.logs, `${name}.log`);
}

export function logTail(file: string, lines = 25): string {
    try {
        return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

export function cmdline(pid: number): string[] | undefined {
    try {
        if (fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) return undefined;
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    } catch {
        return undefined;
    }
}

export function readPidFile(file: string): number | undefined {
    try {
        const pid = Number(fs.readFileSync(file, "utf8").trim());
        return Number.isInteger(pid) && pid > 1 ? pid : undefined;
    } catch {
        return undefined;
    }
}

function holderTitle(dir: string): string {
    return `${HOLDER_MARKER} ${dir}`;
}

/** The holder's PID if it runs (its pid file, checked against its command line). */
export function holderPid(plan: LabKubePlan): number | undefined {
    const pid = readPidFile(runFile(plan, "holder.pid"));
    if (pid === undefined) return undefined;
    return cmdline(pid)?.[0] === holderTitle(plan.dir) ? pid : undefined;
}

/** The folders of other clusters whose holders run on this machine (for the shared bits). */
export function otherClusters(plan: LabKubePlan): string[] {
    const dirs: string[] = [];
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        const argv0 = cmdline(Number(entry))?.[0];
        if (argv0?.startsWith(`${HOLDER_MARKER} /`) && argv0 !== holderTitle(plan.dir)) dirs.push(argv0.slice(HOLDER_MARKER.length + 1));
    }
    return dirs;
}

// ---- the mount namespace ----

/**
 * Mount points on the host's file system for plan.mounts' targets that do not exist yet, made
 * empty and recorded, so down removes exactly these (and only when no other cluster runs:
 * removing a directory detaches what other mount namespaces mounted on it).
 */
function ensureMountPoints(plan: LabKubePlan): void {
    const record = runFile(plan, "host-dirs.json");
    const made: string[] = fs.existsSync(record) ? JSON.parse(fs.readFileSync(record, "utf8")) : [];
    for (const m of plan.mounts) {
        fs.mkdirSync(m.source, { recursive: true, mode: 0o700 });
        const missing: string[] = [];
        for (let d = m.target; !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
        for (const d of missing) {
            fs.mkdirSync(d, { mode: 0o755 });
            made.push(d);
        }
        fs.writeFileSync(record, JSON.stringify(made));
    }
}

export function removeMountPoints(plan: LabKubePlan): void {
    const record = runFile(plan, "host-dirs.json");
    if (!fs.existsSync(record)) return;
    if (otherClusters(plan).length === 0) {
        const made: string[] = JSON.parse(fs.readFileSync(record, "utf8"));
        for (const d of made.sort((a, b) => b.length - a.length)) {
            try {
                fs.rmdirSync(d); // only if empty: anything else there is not ours
            } catch {
                // not empty, or already gone
            }
        }
    }
    fs.rmSync(record, { force: true });
}

/**
 * The holder keeps the cluster's mount namespace: made with unshare (a slave of the host's,
 * so nothing propagates back to the host), given the network namespace's own /sys (so
 * /sys/class/net shows the cluster's links, as `ip netns exec` does) with the host's cgroup
 * mounts moved into it, the bind mounts of plan.mounts, and then made rshared inside, as the
 * kubelet wants for pod volumes. It then sleeps; every daemon joins its namespaces with nsenter.
 */
export async function startHolder(plan: LabKubePlan, cgroupProcs: string[]): Promise<number> {
    const running = holderPid(plan);
    if (running) return running;
    ensureMountPoints(plan);
    const keep = runFile(plan, "cgroup-keep");
    fs.mkdirSync(keep, { recursive: true });
    const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    const script = [
        "set -euo pipefail",
        // Every mount here with -n: libmount would record them in the host's /run/mount/utab.
        // The copy of the host's mounts includes ip netns's pins of other namespaces: drop
        // them, or this namespace would keep those alive (and their links) after `ip netns del`.
        "{ grep ' - nsfs ' /proc/self/mountinfo || true; } | cut -d' ' -f5 | sort -r | xargs -r -n1 umount -n -l",
        `mount -n --rbind /sys/fs/cgroup ${q(keep)}`,
        "mount -n -t sysfs sysfs /sys",
        `mount -n --move ${q(keep)} /sys/fs/cgroup`,
        ...plan.mounts.map((m) => `mount -n --bind ${q(m.source)} ${q(m.target)}`),
        "mount -n --make-rshared /",
        `exec -a ${q(holderTitle(plan.dir))} sleep infinity`,
    ].join("\n");
    fs.writeFileSync(path.join(plan.paths.config, "holder.sh"), `${script}\n`);
    const log = logFile(plan, "holder");
    const out = fs.openSync(log, "a");
    // A slave of the host's mounts: the host's later unmounts reach it (nothing stays pinned
    // here), while nothing mounted here reaches the host.
    const cmd = ["nsenter", `--net=/run/netns/${plan.netns}`, "--", "unshare", "--mount", "--propagation", "slave", "--",
        "bash", path.join(plan.paths.config, "holder.sh")];
    const child = spawn("sh", ["-c", JOIN_CGROUPS, "sh", ...cmd], {
        detached: true, stdio: ["ignore", out, out], cwd: plan.dir, env: { ...process.env, NUBLAR_KUBE_CGROUPS: cgroupProcs.join(" ") },
    });
    fs.closeSync(out);
    child.unref();
    const pid = child.pid!;
    fs.writeFileSync(runFile(plan, "holder.pid"), `${pid}\n`);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
        if (holderPid(plan) === pid) {
            fs.rmdirSync(keep);
            return pid;
        }
        if (!cmdline(pid)) break;
        await sleep(20);
    }
    throw new LabCommandError("making the lab cluster's mount namespace", cmd, `the holder did not come up. Log ${log}:\n${logTail(log)}`);
}

/**
 * A shell prologue that puts itself into the cluster's cgroups (the list in
 * $NUBLAR_KUBE_CGROUPS, cgroup.procs files) and then execs its arguments: everything the
 * cluster starts, and what that starts (containerd's shims), is in the cluster's tree from
 * the first instruction, so down can find and end it all.
 */
export const JOIN_CGROUPS = 'for f in $NUBLAR_KUBE_CGROUPS; do echo $$ > "$f"; done; exec "$@"';

export function namespacesOf(pid: number): { mnt: number; net: number } | undefined {
    try {
        return { mnt: fs.statSync(`/proc/${pid}/ns/mnt`).ino, net: fs.statSync(`/proc/${pid}/ns/net`).ino };
    } catch {
        return undefined;
    }
}

/** Whether something listens on TCP `port` in the network namespace of `pid` (its /proc view). */
export function listening(pid: number, port: number): boolean {
    const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
    for (const table of ["tcp6", "tcp"]) {
        try {
            // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
            for (const line of fs.readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1)) {
                const cols = line.trim().split(/\s+/);
                if (cols[1]?.endsWith(hex.trim()) && cols[3] === "0A") return true;
            }
        } catch {
            // gone
        }
    }
    return false;
}

/** Whether the cluster's network namespace exists (the caller makes and deletes it). */
export function netnsExists(plan: LabKubePlan): boolean {
    return fs.existsSync(`/run/netns/${plan.netns}`);
}

export function netnsInode(plan: LabKubePlan): number | undefined {
    try {
        return fs.statSync(`/run/netns/${plan.netns}`).ino;
    } catch {
        return undefined;
    }
}

// ---- cgroups ----

/** The mounted cgroup hierarchies (v1 controllers, the named systemd one, and the v2 one). */
export function cgroupMounts(): string[] {
    const mounts: string[] = [];
    for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
        const [pre, post] = line.split(" - ");
        if (!post) continue;
        const fstype = post.split(" ")[0];
        if (fstype === "cgroup" || fstype === "cgroup2") mounts.push(pre.split(" ")[4]);
    }
    return [...new Set(mounts)];
}

/** Create `rel` (e.g. "/nublar-kube-x/daemons") in every hierarchy; its cgroup.procs files. */
export function ensureCgroup(rel: string): string[] {
    const procs: string[] = [];
    for (const mount of cgroupMounts()) {
        let dir = mount;
        for (const part of rel.split("/").filter(Boolean)) {
            const parent = dir;
            dir = path.join(dir, part);
            if (fs.existsSync(dir)) continue;
            fs.mkdirSync(dir);
            // A new v1 cpuset has no CPUs or memory nodes: no task could join it.
            for (const f of ["cpuset.cpus", "cpuset.mems"]) {
                if (fs.existsSync(path.join(parent, f))) fs.writeFileSync(path.join(dir, f), fs.readFileSync(path.join(parent, f), "utf8").trim() || "\n");
            }
        }
        procs.push(path.join(dir, "cgroup.procs"));
    }
    return procs;
}

/**
 * Sets the CPU weight of `rel` wherever the cpu controller is: v1's cpu.shares, or v2's
 * cpu.weight (the same ratio of its default 100 to v1's 1024). Returns the files written.
 */
export function weighCgroup(rel: string, shares: number): string[] {
    const written: string[] = [];
    for (const mount of cgroupMounts()) {
        const dir = path.join(mount, rel);
        for (const [file, value] of [["cpu.shares", shares], ["cpu.weight", Math.max(1, Math.round((shares * 100) / 1024))]] as const) {
            const f = path.join(dir, file);
            if (!fs.existsSync(f)) continue;
            fs.writeFileSync(f, `${value}\n`);
            written.push(f);
        }
    }
    return written;
}

/** Every cgroup below and including `rel` in every hierarchy, deepest first. */
function cgroupTree(rel: string): string[] {
    const out: string[] = [];
    const walk = (dir: string) => {
        let entries: fs.Dirent[];
        try {
            entries = fs.readdirSync(dir, { withFileTypes: true });
        } catch {
            return;
        }
        for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
        out.push(dir);
    };
    for (const mount of cgroupMounts()) walk(path.join(mount, rel));
    return out;
}

/** The PIDs in the tree `rel` (any hierarchy). */
export function cgroupPids(rel: string): number[] {
    const pids = new Set<number>();
    for (const dir of cgroupTree(rel)) {
        try {
            for (const p of fs.readFileSync(path.join(dir, "cgroup.procs"), "utf8").split("\n")) if (p) pids.add(Number(p));
        } catch {
            // gone meanwhile
        }
    }
    return [...pids];
}

function signal(pids: number[], sig: NodeJS.Signals): void {
    for (const pid of pids) {
        try {
            process.kill(pid, sig);
        } catch {
            // already gone
        }
    }
}

/**
 * End everything in the tree `rel`: SIGTERM, up to graceMs, then SIGKILL until it is empty.
 * Only the cluster's processes are there (plan.cgroupRoot is its own).
 */
export async function killCgroup(rel: string, graceMs: number): Promise<void> {
    let pids = cgroupPids(rel);
    if (pids.length === 0) return;
    signal(pids, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (pids = cgroupPids(rel)).length) await sleep(50);
    const hard = Date.now() + 10_000;
    while ((pids = cgroupPids(rel)).length && Date.now() < hard) {
        signal(pids, "SIGKILL");
        await sleep(50);
    }
    if (pids.length) throw new LabCommandError(`ending the lab cluster's processes in cgroup ${rel}`, ["kill", "-KILL", ...pids.map(String)], "they are still there after 10 s");
}

/** Remove the tree `rel` in every hierarchy (it must be empty of tasks). */
export function removeCgroup(rel: string): void {
    const left: string[] = [];
    for (const dir of cgroupTree(rel)) {
        try {
            fs.rmdirSync(dir);
        } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "ENOENT") left.push(`${dir}: ${(err as Error).message}`);
        }
    }
    if (left.length) throw new LabCommandError("removing the lab cluster's cgroups", ["rmdir", rel], left.join("\n"));
}

// ---- the kubelet's global sysctls ----

function sysctlPath(name: string): string {
    return path.join("/proc/sys", ...name.split("."));
}

/**
 * Record the global sysctls before the kubelet changes them. With another cluster running the
 * kernel already has the kubelet's values: take that cluster's record, so whichever stops last
 * restores the machine's own.
 */
export function recordSysctls(plan: LabKubePlan): void {
    const record = runFile(plan, "sysctls.json");
    if (fs.existsSync(record)) return;
    for (const other of otherClusters(plan)) {
        const theirs = path.join(other, "run", "sysctls.json");
        if (fs.existsSync(theirs)) {
            fs.copyFileSync(theirs, record);
            return;
        }
    }
    const values: Record<string, string> = {};
    for (const name of KUBELET_GLOBAL_SYSCTLS) values[name] = fs.readFileSync(sysctlPath(name), "utf8").trim();
    fs.writeFileSync(record, JSON.stringify(values, null, 2));
}

/** Put the recorded values back, unless another cluster still runs (its down will). */
export function restoreSysctls(plan: LabKubePlan): void {
    const record = runFile(plan, "sysctls.json");
    if (!fs.existsSync(record)) return;
    if (otherClusters(plan).length === 0) {
        const values: Record<string, string> = JSON.parse(fs.readFileSync(record, "utf8"));
        for (const [name, value] of Object.entries(values)) {
            if (fs.readFileSync(sysctlPath(name), "utf8").trim() !== value) fs.writeFileSync(sysctlPath(name), value);
        }
    }
    fs.rmSync(record);
}

/** Run a short command; its output, or an error naming what it was for. */
export function run(what: string, cmd: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", input: opts.input, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
    if (r.error) throw new LabCommandError(what, cmd, r.error.message);
    if (r.status !== 0) throw new LabCommandError(what, cmd, `${r.stderr}${r.stdout}`);
    return r.stdout;
}
