// Engine layer: the ledger's PostgreSQL on the real CloudNativePG operator in the lab's cluster,
// through a real `pulumi up`: the operator from the release manifest of its Go module (with the
// operator image built here), CoreDNS, and one UnicornLedgerCluster shard of three instances
// with quorum `ANY 1` and dataDurability required, on the Debian-built PostgreSQL image.
// Checks what the operator does, not what nublar does: the -rw Service by name, quorum
// replication, a switchover it performs, a crash of the primary's postmaster that it repairs,
// commits waiting while both standbys are fenced and going on once one is back, and nothing
// left behind by `pulumi destroy`. Its own project, stack, lab tag and state folder.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { labKubePlan } from "../../lab/layout";
import { cnpgKillPrimary, cnpgPsql, cnpgRestarts, cnpgSettled, cnpgStatus, cnpgSwitchover, cnpgWait } from "../../lab/kube/cnpg";
import { netnsExists } from "../../lab/ops";
import { LAB_KUBE_DEFAULTS } from "../../model/kube/plan";
import { planLab } from "../../model/network/lab-plan";
import { parseSite } from "../../model/site/load";
import { projectPath } from "../../model/project";
import { engineLabSite, kubeFixtureHooks, TestProject } from "./project";

const tag = `tc${(process.pid % 46656).toString(36)}`;
const project = new TestProject(path.join(__dirname, "fixtures", "kube-program"));
const STACK = `cnpg-${tag}`;
const site = engineLabSite(tag, process.pid + 13, { kubernetes: true });
site.kubernetes = { ledger: true, lamp: [] };
// A management prefix of its own: the other engine tests' labs use engineLabSite's.
site.lab = { ...site.lab, managementPrefix: "fd6e:626c:6563::/64" };
site.ledger = { ...site.ledger, shards: ["habitat"] };
const plan = planLab(parseSite(site));
const kubePlan = labKubePlan(plan, project.stateDir)!;
const NS = "nublar";
const CLUSTER = "unicorn-habitat";
const DB = "habitat";
const KUBECTL = projectPath(".tools", "kube", "bin", "kubectl");
const SETTLE_MS = 240_000;

function pulumi(args: string[]) {
    return project.pulumi(args, STACK, 20 * 60_000);
}

function ok(res: ReturnType<typeof pulumi>, what: string) {
    assert.equal(res.status, 0, `${what} failed:\n${res.output.slice(-6000)}`);
    return res;
}

