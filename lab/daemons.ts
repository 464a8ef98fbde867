// Daemons of the lab park, started inside node namespaces: the nublar agent, Nginx, FRR's
// bfdd (the provider routers' side of the gateway sessions) and a small HTTP service.
// Each runs detached with a pid file in its own folder; we only ever signal a PID whose
// command line names that folder, so a recycled PID is never ours to kill.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LabCommandError } from "./ops";
import { PROJECT_ROOT } from "../model/project";

const PROJECT_DIR = PROJECT_ROOT;

export interface Daemon {
    /** Folder holding the daemon's pid file, config and log. */
    dir: string;
    /** Text that must appear in the process's command line for it to be ours. */
    marker: string;
}

function readPid(file: string): number | undefined {
    try {
        // The first line: PostgreSQL's postmaster.pid carries more after it.
        const pid = Number(fs.readFileSync(file, "utf8").split("\n")[0].trim());
        return Number.isInteger(pid) && pid > 1 ? pid : undefined;
    } catch {
        return undefined;
    }
}

/** The daemon's PID if it runs (checked against /proc and the marker). */
export function daemonPid(d: Daemon, pidFile = path.join(d.dir, "pid")): number | undefined {
    const pid = readPid(pidFile);
    if (pid === undefined) return undefined;
    try {
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        if (stat.split(") ")[1]?.startsWith("Z")) return undefined;
        return cmdline.includes(d.marker) ? pid : undefined;
    } catch {
        return undefined;
    }
}

/**
 * The namespace this process runs in. The lab's deploy starts a node's daemons from an SSH
 * session on the node (lab/node-system.ts), already inside the node's namespace,
 * where `ip netns` cannot see the host's /run.
 */
export const HERE = ".";

/** The command prefix that runs something in `netns`. */
function inside(netns: string): string[] {
    return netns === HERE ? [] : ["ip", "netns", "exec", netns];
}

/** Whether a process lives in the named namespace (a rebuilt namespace is a different one). */
export function inNetns(pid: number, netns: string): boolean {
    try {
        return fs.statSync(`/proc/${pid}/ns/net`).ino === fs.statSync(netns === HERE ? "/proc/self/ns/net" : `/run/netns/${netns}`).ino;
    } catch {
        return false;
    }
}

/** Our daemon's PID if it runs in `netns`; one left running in a lost namespace is stopped. */
function runningIn(d: Daemon, netns: string, pidFile?: string): number | undefined {
    const pid = daemonPid(d, pidFile);
    if (pid === undefined) return undefined;
    if (inNetns(pid, netns)) return pid;
    stopDaemon(d, pidFile);
    return undefined;
}

function sleepMs(ms: number): void {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function stopDaemon(d: Daemon, pidFile = path.join(d.dir, "pid"), graceMs = 5000): void {
    const pid = daemonPid(d, pidFile);
    if (pid === undefined) return;
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && daemonPid(d, pidFile) === pid) sleepMs(20);
    if (daemonPid(d, pidFile) === pid) process.kill(pid, "SIGKILL");
}

function waitFor<T>(what: string, cmd: string[], probe: () => T | undefined, log: string, exited?: () => boolean, timeoutMs = 15_000): T {
    const deadline = Date.now() + timeoutMs;
    const tail = () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-15).join("\n") : "(no log)");
    while (Date.now() < deadline) {
        const v = probe();
        if (v !== undefined) return v;
        if (exited?.()) throw new LabCommandError(what, cmd, `it exited while starting. Log ${log}:\n${tail()}`);
        sleepMs(50);
    }
    throw new LabCommandError(what, cmd, `not ready after ${timeoutMs / 1000} s. Log ${log}:\n${tail()}`);
}

function gone(pid: number | undefined): boolean {
    if (!pid) return true;
    try {
        return fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
    } catch {
        return true;
    }
}

