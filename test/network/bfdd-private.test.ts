// Network layer: the lab's FRR bfdd (a provider router's end of the gateway sessions) runs as
// user frr from a folder of its own, while the lab's folders stay private: starting it changes
// no parent folder's mode, and stopping it leaves nothing under /run.
import { after, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { BFDD_RUNTIME_ROOT, bfddRuntimeDir, daemonPid, bfddDaemon, bfddPidFile, renderBfddConf, startBfdd, stopBfdd } from "../../lab/daemons";
import { requireCommands, requireRoot } from "../helpers/prereq";

const netns = `nbt-bfdd-${process.pid}`;
// A private parent, as a clone under /root would be: frr cannot pass through it.
const parent = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-private-"));
fs.chmodSync(parent, 0o700);
const dir = path.join(parent, "lab", "routers", "provider-a", "bfdd");

after(() => {
    try { stopBfdd(dir); } catch { /* not started */ }
    spawnSync("ip", ["netns", "del", netns]);
    fs.rmSync(parent, { recursive: true, force: true });
});

test("bfdd starts under a private parent without changing any folder's mode, in a private folder of its own, and stops leaving nothing", () => {
    requireRoot("network");
    requireCommands("ip", "/usr/lib/frr/bfdd");
    const r = spawnSync("ip", ["netns", "add", netns], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const modes = () => {
        const out: Record<string, number> = {};
        for (let p = parent; p !== path.dirname(p); p = path.dirname(p)) out[p] = fs.statSync(p).mode & 0o7777;
        return out;
    };
    const before = modes();
    const rootExisted = fs.existsSync(BFDD_RUNTIME_ROOT);

    const pid = startBfdd(netns, dir, renderBfddConf([{ peer: "2001:db8::2", local: "2001:db8::1", transmitIntervalMs: 100, receiveIntervalMs: 100, detectMultiplier: 3 }]));
    assert.equal(daemonPid(bfddDaemon(dir), bfddPidFile(dir)), pid);
    assert.deepEqual(modes(), before, "no parent folder's mode changed");
    assert.equal(fs.statSync(parent).mode & 0o777, 0o700);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700, "the lab's record folder is private");

    const rt = bfddRuntimeDir(dir);
    const st = fs.statSync(rt);
    const frr = spawnSync("id", ["-u", "frr"], { encoding: "utf8" }).stdout.trim();
    assert.equal(String(st.uid), frr, "bfdd's folder belongs to frr");
    assert.equal(st.mode & 0o777, 0o700, "bfdd's folder is private");
    assert.equal(fs.statSync(BFDD_RUNTIME_ROOT).mode & 0o777, 0o711, "the root under /run can be passed, not listed");
    // It runs as frr, and its control socket is inside the private folder.
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    assert.match(status, new RegExp(`^Uid:\\s+${frr}\\s`, "m"));
    assert.ok(fs.existsSync(path.join(rt, "bfdd.sock")), "bfdctl socket in bfdd's folder");

    stopBfdd(dir);
    assert.equal(daemonPid(bfddDaemon(dir), bfddPidFile(dir)), undefined);
    assert.equal(fs.existsSync(rt), false, "bfdd's folder is removed");
    if (!rootExisted) assert.equal(fs.existsSync(BFDD_RUNTIME_ROOT), false, "and the root, once empty");
});
