// A deploy's first connection against a real SSH server (ssh2's) on ::1: a node still booting
// is retried until it answers, a wrong host key is waited out but never accepted, and a node
// that never answers fails after the wait with the reason.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { Server } from "ssh2";
import { HostKeyMismatchError, UnreachableError } from "../agent/client";
import { freePort } from "../../test/helpers/ports";
import { connectWhenUp } from "./deploy";
import { newSshKeyPair } from "./ssh-key";

const hostKey = newSshKeyPair();
const clientKey = newSshKeyPair();

function sshServer(key: string = hostKey.private): Server {
    return new Server({ hostKeys: [key] }, (client) => {
        client.on("authentication", (ctx) => ctx.accept());
        client.on("ready", () => client.end());
        client.on("error", () => {});
    });
}

const access = (port: number, pinned: string, reachableWithinMs?: number) => ({
    host: "::1", port, user: "root", hostKey: pinned, reachableWithinMs,
    identityFile: undefined as string | undefined,
});

test("a node that is still booting is retried until it answers, with one progress line", async (t) => {
    const port = await freePort();
    const server = sshServer();
    t.after(() => server.close());
    const lines: string[] = [];
    const started = Date.now();
    setTimeout(() => server.listen(port, "::1"), 1200);
    const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/nublar-deploy-test-");
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(`${dir}/id`, clientKey.private, { mode: 0o600 });
    const conn = await connectWhenUp({ ...access(port, hostKey.public, 20_000), identityFile: `${dir}/id` }, "node 'edge-1'", (l) => lines.push(l), 200);
    conn.end();
    assert.ok(Date.now() - started >= 1200, "it connected only once the server was up");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /node 'edge-1': cannot reach .*; retrying every 0.2 s/);
});

test("within the boot window a wrong host key is waited out, never accepted: a node whose image answers with its own key first is reached once the pinned one is in place", async (t) => {
    const port = await freePort();
    const imageKey = newSshKeyPair();
    const early = sshServer(imageKey.private);
    await new Promise<void>((r) => early.listen(port, "::1", r));
    const late = sshServer();
    t.after(() => {
        early.close();
        late.close();
    });
    // After a second the image's sshd restarts with the pinned key.
    setTimeout(() => early.close(() => late.listen(port, "::1")), 1000);
    const lines: string[] = [];
    const conn = await connectWhenUp(access(port, hostKey.public, 20_000), "node 'edge-1'", (l) => lines.push(l), 200);
    conn.end();
    assert.match(lines[0], /presented a host key that does not match the pinned one/);
});

test("a wrong host key that stays wrong fails with that reason after the window, and at once without one; an unreachable node fails after the window", async (t) => {
    const port = await freePort();
    const server = sshServer();
    t.after(() => server.close());
    await new Promise<void>((r) => server.listen(port, "::1", r));
    const other = newSshKeyPair().public;
    const t0 = Date.now();
    await assert.rejects(connectWhenUp(access(port, other, 1000), "node 'edge-1'", () => {}, 200), (e: Error) => e instanceof HostKeyMismatchError && /does not match the pinned one/.test(e.message));
    assert.ok(Date.now() - t0 >= 800, "waited out the window");
    const t1 = Date.now();
    await assert.rejects(connectWhenUp(access(port, other), "node 'edge-1'", () => {}, 200), HostKeyMismatchError);
    assert.ok(Date.now() - t1 < 800, "no window: one try");
    const closed = await freePort();
    const t2 = Date.now();
    await assert.rejects(connectWhenUp(access(closed, hostKey.public, 1000), "node 'edge-2'", () => {}, 200), (e: Error) => e instanceof UnreachableError && !(e instanceof HostKeyMismatchError) && /cannot reach node 'edge-2'/.test(e.message));
    assert.ok(Date.now() - t2 >= 800, "retried until the window was over");
    const t3 = Date.now();
    await assert.rejects(connectWhenUp(access(closed, hostKey.public), "node 'edge-2'", () => {}, 200), UnreachableError);
    assert.ok(Date.now() - t3 < 800);
});

test("secrets land root's alone: 0600 files in 0700 folders, per generation; no service reads them there (each gets a credential copy)", async (t) => {
    const { installSecretCommand } = await import("./deploy");
    const { spawnSync } = await import("node:child_process");
    const fs = await import("node:fs");
    const keysDir = fs.mkdtempSync("/tmp/nublar-keys-test-");
    t.after(() => fs.rmSync(keysDir, { recursive: true, force: true }));
    const key = `0x${"ab".repeat(20)}\n`;
    for (const gen of [1, 2]) {
        // A permissive umask must not matter.
        const r = spawnSync("sh", ["-c", `umask 000; ${installSecretCommand(keysDir, gen, "nublar-bfd.key")}`], { input: key, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        const file = `${keysDir}/nublar-generations/${gen}/nublar-bfd.key`;
        assert.equal(fs.readFileSync(file, "utf8"), key);
        const st = fs.statSync(file);
        assert.equal(st.mode & 0o777, 0o600);
        assert.equal(st.uid, process.getuid!());
        for (const dir of [`${keysDir}/nublar-generations`, `${keysDir}/nublar-generations/${gen}`]) assert.equal(fs.statSync(dir).mode & 0o777, 0o700, dir);
    }
    assert.throws(() => installSecretCommand(keysDir, 1, "../x"), /not a plain file name/);
    assert.throws(() => installSecretCommand(keysDir, 1, ".hidden"), /not a plain file name/);
});
