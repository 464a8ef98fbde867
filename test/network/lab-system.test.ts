// Network layer: the lab's switch-to-configuration (lab/node-system.ts) on its
// own, in a namespace this test creates, run as a lab node runs it: from a "session" that
// shares a private /run (as the node's sshd's SSH sessions do), with the node's folder private
// (0700, as .nublar is). The agent runs as the unprivileged user nublar with NixOS's three
// capabilities, and reads its BFD key from a credentials folder only it can read, as NixOS's
// unit does. The watchdog rolls an unconfirmed generation back by itself (the path a deploy
// takes when the new generation cut it off), and a confirmed one stays. The engine test covers
// the deploy around it; this covers the node's side alone.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { AGENT_USER, agentDaemon, agentLaunchDir, daemonPid, labNodeRuntimePaths, LAB_STATE_ROOT } from "../../lab/daemons";
import { createNetns, deleteNetns, netnsExists } from "../../lab/ops";
import { installSecretCommand } from "../../runtime/deploy/deploy";
import { agentJson } from "../../runtime/agent/client";
import { requireCommands, requireRoot } from "../helpers/prereq";

const ROOT = path.resolve(__dirname, "../..");
const netns = `nbl-ls${(process.pid % 46656).toString(36)}`;
// Private, as the lab's .nublar is: the agent's user cannot pass it.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-labsys-"));
const root = path.join(dir, "system");
const nodeDir = path.join(dir, "node");
const rt = labNodeRuntimePaths(nodeDir);
const KEY = `0x${"7e".repeat(20)}`;
const SESSION = "path/peer/provider-a";
const stateRootExisted = fs.existsSync(LAB_STATE_ROOT);

/** The node's "sshd": holds the namespace's private /run that every session shares. */
let session: ChildProcess | undefined;

function inSession(cmd: string[], input?: string) {
    return spawnSync("nsenter", ["--target", String(session!.pid), "--mount", "--net", `--wd=${ROOT}`, "--", ...cmd], { encoding: "utf8", timeout: 60_000, input });
}

function labSystemRaw(...args: string[]) {
    return inSession([process.execPath, "--import", "tsx", "lab/node-system.ts", ...args, "--root", root, "--node-dir", nodeDir]);
}

