// Exit codes by error kind (model/errors.ts): every user-facing error class carries its kind,
// and the nublar command exits with that kind's code, printing the message alone.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { EXIT_CODES, UserFacingError, type ErrorKind } from "../model/errors";
import { PlanError } from "../model/network/addressing";
import { AgentConfigError } from "../model/network/agent-config";
import { SiteConfigError } from "../model/site/load";
import { ClientError, HostKeyMismatchError, UnreachableError } from "../runtime/agent/client";
import { LedgerConfigError } from "../runtime/ledger/config";
import { EventsUnreachable, EventsUserError } from "./events";
import { EXIT_UNREACHABLE as LEDGER_EXIT_UNREACHABLE, LedgerUnreachable, LedgerUserError } from "./ledger";
import { EXIT_UNREACHABLE } from "./network";
import { freePort } from "../test/helpers/ports";

const BIN = path.join(__dirname, "nublar.js");

function nublar(...args: string[]): Promise<{ status: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        child.on("error", reject);
        child.on("close", (status) => resolve({ status, stderr }));
    });
}

test("the kinds' exit codes: user 1, unreachable 3 (the code the network and ledger commands document)", () => {
    assert.deepEqual(EXIT_CODES, { user: 1, unreachable: 3 });
    assert.equal(EXIT_CODES.unreachable, EXIT_UNREACHABLE);
    assert.equal(EXIT_CODES.unreachable, LEDGER_EXIT_UNREACHABLE);
});

test("every user-facing error class carries its kind, and stays an instance of its own class and of Error", () => {
    const cases: [Error, ErrorKind, string?][] = [
        [new ClientError("x"), "user"],
        [new UnreachableError("x"), "unreachable"],
        [new HostKeyMismatchError("x"), "unreachable"],
        [new EventsUserError("x"), "user"],
        [new EventsUnreachable("x"), "unreachable"],
        [new LedgerUserError("x"), "user"],
        [new LedgerUnreachable("x"), "unreachable"],
        [new LedgerConfigError("x"), "user", "LedgerConfigError"],
        [new SiteConfigError("stack.yaml", ["nodes: required"]), "user", "SiteConfigError"],
        [new PlanError("x"), "user", "PlanError"],
        [new AgentConfigError("x"), "user", "AgentConfigError"],
    ];
    for (const [err, kind, name] of cases) {
        const what = err.constructor.name;
        assert.ok(err instanceof UserFacingError && err instanceof Error, what);
        assert.ok(err instanceof (err.constructor as new (...a: never[]) => Error), what);
        assert.equal((err as UserFacingError).kind, kind, what);
        if (name) assert.equal(err.name, name, what);
    }
    assert.ok(new HostKeyMismatchError("x") instanceof UnreachableError);
    assert.equal(new SiteConfigError("s", ["p"]).problems[0], "p");
});

test("through the nublar binary, each kind exits with its code and prints only the message", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-exit-"));
    try {
        const missing = (name: string) => path.join(dir, name);
        const badStack = path.join(dir, "Pulumi.bad.yaml");
        fs.writeFileSync(badStack, "config:\n  nublar:site:\n    name: 7\n");
        // A valid ledger config whose service is not running.
        const ledgerConfig = path.join(dir, "ledger.json");
        fs.writeFileSync(ledgerConfig, JSON.stringify({
            site: "t", shards: ["network"], endpoints: [{ host: "::1", port: 5432 }],
            ingest: { user: "u", password: "p" }, auditor: { user: "u", password: "p" }, checkpoint: { entries: 100, ms: 1000 },
            signingKeyFile: missing("key"), publicKeyFile: missing("key.pub"), lakeDir: missing("lake"), listen: { socket: missing("ledger.sock") },
        }));
        const closedPort = await freePort();
        const badAgent = path.join(dir, "agent.json");
        fs.writeFileSync(badAgent, JSON.stringify({ version: 1, bogus: true }));
        const cases: { what: string; args: string[]; code: number; stderr: RegExp }[] = [
            { what: "UserError", args: ["site", "show", "--stack", "nowhere"], code: 1, stderr: /no stack file/ },
            { what: "SiteConfigError", args: ["site", "show", "--file", badStack], code: 1, stderr: /the site description is invalid/ },
            { what: "LedgerConfigError", args: ["ledger", "status", "--config", missing("none.json")], code: 1, stderr: /no ledger config at/ },
            { what: "LedgerUserError", args: ["ledger", "check-proof", missing("proof.json")], code: 1, stderr: /cannot read proof/ },
            { what: "EventsUserError", args: ["bus", "serve", "--config", missing("pipeline.json"), "--only", "bogus"], code: 1, stderr: /--only: unknown part\(s\) bogus/ },
            { what: "AgentConfigError", args: ["agent", "--config", badAgent], code: 1, stderr: /agent config .* is not valid/ },
            { what: "UnreachableError", args: ["routes", "--socket", missing("agent.sock")], code: EXIT_UNREACHABLE, stderr: /cannot reach the agent socket/ },
            { what: "LedgerUnreachable", args: ["ledger", "status", "--config", ledgerConfig], code: EXIT_UNREACHABLE, stderr: /the ledger service is not running/ },
            { what: "EventsUnreachable", args: ["bus", "send", "--sensor", "s1", "--kind", "temperature", "--value", "1", "--gateway", `http://[::1]:${closedPort}/v1/readings`], code: EXIT_UNREACHABLE, stderr: /cannot reach the sensor gateway/ },
        ];
        // Without --node or --socket the client looks for the node's own agent socket first.
        if (!fs.existsSync("/run/nublar/agent.sock")) cases.push({ what: "ClientError", args: ["bfd", "peers"], code: 1, stderr: /which node\?/ });
        else t.diagnostic("ClientError case skipped: this machine runs an agent at /run/nublar/agent.sock");
        const results = await Promise.all(cases.map((c) => nublar(...c.args)));
        cases.forEach((c, i) => {
            const r = results[i];
            assert.equal(r.status, c.code, `${c.what}: exit ${r.status}\n${r.stderr}`);
            assert.match(r.stderr, /^nublar: /, c.what);
            assert.match(r.stderr, c.stderr, c.what);
            assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.what}: no stack trace`);
        });
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
