// Daemons of the lab park, started inside node namespaces: the nublar agent, Nginx, FRR's
// bfdd (the provider routers' side of the gateway sessions) and a small HTTP service.
// Each runs detached with a pid file in its own folder; we only ever signal a PID whose
// command line names that folder, so a recycled PID is never ours to kill.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LabCommandError } from "./ops";
import { BFD_KEY_CREDENTIAL, NGINX_CONTROL_TOKEN_CREDENTIAL, parseAgentConfig } from "../model/network/agent-config";
import { defaultControlTokenFile } from "../model/network/nginx-conf";
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

/**
 * Run a Node program detached inside a namespace; its PID is written to dir/pid. `as`: a
 * command that execs the program with other credentials (setpriv), and its environment.
 */
function startNode(what: string, netns: string, dir: string, args: string[], ready: () => boolean, as?: { wrap: string[]; env: NodeJS.ProcessEnv }): number {
    fs.mkdirSync(dir, { recursive: true });
    const log = path.join(dir, "log");
    const out = fs.openSync(log, "a");
    // `ip netns exec` and setpriv exec the command, so the child's PID is node's.
    // NUBLAR_DAEMON_NODE_ARGS: extra node flags for debugging, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const extra = (process.env.NUBLAR_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean);
    const cmd = [...inside(netns), ...(as?.wrap ?? []), process.execPath, ...extra, "--import", "tsx", ...args];
    const child = spawn(cmd[0], cmd.slice(1), { cwd: PROJECT_DIR, detached: true, stdio: ["ignore", out, out], env: as?.env ?? process.env });
    fs.closeSync(out);
    child.unref();
    fs.writeFileSync(path.join(dir, "pid"), `${child.pid}\n`);
    return waitFor(what, cmd, () => (ready() ? child.pid : undefined), log, () => gone(child.pid));
}

// ---- the agent ----

/**
 * The lab runs nublar-agent as NixOS does (model/nix/modules/nublar-agent.nix): as the
 * unprivileged system user `nublar` (scripts/setup creates it), with exactly the unit's
 * capabilities (routes, nftables and `ss -K`: CAP_NET_ADMIN; BFD's raw checks: CAP_NET_RAW; the
 * BFD thread's niceness: CAP_SYS_NICE) and no way to gain more, and with its secrets handed
 * over as credentials: a private folder ($CREDENTIALS_DIRECTORY) that only that user can
 * read, as systemd's LoadCredential= makes one. So a key the agent cannot read fails here as
 * it would on a node.
 */
export const AGENT_USER = "nublar";
export const AGENT_CAPABILITIES = ["net_admin", "net_raw", "sys_nice"] as const;

