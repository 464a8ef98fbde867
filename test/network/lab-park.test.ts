// Network layer: the lab's operations against the real kernel and a real sshd,
// in namespaces this test creates under its own tag, removed even on failure.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { labSiteInput } from "../../model/site/fixtures";
import { parseSite } from "../../model/site/load";
import { planLab, type LabPlan } from "../../model/network/lab-plan";
import * as ops from "../../lab/ops";
import { cleanLab, inspectLab } from "../../lab/inspect";
import { labSshPaths, renderKnownHosts, renderSshConfig } from "../../model/network/lab-ssh-config";
import { requireCommands, requireRoot } from "../helpers/prereq";

const tag = `tn${(process.pid % 46656).toString(36)}`;
// Under /tmp on purpose: the lab must work from a clone in a world-writable directory.
const stateRoot = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-net-"));
let plan: LabPlan;

/** True while the process exists and is not a zombie waiting to be reaped by init. */
function alive(pid: number): boolean {
    try {
        return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
        return false;
    }
}

function sh(netns: string, ...cmd: string[]) {
    return spawnSync("ip", ["netns", "exec", netns, ...cmd], { encoding: "utf8" });
}

function ssh(node: string, configFile: string, ...cmd: string[]) {
    return spawnSync("ssh", ["-F", configFile, node, ...cmd], { encoding: "utf8", timeout: 20_000 });
}

before(() => {
    requireRoot("network");
    requireCommands("ip", "ping", "ssh", "ssh-keygen", "/usr/sbin/sshd");
    plan = planLab(parseSite(labSiteInput(["gate", "aviary"], {
        name: "net-test",
        lab: { tag, managementPrefix: "fd6e:626c:7465::/64" },
    })));

    // Apply the plan in dependency order, as the LabPark component does through Pulumi.
    const paths = labSshPaths(plan, stateRoot);
    ops.createBridge(plan.mgmt.bridge, `${plan.mgmt.hostAddress}/64`);
    for (const r of plan.routers) ops.createNetns(r.netns, true);
    const clientKey = ops.ensureSshKey(paths.identityFile, "net-test");
    const hostKeys = plan.nodes.map((node) => {
        ops.createNetns(node.netns, false);
        ops.createVeth({ netns: node.netns, ifname: node.mgmt.ifname, addresses: [`${node.mgmt.address}/64`] },
            { ifname: node.mgmt.hostIfname, addresses: [], master: plan.mgmt.bridge });
        for (const u of node.uplinks) {
            ops.createVeth({ netns: node.netns, ifname: u.ifname, addresses: [`${u.address}/64`] },
                { netns: u.routerNetns, ifname: u.routerIfname, addresses: [`${u.routerAddress}/64`] });
        }
        const dir = path.join(stateRoot, plan.stateSubdir, "nodes", node.name);
        const hostKey = ops.ensureSshKey(path.join(dir, "ssh_host_ed25519_key"), node.name);
        ops.startSshd({ netns: node.netns, hostname: node.name, dir, hostKeyFile: path.join(dir, "ssh_host_ed25519_key"),
            listen: [node.mgmt.address, ...node.uplinks.map((u) => u.address)], authorizedKeys: [clientKey] });
        return hostKey;
    });
    ops.writeFile(paths.knownHostsFile, renderKnownHosts(plan, hostKeys), 0o644);
    ops.writeFile(paths.configFile, renderSshConfig(plan, paths), 0o644);
});

after(() => {
    const { kept } = cleanLab(tag, stateRoot);
    fs.rmSync(stateRoot, { recursive: true, force: true });
    assert.deepEqual(kept, [], "everything the test created was removed");
});

test("the plan is applied: every node healthy, sshd running", () => {
    const states = inspectLab(plan, stateRoot);
    for (const s of states) assert.ok(s.healthy, `${s.name}: ${JSON.stringify(s)}`);
});

