// The lab's hands: the few commands that build a park of network namespaces on
// this machine. Each function is idempotent (safe to run again after a partial
// failure) and throws an error that says what it was doing and what the command
// printed. nublar's provider (provider/resources/lab.ts) and `nublar lab` call these; nothing here
// plans anything: names and addresses arrive already decided by network/lab-plan.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export class LabCommandError extends Error {
    constructor(what: string, cmd: string[], detail: string) {
        super(`${what}: '${cmd.join(" ")}' failed: ${detail.trim() || "(no output)"}`);
        this.name = "LabCommandError";
    }
}

function run(what: string, cmd: string[], input?: string): string {
    const res = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", input });
    if (res.error) throw new LabCommandError(what, cmd, res.error.message);
    if (res.status !== 0) throw new LabCommandError(what, cmd, `${res.stderr}${res.stdout}`);
    return res.stdout;
}

/** `ip` with an optional `-n <netns>` (undefined means the root namespace). */
function ip(netns: string | undefined, ...args: string[]): string[] {
    return netns ? ["ip", "-n", netns, ...args] : ["ip", ...args];
}

export function netnsExists(name: string): boolean {
    return fs.existsSync(path.join("/run/netns", name));
}

export function linkExists(netns: string | undefined, ifname: string): boolean {
    const [cmd, ...args] = ip(netns, "link", "show", "dev", ifname);
    return spawnSync(cmd, args).status === 0;
}

/**
 * A namespace for a node or a provider router. keep_addr_on_down keeps static IPv6
 * addresses across link flaps (the kernel deletes them otherwise); router
 * advertisements are ignored because the planner decides every address and route.
 */
export function createNetns(name: string, forwarding: boolean): void {
    if (!netnsExists(name)) run(`creating namespace ${name}`, ["ip", "netns", "add", name]);
    const sysctls = [
        "net.ipv6.conf.all.keep_addr_on_down=1",
        "net.ipv6.conf.default.keep_addr_on_down=1",
        "net.ipv6.conf.all.accept_ra=0",
        "net.ipv6.conf.default.accept_ra=0",
        `net.ipv6.conf.all.forwarding=${forwarding ? 1 : 0}`,
        // Announce addresses (unsolicited NA) when a link comes up, so neighbours that cached
        // an old MAC, e.g. after the namespace was rebuilt, switch over at once.
        "net.ipv6.conf.all.ndisc_notify=1",
        "net.ipv6.conf.default.ndisc_notify=1",
    ];
    run(`configuring namespace ${name}`, ["ip", "netns", "exec", name, "sysctl", "-q", "-w", ...sysctls]);
    run(`bringing up lo in ${name}`, ip(name, "link", "set", "lo", "up"));
}

/** Delete a namespace. Refuses if processes still run in it: those are not ours to end. */
export function deleteNetns(name: string): void {
    if (!netnsExists(name)) return;
    const pids = run(`listing processes in ${name}`, ["ip", "netns", "pids", name]).trim();
    if (pids) {
        throw new LabCommandError(`deleting namespace ${name}`, ["ip", "netns", "pids", name],
            `processes still run inside it (PIDs ${pids.split(/\s+/).join(", ")}); stop them first`);
    }
    run(`deleting namespace ${name}`, ["ip", "netns", "del", name]);
}

export interface LinkEnd {
    /** Namespace; absent for the root namespace (the lab's management bridge side). */
    netns?: string;
    ifname: string;
    /** Addresses with prefix length, e.g. "2001:db8:a:5::2/64". */
    addresses: string[];
    /** Bridge to enslave this end to (root-namespace management ports). */
    master?: string;
}

/** A veth pair between two namespaces, addressed and up. */
export function createVeth(a: LinkEnd, b: LinkEnd): void {
    if (!linkExists(a.netns, a.ifname)) {
        // The far end without the near one: left over from a namespace deleted while processes
        // still held it (the kernel keeps such a namespace, and its links, alive). Its name is ours.
        if (linkExists(b.netns, b.ifname)) deleteLink(b.netns, b.ifname);
        const cmd = ["ip", "link", "add", "name", a.ifname, ...(a.netns ? ["netns", a.netns] : []),
            "type", "veth", "peer", "name", b.ifname, ...(b.netns ? ["netns", b.netns] : [])];
        run(`creating veth ${a.ifname}/${b.ifname}`, cmd);
    }
    // The far end first, so that the near end's unsolicited NA (ndisc_notify) finds a carrier.
    for (const end of [b, a]) configureEnd(end);
    // A rebuilt link has new MACs: drop neighbour entries cached for the old ones on each side.
    for (const [here, there] of [[a, b], [b, a]] as const) {
        for (const addr of there.addresses) {
            const [cmd, ...args] = ip(here.netns, "-6", "neigh", "flush", "to", addr.split("/")[0]);
            spawnSync(cmd, args); // best effort: nothing cached is fine
        }
    }
}

