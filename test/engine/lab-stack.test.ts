// Engine layer: the real Pulumi CLI runs the nublar program on a local file
// backend: preview, up, a second up with no changes, bad config, destroy.
// It uses its own temporary project folder, stack names, lab tag and state, so it
// never touches a lab the user is running, and it cleans up even when it fails.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { parse, stringify } from "yaml";
import { cleanLab } from "../../lab/inspect";
import { cutUplink, netnsExists, linkExists, restoreUplink, sshdPid } from "../../lab/ops";
import { planLab } from "../../model/network/lab-plan";
import { parseSite } from "../../model/site/load";
import { RESOURCE_TYPES } from "../../provider/tokens";
import { requireCommands, requireRoot } from "../helpers/prereq";
import { engineLabSite, ROOT, TestProject } from "./project";

const tag = `te${(process.pid % 46656).toString(36)}`;
const project = new TestProject();
const { work, stateDir } = project;
const STACK = `engine-${tag}`;

const labSite = engineLabSite(tag, process.pid);
const plan = planLab(parseSite(labSite));
const services = new Set(labSite.ingress.flatMap((i: { port: number; upstreams: string[] }) => i.upstreams.map((u) => `${u}:${i.port}`))).size;

function pulumi(args: string[], stack = STACK) {
    return project.pulumi(args, stack);
}

function ok(res: ReturnType<typeof pulumi>, what: string) {
    assert.equal(res.status, 0, `${what} failed:\n${res.output}`);
    return res;
}

before(() => {
    requireRoot("engine");
    requireCommands("pulumi", "pulumi-language-nodejs", "ssh", "ssh-keyscan");
    project.addStack(STACK, labSite);
});

after(() => {
    if (plan.nodes.some((n) => netnsExists(n.netns))) pulumi(["destroy", "--yes", "--skip-preview"]);
    cleanLab(tag, stateDir);
    project.remove();
});

test("preview plans the whole park and creates nothing", () => {
    const res = ok(pulumi(["preview", "--json"]), "preview");
    const steps: { op: string; urn: string }[] = JSON.parse(res.stdout).steps;
    const creates = steps.filter((s) => s.op === "create").map((s) => s.urn);
    const expectedCustom = 1 /* bridge */ + plan.routers.length + 1 /* client key */ + 2 /* files */ +
        plan.nodes.reduce((n, node) => n + 1 /* netns */ + 1 /* mgmt */ + node.uplinks.length + 1 /* host key */ + 1 /* sshd */, 0) +
        plan.routers.length /* FRR bfdd */ + services /* HTTP services */ + 1 /* the ledger's cluster and service */ + 1 /* the event bus's broker and pipeline */;
    const ofType = (type: string) => creates.filter((u) => u.split("::")[2].split("$").pop() === type);
    assert.equal(creates.filter((u) => /\$nublar:lab:(Netns|Veth|Bridge|SshKey|Sshd|File|Daemon|LedgerCluster|EventBusDaemons)::/.test(u)).length, expectedCustom);
    // The nodes' systems (overlay, agent, Nginx) are deployed over SSH, one resource each, with one generated BFD key.
    assert.equal(ofType(RESOURCE_TYPES.deployment).length, plan.nodes.length);
    // The BFD key, and the ledger's four passwords and checkpoint signing key.
    assert.equal(ofType(RESOURCE_TYPES.generatedKey).length, 1 + 5);
    // Nothing is a dynamic resource any more: no provider code in the state.
    assert.deepEqual(creates.filter((u) => u.includes("pulumi-nodejs")), []);
    assert.ok(creates.some((u) => u.includes("nublar:site:Site")) && creates.some((u) => u.includes("nublar:lab:LabPark")) && creates.some((u) => u.includes("nublar:lab:Ledger")));
    assert.ok(!plan.nodes.some((n) => netnsExists(n.netns)), "preview changed nothing on the machine");
});

