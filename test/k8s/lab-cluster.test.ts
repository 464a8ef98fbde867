// The lab cluster for real: up in a network namespace of the test's own, a pod serving HTTP
// becomes Ready, its IPv6 ClusterIP Service answers from the namespace, and down leaves
// nothing behind (no process, no mount, no cgroup, the kernel's sysctls as they were).
// Needs root and the Kubernetes binaries (scripts/kube/build; NUBLAR_KUBE_BIN to point
// elsewhere); fails saying what is missing otherwise. It builds its two images itself: a pause image from Debian's
// static catatonit and a static Go HTTP server. About 30 s.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { KUBELET_GLOBAL_SYSCTLS, LAB_KUBE_CPU_SHARES, planLabKube } from "../../model/kube/plan";
import { DEFAULT_KUBE_BIN, labKubeAlive, labKubeDown, labKubectl, labKubeUp } from "../../lab/kube/cluster";
import { cgroupMounts } from "../../lab/kube/host";

const BIN = process.env.NUBLAR_KUBE_BIN ?? DEFAULT_KUBE_BIN;
// Names of what the test makes on this machine: NUBLAR_KUBE_TEST_TAG sets their prefix.
const TAG = process.env.NUBLAR_KUBE_TEST_TAG ?? "nublar";
const NETNS = `${TAG}-kubetest`;
const HOST_IF = `${TAG}-kt`.slice(0, 15);
const PREFIX = "fd6b:7465:7374:1::";

function skipReason(): string | undefined {
    if (process.getuid?.() !== 0) return "needs root";
    for (const f of ["kubelet", "kube-apiserver", "kube-proxy", "etcd", "kubectl"]) if (!fs.existsSync(path.join(BIN, f))) return `no ${BIN}/${f}: run scripts/setup`;
    for (const f of ["/usr/bin/containerd", "/usr/bin/catatonit", "/usr/lib/cni/bridge"]) if (!fs.existsSync(f)) return `no ${f}`;
    if (spawnSync("go", ["version"]).status !== 0) return "no Go to build the test's HTTP server";
    return undefined;
}

