// Engine layer: the lab's Kubernetes parts through a real `pulumi up`: the single-node cluster
// (lab/kube: etcd, the control plane, containerd, the kubelet, kube-proxy) and the site's LAMP
// app through the real Kubernetes provider (components/k8s/lamp.ts), with the images built from
// Debian packages (scripts/images). Checks that the pods run and serve through the Service, that
// an evicted pod is replaced while the PDB keeps the other serving, that a new image rolls out,
// both under load with no failed request, and that `pulumi destroy` leaves nothing behind.
// Its own project, stack, lab tag, management prefix and state folder; cleans up even on failure.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { labImages } from "../../lab/images";
import { labKubePlan } from "../../lab/layout";
import { netnsExists } from "../../lab/ops";
import { planLab } from "../../model/network/lab-plan";
import { parseSite } from "../../model/site/load";
import { projectPath } from "../../model/project";
import { engineLabSite, kubeFixtureHooks, ROOT, TestProject } from "./project";

const tag = `tk${(process.pid % 46656).toString(36)}`;
const project = new TestProject(path.join(__dirname, "fixtures", "kube-program"));
const STACK = `kube-${tag}`;
const site = engineLabSite(tag, process.pid + 11, { kubernetes: true });
const plan = planLab(parseSite(site));
const kubePlan = labKubePlan(plan, project.stateDir)!;
const APP = site.kubernetes.lamp[0].name as string;
const NS = "nublar";
const KUBECTL = projectPath(".tools", "kube", "bin", "kubectl");
const UP_TIMEOUT_MS = 15 * 60_000;

function pulumi(args: string[], timeoutMs = UP_TIMEOUT_MS) {
    return project.pulumi(args, STACK, timeoutMs);
}

function ok(res: ReturnType<typeof pulumi>, what: string) {
    assert.equal(res.status, 0, `${what} failed:\n${res.output.slice(-6000)}`);
    return res;
}

function kubectl(args: string[], input?: string): string {
    const r = spawnSync(KUBECTL, ["--kubeconfig", kubePlan.paths.adminKubeconfig, ...args], { encoding: "utf8", input, timeout: 120_000 });
    assert.equal(r.status, 0, `kubectl ${args.join(" ")}:\n${r.stderr}`);
    return r.stdout;
}

interface PodInfo { name: string; ready: boolean; image: string; deleting: boolean }

function pods(): PodInfo[] {
    const list = JSON.parse(kubectl(["-n", NS, "get", "pods", "-l", `app.kubernetes.io/name=${APP}`, "-o", "json"])).items;
    return list.map((p: { metadata: { name: string; deletionTimestamp?: string }; spec: { containers: { name: string; image: string }[] }; status: { conditions?: { type: string; status: string }[] } }) => ({
        name: p.metadata.name,
        ready: p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
        image: p.spec.containers.find((c) => c.name === "app")!.image,
        deleting: !!p.metadata.deletionTimestamp,
    }));
}

async function until<T>(what: string, timeoutMs: number, f: () => T | undefined | false): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = f();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 500));
    }
}

/** HTTP from inside the cluster's namespace (Service addresses are routed only there). */
function curl(url: string): { status: number; body: string } {
    const r = spawnSync("ip", ["netns", "exec", kubePlan.netns, "curl", "-sS", "-g", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url], { encoding: "utf8" });
    assert.equal(r.status, 0, `curl ${url} in ${kubePlan.netns}: ${r.stderr}`);
    const i = r.stdout.lastIndexOf("\n");
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

interface Result { status: number; error?: string }

/** Load at `rate` req/s from inside the namespace, a new connection each, until stop(). */
function load(url: string, rate: number) {
    const child = spawn("ip", ["netns", "exec", kubePlan.netns, process.execPath, "--import", "tsx", path.join(ROOT, "test", "network", "load.ts"), url, String(rate), "--fresh"], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
    const results: Result[] = [];
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
            results.push(JSON.parse(buf.slice(0, i)));
            buf = buf.slice(i + 1);
        }
    });
    const done = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    return {
        results,
        async stop() {
            child.stdin!.end();
            await done;
            return results;
        },
    };
}