test("up brings the park up; every node is reachable over SSH with its pinned key", () => {
    // With the nublar-sla pack, as `npm run lab` runs it: at `up` the deployments' rendered
    // files are known, and every node's agent.json and nginx.conf must pass it too.
    const up = ok(pulumi(["up", "--yes", "--skip-preview", "--policy-pack", path.join(ROOT, "policy")]), "up");
    assert.match(up.output, /nublar-sla@v1\.0\.0/);
    const outputs = JSON.parse(ok(pulumi(["stack", "output", "--json"]), "stack output").stdout);
    assert.deepEqual(Object.keys(outputs.nodes).sort(), plan.nodes.map((n) => n.name).sort());
    for (const node of plan.nodes) {
        const out = outputs.nodes[node.name];
        assert.ok(netnsExists(node.netns));
        // The key the node presents is the key the stack pinned.
        const scan = spawnSync("ssh-keyscan", ["-t", "ed25519", node.mgmt.address], { encoding: "utf8", timeout: 10_000 });
        assert.equal(scan.stdout.trim().split(" ").slice(1, 3).join(" "), out.hostKey.split(" ").slice(0, 2).join(" "));
        // The command from the outputs works as printed.
        const ssh = spawnSync("sh", ["-c", `${out.ssh} cat /proc/net/if_inet6`], { encoding: "utf8", timeout: 20_000 });
        assert.equal(ssh.status, 0, ssh.stderr);
        assert.ok(ssh.stdout.includes(node.uplinks[0].address.split(":")[0]), "ran inside the node");
    }
});

