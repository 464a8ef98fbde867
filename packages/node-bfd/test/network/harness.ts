// Test harness for node-bfd against real peers: network namespaces joined by veth
// links, node-bfd speakers (src/peer.ts) as processes inside them, and FRR's bfdd
// and BIRD started in their own namespaces. Everything is named after this process,
// and close() removes it all: processes by the PIDs we started, then namespaces.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";

const SRC = path.resolve(__dirname, "../../src");

export function sh(cmd: string[], opts: { allowFail?: boolean; input?: string } = {}): string {
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", input: opts.input });
    if (r.status !== 0 && !opts.allowFail) throw new Error(`'${cmd.join(" ")}' failed: ${r.stderr}${r.stdout}`);
    return r.stdout;
}

export function requireTools(...tools: string[]): void {
    if (process.getuid?.() !== 0) throw new Error("the node-bfd network tests create namespaces and must run as root");
    const missing = tools.filter((t) => spawnSync("sh", ["-c", `command -v ${t} || test -x ${t}`]).status !== 0);
    if (missing.length) throw new Error(`missing: ${missing.join(", ")}; run scripts/setup (Debian packages frr, bird2, nftables)`);
}

export interface LinkSpec {
    a: string;
    b: string;
    /** Address pairs: [a side, b side] with prefix length, e.g. ["2001:db8:f::1/64", "2001:db8:f::2/64"]. */
    addresses: [string, string][];
}

export class Lab {
    readonly tag = `t${process.pid.toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "node-bfd-"));

    constructor() {
        // FRR drops privileges to user frr, which must reach its folder inside this one.
        fs.chmodSync(this.dir, 0o755);
    }
    private readonly namespaces: string[] = [];
    private readonly children: ChildProcess[] = [];
    private readonly pidFiles: string[] = [];
    private links = 0;

    ns(name: string): string {
        const full = `${this.tag}-${name}`;
        sh(["ip", "netns", "add", full]);
        this.namespaces.push(full);
        sh(["ip", "netns", "exec", full, "sysctl", "-q", "-w", "net.ipv6.conf.all.keep_addr_on_down=1",
            "net.ipv6.conf.default.keep_addr_on_down=1", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"]);
        sh(["ip", "-n", full, "link", "set", "lo", "up"]);
        return full;
    }

    /** A veth pair; returns the interface names on each side. */
    link(spec: LinkSpec): { ifA: string; ifB: string } {
        const n = this.links++;
        const ifA = `v${n}a`;
        const ifB = `v${n}b`;
        sh(["ip", "link", "add", "name", ifA, "netns", spec.a, "type", "veth", "peer", "name", ifB, "netns", spec.b]);
        for (const [addrA, addrB] of spec.addresses) {
            sh(["ip", "-n", spec.a, "addr", "add", addrA, "dev", ifA, ...(addrA.includes(":") ? ["nodad"] : [])]);
            sh(["ip", "-n", spec.b, "addr", "add", addrB, "dev", ifB, ...(addrB.includes(":") ? ["nodad"] : [])]);
        }
        sh(["ip", "-n", spec.a, "link", "set", ifA, "up"]);
        sh(["ip", "-n", spec.b, "link", "set", ifB, "up"]);
        return { ifA, ifB };
    }

    route(ns: string, prefix: string, via: string): void {
        sh(["ip", "-n", ns, "route", "add", prefix, "via", via]);
    }

    /**
     * A node-bfd speaker in `ns`. `env`: variables for it (set with env(1)); `wrap`: a command
     * that execs the rest, e.g. ["setpriv", "--bounding-set", "-net_admin", "--"].
     */
    async speaker(ns: string, opts: { env?: Record<string, string>; wrap?: string[] } = {}): Promise<Speaker> {
        // NODE_BFD_SPEAKER_ARGS: extra node flags for speakers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
        const extra = (process.env.NODE_BFD_SPEAKER_ARGS ?? "").split(" ").filter(Boolean);
        const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
        // `ip netns exec`, env(1) and setpriv all exec what follows, so the child's PID stays node's.
        const child = spawn("ip", ["netns", "exec", ns, ...(env.length ? ["env", ...env] : []), ...(opts.wrap ?? []),
            process.execPath, ...extra, "--import", "tsx", path.join(SRC, "peer.ts")], {
            stdio: ["pipe", "pipe", "inherit"],
        });
        this.children.push(child);
        // A speaker that already exited must not crash us with EPIPE on its stdin.
        child.stdin!.on("error", () => undefined);
        const s = new Speaker(child);
        await s.waitFor((e) => e.event === "ready", 10_000);
        return s;
    }

    /** FRR's bfdd in `ns` with this configuration (the `bfd` node). */
    frr(ns: string, config: string): Frr {
        const dir = path.join(this.dir, `frr-${ns}`);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "bfdd.conf"), config);
        sh(["chown", "-R", "frr:frr", dir]);
        const pidFile = path.join(dir, "bfdd.pid");
        this.pidFiles.push(pidFile);
        sh(["ip", "netns", "exec", ns, "/usr/lib/frr/bfdd", "-d", "-f", path.join(dir, "bfdd.conf"), "--vty_socket", dir,
            "-i", pidFile, "--bfdctl", path.join(dir, "bfdd.sock"), "-z", path.join(dir, "zserv.api"),
            "-u", "frr", "-g", "frr", "--log", `file:${path.join(dir, "bfdd.log")}`]);
        return new Frr(dir);
    }

    /** BIRD 2 in `ns` with this configuration. */
    bird(ns: string, config: string): Bird {
        const dir = path.join(this.dir, `bird-${ns}`);
        fs.mkdirSync(dir);
        const conf = path.join(dir, "bird.conf");
        fs.writeFileSync(conf, config);
        const pidFile = path.join(dir, "bird.pid");
        this.pidFiles.push(pidFile);
        sh(["ip", "netns", "exec", ns, "bird", "-c", conf, "-s", path.join(dir, "bird.ctl"), "-P", pidFile]);
        return new Bird(path.join(dir, "bird.ctl"));
    }

    /** Remove everything, step by step: a failing step never keeps the next from running. */
    async close(): Promise<void> {
        const attempt = (what: () => void) => {
            try {
                what();
            } catch {
                // Keep going: the namespaces must go whatever happened above.
            }
        };
        for (const c of this.children) {
            if (c.exitCode === null) attempt(() => c.stdin?.end(`${JSON.stringify({ op: "stop" })}\n`));
        }
        await new Promise((r) => setTimeout(r, 200));
        for (const c of this.children) if (c.exitCode === null && c.pid) attempt(() => process.kill(c.pid!, "SIGKILL"));
        for (const f of this.pidFiles) {
            attempt(() => {
                const pid = Number(fs.readFileSync(f, "utf8").trim());
                if (Number.isInteger(pid) && pid > 1) process.kill(pid, "SIGTERM");
            });
        }
        await new Promise((r) => setTimeout(r, 300));
        for (const ns of this.namespaces.reverse()) sh(["ip", "netns", "del", ns], { allowFail: true });
        attempt(() => fs.rmSync(this.dir, { recursive: true, force: true }));
    }
}

export interface PeerEvent {
    event: string;
    [k: string]: any;
}

export class Speaker {
    readonly events: PeerEvent[] = [];
    private waiters: { pred: (e: PeerEvent) => boolean; resolve: (e: PeerEvent) => void }[] = [];
    private tags = 0;

    /** The speaker's process id (`ip netns exec` execs node, so this is node's). */
    get pid(): number {
        return this.child.pid!;
    }

    /** Resolves with the exit code (or signal) once the process has exited. */
    readonly exited: Promise<number | string>;

    constructor(private readonly child: ChildProcess) {
        this.exited = new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? child.signalCode!);
            else child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
        });
        readline.createInterface({ input: child.stdout! }).on("line", (line) => {
            let e: PeerEvent;
            try {
                e = JSON.parse(line);
            } catch {
                return;
            }
            this.events.push(e);
            this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
        });
    }

    waitFor(pred: (e: PeerEvent) => boolean, timeoutMs: number, since = 0): Promise<PeerEvent> {
        const seen = this.events.slice(since).find(pred);
        if (seen) return Promise.resolve(seen);
        return new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-8))}`)), timeoutMs);
            this.waiters.push({ pred, resolve: (e) => { clearTimeout(t); resolve(e); } });
        });
    }

    async call(cmd: Record<string, unknown>): Promise<any> {
        const tag = ++this.tags;
        this.child.stdin!.write(`${JSON.stringify({ ...cmd, tag })}\n`);
        const res = await this.waitFor((e) => e.event === "result" && e.tag === tag, 10_000);
        if (!res.ok) throw new Error(res.error);
        return res.result;
    }

    /** Stop the service (BfdService.stop) and wait for the process to exit. */
    async stop(timeoutMs = 5_000): Promise<number | string> {
        this.child.stdin!.end(`${JSON.stringify({ op: "stop" })}\n`);
        return withTimeout(this.exited, timeoutMs, "the speaker did not exit after stop");
    }

    /** SIGKILL the speaker (a crash: nothing of ours runs after it) and wait for it to be gone. */
    async kill(timeoutMs = 5_000): Promise<number | string> {
        if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
        return withTimeout(this.exited, timeoutMs, "the speaker did not die");
    }

    async session(id: string): Promise<any> {
        const snap = await this.call({ op: "snapshot" });
        return snap.sessions.find((s: any) => s.id === id);
    }

    /** Wait until session `id` reaches `status` (after event index `since`). */
    waitState(id: string, to: string, timeoutMs: number, since = 0): Promise<PeerEvent> {
        return this.waitFor((e) => e.event === "state" && e.id === id && e.to === to, timeoutMs, since);
    }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms); })])
        .finally(() => clearTimeout(t));
}