/** The app's one object of `kind` (Pulumi names them: the app's name and a suffix). */
function appObject(kind: string): Record<string, any> {
    const items = JSON.parse(kubectl(["-n", NS, "get", kind, "-l", `app.kubernetes.io/name=${APP}`, "-o", "json"])).items;
    assert.equal(items.length, 1, `one ${kind} of ${APP} (found ${items.map((i: { metadata: { name: string } }) => i.metadata.name).join(", ")})`);
    return items[0];
}

function serviceUrl(): string {
    const ip = String(appObject("service").spec.clusterIP);
    assert.match(ip, /:/, `the Service's ClusterIP is IPv6 (got '${ip}')`);
    return `http://[${ip}]/`;
}

function failed(results: Result[]): Result[] {
    return results.filter((r) => r.status !== 200);
}

kubeFixtureHooks(project, STACK, site, tag, kubePlan.netns, () => pulumi(["destroy", "--yes", "--skip-preview"]));

test("pulumi up runs the cluster and the LAMP app through the real Kubernetes provider; its pods become Ready", async () => {
    const t = Date.now();
    ok(pulumi(["up", "--yes", "--skip-preview"]), "up");
    process.stderr.write(`# pulumi up (cluster and app) took ${Date.now() - t} ms\n`);
    const ready = await until("two Ready pods", 300_000, () => {
        const p = pods().filter((x) => x.ready);
        return p.length >= 2 && p;
    });
    assert.equal(ready.length, 2, "the HPA's minimum: two replicas");
    // The objects as the component defines them, as the API server stored them.
    const deploy = appObject("deployment");
    const containers = deploy.spec.template.spec.containers as { name: string; image: string; resources: unknown; readinessProbe: unknown; livenessProbe: unknown }[];
    assert.deepEqual(containers.map((c) => c.name), ["app", "cache"]);
    for (const c of containers) {
        assert.match(c.image, /^nublar\.local\/[a-z-]+@sha256:[0-9a-f]{64}$/, "images by digest");
        assert.ok(c.resources && c.readinessProbe && c.livenessProbe, `${c.name}: requests, limits and probes`);
    }
    const svc = appObject("service");
    assert.deepEqual(svc.spec.ipFamilies, ["IPv6"]);
    assert.equal(appObject("pdb").status.currentHealthy, 2);
    // The HPA reads the pods' CPU from metrics-server (components/lab/metrics-server.ts).
    await until("the HPA reading CPU metrics", 180_000, () => {
        const hpa = appObject("hpa");
        return hpa.status?.conditions?.some((c: { type: string; status: string }) => c.type === "ScalingActive" && c.status === "True") && hpa;
    });
    const pvc = JSON.parse(kubectl(["-n", NS, "get", "pvc", "-l", `app.kubernetes.io/name=${APP}`, "-o", "json"])).items;
    assert.equal(pvc.length, 1);
    assert.equal(pvc[0].status.phase, "Bound", "the data volume, from the lab's local storage class");
});

test("HTTP through the Service: a page rendered by PHP with a row read from MariaDB", () => {
    const page = curl(serviceUrl());
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /row\(s\) from nublar\.attractions/, "rows read from MariaDB");
    const names = pods().map((p) => p.name);
    assert.ok(names.some((n) => page.body.includes(n)), `the row names the pod that served it (one of ${names.join(", ")}):\n${page.body}`);
    assert.equal(curl(serviceUrl() + "health.php").status, 200);
});