function configureEnd(end: LinkEnd): void {
    const where = `${end.ifname}${end.netns ? ` in ${end.netns}` : ""}`;
    if (end.netns || end.addresses.length > 0) {
        const sysctl = ["sysctl", "-q", "-w", `net.ipv6.conf.${end.ifname.replace(/\./g, "/")}.keep_addr_on_down=1`];
        run(`configuring ${where}`, end.netns ? ["ip", "netns", "exec", end.netns, ...sysctl] : sysctl);
    }
    if (end.master) run(`attaching ${where} to ${end.master}`, ip(end.netns, "link", "set", "dev", end.ifname, "master", end.master));
    for (const addr of end.addresses) {
        // nodad: the plan guarantees uniqueness, and DAD would delay the address by a second or more.
        run(`addressing ${where}`, ip(end.netns, "-6", "addr", "replace", addr, "dev", end.ifname, "nodad"));
    }
    run(`bringing up ${where}`, ip(end.netns, "link", "set", "dev", end.ifname, "up"));
}

/**
 * Delete a link; deleting one end of a veth pair deletes both. Returns false if it was
 * already gone (the kernel removes a veth's peer on its own, shortly after the other
 * end's namespace is deleted).
 */
export function deleteLink(netns: string | undefined, ifname: string): boolean {
    if (netns && !netnsExists(netns)) return false;
    if (!linkExists(netns, ifname)) return false;
    try {
        run(`deleting link ${ifname}`, ip(netns, "link", "del", "dev", ifname));
        return true;
    } catch (err) {
        if (!linkExists(netns, ifname)) return false;
        throw err;
    }
}

/** The management bridge in the root namespace: how this machine reaches the nodes. */
export function createBridge(name: string, address: string): void {
    if (!linkExists(undefined, name)) run(`creating bridge ${name}`, ["ip", "link", "add", "name", name, "type", "bridge"]);
    configureEnd({ ifname: name, addresses: [address] });
}

// ---- SSH ----

/** Generate an ed25519 key pair at `file` unless one exists; return the public key line. */
export function ensureSshKey(file: string, comment: string): string {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    if (!fs.existsSync(file)) {
        run(`generating SSH key ${file}`, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
    }
    return fs.readFileSync(`${file}.pub`, "utf8").trim();
}

/** True if the key pair at `file` is still there and is the one recorded. */
export function sshKeyMatches(file: string, publicKey: string): boolean {
    try {
        return fs.existsSync(file) && fs.readFileSync(`${file}.pub`, "utf8").trim() === publicKey;
    } catch {
        return false;
    }
}

export function fileHas(file: string, content: string): boolean {
    try {
        return fs.readFileSync(file, "utf8") === content;
    } catch {
        return false;
    }
}

export function removeFiles(...files: string[]): void {
    for (const f of files) fs.rmSync(f, { force: true });
}

/** Write a file whole: readers (ssh reading known_hosts) see the old content or the new, never part. */
export function writeFile(file: string, content: string, mode: number): void {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    try {
        fs.writeFileSync(tmp, content, { mode });
        fs.chmodSync(tmp, mode);
        fs.renameSync(tmp, file);
    } finally {
        fs.rmSync(tmp, { force: true });
    }
}

export interface SshdSpec {
    netns: string;
    /** Host name the node reports (its own UTS namespace, so `hostname` on the node says who it is). */
    hostname: string;
    /** Directory for this node's sshd config, pid file and log. */
    dir: string;
    hostKeyFile: string;
    listen: string[];
    authorizedKeys: string[];
}

/**
 * Start sshd inside a node's namespace, with the node's host name. `ip netns exec` gives the
 * process its own mount namespace, where we mount a private /run: sshd needs /run/sshd for privilege
 * separation, and must not share the host's. Returns the daemon's PID.
 */
export function startSshd(spec: SshdSpec): number {
    const cfg = path.join(spec.dir, "sshd_config");
    const pidFile = path.join(spec.dir, "sshd.pid");
    const running = sshdPid(spec.dir);
    if (running !== undefined) return running;

    writeFile(path.join(spec.dir, "authorized_keys"), spec.authorizedKeys.join("\n") + "\n", 0o600);
    writeFile(cfg, [
        "# Written by nublar's lab; do not edit.",
        ...spec.listen.map((a) => `ListenAddress [${a}]:22`),
        `HostKey ${spec.hostKeyFile}`,
        `PidFile ${pidFile}`,
        // Read from the daemon's private /run (see below): StrictModes rejects key files under
        // a world-writable directory, and the project may well live under /tmp.
        "AuthorizedKeysFile /run/nublar/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        "",
    ].join("\n"), 0o600);
    fs.rmSync(pidFile, { force: true });

    const script = [
        "hostname \"$4\"",
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        "mkdir -m 0755 /run/sshd /run/nublar",
        "install -m 0600 \"$3\" /run/nublar/authorized_keys",
        "exec /usr/sbin/sshd -f \"$1\" -E \"$2\"",
    ].join(" && ");
    run(`starting sshd in ${spec.netns}`, ["ip", "netns", "exec", spec.netns, "unshare", "--uts", "sh", "-c", script, "sh",
        cfg, path.join(spec.dir, "sshd.log"), path.join(spec.dir, "authorized_keys"), spec.hostname]);

    // sshd writes its pid file once it listens; the daemonizing parent has already exited.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
        const pid = sshdPid(spec.dir);
        if (pid !== undefined) return pid;
        sleepMs(50);
    }
    const log = fs.existsSync(path.join(spec.dir, "sshd.log")) ? fs.readFileSync(path.join(spec.dir, "sshd.log"), "utf8") : "";
    throw new LabCommandError(`starting sshd in ${spec.netns}`, ["sshd", "-f", cfg], `no pid file after 10 s. sshd log: ${log}`);
}