/** The agent user's ids, or a clear error if setup has not created it. */
export function agentUser(): { uid: number; gid: number } {
    const id = (flag: string) => spawnSync("id", [flag, AGENT_USER], { encoding: "utf8" });
    const u = id("-u");
    const g = id("-g");
    if (u.status !== 0 || g.status !== 0) {
        throw new LabCommandError(`finding the agent's user ${AGENT_USER}`, ["id", AGENT_USER], `there is no user '${AGENT_USER}': the lab runs nublar-agent as that unprivileged system user, as NixOS does. Run scripts/setup, which creates it.`);
    }
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** The command prefix that runs a program as the agent's user with the agent's capabilities. */
export function agentPrivileges(): string[] {
    const caps = `-all,${AGENT_CAPABILITIES.map((c) => `+${c}`).join(",")}`;
    return ["setpriv", `--reuid=${AGENT_USER}`, `--regid=${AGENT_USER}`, "--init-groups",
        `--inh-caps=${caps}`, `--ambient-caps=${caps}`, `--bounding-set=${caps}`, "--no-new-privs", "--"];
}

export function agentDaemon(dir: string): Daemon {
    // The agent reads its config from a copy it can reach (startAgent); the copy's path, which
    // its command line names, is recorded in the lab's own folder. Agents started before that
    // record existed were given dir/agent.json.
    let marker = path.join(dir, "agent.json");
    try {
        marker = fs.readFileSync(path.join(dir, "config-path"), "utf8").trim() || marker;
    } catch {
        // no record
    }
    return { dir, marker };
}

/** The lab's record of the config the agent in `dir` runs (root's; node-system compares it). */
export function agentConfigRecord(dir: string): string {
    return path.join(dir, "agent.json");
}

/**
 * What startAgent keeps for the agent beside its runtime folder (the socket's folder): the
 * copy of its config it reads (config.json), its credentials folder (credentials/). Root's,
 * and passable by the agent's user: nodeRuntimePaths and labNodeRuntimePaths put the socket in
 * a folder `run` of such a place.
 */
export function agentLaunchDir(socket: string): string {
    return path.dirname(path.dirname(socket));
}

/**
 * A folder only the agent's user may write, as systemd's RuntimeDirectory= and StateDirectory=
 * make one: created for it (missing parents root's, 0711), or kept if it already is its. Any
 * other existing folder is refused: it is never handed over.
 */
function ensureAgentDir(dir: string, user: { uid: number; gid: number }): void {
    ensureRootDir(path.dirname(dir));
    let st: fs.Stats | undefined;
    try {
        st = fs.lstatSync(dir);
    } catch {
        fs.mkdirSync(dir, { mode: 0o750 });
        fs.chownSync(dir, user.uid, user.gid);
        fs.chmodSync(dir, 0o750);
        return;
    }
    if (!st.isDirectory() || st.uid !== user.uid) {
        throw new LabCommandError(`preparing nublar-agent's folder ${dir}`, ["chown", AGENT_USER, dir], `${dir} exists and is not a folder of user ${AGENT_USER}: refusing to hand it over`);
    }
}

/** A folder of root's on the way to the agent's files: created 0711 (passable, not listable) if missing. */
function ensureRootDir(dir: string): void {
    if (fs.existsSync(dir)) return;
    ensureRootDir(path.dirname(dir));
    fs.mkdirSync(dir, { mode: 0o711 });
    fs.chmodSync(dir, 0o711);
}

/** Write a file root owns, replacing whatever was there (never following a link planted in its place). */
function writeRootFile(file: string, content: string | Buffer, mode: number): void {
    const tmp = `${file}.${process.pid}.new`;
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(tmp, content, { mode, flag: "wx" });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
}

/**
 * The agent's credentials, as LoadCredential= gives them: a fresh folder (mode 0500) with one
 * file per secret (mode 0400), both owned by the agent's user, copied from their sources by
 * root. Returns the folder, for $CREDENTIALS_DIRECTORY.
 */
function loadCredentials(dir: string, credentials: [id: string, source: string][], user: { uid: number; gid: number }, what: string): string {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { mode: 0o700 });
    for (const [id, source] of credentials) {
        let content: Buffer;
        try {
            content = fs.readFileSync(source);
        } catch (err) {
            fs.rmSync(dir, { recursive: true, force: true });
            throw new LabCommandError(what, ["load-credential", `${id}:${source}`], `cannot load the agent's credential ${id} from ${source}: ${(err as Error).message}`);
        }
        const file = path.join(dir, id);
        fs.writeFileSync(file, content, { mode: 0o400, flag: "wx" });
        fs.chmodSync(file, 0o400);
        fs.chownSync(file, user.uid, user.gid);
    }
    fs.chownSync(dir, user.uid, user.gid);
    fs.chmodSync(dir, 0o500);
    return dir;
}

/** The agent's user must be able to read this checkout (the agent runs from it); say so clearly if not. */
function checkCheckoutReadable(what: string): void {
    const entry = path.join(PROJECT_DIR, "runtime", "agent", "daemon.ts");
    const cmd = [...agentPrivileges(), "sh", "-c", 'test -r "$1" && test -x "$2"', "sh", entry, path.join(PROJECT_DIR, "node_modules")];
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
    if (r.status !== 0) {
        throw new LabCommandError(what, cmd, `user ${AGENT_USER} cannot read ${entry}${r.stderr ? ` (${r.stderr.trim()})` : ""}: the lab runs nublar-agent as that unprivileged user, as NixOS does, from this checkout. A folder on its way is private; keep the clone where other users may read it (no folder's mode is changed for you).`);
    }
}