function sh(cmd: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; check?: boolean } = {}): string {
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", cwd: opts.cwd, env: opts.env ?? process.env });
    if ((opts.check ?? true) && r.status !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr}${r.stdout}${r.error ?? ""}`);
    return r.stdout;
}

/** A single-layer OCI archive of `files` (path in the image -> file here), named `ref`. */
function ociArchive(work: string, ref: string, files: Record<string, string>, cmd: string[]): string {
    const root = fs.mkdtempSync(path.join(work, "root-"));
    for (const [inImage, src] of Object.entries(files)) {
        fs.mkdirSync(path.join(root, path.dirname(inImage)), { recursive: true });
        fs.copyFileSync(src, path.join(root, inImage));
        fs.chmodSync(path.join(root, inImage), 0o755);
    }
    const layout = fs.mkdtempSync(path.join(work, "layout-"));
    const blobs = path.join(layout, "blobs", "sha256");
    fs.mkdirSync(blobs, { recursive: true });
    const blob = (data: Buffer) => {
        const digest = createHash("sha256").update(data).digest("hex");
        fs.writeFileSync(path.join(blobs, digest), data);
        return { digest: `sha256:${digest}`, size: data.length };
    };
    const layerFile = path.join(work, `${path.basename(root)}.tar`);
    sh(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", root, "-cf", layerFile, "."]);
    const layer = blob(fs.readFileSync(layerFile));
    const config = blob(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: cmd }, rootfs: { type: "layers", diff_ids: [layer.digest] } })));
    const manifest = blob(Buffer.from(JSON.stringify({
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
    })));
    fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify({
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, annotations: { "io.containerd.image.name": ref }, platform: { architecture: "amd64", os: "linux" } }],
    }));
    fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    const archive = path.join(work, `${ref.replace(/[^a-z0-9]+/g, "-")}.oci.tar`);
    sh(["tar", "-C", layout, "-cf", archive, "oci-layout", "index.json", "blobs"]);
    return archive;
}

const SERVER_GO = `package main

import "net/http"

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from the lab cluster\\n")) })
	panic(http.ListenAndServe("[::]:8080", nil))
}
`;

const WORKLOAD = `
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: web
    image: nublar.local/kubetest-web:1
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilies: [IPv6]
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`;

function readSysctls(): Record<string, string> {
    return Object.fromEntries(KUBELET_GLOBAL_SYSCTLS.map((n) => [n, fs.readFileSync(path.join("/proc/sys", ...n.split(".")), "utf8").trim()]));
}

/** Live (not zombie) processes whose command line mentions `text`. */
function processesMentioning(text: string): string[] {
    const found: string[] = [];
    for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
            if (fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) continue;
            const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
            if (cmd.includes(text)) found.push(`${pid}: ${cmd}`);
        } catch {
            // gone
        }
    }
    return found;
}

function netnsUp(): void {
    netnsDown();
    sh(["ip", "netns", "add", NETNS]);
    sh(["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "eth0", "netns", NETNS]);
    sh(["ip", "addr", "add", `${PREFIX}1/64`, "dev", HOST_IF, "nodad"]);
    sh(["ip", "link", "set", HOST_IF, "up"]);
    sh(["ip", "-n", NETNS, "link", "set", "lo", "up"]);
    sh(["ip", "-n", NETNS, "addr", "add", `${PREFIX}2/64`, "dev", "eth0", "nodad"]);
    sh(["ip", "-n", NETNS, "link", "set", "eth0", "up"]);
    sh(["ip", "-n", NETNS, "-6", "route", "add", "default", "via", `${PREFIX}1`]);
}

function netnsDown(): void {
    if (fs.existsSync(`/run/netns/${NETNS}`)) sh(["ip", "netns", "del", NETNS]);
    sh(["ip", "link", "del", HOST_IF], { check: false });
}

test("the lab cluster: up, a pod and its IPv6 Service answer, down leaves nothing", { timeout: 600_000 }, async () => {
    // Tests never skip silently: a missing prerequisite fails, saying what is missing.
    const missing = skipReason();
    if (missing) throw new Error(`the lab cluster test cannot run: ${missing}`);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), `${TAG}-kubetest-`));
    const plan = planLabKube({ stateDir: path.join(work, "cluster"), netns: NETNS, nodeName: "kubetest", nodeAddress: `${PREFIX}2/64`, zone: "zone-test" });
    const sysctlsBefore = readSysctls();
    try {
        fs.writeFileSync(path.join(work, "server.go"), SERVER_GO);
        sh(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "server", "server.go"], { cwd: work, env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "" } });
        const pauseRef = "nublar.local/kubetest-pause:1";
        const images = [
            ociArchive(work, pauseRef, { "catatonit": "/usr/bin/catatonit" }, ["/catatonit", "-P"]),
            ociArchive(work, "nublar.local/kubetest-web:1", { "server": path.join(work, "server") }, ["/server"]),
        ];
        netnsUp();

        let t = Date.now();
        const up = await labKubeUp(plan, { images, pauseImage: pauseRef, bin: BIN });
        const upMs = Date.now() - t;
        assert.ok(labKubeAlive(plan));
        assert.equal(up.nodeName, "kubetest");
        assert.match(fs.readFileSync(up.kubeconfig, "utf8"), /server: https:\/\/\[fd6b:7465:7374:1::2\]:6443/);
        const kubectl = (args: string[], input?: string) => {
            const r = labKubectl(plan, args, { bin: BIN, input, timeoutMs: 150_000 });
            assert.equal(r.status, 0, `kubectl ${args.join(" ")}: ${r.stderr}`);
            return r.stdout;
        };
        assert.equal(kubectl(["get", "node", "kubetest", "-o", "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}"]), "zone-test");
        // The whole cluster weighs a quarter of one of the machine's processes (cgroup v1 here: cpu.shares).
        const shares = cgroupMounts().map((m) => path.join(m, plan.cgroupRoot, "cpu.shares")).filter((f) => fs.existsSync(f));
        assert.ok(shares.length >= 1, "a cpu controller holds the cluster's cgroup");
        for (const f of shares) assert.equal(fs.readFileSync(f, "utf8").trim(), String(LAB_KUBE_CPU_SHARES), f);
        // A second up finds it running and returns at once.
        t = Date.now();
        await labKubeUp(plan, { images, pauseImage: pauseRef, bin: BIN });
        assert.ok(Date.now() - t < 20_000);

        t = Date.now();
        kubectl(["apply", "-f", "-"], WORKLOAD);
        kubectl(["wait", "--for=condition=Ready", "pod/web", "--timeout=120s"]);
        const podMs = Date.now() - t;
        const clusterIp = kubectl(["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
        assert.match(clusterIp, /^fd00:10:96::/);
        let body = "";
        for (let i = 0; i < 60 && !body; i++) {
            const r = spawnSync("ip", ["netns", "exec", NETNS, process.execPath, "-e",
                `fetch("http://[${clusterIp}]/", { signal: AbortSignal.timeout(2000) }).then((r) => r.text()).then((b) => process.stdout.write(b))`], { encoding: "utf8" });
            if (r.status === 0) body = r.stdout;
            else await new Promise((res) => setTimeout(res, 500));
        }
        assert.equal(body, "hello from the lab cluster\n");
        assert.equal(kubectl(["logs", "web"]), "");

        t = Date.now();
        await labKubeDown(plan);
        const downMs = Date.now() - t;
        process.stderr.write(`lab cluster: up ${upMs} ms, pod Ready ${podMs} ms, down ${downMs} ms\n`);
        assert.equal(labKubeAlive(plan), false);
        assert.deepEqual(processesMentioning(plan.dir), []);
        const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(plan.dir) || l.includes("kubelet"));
        assert.deepEqual(mounts, []);
        assert.deepEqual(cgroupMounts().filter((m) => fs.existsSync(path.join(m, plan.cgroupRoot))), []);
        assert.deepEqual(readSysctls(), sysctlsBefore);
        // Down again: nothing to do, no error.
        await labKubeDown(plan);
    } finally {
        await labKubeDown(plan).catch((err) => process.stderr.write(`cleanup: ${err}\n`));
        netnsDown();
        fs.rmSync(work, { recursive: true, force: true });
    }
});
