// The lab's single-node Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd, the kubelet and kube-proxy, all inside the network namespace the
// caller made (plan.netns: a link to the host up, plan.nodeAddress on it, a default route)
// and one private mount namespace of the cluster's own (lab/kube/host.ts), so nothing they
// mount or program reaches the host. Images are imported from OCI archives, never pulled.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { LAB_KUBE_CPU_SHARES, LAB_KUBE_DAEMONS, type LabKubeDaemon, type LabKubePlan } from "../../model/kube/plan";
import { projectPath } from "../../model/project";
import { LabCommandError } from "../ops";
import { adminKubeconfig, cniConflist, configFile, containerdConfig, KUBE_CLIENTS, kubeconfig, kubeletConfig, kubeProxyConfig, type KubeClient } from "./config";
import { daemonBinary, daemonError, daemonPid, daemonsCgroup, startDaemon, stopDaemon } from "./daemons";
import {
    ensureCgroup, holderPid, killCgroup, listening, logFile, logTail, namespacesOf, netnsExists, netnsInode, recordSysctls, removeCgroup,
    removeMountPoints, restoreSysctls, run, sleep, startHolder, weighCgroup,
} from "./host";
import { ensurePki, readPem } from "./pki";

export interface LabKubeUpOptions {
    /** OCI archives to import into containerd (each once; re-imported when the file changes). */
    images: string[];
    /** The sandbox ("pause") image's reference; one of the archives must hold it. */
    pauseImage: string;
    /** Where the Kubernetes binaries are (scripts/kube/build's bin). */
    bin?: string;
    /** Progress lines; stderr by default. */
    progress?: (line: string) => void;
}

export interface LabKube {
    /** The admin's kubeconfig (credentials inline), server https://[nodeAddress]:apiPort. */
    kubeconfig: string;
    nodeName: string;
}

/** The plan a cluster was started with, in its folder. */
export const PLAN_RECORD = "plan.json";

export const DEFAULT_KUBE_BIN = projectPath(".tools", "kube", "bin");

const STEP_TIMEOUT_MS = 180_000;

function say(opts: LabKubeUpOptions, line: string): void {
    (opts.progress ?? ((l: string) => process.stderr.write(`${l}\n`)))(`lab kube: ${line}`);
}

/** Whether the cluster runs: its holder in the namespace that now has plan.netns's name, and every daemon. */
export function labKubeAlive(plan: LabKubePlan): boolean {
    const holder = holderPid(plan);
    if (!holder || !netnsExists(plan) || namespacesOf(holder)?.net !== netnsInode(plan)) return false;
    return LAB_KUBE_DAEMONS.every((d) => daemonPid(plan, d) !== undefined);
}

/**
 * kubectl as the admin, run inside the cluster's network namespace (the API server's address
 * is there, whatever the host routes). `requestTimeout`: kubectl's, per request (none by
 * default, so `wait` and `logs -f` run their course); `timeoutMs` ends the process.
 */