test("an evicted pod is replaced while the PDB keeps the other serving: 0 failed requests at 50 req/s", async () => {
    const url = serviceUrl();
    const before = pods();
    const l = load(url, 50);
    await new Promise((r) => setTimeout(r, 3000));
    const victim = before[0].name;
    // Evict, as a node drain does: the PDB allows one pod away at a time.
    kubectl(["create", "-f", "-", "--raw", `/api/v1/namespaces/${NS}/pods/${victim}/eviction`], JSON.stringify({ apiVersion: "policy/v1", kind: "Eviction", metadata: { name: victim, namespace: NS } }));
    // While the replacement is not Ready, a second eviction is refused (HTTP 429).
    const other = before[1].name;
    const second = spawnSync(KUBECTL, ["--kubeconfig", kubePlan.paths.adminKubeconfig, "create", "-f", "-", "--raw", `/api/v1/namespaces/${NS}/pods/${other}/eviction`], { input: JSON.stringify({ apiVersion: "policy/v1", kind: "Eviction", metadata: { name: other, namespace: NS } }), encoding: "utf8" });
    assert.notEqual(second.status, 0, "the PDB refuses a second eviction while one pod is away");
    assert.match(second.stderr, /disruption budget|TooManyRequests|429/i);
    await until("a replacement pod Ready", 300_000, () => {
        const now = pods().filter((p) => p.ready && !p.deleting);
        return now.length >= 2 && !now.some((p) => p.name === victim) && now;
    });
    await new Promise((r) => setTimeout(r, 3000));
    const results = await l.stop();
    assert.ok(results.length > 100, `load ran (${results.length} requests)`);
    assert.deepEqual(failed(results).slice(0, 5), [], `${failed(results).length} of ${results.length} requests failed`);
});

test("a new image rolls out with 0 failed requests at 50 req/s", async () => {
    // The same image under a new digest (a label added to its config): what a rebuilt image is to Kubernetes.
    const images = labImages();
    const variant = path.join(project.work, "images");
    const r = spawnSync("python3", [path.join(ROOT, "scripts", "images", "oci.py"), "relabel", images.lamp.tar, path.join(variant, "lamp.oci.tar"), `nublar.test=${tag}`], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const newRef = r.stdout.trim();
    assert.notEqual(newRef, images.lamp.ref);
    const l = load(serviceUrl(), 50);
    await new Promise((r) => setTimeout(r, 3000));
    ok(pulumi(["config", "set", "--path", "test:lampImage.ref", newRef]), "config set");
    ok(pulumi(["config", "set", "--path", "test:lampImage.tar", path.join(variant, "lamp.oci.tar")]), "config set");
    ok(pulumi(["up", "--yes", "--skip-preview"]), "up with a new image");
    await until("the rollout", 300_000, () => {
        const now = pods();
        return now.length === 2 && now.every((p) => p.ready && p.image === newRef && !p.deleting) && now;
    });
    await new Promise((r) => setTimeout(r, 3000));
    const results = await l.stop();
    assert.ok(results.length > 100, `load ran (${results.length} requests)`);
    assert.deepEqual(failed(results).slice(0, 5), [], `${failed(results).length} of ${results.length} requests failed`);
});

test("pulumi destroy leaves nothing: no namespace, process, mount or cgroup of the cluster", () => {
    ok(pulumi(["destroy", "--yes", "--skip-preview"]), "destroy");
    assert.equal(netnsExists(kubePlan.netns), false, `namespace ${kubePlan.netns} is gone`);
    const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(kubePlan.dir));
    assert.deepEqual(mounts, [], "no mount of the cluster's on the host");
    const procs = spawnSync("pgrep", ["-af", kubePlan.dir], { encoding: "utf8" }).stdout.trim();
    assert.equal(procs, "", "no process of the cluster's");
    for (const controller of fs.readdirSync("/sys/fs/cgroup")) {
        const p = path.join("/sys/fs/cgroup", controller, kubePlan.cgroupRoot);
        assert.equal(fs.existsSync(p), false, `${p} is gone`);
    }
});