export class Frr {
    constructor(readonly dir: string) {}

    vtysh(...commands: string[]): string {
        return sh(["vtysh", "--vty_socket", this.dir, "-d", "bfdd", ...commands.flatMap((c) => ["-c", c])]);
    }

    peers(): any[] {
        return JSON.parse(this.vtysh("show bfd peers json"));
    }

    peer(addr: string): any {
        return this.peers().find((p) => p.peer === addr);
    }

    async waitPeer(addr: string, pred: (p: any) => boolean, timeoutMs: number): Promise<any> {
        const deadline = Date.now() + timeoutMs;
        let last: any;
        while (Date.now() < deadline) {
            last = this.peer(addr);
            if (last && pred(last)) return last;
            await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`FRR peer ${addr} did not reach the expected state: ${JSON.stringify(last)}`);
    }
}

export class Bird {
    constructor(readonly socket: string) {}

    sessions(): string {
        return sh(["birdc", "-s", this.socket, "show", "bfd", "sessions"]);
    }

    async waitSession(addr: string, state: string, timeoutMs: number): Promise<string> {
        const deadline = Date.now() + timeoutMs;
        let out = "";
        while (Date.now() < deadline) {
            out = this.sessions();
            const line = out.split("\n").find((l) => l.trim().startsWith(addr));
            if (line && line.split(/\s+/).includes(state)) return line;
            await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`BIRD session ${addr} did not reach ${state}:\n${out}`);
    }
}
