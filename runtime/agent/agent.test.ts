// The agent's secrets: where it reads them (its credentials folder, as systemd and the lab hand
// them over, else the source file), that a session configured for authentication never runs
// without its key, and that every control request to Nginx carries the control token.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { labSiteInput } from "../../model/site/fixtures";
import { parseSite } from "../../model/site/load";
import { planAgent } from "../../model/network/agent-plan";
import { AgentSecretError, readSecret, sessionSpecs } from "./agent";
import { NginxControl } from "./nginx-control";

const KEY = `0x${"ab".repeat(20)}`;

/** `bfdKeyFile` null: no pathAuth at all. */
function config(bfdKeyFile: string | null = "/run/keys/nublar-bfd.key") {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.ingress = [{ name: "web", port: 8080, upstreams: ["visitor-center", "control-room"] }];
    return planAgent(parseSite(raw), "gate", { paths: (n) => ({ socket: `/run/${n}.sock`, events: `/run/${n}.jsonl`, nginxControl: `/run/${n}/nginx.sock`, bfdKeyFile: bfdKeyFile ?? undefined }) });
}

function scratch(t: { after: (fn: () => void) => void }): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-agent-secrets-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    return dir;
}

test("a session configured for authentication with an empty or missing key is refused, naming the session and the key file", () => {
    const cfg = config();
    const paths = cfg.sessions.filter((s) => s.kind === "path").map((s) => s.id);
    assert.ok(paths.length > 0);
    for (const key of [{ value: "", from: "/run/keys/nublar-bfd.key" }, undefined]) {
        assert.throws(() => sessionSpecs(cfg, key), (e: Error) =>
            e instanceof AgentSecretError
            && e.message.includes(paths[0])
            && e.message.includes("/run/keys/nublar-bfd.key")
            && /configured for meticulous-keyed-sha1 authentication \(pathAuth\), but its BFD key is (empty|missing)/.test(e.message)
            && /Refusing to run them unauthenticated/.test(e.message));
    }
    // Where the key came from is named as the agent read it: its credential and the credential's source.
    assert.throws(() => sessionSpecs(cfg, { value: "", from: "credential bfd-key (/run/credentials/nublar-agent.service/bfd-key, loaded from /run/keys/nublar-bfd.key)" }),
        /credential bfd-key .*loaded from \/run\/keys\/nublar-bfd\.key/);
});

test("with its key, every path session is authenticated and no gateway session is; without pathAuth at all, path sessions run unauthenticated", () => {
    const cfg = config();
    const specs = sessionSpecs(cfg, { value: KEY, from: "test" });
    for (const { session, spec } of specs) {
        if (session.kind === "path") {
            assert.deepEqual(spec.auth, { type: "meticulous-keyed-sha1", keys: [{ id: 1, secret: KEY }], sendKeyId: 1 }, session.id);
            assert.equal(spec.allowUnauthenticated, undefined);
        } else {
            assert.equal(spec.auth, undefined, session.id);
        }
    }
    const open = sessionSpecs(config(null), undefined);
    assert.ok(open.filter((x) => x.session.kind === "path").every((x) => x.spec.allowUnauthenticated === true && !x.spec.auth));
});

test("secrets come from the credentials folder when the supervisor gave one, else from the source file; a missing one is named", (t) => {
    const dir = scratch(t);
    const source = path.join(dir, "bfd.key");
    fs.writeFileSync(source, `${KEY}\n`);
    assert.deepEqual(readSecret("bfd-key", source, {}), { value: KEY, from: source });
    const creds = path.join(dir, "credentials");
    fs.mkdirSync(creds);
    fs.writeFileSync(path.join(creds, "bfd-key"), " 0xcopy \n");
    const fromCredential = readSecret("bfd-key", source, { CREDENTIALS_DIRECTORY: creds });
    assert.equal(fromCredential.value, "0xcopy", "the credential, not the source");
    assert.equal(fromCredential.from, `credential bfd-key (${path.join(creds, "bfd-key")}, loaded from ${source})`);
    assert.throws(() => readSecret("nginx-control-token", "/run/x/token", { CREDENTIALS_DIRECTORY: creds }),
        (e: Error) => e instanceof AgentSecretError && /cannot read credential nginx-control-token .*loaded from \/run\/x\/token\): ENOENT/.test(e.message));
    assert.throws(() => readSecret("bfd-key", path.join(dir, "nope"), {}), /cannot read .*nope: ENOENT/);
});

test("the agent's config names the control token's source beside Nginx's socket unless told otherwise", () => {
    assert.equal(config().paths.nginxControlToken, "/run/gate/control.token");
    const raw = labSiteInput(["gate", "visitor-center"], { lab: { tag: "t1" } });
    const plain = planAgent(parseSite(raw), "visitor-center", { paths: (n) => ({ socket: `/run/${n}.sock`, events: `/run/${n}.jsonl`, nginxControl: `/run/${n}/nginx.sock` }) });
    assert.equal(plain.paths.nginxControlToken, undefined, "no ingress, no token");
});

test("every request to Nginx's control endpoint carries the control token", async (t) => {
    const dir = scratch(t);
    const socket = path.join(dir, "control.sock");
    const seen: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
        seen.push(req.headers.authorization);
        req.resume();
        req.on("end", () => {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(req.method === "GET" ? JSON.stringify({ boot_id: "b", generation: 1, upstreams: {} }) : JSON.stringify({ version: 2 }));
        });
    });
    await new Promise<void>((r) => server.listen(socket, r));
    t.after(() => server.close());
    const control = new NginxControl(socket, "s3cret-token");
    await control.get();
    assert.equal(await control.put("web", ["[2001:db8::1]:80"]), 2);
    assert.deepEqual(seen, ["Bearer s3cret-token", "Bearer s3cret-token"]);
});