/** The PID of the sshd we started for `dir`, checked against /proc so we never signal a stranger. */
export function sshdPid(dir: string): number | undefined {
    const pidFile = path.join(dir, "sshd.pid");
    let pid: number;
    try {
        pid = Number(fs.readFileSync(pidFile, "utf8").trim());
    } catch {
        return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    try {
        // sshd rewrites its process title ("sshd: /usr/sbin/sshd -f <cfg> ... [listener]"),
        // so look for our config path as a whole word in it.
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ") + " ";
        return cmdline.includes(` -f ${path.join(dir, "sshd_config")} `) ? pid : undefined;
    } catch {
        return undefined;
    }
}

export function stopSshd(dir: string): void {
    const pid = sshdPid(dir);
    if (pid !== undefined) {
        process.kill(pid, "SIGTERM");
        const deadline = Date.now() + 5_000;
        while (Date.now() < deadline && sshdPid(dir) === pid) sleepMs(20);
        if (sshdPid(dir) === pid) process.kill(pid, "SIGKILL");
    }
    removeFiles(...["sshd_config", "sshd.pid", "sshd.log", "authorized_keys"].map((f) => path.join(dir, f)));
}

function sleepMs(ms: number): void {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- cutting an uplink on purpose, to watch a failover (`nublar lab cut`) ----

const CUT_TABLE = "nublar_lab_cut";

/**
 * Cut a node's uplink at the provider's router. "link" sets the router's end down (the
 * router notices, and answers with ICMP unreachable); "silent" drops every packet on it with
 * nftables, as a dead switch would (nothing answers).
 */
export function cutUplink(routerNetns: string, ifname: string, mode: "link" | "silent"): void {
    if (mode === "link") {
        run(`cutting ${ifname} in ${routerNetns}`, ip(routerNetns, "link", "set", "dev", ifname, "down"));
        return;
    }
    const chain = `cut_${ifname.replace(/[^A-Za-z0-9_]/g, "_")}`;
    const rules = [
        `table inet ${CUT_TABLE} {`,
        `  chain ${chain}_forward { type filter hook forward priority -10; iifname "${ifname}" drop; oifname "${ifname}" drop; }`,
        `  chain ${chain}_input { type filter hook input priority -10; iifname "${ifname}" drop; }`,
        `  chain ${chain}_output { type filter hook output priority -10; oifname "${ifname}" drop; }`,
        "}", ""].join("\n");
    run(`cutting ${ifname} in ${routerNetns}`, ["ip", "netns", "exec", routerNetns, "nft", "-f", "-"], rules);
}

/** Undo either kind of cut. The router knows only connected routes, which come back with the link. */
export function restoreUplink(routerNetns: string, ifname: string): void {
    const chain = `cut_${ifname.replace(/[^A-Za-z0-9_]/g, "_")}`;
    for (const suffix of ["forward", "input", "output"]) {
        spawnSync("ip", ["netns", "exec", routerNetns, "nft", "delete", "chain", "inet", CUT_TABLE, `${chain}_${suffix}`]);
    }
    run(`restoring ${ifname} in ${routerNetns}`, ip(routerNetns, "link", "set", "dev", ifname, "up"));
}