/** The `nublar` CLI, reading this test's stack through its own project folder. */
function nublar(args: string[]) {
    return project.nublar([...args, "--stack", STACK]);
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = await fn();
        if (v !== undefined) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

async function eventually(what: string, fn: () => ReturnType<typeof nublar>, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    let last = fn();
    while (last.status !== 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        last = fn();
    }
    assert.equal(last.status, 0, `${what}:\n${last.output}`);
    return last;
}

test("every node runs its agent; `nublar bfd peers --node` reaches it over SSH and sees every session Up", async () => {
    for (const node of plan.nodes) {
        await eventually(`bfd peers --check on ${node.name}`, () => nublar(["bfd", "peers", "--node", node.name, "--check"]));
    }
    const peers = JSON.parse(nublar(["bfd", "peers", "--node", "gate", "--json"]).stdout);
    assert.ok(peers.length >= 2 && peers.every((p: { status: string }) => p.status === "up"));
    await eventually("routes --check on gate", () => nublar(["routes", "--node", "gate", "--check"]));
    const ingress = JSON.parse((await eventually("ingress --check on gate", () => nublar(["ingress", "--node", "gate", "--check", "--json"]))).stdout);
    assert.deepEqual(ingress[0].members.map((m: { node: string }) => m.node).sort(), [...labSite.ingress[0].upstreams].sort());
    const served = spawnSync("ip", ["netns", "exec", plan.nodes.find((n) => n.name === "gate")!.netns, "curl", "-s", `http://[::1]:${labSite.ingress[0].port}/`], { encoding: "utf8" });
    assert.match(served.stdout, /hello from (visitor-center|control-room)/);
    assert.equal(nublar(["bfd", "peers", "--node", "no-such-node"]).status, 1);
});

test("`nublar lab cut` and `restore`: a path goes down and its member stays live over the other provider, then it all comes back", async () => {
    const file = path.join(work, "stacks", `Pulumi.${STACK}.yaml`);
    const cut = nublar(["lab", "cut", "visitor-center", "provider-a", "--silent", "--file", file]);
    assert.equal(cut.status, 0, cut.output);
    try {
        await eventually("bfd peers --check failing on gate", () => {
            const r = nublar(["bfd", "peers", "--node", "gate", "--check"]);
            return { ...r, status: r.status === 4 ? 0 : 1 };
        }, 15_000);
        const peers = JSON.parse(nublar(["bfd", "peers", "--node", "gate", "--json"]).stdout);
        assert.notEqual(peers.find((p: { session: string }) => p.session === "path/visitor-center/provider-a").status, "up");
        assert.equal(peers.find((p: { session: string }) => p.session === "path/visitor-center/provider-b").status, "up");
        assert.equal(nublar(["ingress", "--node", "gate", "--check"]).status, 0, "visitor-center stays live over provider-b");
    } finally {
        const restore = nublar(["lab", "restore", "visitor-center", "provider-a", "--file", file]);
        assert.equal(restore.status, 0, restore.output);
    }
    await eventually("bfd peers --check on gate after restore", () => nublar(["bfd", "peers", "--node", "gate", "--check"]));
    await eventually("routes --check on gate after restore", () => nublar(["routes", "--node", "gate", "--check"]));
    assert.equal(nublar(["lab", "cut", "visitor-center", "no-such-provider", "--file", file]).status, 1);
});

test("the live dashboard, in headless Chromium, shows a cut uplink's gateway session go Down within a second", async (t) => {
    const CHROMIUM = process.env.NUBLAR_CHROMIUM ?? "/usr/bin/chromium";
    if (!fs.existsSync(CHROMIUM)) return t.skip(`no Chromium at ${CHROMIUM} (scripts/setup installs Debian's chromium)`);
    const { chromium } = await import("playwright-core");
    const dash = spawn(process.execPath, [path.join(ROOT, "cli", "nublar.js"), "dashboard", "--stack", STACK, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"], env: project.env() });
    let out = "";
    dash.stdout.on("data", (c) => (out += c));
    dash.stderr.on("data", (c) => (out += c));
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    try {
        const url = await until("the dashboard's URL", () => {
            if (dash.exitCode !== null) throw new Error(`nublar dashboard exited (${dash.exitCode}):\n${out}`);
            return /http:\/\/\[::1\]:\d+\//.exec(out)?.[0];
        }, 60_000).catch((err: Error) => {
            throw new Error(`${err.message}; its output:\n${out}`);
        });
        const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
        await page.goto(url);
        const session = page.locator('[data-node="visitor-center"][data-session="gw/provider-a"]').first();
        await session.waitFor({ timeout: 30_000 });
        await until("the session shown Up", async () => ((await session.getAttribute("data-state")) === "Up" ? true : undefined), 30_000);
        // Cut in-process (what `nublar lab cut --silent` does), so the clock starts when packets
        // stop, not when a CLI process has started.
        const node = plan.nodes.find((n) => n.name === "visitor-center")!;
        const router = plan.routers.find((r) => r.provider === "provider-a")!;
        const ifname = node.uplinks.find((u) => u.provider === "provider-a")!.routerIfname;
        // The page notes when it shows the change (a MutationObserver, on this machine's clock):
        // Playwright's own notice of it comes up to ~100 ms later, which is the test's latency,
        // not the page's.
        const selector = '[data-node="visitor-center"][data-session="gw/provider-a"]';
        // (Page code as a string: this project's TypeScript has no DOM types.)
        await page.evaluate(`(() => {
            window.nublarDownAt = undefined;
            new MutationObserver(() => {
                const el = document.querySelector(${JSON.stringify(selector)});
                if (el && el.getAttribute("data-state") === "Down" && window.nublarDownAt === undefined) window.nublarDownAt = performance.timeOrigin + performance.now();
            }).observe(document.body, { attributes: true, childList: true, subtree: true });
        })()`);
        const cutAt = Date.now();
        cutUplink(router.netns, ifname, "silent");
        try {
            await page.waitForSelector(`${selector}[data-state="Down"]`, { timeout: 5000 });
            const noticed = Date.now() - cutAt;
            const shownAt = (await page.evaluate("window.nublarDownAt")) as number | undefined;
            assert.ok(shownAt !== undefined, "the page's observer saw the session go Down");
            const elapsed = Math.round(shownAt - cutAt);
            const dir = path.join(process.env.NUBLAR_TEST_OUTPUT ?? path.join(ROOT, ".nublar", "test-output"), "lab-dashboard");
            fs.mkdirSync(dir, { recursive: true });
            await page.screenshot({ path: path.join(dir, "uplink-cut.png"), fullPage: true });
            console.log(`  the page showed gw/provider-a Down ${elapsed} ms after the cut (Playwright noticed at ${noticed} ms; this test's BFD timers: 100 ms x 3); screenshot: ${path.join(dir, "uplink-cut.png")}`);
            assert.ok(elapsed < 1000, `the page showed the session Down after ${elapsed} ms, not within a second`);
        } finally {
            restoreUplink(router.netns, ifname);
        }
        await until("the session shown Up again", async () => ((await session.getAttribute("data-state")) === "Up" ? true : undefined), 30_000);
    } finally {
        await browser.close();
        dash.kill("SIGTERM");
        await new Promise((r) => (dash.exitCode !== null ? r(undefined) : dash.once("exit", r)));
    }
});

test("the ledger runs beside the park: the agents' events, the cut's BFD Down included, are in the network shard, and verify proves the chain", async () => {
    const config = path.join(stateDir, plan.stateSubdir, "ledger", "service.json");
    const read = () => JSON.parse(nublar(["ledger", "read", "--shard", "network", "--limit", "10000", "--json", "--config", config]).stdout) as { entries: { source: string; payload: { type?: string; to?: string; session?: string } }[] };
    await eventually("a BFD Down event of the cut reaches the ledger", () => {
        // Over the event bus: the agent's outbox, Kafka, the ledger consumer (events/).
        const down = read().entries.find((e) => e.payload.type === "bfd-change" && e.payload.to === "Down" && e.payload.session === "path/visitor-center/provider-a");
        return { status: down ? 0 : 1, stdout: "", stderr: "", output: "no bfd down event for path/visitor-center/provider-a in the network shard" };
    });
    const sources = new Set(read().entries.map((e) => e.source));
    for (const n of plan.nodes) assert.ok(sources.has(`agent/${n.name}`), `events of ${n.name} collected`);
    // Every node's deploy said what it did, into the security shard.
    const deploys = JSON.parse(nublar(["ledger", "read", "--shard", "security", "--limit", "1000", "--json", "--config", config]).stdout).entries as { source: string; payload: { type: string; node: string; outcome: string; generation: number } }[];
    for (const n of plan.nodes) assert.ok(deploys.some((e) => e.source === "nublar-deploy" && e.payload.node === n.name && e.payload.outcome === "confirmed" && e.payload.generation >= 1), `a confirmed deploy of ${n.name} in the security shard`);
    await new Promise((r) => setTimeout(r, 1500)); // a timed checkpoint covers the tail
    const v = nublar(["ledger", "verify", "--shard", "network", "--json", "--config", config]);
    assert.equal(v.status, 0, v.output);
    const report = JSON.parse(v.stdout);
    assert.ok(report.ok && report.entries > 0 && report.checkpoints.checked > 0, v.output);
    const proof = nublar(["ledger", "proof", "--shard", "network", "--seq", "1", "--config", config]);
    assert.equal(proof.status, 0, proof.output);
    assert.equal(JSON.parse(proof.stdout).entry.seq, 1);
});

test("nublar audit on the running lab: it passes, the report goes into the ledger's audit shard, and it verifies", () => {
    // A whole preview with the pack: give it the time policy.test.ts gives it.
    const a = project.nublar(["audit", "--json", "--out", path.join(work, "audit"), "--stack", STACK], 180_000);
    assert.equal(a.status, 0, a.output);
    const outcome = JSON.parse(a.stdout);
    assert.equal(outcome.verdict, "pass");
    assert.ok(outcome.ledger.appended, a.output);
    assert.equal(outcome.bus.published, true, a.output);
    const report = JSON.parse(fs.readFileSync(outcome.report, "utf8"));
    const config = path.join(stateDir, plan.stateSubdir, "ledger", "service.json");
    const entries = JSON.parse(nublar(["ledger", "read", "--shard", "audit", "--from", String(outcome.ledger.seq), "--limit", "1", "--json", "--config", config]).stdout).entries;
    assert.equal(entries[0].source, "nublar-audit");
    assert.equal(entries[0].payload.report, report.id);
    assert.equal(entries[0].payload.contentSha256, report.integrity.contentSha256);
    const verify = project.nublar(["audit", "verify", outcome.report, "--public-key", path.join(stateDir, "audit", "signing.pub")]);
    assert.equal(verify.status, 0, verify.output);
});

test("a second up changes nothing", () => {
    ok(pulumi(["up", "--yes", "--expect-no-changes", "--skip-preview"]), "second up");
    ok(pulumi(["preview", "--expect-no-changes"]), "preview after up");
});

/** Each node's generation as the node itself records it (lab/node-system.ts). */
function nodeSystem(node: string) {
    const root = path.join(stateDir, plan.stateSubdir, "nodes", node, "system");
    const current = Number(fs.readFileSync(path.join(root, "current"), "utf8").trim());
    return { current, root, has: (gen: number, file: string) => fs.existsSync(path.join(root, "generations", String(gen), file)) };
}

test("a deploy with a wrong BFD key is rolled back on its own at the canary, and `pulumi up` says so; a good config then sticks", async () => {
    const before = Object.fromEntries(plan.nodes.map((n) => [n.name, nodeSystem(n.name).current]));
    const canary = labSite.nodes[0].name;
    const wrongKey = `0x${"5a".repeat(20)}`;
    ok(pulumi(["config", "set", "--secret", "nublar:bfdKey", wrongKey]), "config set --secret");
    const failed = pulumi(["up", "--yes", "--skip-preview"]);
    assert.notEqual(failed.status, 0, "up must fail");
    const attempted = before[canary] + 1;
    assert.match(failed.output, new RegExp(`node '${canary}' .*generation ${attempted} was not confirmed`));
    assert.match(failed.output, /BFD sessions that must be Up were not: path\//);
    assert.match(failed.output, /It was rolled back by the deploy\. It runs the previous generation again/);
    assert.ok(!failed.output.includes(wrongKey.slice(2)), "the key never appears in the output");
    // The canary runs its previous generation again; the others were never touched.
    assert.equal(nodeSystem(canary).current, before[canary]);
    assert.ok(nodeSystem(canary).has(attempted, "rolled-back"));
    for (const n of plan.nodes.filter((x) => x.name !== canary)) assert.equal(nodeSystem(n.name).current, before[n.name], `${n.name} untouched`);
    await eventually(`bfd peers --check on ${canary} after the rollback`, () => nublar(["bfd", "peers", "--node", canary, "--check"]));
    // The key never reached the state in plaintext.
    const exported = ok(pulumi(["stack", "export"]), "export").stdout;
    assert.ok(!exported.includes(wrongKey.slice(2)));

    // A good change: the key back as it was, and a second ingress port. It deploys and sticks.
    ok(pulumi(["config", "rm", "nublar:bfdKey"]), "config rm");
    const file = path.join(work, "stacks", `Pulumi.${STACK}.yaml`);
    const stack = parse(fs.readFileSync(file, "utf8"));
    stack.config["nublar:site"].ingress.push({ name: "visitor-api", port: 8080, upstreams: labSite.ingress[0].upstreams });
    fs.writeFileSync(file, stringify(stack));
    // Clients of the existing service, through the whole deploy: Nginx reloads, the agent restarts gracefully.
    const gateNetns = plan.nodes.find((n) => n.name === canary)!.netns;
    const codes = path.join(work, "codes.txt");
    const load = spawn("ip", ["netns", "exec", gateNetns, "sh", "-c", `while :; do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 2 http://[::1]:${labSite.ingress[0].port}/ >> ${codes}; sleep 0.1; done`], { stdio: "ignore", detached: true });
    // Its own process group: the shell and any curl still running end together.
    const stopLoad = () => { try { process.kill(-load.pid!, "SIGTERM"); } catch { /* already ended */ } };
    try {
        ok(pulumi(["up", "--yes", "--skip-preview"]), "up with a good config");
        stopLoad();
        const seen = fs.readFileSync(codes, "utf8").trim().split("\n");
        if (!(seen.length > 20 && seen.every((c) => c === "200"))) {
            const events = nublar(["events", "--node", canary, "--limit", "150", "--json"]).stdout.trim().split("\n")
                .filter((l) => /"type":"(bfd|nginx|agent|error)"/.test(l)).join("\n");
            assert.fail(`requests during the deploy: ${seen.filter((c) => c !== "200").length} of ${seen.length} failed (${[...new Set(seen)].join(", ")}); ${canary}'s events:\n${events}`);
        }
        const after = nodeSystem(canary);
        assert.ok(after.current > attempted && after.has(after.current, "confirmed"), `canary on a new confirmed generation (${after.current})`);
        // The new service's members go live once the restarted agent's path sessions are Up.
        const gateNs = plan.nodes.find((n) => n.name === canary)!.netns;
        await eventually("the new service answers through Nginx", () => {
            const r = spawnSync("ip", ["netns", "exec", gateNs, "curl", "-s", "http://[::1]:8080/"], { encoding: "utf8" });
            return { status: /hello from/.test(r.stdout) ? 0 : 1, stdout: r.stdout, stderr: r.stderr, output: r.stdout + r.stderr };
        }, 20_000);
        await eventually(`bfd peers --check on ${canary}`, () => nublar(["bfd", "peers", "--node", canary, "--check"]));
    } finally {
        stopLoad();
        stack.config["nublar:site"].ingress.pop();
        fs.writeFileSync(file, stringify(stack));
    }
    ok(pulumi(["up", "--yes", "--skip-preview"]), "up back to the committed config");
});

test("up --refresh rebuilds a node lost behind Pulumi's back (as after a reboot)", async () => {
    const node = plan.nodes[0];
    const pid = sshdPid(path.join(stateDir, plan.stateSubdir, "nodes", node.name));
    assert.ok(pid !== undefined);
    // A reboot ends every process: all of those in this node's namespace are this stack's own.
    const inside = spawnSync("ip", ["netns", "pids", node.netns], { encoding: "utf8" }).stdout.trim().split(/\s+/).filter(Boolean).map(Number);
    assert.ok(inside.includes(pid));
    for (const p of inside) process.kill(p, "SIGKILL");
    spawnSync("ip", ["netns", "del", node.netns]);
    assert.ok(!netnsExists(node.netns));
    ok(pulumi(["up", "--yes", "--skip-preview", "--refresh"]), "up --refresh");
    assert.ok(netnsExists(node.netns), "namespace rebuilt");
    const res = spawnSync("ssh", ["-F", path.join(stateDir, plan.stateSubdir, "client", "ssh_config"), node.name, "hostname"], { encoding: "utf8", timeout: 20_000 });
    assert.equal(res.stdout.trim(), node.name, res.stderr);
    ok(pulumi(["preview", "--expect-no-changes", "--refresh"]), "preview after the rebuild");
    // The node's daemons were restarted inside the new namespace.
    await eventually(`bfd peers --check on ${node.name} after the rebuild`, () => nublar(["bfd", "peers", "--node", node.name, "--check"]));
});

test("bad config fails preview naming the key, value and rule, and creates nothing", () => {
    const bad = structuredClone(labSite);
    bad.providers[1].prefix = "203.0.113.0/24";
    bad.lab.tag = `${tag}x`;
    const stack = `${STACK}-bad`;
    fs.writeFileSync(path.join(work, "stacks", `Pulumi.${stack}.yaml`), stringify({ config: { "nublar:site": bad } }));
    ok(pulumi(["stack", "init", "--secrets-provider", "passphrase"], stack), "stack init (bad)");
    const res = pulumi(["up", "--yes", "--skip-preview"], stack);
    assert.notEqual(res.status, 0);
    assert.match(res.output, /nublar:site\.providers\[1\]\.prefix = "203\.0\.113\.0\/24": the site is IPv6-only/);
    const state = JSON.parse(ok(pulumi(["stack", "export"], stack), "export").stdout);
    const resources: { type: string }[] = state.deployment.resources ?? [];
    assert.deepEqual(resources.filter((r) => r.type !== "pulumi:pulumi:Stack"), []);
    assert.ok(!fs.existsSync(`/run/netns/nbl-${tag}x-gate`));
});

test("destroy leaves no namespace, link, process or file behind", () => {
    const pids = plan.nodes.map((n) => sshdPid(path.join(stateDir, plan.stateSubdir, "nodes", n.name)));
    assert.ok(pids.every((p) => p !== undefined), "sshd ran for every node");
    ok(pulumi(["destroy", "--yes", "--skip-preview"]), "destroy");
    for (const ns of [...plan.nodes.map((n) => n.netns), ...plan.routers.map((r) => r.netns)]) assert.ok(!netnsExists(ns), `${ns} removed`);
    assert.ok(!linkExists(undefined, plan.mgmt.bridge), "bridge removed");
    for (const pid of pids) {
        const stat = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, "utf8") : "";
        assert.ok(stat === "" || / Z /.test(stat), `sshd ${pid} ended`);
    }
    const ours = fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
            return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(stateDir) && !/ Z /.test(fs.readFileSync(`/proc/${p}/stat`, "utf8"));
        } catch {
            return false;
        }
    });
    assert.deepEqual(ours, [], "no process of the lab (postgres, redis, the ledger service) still runs");
    const leftovers: string[] = [];
    const walk = (d: string) => fs.existsSync(d) && fs.readdirSync(d, { withFileTypes: true })
        .forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : leftovers.push(path.join(d, e.name))));
    walk(stateDir);
    // The audit signing key is this machine's, not the lab's: it outlives the lab on purpose.
    assert.deepEqual(leftovers.filter((f) => !f.startsWith(path.join(stateDir, "audit") + path.sep)), []);
});
