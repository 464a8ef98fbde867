// Network layer: the lab's switch-to-configuration (lab/node-system.ts) on its
// own, in a namespace this test creates: the watchdog rolls an unconfirmed generation back
// by itself (the path a deploy takes when the new generation cut it off), and a confirmed one
// stays. The engine test covers the deploy around it; this covers the node's side alone.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { agentDaemon, daemonPid } from "../../lab/daemons";
import { createNetns, deleteNetns, netnsExists } from "../../lab/ops";
import { requireRoot } from "../helpers/prereq";

const ROOT = path.resolve(__dirname, "../..");
const netns = `nbl-ls${(process.pid % 46656).toString(36)}`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-labsys-"));
const root = path.join(dir, "system");
const nodeDir = path.join(dir, "node");

function labSystem(...args: string[]) {
    const r = spawnSync("ip", ["netns", "exec", netns, process.execPath, "--import", "tsx", "lab/node-system.ts", ...args, "--root", root, "--node-dir", nodeDir],
        { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `lab-system ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
}

/** A generation: an agent with no sessions (it still runs, with its API), and no tunnels. */
function generation(n: number, holdDownMs: number): void {
    const g = path.join(root, "generations", String(n));
    fs.mkdirSync(g, { recursive: true });
    const agentDir = path.join(nodeDir, "agent");
    fs.writeFileSync(path.join(g, "overlay.json"), JSON.stringify({ hub: false, overlays: [] }));
    fs.writeFileSync(path.join(g, "agent.json"), JSON.stringify({
        version: 1, site: "labsys", node: "n1", loopback: "2001:db8:ffff::1", routeProtocol: 199, holdDownMs, startupGraceMs: 0,
        // Fast timers: a graceful stop waits two detection times for its AdminDown to go out.
        timers: { transmitIntervalMs: 100, receiveIntervalMs: 100, detectMultiplier: 3 },
        uplinks: [], sessions: [], routes: [], ingress: [],
        paths: { socket: path.join(agentDir, "agent.sock"), events: path.join(agentDir, "events.jsonl") },
    }));
}

const current = () => Number(fs.readFileSync(path.join(root, "current"), "utf8"));
const runningConfig = () => JSON.parse(fs.readFileSync(path.join(nodeDir, "agent", "agent.json"), "utf8")).holdDownMs;

before(() => {
    requireRoot("network");
    createNetns(netns, false);
});

after(() => {
    try {
        if (netnsExists(netns)) labSystem("deactivate");
    } finally {
        for (const g of fs.existsSync(path.join(root, "generations")) ? fs.readdirSync(path.join(root, "generations")) : []) {
            const pidFile = path.join(root, "generations", g, "watchdog.pid");
            const pid = daemonPid({ dir: path.dirname(pidFile), marker: `watchdog --root ${root} ` }, pidFile);
            if (pid) process.kill(pid, "SIGTERM");
        }
        const agent = daemonPid(agentDaemon(path.join(nodeDir, "agent")));
        if (agent) process.kill(agent, "SIGTERM");
        spawnSync("sleep", ["1"]);
        if (netnsExists(netns)) deleteNetns(netns);
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("an unconfirmed generation is rolled back by the node's watchdog; a confirmed one stays", async () => {
    for (const [n, hold] of [[1, 1001], [2, 1002], [3, 1003]]) generation(n, hold);
    let status = labSystem("switch", "--gen", "1", "--watchdog-s", "0");
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
    const late = spawnSync("ip", ["netns", "exec", netns, process.execPath, "--import", "tsx", "lab/node-system.ts", "confirm", "--gen", "2", "--root", root, "--node-dir", nodeDir], { cwd: ROOT, encoding: "utf8" });
    assert.equal(late.status, 1);
    assert.match(late.stderr, /generation 2 is no longer running/);
});
