// Engine layer: a lab brought up by nublar's last release on Pulumi dynamic providers moves to
// nublar's own provider in place. The previous commit's program brings the lab up (from a
// checkout of that commit); that checkout is then upgraded in place to this code, whose resources
// alias their old dynamic types. While Nginx serves a steady stream of requests, the engine must
// replace nothing and delete nothing that exists on the machine (the only deletes are the
// per-node components that held the deployments, state only, and the dynamic provider itself),
// and update only each node's deployment, whose bundle records the new commit. A refresh then
// drops the old code from the state.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { cleanLab } from "../../lab/inspect";
import { netnsExists, sshdPid } from "../../lab/ops";
import { planLab } from "../../model/network/lab-plan";
import { parseSite } from "../../model/site/load";
import { DYNAMIC_CODE_FIELD, DYNAMIC_TYPES, RESOURCE_TYPES } from "../../provider/tokens";
import { requireCommands, requireRoot } from "../helpers/prereq";
import { engineLabSite, ROOT, TestProject } from "./project";

/** The last commit whose resources were dynamic resources (before provider/ existed). */
const DYNAMIC_COMMIT = "28e7c7031299b96256f82b627327b339c8682ce4";

const tag = `tm${(process.pid % 46656).toString(36)}`;
const STACK = `migrate-${tag}`;
const labSite = engineLabSite(tag, process.pid + 7);
const plan = planLab(parseSite(labSite));
const checkout = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-dynamic-"));
let project: TestProject | undefined;

function pulumi(args: string[]) {
    return project!.pulumi(args, STACK, 600_000);
}

function ok(res: ReturnType<typeof pulumi>, what: string) {
    assert.equal(res.status, 0, `${what} failed:\n${res.output}`);
    return res;
}

function git(args: string[], cwd = ROOT) {
    const r = spawnSync("git", args, { cwd, encoding: "utf8" });
    assert.equal(r.status, 0, `git ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
}

interface StateResource { urn: string; type: string; id?: string; custom?: boolean; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }

function exported(): { resources: StateResource[]; text: string } {
    const text = ok(pulumi(["stack", "export"]), "stack export").stdout;
    return { resources: JSON.parse(text).deployment.resources ?? [], text };
}

before(() => {
    requireRoot("engine");
    requireCommands("pulumi", "pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs", "git", "curl");
    // That commit's program, sharing this checkout's installed packages and engine.
    // The lab runs each node's agent as the user nublar, from the checkout: readable by others.
    fs.chmodSync(checkout, 0o755);
    git(["clone", "--quiet", "--no-checkout", ROOT, checkout]);
    git(["checkout", "--quiet", DYNAMIC_COMMIT], checkout);
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(checkout, "node_modules"));
    // The engine and tools setup built, shared; the provider is built by the checkout itself.
    fs.mkdirSync(path.join(checkout, ".tools"));
    for (const tool of fs.readdirSync(path.join(ROOT, ".tools")).filter((t) => t !== "provider")) {
        fs.symlinkSync(path.join(ROOT, ".tools", tool), path.join(checkout, ".tools", tool));
    }
    project = new TestProject(checkout);
    project.addStack(STACK, labSite);
});

after(() => {
    if (project) {
        if (plan.nodes.some((n) => netnsExists(n.netns))) pulumi(["destroy", "--yes", "--skip-preview"]);
        cleanLab(tag, project.stateDir);
        project.remove();
    }
    fs.rmSync(checkout, { recursive: true, force: true });
});

test("the previous release brings a lab up on dynamic providers, with their code in the state", () => {
    ok(pulumi(["up", "--yes", "--skip-preview"]), "up on the dynamic-provider commit");
    const { resources } = exported();
    const dynamic = resources.filter((r) => r.type.startsWith("pulumi-nodejs:dynamic/"));
    assert.ok(dynamic.length > 30, `dynamic resources: ${dynamic.length}`);
    assert.ok(dynamic.every((r) => typeof r.outputs?.[DYNAMIC_CODE_FIELD] === "string"), "each carries its provider's code");
});

test("this checkout moves it to nublar's provider in place: nothing replaced, nothing on the machine deleted, no request lost", () => {
    const sshdBefore = plan.nodes.map((n) => sshdPid(path.join(project!.stateDir, plan.stateSubdir, "nodes", n.name)));
    const generationBefore = plan.nodes.map((n) => generation(n.name));
    const before = exported();
    const bytesBefore = before.text.length;
    upgradeCheckout();

    const preview = JSON.parse(ok(pulumi(["preview", "--json"]), "preview on the provider").stdout) as { steps: { op: string; urn: string }[] };
    const typeOf = (urn: string) => urn.split("::")[2].split("$").pop()!;
    const byOp = (op: string) => preview.steps.filter((s) => s.op === op).map((s) => typeOf(s.urn));
    for (const op of ["replace", "create-replacement", "delete-replaced", "discard", "read"]) assert.deepEqual(byOp(op), [], `no ${op} steps`);
    // Deleted: the components that wrapped each node's deployment (and the dynamic provider, which
    // the engine drops without a step when nothing uses it). Neither exists outside the state.
    assert.deepEqual(byOp("delete").filter((t) => t !== "pulumi:providers:pulumi-nodejs"), plan.nodes.map(() => "nublar:nixos:NixosNode"));
    // Created: nothing (the engine adds nublar's default provider without a step).
    assert.deepEqual(byOp("create").filter((t) => !t.startsWith("pulumi:providers:")), []);
    // Updated: only each node's deployment, because its bundle records the program's commit
    // (a new one after any upgrade: every node is deployed again, canary first, BFD-gated).
    // Nothing else changes (the preview lists no step for a resource kept as it is).
    assert.deepEqual(byOp("update"), plan.nodes.map(() => RESOURCE_TYPES.deployment));

    // Clients of the park's ingress, through the whole move.
    const gate = plan.nodes.find((n) => n.name === labSite.nodes[0].name)!;
    const codes = path.join(project!.work, "codes.txt");
    const load = spawn("ip", ["netns", "exec", gate.netns, "sh", "-c", `while :; do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 2 http://[::1]:${labSite.ingress[0].port}/ >> ${codes}; sleep 0.1; done`], { stdio: "ignore", detached: true });
    const stopLoad = () => { try { process.kill(-load.pid!, "SIGTERM"); } catch { /* already ended */ } };
    try {
        const t0 = performance.now();
        ok(pulumi(["up", "--yes", "--skip-preview"]), "up on the provider");
        process.stderr.write(`# the move took ${Math.round(performance.now() - t0)} ms\n`);
        // A few more requests after it, then stop.
        spawnSync("sleep", ["1"]);
    } finally {
        stopLoad();
    }
    const seen = fs.readFileSync(codes, "utf8").trim().split("\n");
    assert.ok(seen.length > 20, `only ${seen.length} requests were made`);
    assert.deepEqual(seen.filter((c) => c !== "200"), [], `of ${seen.length} requests during the move`);
    process.stderr.write(`# ${seen.length} requests through Nginx during the move, ${seen.filter((c) => c === "200").length} answered 200\n`);

    // Nothing else on the machine was touched: the same sshd processes; each node one generation on.
    assert.deepEqual(plan.nodes.map((n) => sshdPid(path.join(project!.stateDir, plan.stateSubdir, "nodes", n.name))), sshdBefore);
    assert.deepEqual(plan.nodes.map((n) => generation(n.name)), generationBefore.map((g) => g + 1));

    // The outputs still hold the old code until a refresh, whose reads drop it (`npm run lab`
    // runs one after an up that leaves any).
    assert.ok(exported().text.includes(DYNAMIC_CODE_FIELD));
    ok(pulumi(["refresh", "--yes", "--skip-preview"]), "refresh on the provider");
    // No code is left in the state; every resource is nublar's own or Pulumi's.
    const { resources, text } = exported();
    assert.ok(!text.includes(DYNAMIC_CODE_FIELD), "no provider code in the state");
    assert.deepEqual(resources.filter((r) => !/^(nublar:|pulumi:)/.test(r.type)).map((r) => r.type), []);
    // Every custom resource is the one the dynamic provider made, under its new type: the same
    // ids (a namespace's name, a key's UUID, a node's name), and every one accounted for.
    const kind = (type: string) => Object.entries(DYNAMIC_TYPES).find(([, t]) => t === type)?.[0] as keyof typeof RESOURCE_TYPES;
    const ids = (rs: StateResource[], type: (r: StateResource) => string | undefined) => rs.map((r) => [type(r), r.id]).filter(([t]) => t).map((x) => x.join(" ")).sort();
    assert.deepEqual(ids(resources, (r) => (r.type.startsWith("nublar:") && !r.custom ? undefined : r.type.startsWith("nublar:") ? r.type : undefined)),
        ids(before.resources, (r) => (kind(r.type) ? RESOURCE_TYPES[kind(r.type)] : undefined)));
    process.stderr.write(`# state: ${bytesBefore} bytes before, ${text.length} after, ${resources.length} resources\n`);
    assert.ok(text.length < bytesBefore, `the state shrank (${bytesBefore} → ${text.length} bytes)`);
});

