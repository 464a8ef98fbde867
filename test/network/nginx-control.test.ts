// Network layer: Nginx's control endpoint, on a real Nginx with the Lua balancer, started as the
// lab starts it (lab/daemons.ts startNginx) in a namespace this test creates. The socket is in a
// folder only root and the agent's user may pass; every request must carry the control token,
// which Nginx reads at start (and without which it does not start at all). A request without
// it, or with another, is refused and changes nothing; the agent's client, with it, is served.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { AGENT_USER, nodeRuntimePaths, startNginx, stopNginx } from "../../lab/daemons";
import { createNetns, deleteNetns, netnsExists } from "../../lab/ops";
import { defaultControlTokenFile, renderNginxConf } from "../../model/network/nginx-conf";
import { NginxControl } from "../../runtime/agent/nginx-control";
import { requireCommands, requireRoot } from "../helpers/prereq";

const netns = `nbl-nc${(process.pid % 46656).toString(36)}`;
// As a park's folder (test/network/park.ts): others may pass it, so only the control folder keeps them out.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-nginx-control-"));
const rt = nodeRuntimePaths(path.join(dir, "nodes", "gate"));
const tokenFile = defaultControlTokenFile(rt.nginxControl);
const upstreams = [{ name: "web", port: 8080, members: [] }];

function request(method: string, url: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ socketPath: rt.nginxControl, method, path: url, headers: body ? { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) } : headers, timeout: 3000 }, (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on("error", reject);
        req.end(body);
    });
}

before(() => {
    requireRoot("network");
    requireCommands("nginx", "setpriv", "curl");
    assert.ok(spawnSync("id", [AGENT_USER]).status === 0, `user ${AGENT_USER} is missing: run scripts/setup`);
    fs.chmodSync(dir, 0o755);
    createNetns(netns, false);
});

after(() => {
    try {
        stopNginx(rt.nginxDir);
        stopNginx(path.join(dir, "untokened"));
    } finally {
        if (netnsExists(netns)) deleteNetns(netns);
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("Nginx refuses control requests without the control token and serves the agent's; the socket's folder keeps other users out", async () => {
    startNginx(netns, rt.nginxDir, renderNginxConf({ upstreams, controlSocket: rt.nginxControl }), rt.nginxControl);

    // The folder: root's, group nublar, 0750. The token: root's alone, 64 hex digits.
    const agentGid = Number(spawnSync("id", ["-g", AGENT_USER], { encoding: "utf8" }).stdout.trim());
    const folder = fs.statSync(path.dirname(rt.nginxControl));
    assert.deepEqual([folder.uid, folder.gid, folder.mode & 0o777], [0, agentGid, 0o750]);
    const tok = fs.statSync(tokenFile);
    assert.deepEqual([tok.uid, tok.mode & 0o777], [0, 0o600]);
    const token = fs.readFileSync(tokenFile, "utf8").trim();
    assert.match(token, /^[0-9a-f]{64}$/);

    // Without the token, with another, or with it in the wrong form: 401, and nothing changes.
    const attempts: Record<string, string>[] = [{}, { authorization: `Bearer ${"0".repeat(64)}` }, { authorization: `Bearer ${token.slice(0, -1)}` }, { authorization: token }, { authorization: `Basic ${token}` }];
    for (const headers of attempts) {
        const get = await request("GET", "/upstreams", headers);
        assert.equal(get.status, 401, JSON.stringify(headers));
        assert.match(get.body, /unauthorized/);
        assert.ok(!get.body.includes(token));
        const put = await request("PUT", "/upstreams/web", headers, JSON.stringify({ members: ["[2001:db8::66]:8080"] }));
        assert.equal(put.status, 401);
    }
    assert.equal((await request("GET", "/healthz")).status, 401, "every path of the control server");

    // The agent's client, with the token: served.
    const control = new NginxControl(rt.nginxControl, token);
    const version = await control.put("web", ["[2001:db8::1]:8080"]);
    assert.ok(version > 0);
    const sets = await control.get();
    assert.deepEqual(sets.upstreams, { web: ["[2001:db8::1]:8080"] }, "only the authenticated PUT took effect");
    await assert.rejects(new NginxControl(rt.nginxControl, "not-the-token").put("web", []), /HTTP 401/);

    // Another local user cannot even reach the socket; the agent's user can (and still needs the token).
    const curl = (user: string, group: string, auth?: string) => spawnSync("setpriv", [`--reuid=${user}`, `--regid=${group}`, "--init-groups", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
        "--unix-socket", rt.nginxControl, ...(auth ? ["-H", `Authorization: Bearer ${auth}`] : []), "http://nginx/upstreams"], { encoding: "utf8" });
    const stranger = curl("nobody", "nogroup", token);
    assert.notEqual(stranger.status, 0, "nobody reached the socket");
    assert.equal(stranger.stdout, "000");
    assert.equal(curl(AGENT_USER, AGENT_USER, token).stdout, "200");
    assert.equal(curl(AGENT_USER, AGENT_USER).stdout, "401");
});

test("Nginx does not start without its control token", () => {
    const untokened = path.join(dir, "untokened");
    for (const sub of ["logs", "temp"]) fs.mkdirSync(path.join(untokened, sub), { recursive: true });
    const conf = path.join(untokened, "nginx.conf");
    const socket = path.join(untokened, "control.sock");
    fs.writeFileSync(conf, renderNginxConf({ upstreams: [{ name: "web", port: 8081, members: [] }], controlSocket: socket, controlTokenFile: path.join(untokened, "missing.token") }));
    const r = spawnSync("ip", ["netns", "exec", netns, "nginx", "-p", untokened, "-c", conf], { encoding: "utf8" });
    assert.notEqual(r.status, 0, "Nginx started without a token");
    assert.match(fs.readFileSync(path.join(untokened, "logs", "error.log"), "utf8"), /init_by_lua error: nublar balancer: cannot read the control token: .*missing\.token: No such file or directory/);
    assert.equal(fs.existsSync(socket), false);
    // A token too short to be a secret is refused the same way.
    fs.writeFileSync(path.join(untokened, "missing.token"), "hunter2\n", { mode: 0o600 });
    const short = spawnSync("ip", ["netns", "exec", netns, "nginx", "-p", untokened, "-c", conf], { encoding: "utf8" });
    assert.notEqual(short.status, 0);
    assert.match(fs.readFileSync(path.join(untokened, "logs", "error.log"), "utf8"), /the control token in .* is 7 characters long, fewer than 32/);
});