function kubectl(args: string[]): string {
    const r = spawnSync(KUBECTL, ["--kubeconfig", kubePlan.paths.adminKubeconfig, ...args], { encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `kubectl ${args.join(" ")}:\n${r.stderr}`);
    return r.stdout;
}

const sql = (pod: string, text: string) => cnpgPsql(kubePlan, NS, pod, DB, text).trim();
const settled = (what: string) => cnpgWait(kubePlan, NS, CLUSTER, cnpgSettled, SETTLE_MS, what);

/** A node script run inside the cluster's namespace (where Service addresses are routed). */
function inNetns(script: string, env: Record<string, string> = {}): string {
    const r = spawnSync("ip", ["netns", "exec", kubePlan.netns, process.execPath, "-e", script], { encoding: "utf8", timeout: 60_000, cwd: projectPath(), env: { ...process.env, ...env } });
    assert.equal(r.status, 0, `in ${kubePlan.netns}: ${r.stderr}`);
    return r.stdout.trim();
}

/** The app user's credentials, as the operator generated them (its Secret). */
function appSecret(): { username: string; password: string } {
    const data = JSON.parse(kubectl(["-n", NS, "get", "secret", `${CLUSTER}-app`, "-o", "json"])).data as Record<string, string>;
    const d = (k: string) => Buffer.from(data[k], "base64").toString("utf8");
    return { username: d("username"), password: d("password") };
}

/** SQL through the -rw Service's address with the generated credentials (pg from node_modules). */
function viaService(text: string): string {
    const { username, password } = appSecret();
    const ip = kubectl(["-n", NS, "get", "service", `${CLUSTER}-rw`, "-o", "jsonpath={.spec.clusterIP}"]).trim();
    return inNetns(`const { Client } = require("pg");
const c = new Client({ host: process.env.H, port: 5432, user: process.env.U, password: process.env.P, database: process.env.D, ssl: { rejectUnauthorized: false }, connectionTimeoutMillis: 10000 });
c.connect().then(() => c.query(process.env.Q)).then((r) => { process.stdout.write(JSON.stringify(r.rows)); return c.end(); }).catch((e) => { console.error(e.message); process.exit(1); });`,
    { H: ip, U: username, P: password, D: DB, Q: text });
}

kubeFixtureHooks(project, STACK, site, tag, kubePlan.netns, () => pulumi(["destroy", "--yes", "--skip-preview"]));

test("pulumi up installs CloudNativePG from its module's manifest and CoreDNS; the shard's three instances replicate with quorum ANY 1", async () => {
    const t = Date.now();
    ok(pulumi(["up", "--yes", "--skip-preview"]), "up");
    const s = await settled("the ledger cluster to become healthy");
    process.stderr.write(`# pulumi up and the cluster healthy: ${Date.now() - t} ms\n`);
    assert.equal(s.instances, 3);
    const image = kubectl(["-n", "cnpg-system", "get", "deployment", "cnpg-controller-manager", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert.match(image, /^nublar\.local\/cnpg@sha256:[0-9a-f]{64}$/, "the operator image built here");
    assert.match(sql(s.currentPrimary, "show synchronous_standby_names"), /^ANY 1 \(/);
    const standbys = s.instancesStatus.healthy.filter((p) => p !== s.currentPrimary).sort();
    assert.equal(sql(s.currentPrimary, "select string_agg(application_name || ':' || sync_state || ':' || state, ',' order by application_name) from pg_stat_replication"),
        standbys.map((p) => `${p}:quorum:streaming`).join(","));
});

test("CoreDNS answers for the -rw Service; the operator's app credentials write through it", () => {
    const rw = kubectl(["-n", NS, "get", "service", `${CLUSTER}-rw`, "-o", "jsonpath={.spec.clusterIP}"]).trim();
    const answer = inNetns(`const { Resolver } = require("node:dns").promises;
const r = new Resolver(); r.setServers(["[${LAB_KUBE_DEFAULTS.clusterDns}]:53"]);
r.resolve6("${CLUSTER}-rw.${NS}.svc.cluster.local").then((a) => process.stdout.write(a.join(",")));`);
    assert.equal(answer, rw);
    viaService("create table if not exists drill (id bigint primary key, note text)");
    viaService("insert into drill values (1, 'before the switchover')");
    assert.deepEqual(JSON.parse(viaService("select id, note from drill order by id")), [{ id: "1", note: "before the switchover" }]);
});

test("nublar lab ledger-clusters shows the operator's view: phase, primary, both standbys quorum/streaming", () => {
    const r = project.nublar(["lab", "ledger-clusters", "--json", "--stack", STACK]);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    const view = JSON.parse(r.stdout) as { namespace: string; clusters: { shard: string; cluster: string; healthy: boolean; currentPrimary: string; standbys: { instance: string; state: string; syncState: string; replayLagBytes: number }[] }[] };
    assert.equal(view.namespace, NS);
    assert.equal(view.clusters.length, 1);
    const [c] = view.clusters;
    assert.deepEqual([c.shard, c.cluster, c.healthy], ["habitat", CLUSTER, true]);
    assert.equal(c.currentPrimary, cnpgStatus(kubePlan, NS, CLUSTER).currentPrimary);
    assert.deepEqual(c.standbys.map((x) => `${x.state}/${x.syncState}`), ["streaming/quorum", "streaming/quorum"]);
    assert.ok(c.standbys.every((x) => Number.isInteger(x.replayLagBytes) && x.replayLagBytes >= 0));
    const text = project.nublar(["lab", "ledger-clusters", "--stack", STACK]);
    assert.match(text.stdout, new RegExp(`habitat\\s+${CLUSTER}\\s+Cluster in healthy state\\s+3/3`));
});

test("a switchover by the operator: the target becomes primary, the old one a streaming standby, the -rw Service follows", async () => {
    const before = cnpgStatus(kubePlan, NS, CLUSTER);
    const target = before.instancesStatus.healthy.find((p) => p !== before.currentPrimary)!;
    const t = Date.now();
    cnpgSwitchover(kubePlan, NS, CLUSTER, target);
    const after = await cnpgWait(kubePlan, NS, CLUSTER, (s) => cnpgSettled(s) && s.currentPrimary === target, SETTLE_MS, `the switchover to ${target}`);
    process.stderr.write(`# switchover to ${target}: ${Date.now() - t} ms\n`);
    assert.equal(after.currentPrimary, target);
    viaService("insert into drill values (2, 'after the switchover')");
    assert.equal(sql(target, "select count(*) from drill"), "2");
    await cnpgWait(kubePlan, NS, CLUSTER, () => sql(target, `select state from pg_stat_replication where application_name = '${before.currentPrimary}'`) === "streaming", SETTLE_MS, `${before.currentPrimary} streaming from ${target}`);
    assert.throws(() => cnpgSwitchover(kubePlan, NS, CLUSTER, target), /already the primary/);
});

test("kill -9 of the primary's postmaster: the operator brings the cluster back healthy, every committed row there", async () => {
    const t = Date.now();
    const { pod: killed, restartsBefore } = cnpgKillPrimary(kubePlan, NS, CLUSTER);
    // The crash is seen (the container restarted, or another instance promoted) before "healthy" means anything.
    const s = await cnpgWait(kubePlan, NS, CLUSTER, (x) => cnpgSettled(x) && (x.currentPrimary !== killed || cnpgRestarts(kubePlan, NS, killed) > restartsBefore), SETTLE_MS, "the cluster to recover from the crash");
    process.stderr.write(`# kill -9 of ${killed}'s postmaster: healthy again after ${Date.now() - t} ms, primary ${s.currentPrimary}\n`);
    assert.equal(sql(s.currentPrimary, "select string_agg(id::text, ',' order by id) from drill"), "1,2");
    viaService("insert into drill values (3, 'after the crash')");
    assert.equal(sql(s.currentPrimary, "select count(*) from drill"), "3");
    // Failed over or restarted in place, the crashed instance streams again: the operator alone brought it back.
    if (s.currentPrimary !== killed) {
        await cnpgWait(kubePlan, NS, CLUSTER, () => sql(s.currentPrimary, `select state from pg_stat_replication where application_name = '${killed}'`) === "streaming", SETTLE_MS, `${killed} streaming from ${s.currentPrimary}`);
    }
    assert.equal(sql(s.currentPrimary, "select count(*) from pg_stat_replication where state = 'streaming'"), "2");
});

test("dataDurability required: with both standbys fenced a commit waits, and completes once one is back", async () => {
    const s = cnpgStatus(kubePlan, NS, CLUSTER);
    const standbys = s.instancesStatus.healthy.filter((p) => p !== s.currentPrimary);
    assert.equal(standbys.length, 2);
    const fence = (pods: string[]) => kubectl(["-n", NS, "annotate", "--overwrite", "clusters.postgresql.cnpg.io", CLUSTER, `cnpg.io/fencedInstances=${JSON.stringify(pods)}`]);
    fence(standbys);
    let insert: ReturnType<typeof spawn> | undefined;
    try {
        await cnpgWait(kubePlan, NS, CLUSTER, () => sql(s.currentPrimary, "select count(*) from pg_stat_replication") === "0", SETTLE_MS, "both standbys to stop streaming");
        insert = spawn(KUBECTL, ["--kubeconfig", kubePlan.paths.adminKubeconfig, "-n", NS, "exec", s.currentPrimary, "-c", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-At", "-d", DB, "-c",
            "insert into drill values (4, 'while fenced')"], { stdio: ["ignore", "pipe", "pipe"] });
        const exited = new Promise<number | null>((resolve) => insert!.on("exit", (code) => resolve(code)));
        await new Promise((r) => setTimeout(r, 8000));
        assert.equal(insert.exitCode, null, "the commit is still waiting for a standby after 8 s");
        const t = Date.now();
        fence([standbys[1]]);
        assert.equal(await exited, 0, "the commit completes once a standby is back");
        process.stderr.write(`# a standby unfenced: the waiting commit completed after ${Date.now() - t} ms\n`);
    } finally {
        if (insert && insert.exitCode === null) insert.kill();
        kubectl(["-n", NS, "annotate", "clusters.postgresql.cnpg.io", CLUSTER, "cnpg.io/fencedInstances-"]);
    }
    assert.equal(sql(s.currentPrimary, "select note from drill where id = 4"), "while fenced");
    await settled("every instance back after the fence");
});

test("pulumi destroy leaves nothing: no namespace, process or mount of the cluster", () => {
    ok(pulumi(["destroy", "--yes", "--skip-preview"]), "destroy");
    assert.equal(netnsExists(kubePlan.netns), false, `namespace ${kubePlan.netns} is gone`);
    const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(kubePlan.dir));
    assert.deepEqual(mounts, [], "no mount of the cluster's on the host");
    assert.equal(spawnSync("pgrep", ["-af", kubePlan.dir], { encoding: "utf8" }).stdout.trim(), "", "no process of the cluster's");
    assert.equal(spawnSync("pgrep", ["-af", "postgres.*pgdata"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes(kubePlan.dir)).length, 0);
});