test("a second up on the provider changes nothing", () => {
    ok(pulumi(["up", "--yes", "--expect-no-changes", "--skip-preview"]), "second up");
});

test("destroy on the provider takes the migrated lab down", () => {
    ok(pulumi(["destroy", "--yes", "--skip-preview"]), "destroy");
    for (const ns of [...plan.nodes.map((n) => n.netns), ...plan.routers.map((r) => r.netns)]) assert.ok(!netnsExists(ns), `${ns} removed`);
});

/**
 * Upgrade the checkout in place to this one's code, as `git pull` and `scripts/setup` would: its
 * files become this working tree's (committed or not; files the old commit had and this one does
 * not are removed) in a new commit, and it builds and installs its own provider plugin.
 */
function upgradeCheckout(): void {
    const list = (cwd: string, ...which: string[]) => git(["ls-files", "-z", ...which], cwd).split("\0").filter((f) => f && fs.existsSync(path.join(cwd, f)));
    const wanted = new Set(list(ROOT, "--cached", "--others", "--exclude-standard"));
    for (const f of list(checkout, "--cached")) if (!wanted.has(f)) fs.rmSync(path.join(checkout, f), { force: true });
    for (const f of wanted) {
        fs.mkdirSync(path.dirname(path.join(checkout, f)), { recursive: true });
        fs.cpSync(path.join(ROOT, f), path.join(checkout, f));
    }
    git(["add", "-A"], checkout);
    git(["-c", "user.name=nublar test", "-c", "user.email=test@nublar.invalid", "commit", "-q", "--no-verify", "-m", "upgrade to the code under test"], checkout);
    const r = spawnSync(path.join(checkout, "scripts", "build-provider"), ["--pulumi-home", path.join(project!.work, "pulumi-home")], { encoding: "utf8", env: project!.env() });
    assert.equal(r.status, 0, `build-provider in the upgraded checkout:\n${r.stdout}\n${r.stderr}`);
}

/** A node's generation as the node itself records it (lab/node-system.ts). */
function generation(node: string): number {
    return Number(fs.readFileSync(path.join(project!.stateDir, plan.stateSubdir, "nodes", node, "system", "current"), "utf8").trim());
}