export function labKubectl(plan: LabKubePlan, args: string[], opts: { bin?: string; input?: string; timeoutMs?: number; requestTimeout?: string } = {}): { status: number | null; stdout: string; stderr: string } {
    const bin = opts.bin ?? DEFAULT_KUBE_BIN;
    const timeout = opts.requestTimeout ? [`--request-timeout=${opts.requestTimeout}`] : [];
    const r = spawnSync("nsenter", [`--net=/run/netns/${plan.netns}`, "--", path.join(bin, "kubectl"), "--kubeconfig", plan.paths.adminKubeconfig,
        // Its discovery cache too, not root's ~/.kube.
        `--cache-dir=${path.join(plan.dir, "kubectl-cache")}`, ...timeout, ...args], {
        encoding: "utf8", input: opts.input, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20,
    });
    return { status: r.status, stdout: r.stdout ?? "", stderr: `${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

function checkPrerequisites(plan: LabKubePlan, bin: string): void {
    const missing = [...LAB_KUBE_DAEMONS.map((d) => daemonBinary(bin, d)), path.join(bin, "kubectl")].filter((f) => !fs.existsSync(f));
    if (missing.length) throw new LabCommandError("starting the lab cluster", ["test", "-x", ...missing], `missing ${missing.join(", ")}: run scripts/setup (scripts/kube/build builds the Kubernetes binaries; Debian's containerd, runc and containernetworking-plugins are installed by setup)`);
    if (!fs.existsSync("/usr/lib/cni/bridge")) throw new LabCommandError("starting the lab cluster", ["test", "-x", "/usr/lib/cni/bridge"], "the CNI plugins are missing: apt-get install containernetworking-plugins");
    if (!netnsExists(plan)) {
        throw new LabCommandError("starting the lab cluster", ["ip", "netns", "list"], `there is no network namespace '${plan.netns}': the caller makes it, with a link up carrying ${plan.nodeAddress}/64 and a default route`);
    }
    const addrs = run(`reading the addresses of namespace ${plan.netns}`, ["ip", "-n", plan.netns, "-6", "-o", "addr", "show"]);
    if (!addrs.split("\n").some((l) => l.includes(` ${plan.nodeAddress}/`))) {
        throw new LabCommandError("starting the lab cluster", ["ip", "-n", plan.netns, "-6", "addr", "show"], `namespace ${plan.netns} has no address ${plan.nodeAddress}: the caller puts it on the namespace's link before the cluster starts`);
    }
}

function writeConfig(plan: LabKubePlan, pauseImage: string): void {
    for (const d of [plan.dir, plan.paths.config, plan.paths.logs, plan.paths.run, plan.paths.cniConfDir, plan.paths.cniDataDir]) {
        fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    }
    fs.chmodSync(plan.dir, 0o700);
    ensurePki(plan);
    const write = (file: string, text: string) => fs.writeFileSync(file, text, { mode: 0o600 });
    for (const client of Object.keys(KUBE_CLIENTS) as KubeClient[]) {
        if (client !== "admin") write(configFile(plan, `${client}.kubeconfig`), kubeconfig(plan, client));
    }
    write(plan.paths.adminKubeconfig, adminKubeconfig(plan, { ca: readPem(plan, "ca.crt"), cert: readPem(plan, "admin.crt"), key: readPem(plan, "admin.key") }));
    write(configFile(plan, "containerd.toml"), containerdConfig(plan, pauseImage));
    write(configFile(plan, "kubelet.json"), kubeletConfig(plan));
    write(configFile(plan, "kube-proxy.json"), kubeProxyConfig(plan));
    write(path.join(plan.paths.cniConfDir, "10-nublar-lab.conflist"), cniConflist(plan));
}

/** Wait for `probe` to give a value, failing early (with its log) if one of `daemons` died. */
async function waitFor<T>(plan: LabKubePlan, what: string, daemons: readonly LabKubeDaemon[], probe: () => T | undefined, timeoutMs = STEP_TIMEOUT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = probe();
        if (v !== undefined) return v;
        for (const d of daemons) if (daemonPid(plan, d) === undefined) throw daemonError(plan, d, `it exited while waiting for ${what}`);
        if (Date.now() > deadline) {
            const tails = daemons.map((d) => `---- ${logFile(plan, d)}:\n${logTail(logFile(plan, d), 8)}`).join("\n");
            throw new LabCommandError(`starting the lab cluster`, ["wait", what], `${what} not within ${timeoutMs / 1000} s.\n${tails}`);
        }
        await sleep(250);
    }
}

/**
 * Import each archive unless it was imported as it is now (the record in containerd's root
 * keeps each path's size and mtime), then check the pause image is there.
 */
function importImages(plan: LabKubePlan, holder: number, images: string[], pauseImage: string, opts: LabKubeUpOptions): void {
    const recordFile = path.join(plan.paths.containerdRoot, "nublar-imported.json");
    const record: Record<string, string> = fs.existsSync(recordFile) ? JSON.parse(fs.readFileSync(recordFile, "utf8")) : {};
    const ctr = (...args: string[]) => ["nsenter", `--target=${holder}`, "--mount", "--net", "--", "ctr", "--address", plan.paths.containerdSocket, "-n", "k8s.io", ...args];
    for (const image of images) {
        const tar = path.resolve(image);
        let st: fs.Stats;
        try {
            st = fs.statSync(tar);
        } catch {
            throw new LabCommandError("importing the lab cluster's images", ["stat", tar], `no image archive ${tar}`);
        }
        const stamp = `${st.size}:${st.mtimeMs}`;
        if (record[tar] === stamp) continue;
        const t = Date.now();
        run(`importing image archive ${tar} into the lab cluster's containerd`, ctr("images", "import", "--digests", tar), { timeoutMs: 300_000 });
        say(opts, `imported ${path.basename(tar)} in ${Date.now() - t} ms`);
        record[tar] = stamp;
        fs.writeFileSync(recordFile, JSON.stringify(record, null, 2));
    }
    const refs = run("listing the lab cluster's images", ctr("images", "ls", "-q")).split("\n");
    if (!refs.includes(pauseImage)) {
        throw new LabCommandError("importing the lab cluster's images", ctr("images", "ls", "-q"), `the pause image ${pauseImage} is in none of the archives (${images.join(", ") || "none given"}); containerd has: ${refs.filter(Boolean).join(", ")}`);
    }
}

/** A probe's kubectl: short, so a wait loop keeps its pace. */
function probe(plan: LabKubePlan, bin: string, args: string[]) {
    return labKubectl(plan, args, { bin, requestTimeout: "5s", timeoutMs: 10_000 });
}

function apiReady(plan: LabKubePlan, bin: string): true | undefined {
    return probe(plan, bin, ["get", "--raw", "/readyz"]).stdout.trim() === "ok" ? true : undefined;
}

function jsonOf(plan: LabKubePlan, bin: string, args: string[]): any {
    const r = probe(plan, bin, [...args, "-o", "json"]);
    if (r.status !== 0) return undefined;
    try {
        return JSON.parse(r.stdout);
    } catch {
        return undefined;
    }
}

/**
 * The node is Ready by a heartbeat since `since`: after a restart the stored node still says
 * Ready (for the node controller's grace period) before the new kubelet has said anything.
 */
function nodeReady(plan: LabKubePlan, bin: string, since: number): true | undefined {
    const node = jsonOf(plan, bin, ["get", "node", plan.nodeName]);
    const ready = node?.status?.conditions?.find((c: any) => c.type === "Ready");
    // Heartbeats have a resolution of a second.
    return ready?.status === "True" && Date.parse(ready.lastHeartbeatTime) >= since - 1000 ? true : undefined;
}

/** kube-proxy has made its first full sync: kubernetes.default's ClusterIP is in its nftables. */
function proxySynced(plan: LabKubePlan): true | undefined {
    const r = spawnSync("nsenter", [`--net=/run/netns/${plan.netns}`, "--", "nft", "list", "table", "ip6", "kube-proxy"], { encoding: "utf8", timeout: 10_000 });
    return r.status === 0 && r.stdout.includes(plan.apiServiceAddress) ? true : undefined;
}

/** A namespace's pods can start: its default ServiceAccount and root CA ConfigMap exist. */
function podsAdmitted(plan: LabKubePlan, bin: string): true | undefined {
    const sa = probe(plan, bin, ["get", "serviceaccount", "default", "-n", "default", "-o", "name"]);
    const cm = probe(plan, bin, ["get", "configmap", "kube-root-ca.crt", "-n", "default", "-o", "name"]);
    return sa.status === 0 && cm.status === 0 ? true : undefined;
}

async function startAll(plan: LabKubePlan, bin: string, opts: LabKubeUpOptions): Promise<void> {
    const started = Date.now();
    const since = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
    say(opts, `starting in ${plan.netns} (${plan.dir})`);
    writeConfig(plan, opts.pauseImage);
    const daemonsProcs = ensureCgroup(daemonsCgroup(plan));
    // The whole cluster (daemons and pods) weighs a quarter of one of the lab's processes.
    weighCgroup(plan.cgroupRoot, LAB_KUBE_CPU_SHARES);
    recordSysctls(plan);
    const holder = await startHolder(plan, daemonsProcs);
    const start = (d: LabKubeDaemon) => startDaemon(plan, bin, d, holder, daemonsProcs);

    // containerd needs nothing of the API server: it starts, and takes the images, meanwhile.
    await start("etcd");
    await start("containerd");
    await waitFor(plan, "etcd's client port", ["etcd"], () => (listening(holder, plan.ports.etcdClient) ? true : undefined), 30_000);
    await start("kube-apiserver");
    await waitFor(plan, "containerd's socket", ["containerd"], () => (fs.existsSync(plan.paths.containerdSocketOnHost) ? true : undefined), 30_000);
    importImages(plan, holder, opts.images, opts.pauseImage, opts);
    await waitFor(plan, "the API server's /readyz", ["etcd", "kube-apiserver", "containerd"], () => apiReady(plan, bin));
    say(opts, `API server ready after ${since()}`);
    for (const d of ["kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"] as const) await start(d);
    await waitFor(plan, `node ${plan.nodeName} Ready`, LAB_KUBE_DAEMONS, () => nodeReady(plan, bin, started));
    await waitFor(plan, "the default namespace's ServiceAccount and kube-root-ca.crt", LAB_KUBE_DAEMONS, () => podsAdmitted(plan, bin));
    await waitFor(plan, "kube-proxy's first sync (kubernetes.default in its nftables)", LAB_KUBE_DAEMONS, () => proxySynced(plan));
    say(opts, `node ${plan.nodeName} Ready, kube-proxy synced, after ${since()}`);
}

/**
 * Start the cluster (or, if it runs, check it and import new images: a running cluster is not
 * reconfigured): idempotent. A cluster found half-running (a daemon died, the namespace was
 * rebuilt) is taken down and started again on the same data (PKI, etcd, images kept).
 */
export async function labKubeUp(plan: LabKubePlan, opts: LabKubeUpOptions): Promise<LabKube> {
    const bin = path.resolve(opts.bin ?? DEFAULT_KUBE_BIN);
    checkPrerequisites(plan, bin);
    // What down-main.ts (and so `nublar lab clean`) needs to take it down after a crash.
    fs.mkdirSync(plan.dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(plan.dir, PLAN_RECORD), JSON.stringify(plan, null, 2), { mode: 0o600 });
    const result = { kubeconfig: plan.paths.adminKubeconfig, nodeName: plan.nodeName };
    if (labKubeAlive(plan)) {
        await waitFor(plan, "the API server's /readyz", LAB_KUBE_DAEMONS, () => apiReady(plan, bin), 60_000);
        await waitFor(plan, `node ${plan.nodeName} Ready`, LAB_KUBE_DAEMONS, () => nodeReady(plan, bin, 0), 120_000);
        const holder = holderPid(plan)!;
        importImages(plan, holder, opts.images, opts.pauseImage, opts);
        return result;
    }
    await labKubeDown(plan);
    try {
        await startAll(plan, bin, opts);
    } catch (err) {
        // Nothing half-started stays behind (the kubelet's sysctls included); the logs stay.
        say(opts, `start failed: taking down what did start (logs kept in ${plan.paths.logs})`);
        await labKubeDown(plan).catch((e) => say(opts, `cleanup after the failed start failed too: ${e}`));
        throw err;
    }
    return result;
}

export interface LabKubeDownOptions {
    /** Remove plan.dir whole (PKI, etcd's data, images) instead of only its runtime files. */
    purge?: boolean;
}

/**
 * Stop the cluster and undo what it did to the host; idempotent, and works after a crash
 * (stale pid files are checked, the cluster's cgroup tree finds whatever is left). The
 * kubelet goes first so it restarts nothing, then the pods, then the rest; then everything
 * still in the cluster's cgroups (containerd's shims, the holder) is killed, which ends the
 * mount namespace and every mount in it.
 */
export async function labKubeDown(plan: LabKubePlan, opts: LabKubeDownOptions = {}): Promise<void> {
    await stopDaemon(plan, "kubelet");
    await killCgroup(`${plan.cgroupRoot}/kubepods`, 5000);
    for (const d of ["kube-proxy", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"] as const) {
        await stopDaemon(plan, d, d === "etcd" ? 10_000 : 5000);
    }
    const holder = holderPid(plan);
    if (holder) process.kill(holder, "SIGKILL");
    await killCgroup(plan.cgroupRoot, 2000);
    removeCgroup(plan.cgroupRoot);
    restoreSysctls(plan);
    removeMountPoints(plan);
    if (opts.purge) fs.rmSync(plan.dir, { recursive: true, force: true });
    else fs.rmSync(plan.paths.run, { recursive: true, force: true });
}