/**
 * Start nublar-agent in `netns` with `config` (its agent.json); ready once its socket exists.
 * It runs as AGENT_USER with AGENT_CAPABILITIES. Its socket's folder, its event log's and its
 * outbox's become that user's (ensureAgentDir); its secrets (pathAuth.keyFile, Nginx's
 * control token) are loaded as credentials; it reads a copy of its config beside them
 * (agentLaunchDir). `dir` holds the lab's records: pid file, log, the config it runs.
 */
export function startAgent(netns: string, dir: string, socket: string, config: string): number {
    const d = agentDaemon(dir);
    const running = runningIn(d, netns);
    if (running !== undefined) return running;
    const what = `starting nublar-agent in ${netns}`;
    const cfg = parseAgentConfig(JSON.parse(config), "the agent config to start");
    if (cfg.paths.socket !== socket) throw new LabCommandError(what, [], `the config's paths.socket is ${cfg.paths.socket}, not ${socket}`);
    const user = agentUser();
    checkCheckoutReadable(what);
    fs.mkdirSync(dir, { recursive: true });
    writeRootFile(agentConfigRecord(dir), config, 0o600);

    const owned = new Set([path.dirname(socket), path.dirname(cfg.paths.events), ...(cfg.eventBus ? [path.dirname(cfg.eventBus.stateFile)] : [])]);
    for (const o of owned) ensureAgentDir(o, user);
    fs.rmSync(socket, { force: true });

    const launch = agentLaunchDir(socket);
    ensureRootDir(launch);
    const copy = path.join(launch, "config.json");
    writeRootFile(copy, config, 0o644);
    const credentials: [string, string][] = [];
    if (cfg.pathAuth) credentials.push([BFD_KEY_CREDENTIAL, cfg.pathAuth.keyFile]);
    if (cfg.paths.nginxControl) credentials.push([NGINX_CONTROL_TOKEN_CREDENTIAL, cfg.paths.nginxControlToken ?? defaultControlTokenFile(cfg.paths.nginxControl)]);
    const credentialsDir = loadCredentials(path.join(launch, "credentials"), credentials, user, what);
    writeRootFile(path.join(dir, "config-path"), `${copy}\n`, 0o600);

    return startNode(what, netns, dir, ["runtime/agent/daemon.ts", "--config", copy], () => fs.existsSync(socket), {
        wrap: agentPrivileges(),
        env: { ...process.env, CREDENTIALS_DIRECTORY: credentialsDir, HOME: path.dirname(socket) },
    });
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

/** A short name for a lab folder, stable across runs: its runtime folders under /run and /var/lib carry it. */
function dirTag(dir: string): string {
    return createHash("sha256").update(path.resolve(dir)).digest("hex").slice(0, 16);
}

export function bfddRuntimeDir(dir: string): string {
    return path.join(BFDD_RUNTIME_ROOT, `bfdd-${dirTag(dir)}`);
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

/**
 * The control socket's folder: root's, group AGENT_USER, mode 0750. Nginx's master (root in the
 * lab) creates the socket there; the agent's user may pass, nobody else may reach it (Nginx
 * makes the socket itself 0666). The control token beside it (defaultControlTokenFile) is
 * root's alone (0600): balancer.lua reads it in the master, the agent gets a credential copy.
 * It is written once and kept while the folder lives, so that a running agent's copy stays
 * valid across Nginx restarts.
 */
export function prepareNginxControl(controlSocket: string, tokenFile = defaultControlTokenFile(controlSocket)): void {
    const dir = path.dirname(controlSocket);
    const { gid } = agentUser();
    ensureRootDir(path.dirname(dir));
    try {
        const st = fs.lstatSync(dir);
        if (!st.isDirectory() || st.uid !== 0) throw new LabCommandError(`preparing Nginx's control folder ${dir}`, [], `${dir} exists and is not root's folder: refusing to use it`);
    } catch (err) {
        if (err instanceof LabCommandError) throw err;
        fs.mkdirSync(dir, { mode: 0o750 });
    }
    fs.chownSync(dir, 0, gid);
    fs.chmodSync(dir, 0o750);
    let token = "";
    try {
        token = fs.readFileSync(tokenFile, "utf8").trim();
    } catch {
        // none yet
    }
    if (token.length < 32) {
        ensureRootDir(path.dirname(tokenFile));
        writeRootFile(tokenFile, `${randomBytes(32).toString("hex")}\n`, 0o600);
    }
    fs.chownSync(tokenFile, 0, 0);
    fs.chmodSync(tokenFile, 0o600);
    fs.rmSync(controlSocket, { force: true });
}

export function startNginx(netns: string, dir: string, conf: string, controlSocket: string, tokenFile?: string): number {
    const d = nginxDaemon(dir);
    const pidFile = path.join(dir, "nginx.pid");
    const running = runningIn(d, netns, pidFile);
    if (running !== undefined) return running;
    // Nginx's temp paths are set under its prefix (nginx-conf.ts) and must exist.
    for (const sub of ["logs", "temp"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    fs.writeFileSync(d.marker, conf);
    prepareNginxControl(controlSocket, tokenFile);
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
    /** The lab's records of the agent: pid file, log, the config it runs (root's). */
    agentDir: string;
    agentSocket: string;
    events: string;
    nginxDir: string;
    nginxControl: string;
    helloDir: string;
    bfddDir: string;
}

/**
 * One layout for the network tests' parks (test/network/park.ts), whose folders others may pass
 * through: everything under the node's folder. The agent's socket and event log are in
 * agent/run (its user's), its config copy and credentials in agent/ (agentLaunchDir); Nginx's
 * control socket in nginx/control (root, group AGENT_USER, 0750). Unix socket paths must stay
 * under 108 bytes.
 */
export function nodeRuntimePaths(nodeDir: string): NodeRuntimePaths {
    const agentDir = path.join(nodeDir, "agent");
    const nginxDir = path.join(nodeDir, "nginx");
    return {
        agentDir,
        agentSocket: path.join(agentDir, "run", "agent.sock"),
        events: path.join(agentDir, "run", "events.jsonl"),
        nginxDir,
        nginxControl: path.join(nginxDir, "control", "control.sock"),
        helloDir: path.join(nodeDir, "hello"),
        bfddDir: path.join(nodeDir, "bfdd"),
    };
}

/** Where the lab keeps what the agent writes and must keep (its event log, its outbox): host-visible, like NixOS's /var/lib/nublar. */
export const LAB_STATE_ROOT = "/var/lib/nublar-lab";

const nodeTag = dirTag;

/**
 * The lab's nodes' layout. Their folders are the lab's, private (under .nublar, 0700), and no
 * parent folder's mode is ever changed, so what the agent's user must reach lives elsewhere,
 * named after the node's folder: its socket, config copy and credentials in the node's private
 * /run (the node's sshd mounts one, and the daemons its SSH sessions start share it:
 * /run/nublar-lab/agent-<tag>, as NixOS's /run/nublar), Nginx's control socket there too
 * (/run/nublar-lab/nginx-<tag>), and its event log and outbox under LAB_STATE_ROOT, where the
 * lab's ledger on this machine can read them (as NixOS's /var/lib/nublar). The records stay in
 * the node's folder.
 */
export function labNodeRuntimePaths(nodeDir: string): NodeRuntimePaths {
    const tag = nodeTag(nodeDir);
    const agentRun = path.join(BFDD_RUNTIME_ROOT, `agent-${tag}`);
    return {
        ...nodeRuntimePaths(nodeDir),
        agentSocket: path.join(agentRun, "run", "agent.sock"),
        events: path.join(LAB_STATE_ROOT, `agent-${tag}`, "events.jsonl"),
        nginxControl: path.join(BFDD_RUNTIME_ROOT, `nginx-${tag}`, "control.sock"),
    };
}

/**
 * Remove the agent's and Nginx's files outside the node's folder (a node that leaves for good),
 * and the lab's roots once nothing else is in them. Returns what was there.
 */
export function removeLabNodeFiles(nodeDir: string): string[] {
    const rt = labNodeRuntimePaths(nodeDir);
    const dirs = [agentLaunchDir(rt.agentSocket), path.dirname(rt.events), path.dirname(rt.nginxControl)];
    const removed = dirs.filter((d) => fs.existsSync(d));
    for (const d of removed) fs.rmSync(d, { recursive: true, force: true });
    for (const root of [LAB_STATE_ROOT, BFDD_RUNTIME_ROOT]) {
        try {
            fs.rmdirSync(root);
        } catch {
            // Not empty (another node's, another lab's, bfdd's) or already gone.
        }
    }
    return removed;
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