function labSystem(...args: string[]) {
    const r = labSystemRaw(...args);
    assert.equal(r.status, 0, `lab-system ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
}

/** A path in the session's private /run, as this (host) process reaches it. */
const privateRun = (p: string) => path.join(`/proc/${session!.pid}/root`, p);

/**
 * A generation: an agent with one authenticated path session (over a link to no one) and
 * no tunnels, and its BFD key, which the deploy writes as it does over SSH.
 */
function generation(n: number, holdDownMs: number, key = KEY): void {
    const g = path.join(root, "generations", String(n));
    fs.mkdirSync(g, { recursive: true });
    fs.writeFileSync(path.join(g, "overlay.json"), JSON.stringify({ hub: false, overlays: [] }));
    fs.writeFileSync(path.join(g, "agent.json"), JSON.stringify({
        version: 1, site: "labsys", node: "n1", loopback: "2001:db8:ffff::1", routeProtocol: 199, holdDownMs, startupGraceMs: 0,
        // Fast timers: a graceful stop waits two detection times for its AdminDown to go out.
        timers: { transmitIntervalMs: 100, receiveIntervalMs: 100, detectMultiplier: 3 },
        pathAuth: { type: "meticulous-keyed-sha1", keyId: 1, keyFile: "/run/keys/nublar-bfd.key" },
        uplinks: [],
        sessions: [{ id: SESSION, kind: "path", provider: "provider-a", peerNode: "peer", peer: "2001:db8:ffff:1::2", local: "2001:db8:ffff:1::1", interface: "bfdt0", multihop: false }],
        routes: [], ingress: [],
        paths: { socket: rt.agentSocket, events: rt.events },
    }));
    const r = inSession(["sh", "-c", installSecretCommand("/run/keys", n, "nublar-bfd.key")], `${key}\n`);
    assert.equal(r.status, 0, r.stderr);
}

const current = () => Number(fs.readFileSync(path.join(root, "current"), "utf8"));
const runningConfig = () => JSON.parse(fs.readFileSync(path.join(nodeDir, "agent", "agent.json"), "utf8")).holdDownMs;
const agentPid = () => daemonPid(agentDaemon(rt.agentDir));
const idOf = (flag: string, name: string) => Number(spawnSync("id", [flag, name], { encoding: "utf8" }).stdout.trim());

before(() => {
    requireRoot("network");
    requireCommands("nsenter", "setpriv");
    assert.ok(spawnSync("id", [AGENT_USER]).status === 0, `user ${AGENT_USER} is missing: run scripts/setup`);
    fs.chmodSync(dir, 0o700);
    createNetns(netns, false);
    // The session's link: a veth pair inside the namespace (this kernel has no dummy links).
    for (const args of [["link", "add", "bfdt0", "type", "veth", "peer", "name", "bfdt0p"], ["addr", "add", "2001:db8:ffff:1::1/64", "dev", "bfdt0", "nodad"], ["link", "set", "bfdt0p", "up"], ["link", "set", "bfdt0", "up"]]) {
        const r = spawnSync("ip", ["-n", netns, ...args], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
    }
    // As the lab's sshd: in the node's namespace, with a private /run (lab/ops.ts startSshd).
    session = spawn("ip", ["netns", "exec", netns, "sh", "-c", "mount -t tmpfs -o mode=0755 tmpfs /run && exec sleep 100000"], { stdio: "ignore" });
    const deadline = Date.now() + 5000;
    while (!fs.readFileSync(`/proc/${session.pid}/cmdline`, "utf8").startsWith("sleep")) {
        assert.ok(Date.now() < deadline, "the session's private /run is not up");
        spawnSync("sleep", ["0.05"]);
    }
});

after(() => {
    try {
        if (session) labSystemRaw("deactivate");
    } finally {
        for (const g of fs.existsSync(path.join(root, "generations")) ? fs.readdirSync(path.join(root, "generations")) : []) {
            const pidFile = path.join(root, "generations", g, "watchdog.pid");
            const pid = daemonPid({ dir: path.dirname(pidFile), marker: `watchdog --root ${root} ` }, pidFile);
            if (pid) process.kill(pid, "SIGTERM");
        }
        const agent = agentPid();
        if (agent) process.kill(agent, "SIGTERM");
        spawnSync("sleep", ["1"]);
        if (session?.pid && session.exitCode === null) session.kill("SIGKILL");
        if (netnsExists(netns)) deleteNetns(netns);
        fs.rmSync(dir, { recursive: true, force: true });
        // The agent's state folder lives outside the node's folder (host-visible, as /var/lib/nublar).
        fs.rmSync(path.dirname(rt.events), { recursive: true, force: true });
        if (!stateRootExisted) fs.rmSync(LAB_STATE_ROOT, { recursive: true, force: true });
    }
});

test("the agent runs as user nublar with NixOS's capabilities only, and reads its BFD key from a credential only it can read", async () => {
    generation(1, 1001);
    const status = labSystem("switch", "--gen", "1", "--watchdog-s", "0");
    assert.ok(status.agent, "the agent runs");
    const pid = agentPid()!;
    const proc = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const uid = idOf("-u", AGENT_USER);
    const gid = idOf("-g", AGENT_USER);
    assert.match(proc, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"), "not root: user nublar, every uid");
    assert.match(proc, new RegExp(`^Gid:\\s+${gid}\\s`, "m"));
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_NICE (23): nublar-agent.nix's set, and no more.
    for (const set of ["CapEff", "CapPrm", "CapBnd", "CapAmb"]) assert.match(proc, new RegExp(`^${set}:\\s+0000000000803000$`, "m"), set);
    assert.match(proc, /^NoNewPrivs:\s+1$/m);

    // The deploy's key: root's alone. The agent's copy: a credentials folder only nublar reads.
    const deployed = fs.statSync(privateRun("/run/keys/nublar-generations/1/nublar-bfd.key"));
    assert.deepEqual([deployed.uid, deployed.mode & 0o777], [0, 0o600]);
    const credentials = privateRun(path.join(agentLaunchDir(rt.agentSocket), "credentials"));
    const cdir = fs.statSync(credentials);
    assert.deepEqual([cdir.uid, cdir.mode & 0o777], [uid, 0o500]);
    const cred = fs.statSync(path.join(credentials, "bfd-key"));
    assert.deepEqual([cred.uid, cred.mode & 0o777], [uid, 0o400]);
    assert.equal(fs.readFileSync(path.join(credentials, "bfd-key"), "utf8").trim(), KEY);
    const environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    assert.ok(environ.includes(`CREDENTIALS_DIRECTORY=${path.join(agentLaunchDir(rt.agentSocket), "credentials")}`));
    // Nobody else may read it, nor the deploy's file.
    for (const f of [path.join(agentLaunchDir(rt.agentSocket), "credentials", "bfd-key"), "/run/keys/nublar-bfd.key"]) {
        const r = inSession(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", f]);
        assert.notEqual(r.status, 0, `nobody read ${f}`);
    }

    // It read the key: its path session is authenticated, and it says where the key came from.
    const state = await agentJson({ socket: privateRun(rt.agentSocket) }, "/state") as { sessions: { id: string; bfd?: { authentication?: string } }[] };
    const s = state.sessions.find((x) => x.id === SESSION);
    assert.equal(s?.bfd?.authentication, "meticulous-keyed-sha1");
    const log = fs.readFileSync(path.join(rt.agentDir, "log"), "utf8");
    assert.match(log, /path sessions authenticated with meticulous-keyed-sha1, key id 1, from credential bfd-key \(/);
    assert.ok(!log.includes(KEY.slice(2)), "the key is never logged");

    // Its own folders are its user's; the node's folder stayed private and untouched.
    for (const d of [privateRun(path.dirname(rt.agentSocket)), path.dirname(rt.events)]) {
        const st = fs.statSync(d);
        assert.deepEqual([st.uid, st.mode & 0o777], [uid, 0o750], d);
    }
    assert.equal(fs.statSync(rt.events).uid, uid, "it writes its own event log");
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700, "no folder's mode was changed");
});

test("an empty BFD key: the agent refuses its authenticated session, naming it and the key file, and the switch fails", () => {
    generation(9, 1009, "   ");
    const r = labSystemRaw("switch", "--gen", "9", "--watchdog-s", "0");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`session ${SESSION} is configured for meticulous-keyed-sha1 authentication \\(pathAuth\\), but its BFD key is empty: credential bfd-key \\(.*, loaded from /run/keys/nublar-bfd\\.key\\)`));
    assert.equal(agentPid(), undefined, "no agent runs it unauthenticated");
    // Back to a good generation for what follows.
    labSystem("rollback", "--gen", "9");
    assert.equal(current(), 1);
    assert.ok(labSystem("status").agent);
    fs.rmSync(path.join(root, "generations", "9"), { recursive: true, force: true });
});

test("an unconfirmed generation is rolled back by the node's watchdog; a confirmed one stays", async () => {
    for (const [n, hold] of [[2, 1002], [3, 1003]]) generation(n, hold);
    let status = labSystem("status");
    assert.equal(status.current, 1);
    assert.ok(status.agent, "the agent runs");
    assert.equal(runningConfig(), 1001);

    // The watchdog counts from the switch, activation included (an agent restart here takes ~1-2 s).
    status = labSystem("switch", "--gen", "2", "--watchdog-s", "5");
    assert.deepEqual([status.current, status.previous], [2, 1]);
    assert.equal(runningConfig(), 1002, "the agent restarted with generation 2's config");
    // Nobody confirms: the watchdog goes back to generation 1 on its own.
    const deadline = Date.now() + 15_000;
    // Rolled back: generation 1 is current again, and its agent config runs.
    while ((current() !== 1 || runningConfig() !== 1001) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(current(), 1, "rolled back by the watchdog");
    assert.ok(fs.existsSync(path.join(root, "generations", "2", "rolled-back")));
    assert.equal(runningConfig(), 1001, "the agent runs generation 1's config again");
    assert.ok(labSystem("status").agent);

    labSystem("switch", "--gen", "3", "--watchdog-s", "5");
    labSystem("confirm", "--gen", "3");
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(current(), 3, "a confirmed generation stays");
    assert.ok(!fs.existsSync(path.join(root, "generations", "3", "rolled-back")));
    // Confirming a generation that no longer runs is an error, not a silent success.
    const late = labSystemRaw("confirm", "--gen", "2");
    assert.equal(late.status, 1);
    assert.match(late.stderr, /generation 2 is no longer running/);
});