test("each node reaches both provider gateways over its own uplink", () => {
    for (const node of plan.nodes) {
        for (const u of node.uplinks) {
            const res = sh(node.netns, "ping", "-6", "-c", "1", "-W", "2", "-I", u.ifname, u.routerAddress);
            assert.equal(res.status, 0, `${node.name} -> ${u.provider}: ${res.stdout}${res.stderr}`);
        }
    }
});

test("static addresses survive a link flap (keep_addr_on_down)", () => {
    const node = plan.nodes[0];
    const up = node.uplinks[0];
    assert.equal(sh(node.netns, "ip", "link", "set", up.ifname, "down").status, 0);
    const down = sh(node.netns, "ip", "-6", "-br", "addr", "show", "dev", up.ifname);
    assert.ok(down.stdout.includes(up.address), `address kept while down: ${down.stdout}`);
    assert.equal(sh(node.netns, "ip", "link", "set", up.ifname, "up").status, 0);
    // Give the veth a moment to come back, then the gateway answers again.
    const res = sh(node.netns, "ping", "-6", "-c", "1", "-W", "3", "-I", up.ifname, up.routerAddress);
    assert.equal(res.status, 0, res.stdout + res.stderr);
});

test("ssh reaches every node with its pinned host key", () => {
    const { configFile } = labSshPaths(plan, stateRoot);
    for (const node of plan.nodes) {
        const res = ssh(node.name, configFile, "hostname; ip -6 -br addr show dev", node.uplinks[0].ifname);
        assert.equal(res.status, 0, res.stderr);
        assert.equal(res.stdout.split("\n")[0], node.name, "the node reports its own host name");
        assert.ok(res.stdout.includes(node.uplinks[0].address), `ran inside ${node.name}: ${res.stdout}`);
    }
});

test("ssh refuses a node whose key does not match the pin", () => {
    const paths = labSshPaths(plan, stateRoot);
    const wrongKey = path.join(stateRoot, "wrong_key");
    const otherKey = ops.ensureSshKey(wrongKey, "impostor");
    const knownHosts = path.join(stateRoot, "wrong_known_hosts");
    const config = path.join(stateRoot, "wrong_ssh_config");
    // The same config, with gate's pin replaced by a key gate does not hold.
    fs.writeFileSync(knownHosts, renderKnownHosts(plan, plan.nodes.map(() => otherKey)));
    fs.writeFileSync(config, renderSshConfig(plan, { ...paths, knownHostsFile: knownHosts }));
    const res = ssh(plan.nodes[0].name, config, "true");
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
});

test("a namespace holding a process that is not the lab's is kept, not emptied", async () => {
    const node = plan.nodes[1];
    const stranger = spawn("ip", ["netns", "exec", node.netns, "sleep", "60"], { stdio: "ignore" });
    try {
        await new Promise((r) => setTimeout(r, 300));
        assert.throws(() => ops.deleteNetns(node.netns), /processes still run inside it/);
        assert.ok(ops.netnsExists(node.netns));
    } finally {
        stranger.kill("SIGTERM");
        await new Promise((r) => stranger.once("exit", r));
    }
});

test("clean removes the lab's sshd, namespaces, bridge and files", () => {
    const pids = plan.nodes.map((n) => ops.sshdPid(path.join(stateRoot, plan.stateSubdir, "nodes", n.name)));
    const { removed, kept } = cleanLab(tag, stateRoot);
    assert.deepEqual(kept, []);
    assert.ok(removed.some((r) => r.startsWith("bridge")));
    for (const pid of pids) assert.ok(pid !== undefined && !alive(pid), `sshd ${pid} ended`);
    for (const ns of [...plan.nodes.map((n) => n.netns), ...plan.routers.map((r) => r.netns)]) assert.ok(!ops.netnsExists(ns), `${ns} gone`);
    assert.ok(!ops.linkExists(undefined, plan.mgmt.bridge));
    assert.ok(!fs.existsSync(path.join(stateRoot, plan.stateSubdir)));
});