/** Run a Node program detached inside a namespace; its PID is written to dir/pid. */
function startNode(what: string, netns: string, dir: string, args: string[], ready: () => boolean): number {
    fs.mkdirSync(dir, { recursive: true });
    const log = path.join(dir, "log");
    const out = fs.openSync(log, "a");
    // `ip netns exec` execs the command, so the child's PID is node's.
    // NUBLAR_DAEMON_NODE_ARGS: extra node flags for debugging, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const extra = (process.env.NUBLAR_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean);
    const cmd = [...inside(netns), process.execPath, ...extra, "--import", "tsx", ...args];
    const child = spawn(cmd[0], cmd.slice(1), { cwd: PROJECT_DIR, detached: true, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    child.unref();
    fs.writeFileSync(path.join(dir, "pid"), `${child.pid}\n`);
    return waitFor(what, cmd, () => (ready() ? child.pid : undefined), log, () => gone(child.pid));
}

// ---- the agent ----

export function agentDaemon(dir: string): Daemon {
    return { dir, marker: path.join(dir, "agent.json") };
}

/** Start nublar-agent in `netns` with `config` written to dir/agent.json; ready once its socket exists. */
export function startAgent(netns: string, dir: string, socket: string, config: string): number {
    const d = agentDaemon(dir);
    const running = runningIn(d, netns);
    if (running !== undefined) return running;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(d.marker, config);
    fs.rmSync(socket, { force: true });
    return startNode(`starting nublar-agent in ${netns}`, netns, dir, ["runtime/agent/daemon.ts", "--config", d.marker], () => fs.existsSync(socket));
}

// ---- a small HTTP service (what Nginx balances in the lab) ----

export function helloDaemon(dir: string): Daemon {
    // The marker names the script, not its folder, so that a service started before a move of
    // lab/hello.ts is still recognised (and stopped) as ours.
    return { dir, marker: `hello.ts ${dir}` };
}

export function startHello(netns: string, dir: string, port: number, name: string): number {
    const d = helloDaemon(dir);
    const running = runningIn(d, netns);
    if (running !== undefined) return running;
    const readyFile = path.join(dir, "ready");
    fs.rmSync(readyFile, { force: true });
    return startNode(`starting the HTTP service in ${netns}`, netns, dir, [path.join(PROJECT_DIR, "lab/hello.ts"), dir, String(port), name], () => fs.existsSync(readyFile));
}

// ---- FRR's bfdd: the provider router's end of the gateway sessions ----

export interface BfddPeer {
    peer: string;
    local: string;
    transmitIntervalMs: number;
    receiveIntervalMs: number;
    detectMultiplier: number;
}

/**
 * bfdd drops its privileges to user frr, which must reach its folder; the lab's own folders
 * stay private (a clone under /root is not traversable by frr), and no parent folder's mode is
 * ever changed. So bfdd runs in a folder of its own under /run/nublar-lab (root, 0711: frr may
 * pass through but not list it), owned by frr and mode 0700, named after the lab folder `dir`
 * that the lab's records (and `nublar lab clean`) know. /run is a tmpfs: a reboot clears it.
 */
export const BFDD_RUNTIME_ROOT = "/run/nublar-lab";

export function bfddRuntimeDir(dir: string): string {
    return path.join(BFDD_RUNTIME_ROOT, `bfdd-${createHash("sha256").update(path.resolve(dir)).digest("hex").slice(0, 16)}`);
}

export function bfddDaemon(dir: string): Daemon {
    const rt = bfddRuntimeDir(dir);
    return { dir: rt, marker: path.join(rt, "bfdd.conf") };
}

export function bfddPidFile(dir: string): string {
    return path.join(bfddRuntimeDir(dir), "bfdd.pid");
}

export function renderBfddConf(peers: BfddPeer[]): string {
    return ["! Written by nublar's lab: the provider router's BFD peers (one per node uplink).", "bfd",
        ...peers.flatMap((p) => [
            ` peer ${p.peer} local-address ${p.local}`,
            `  transmit-interval ${p.transmitIntervalMs}`,
            `  receive-interval ${p.receiveIntervalMs}`,
            `  detect-multiplier ${p.detectMultiplier}`,
            "  no shutdown",
            " !"]),
        "!", ""].join("\n");
}

/** FRR's bfdd runs without zebra here, so its peers name addresses, never interfaces. */
export function startBfdd(netns: string, dir: string, conf: string): number {
    const d = bfddDaemon(dir);
    const pidFile = bfddPidFile(dir);
    const running = runningIn(d, netns, pidFile);
    if (running !== undefined) return running;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The lab's copy of the config, beside its other records; bfdd reads its own (see bfddRuntimeDir).
    fs.writeFileSync(path.join(dir, "bfdd.conf"), conf, { mode: 0o600 });
    if (!fs.existsSync(BFDD_RUNTIME_ROOT)) fs.mkdirSync(BFDD_RUNTIME_ROOT, { mode: 0o711 });
    const rt = d.dir;
    fs.rmSync(rt, { recursive: true, force: true });
    fs.mkdirSync(rt, { mode: 0o700 });
    fs.writeFileSync(d.marker, conf, { mode: 0o600 });
    const owned = spawnSync("chown", ["-R", "frr:frr", rt], { encoding: "utf8" });
    if (owned.status !== 0) throw new LabCommandError(`giving bfdd its folder ${rt}`, ["chown", "-R", "frr:frr", rt], owned.stderr);
    const log = path.join(rt, "bfdd.log");
    const cmd = [...inside(netns), "/usr/lib/frr/bfdd", "-d", "-f", d.marker, "--vty_socket", rt, "-i", pidFile,
        "--bfdctl", path.join(rt, "bfdd.sock"), "-z", path.join(rt, "zserv.api"), "-u", "frr", "-g", "frr", "--log", `file:${log}`];
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new LabCommandError(`starting FRR bfdd in ${netns}`, cmd, r.stderr || r.stdout);
    const pid = waitFor(`starting FRR bfdd in ${netns}`, cmd, () => daemonPid(d, pidFile), log);
    // BFD timers run above ordinary work, as node-bfd's worker does in the agent: at 10 ms x 3,
    // a busy core must not make the provider's end miss its packets.
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
        spawnSync("renice", ["-n", String(BFD_NICENESS), "-p", tid]);
        if (process.env.NUBLAR_BFD_REALTIME) spawnSync("chrt", ["-f", "-p", process.env.NUBLAR_BFD_REALTIME, tid]);
    }
    return pid;
}

/** Niceness of the lab's BFD daemons (FRR's bfdd); the agent's BFD thread uses the same. */
export const BFD_NICENESS = -10;

export function stopBfdd(dir: string): void {
    stopDaemon(bfddDaemon(dir), bfddPidFile(dir));
    removeBfddRuntime(dir);
}

/** bfdd's folder under /run/nublar-lab, and that root once no lab daemon uses it. */
export function removeBfddRuntime(dir: string): boolean {
    const rt = bfddRuntimeDir(dir);
    const existed = fs.existsSync(rt);
    fs.rmSync(rt, { recursive: true, force: true });
    try {
        fs.rmdirSync(BFDD_RUNTIME_ROOT);
    } catch {
        // Not empty (another lab's bfdd) or already gone.
    }
    return existed;
}

// ---- Nginx with the Lua balancer ----

export function nginxDaemon(dir: string): Daemon {
    return { dir, marker: path.join(dir, "nginx.conf") };
}

export function startNginx(netns: string, dir: string, conf: string, controlSocket: string): number {
    const d = nginxDaemon(dir);
    const pidFile = path.join(dir, "nginx.pid");
    const running = runningIn(d, netns, pidFile);
    if (running !== undefined) return running;
    // Nginx's temp paths are set under its prefix (nginx-conf.ts) and must exist.
    for (const sub of ["logs", "temp"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    fs.writeFileSync(d.marker, conf);
    fs.rmSync(controlSocket, { force: true });
    const cmd = [...inside(netns), "nginx", "-p", dir, "-c", d.marker];
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new LabCommandError(`starting nginx in ${netns}`, cmd, r.stderr || r.stdout);
    return waitFor(`starting nginx in ${netns}`, cmd, () => (fs.existsSync(controlSocket) ? daemonPid(d, pidFile) : undefined), path.join(dir, "logs", "error.log"));
}

/**
 * Load a new config into a running Nginx (SIGHUP through `nginx -s reload`), after `nginx -t`
 * accepted it. Its shared dicts, and so the member sets the agent pushed, survive the reload:
 * a restart would empty them and fail requests until the agent pushes again.
 */
export function reloadNginx(netns: string, dir: string, conf: string): void {
    const d = nginxDaemon(dir);
    const previous = fs.readFileSync(d.marker, "utf8");
    fs.writeFileSync(d.marker, conf);
    for (const args of [["-t"], ["-s", "reload"]]) {
        const cmd = [...inside(netns), "nginx", "-p", dir, "-c", d.marker, ...args];
        const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
        if (r.status !== 0) {
            fs.writeFileSync(d.marker, previous);
            throw new LabCommandError(`reloading nginx in ${netns}`, cmd, r.stderr || r.stdout);
        }
    }
}

export function stopNginx(dir: string): void {
    stopDaemon(nginxDaemon(dir), path.join(dir, "nginx.pid"));
}

// ---- where a lab node's runtime files live ----

export interface NodeRuntimePaths {
    agentDir: string;
    agentSocket: string;
    events: string;
    nginxDir: string;
    nginxControl: string;
    helloDir: string;
    bfddDir: string;
}

/** One layout for the lab park and the network tests. Unix socket paths must stay under 108 bytes. */
export function nodeRuntimePaths(nodeDir: string): NodeRuntimePaths {
    const agentDir = path.join(nodeDir, "agent");
    const nginxDir = path.join(nodeDir, "nginx");
    return {
        agentDir,
        agentSocket: path.join(agentDir, "agent.sock"),
        events: path.join(agentDir, "events.jsonl"),
        nginxDir,
        nginxControl: path.join(nginxDir, "control.sock"),
        helloDir: path.join(nodeDir, "hello"),
        bfddDir: path.join(nodeDir, "bfdd"),
    };
}

/**
 * Starts `nublar <args>` detached (the ledger's ingest service, the event pipeline), logging to
 * `logFile`, its PID in `pidFile`. Resolves with the PID once `ready()` resolves; throws, quoting
 * the end of the log, if it exits first (`alive()` false) or is not ready within `timeoutMs`.
 */
export async function startNublarDaemon(o: { what: string; args: string[]; logFile: string; pidFile: string; alive: () => boolean; ready: () => Promise<unknown>; timeoutMs: number }): Promise<number> {
    const log = fs.openSync(o.logFile, "a", 0o640);
    const child = spawn(process.execPath, [path.join(PROJECT_DIR, "cli", "nublar.js"), ...o.args], { detached: true, stdio: ["ignore", log, log], cwd: PROJECT_DIR });
    child.unref();
    fs.closeSync(log);
    fs.writeFileSync(o.pidFile, `${child.pid}\n`);
    const deadline = Date.now() + o.timeoutMs;
    let last: unknown;
    while (Date.now() < deadline && o.alive()) {
        try {
            await o.ready();
            return child.pid!;
        } catch (err) {
            last = err;
            await new Promise((r) => setTimeout(r, 100));
        }
    }
    // Half started is worse than stopped: it would hold ports and consume with no one watching.
    if (o.alive()) child.kill("SIGKILL");
    const tail = fs.existsSync(o.logFile) ? fs.readFileSync(o.logFile, "utf8").split("\n").slice(-10).join("\n") : "";
    throw new Error(`${o.what} did not come up (${(last as Error)?.message ?? "it exited"}); ${o.logFile} ends with:\n${tail}`);
}
