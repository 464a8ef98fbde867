// A real Kubernetes API server on ::1 for tests: etcd and kube-apiserver as built by
// scripts/kube/build (linked as .tools/kube), with a throwaway PKI and an admin token. No
// scheduler, controllers or kubelet: objects are validated, admitted and stored, never run.
// Everything listens on ::1 only, on ports the OS picked, and stop() ends both processes by
// PID and removes the folder, whatever the test did.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePorts } from "./ports";
import { projectPath } from "../../model/project";

export const KUBE_TOOLS = projectPath(".tools", "kube");
/** The operators' CRDs (scripts/kube/build-crds): crds/<operator>/*.yaml and VERSIONS. */
export const KUBE_CRDS = projectPath(".tools", "kube-crds");

export interface KubeApi {
    kubeconfig: string;
    /** Run kubectl against this server. */
    kubectl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string };
    /** Startup time, for the record. */
    startedInMs: number;
    stop(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
    const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr || r.error}`);
}

async function stopProcess(p: ChildProcess): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null || !p.pid) return;
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
}

/**
 * Start one; a port another process took between our pick and the server's bind (the OS's
 * free ports are only free when asked) makes it try once more on new ports.
 */
export async function startKubeApi(): Promise<KubeApi> {
    try {
        return await startOnce();
    } catch (err) {
        if (!/address already in use/i.test(String((err as Error).message))) throw err;
        return startOnce();
    }
}

/**
 * Processes still running when this test process exits without stopping them: ended by PID.
 * (A process killed outright runs nothing: the next start sweeps up after it, below.)
 */
const running = new Set<ChildProcess>();
const folders = new Set<string>();
process.once("exit", () => {
    for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    for (const dir of folders) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * What an earlier test run left when it was killed outright (SIGKILL, or a runner that gave up
 * on it): its folder, and its servers if they outlived it. Each folder lists the PIDs it
 * started; a process is ended only if its command line still names that folder.
 */
function sweepLeftovers(): void {
    for (const name of fs.readdirSync(os.tmpdir())) {
        if (!name.startsWith("nublar-kube-")) continue;
        const dir = path.join(os.tmpdir(), name);
        let pids: number[];
        try {
            pids = fs.readFileSync(path.join(dir, "pids"), "utf8").split("\n").filter(Boolean).map(Number);
        } catch {
            continue; // still starting, or not ours
        }
        const owner = pids[0];
        if (owner && fs.existsSync(`/proc/${owner}`)) continue; // its test process still runs
        for (const pid of pids.slice(1)) {
            try {
                if (fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) process.kill(pid, "SIGKILL");
            } catch {
                // already gone
            }
        }
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

async function startOnce(): Promise<KubeApi> {
    sweepLeftovers();
    const bin = path.join(KUBE_TOOLS, "bin");
    if (!fs.existsSync(path.join(bin, "kube-apiserver"))) throw new Error(`no ${bin}/kube-apiserver: run scripts/setup`);
    const started = Date.now();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-kube-"));
    fs.chmodSync(dir, 0o700);
    folders.add(dir);
    const procs: ChildProcess[] = [];
    const stop = async () => {
        for (const p of procs.reverse()) {
            await stopProcess(p);
            running.delete(p);
        }
        fs.rmSync(dir, { recursive: true, force: true });
        folders.delete(dir);
    };
    try {
        // A CA, the server's certificate for ::1, the service-account key pair, an admin token.
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
        openssl(["req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "1", "-subj", "/CN=nublar-test-ca", "-out", "ca.crt"], dir);
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"], dir);
        openssl(["req", "-new", "-key", "server.key", "-subj", "/CN=kube-apiserver", "-out", "server.csr"], dir);
        fs.writeFileSync(path.join(dir, "san.ext"), "subjectAltName=IP:::1,IP:fd00:10:96::1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n");
        openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-sha256", "-extfile", "san.ext", "-out", "server.crt"], dir);
        openssl(["genrsa", "-out", "sa.key", "2048"], dir);
        openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
        const token = require("node:crypto").randomBytes(24).toString("hex");
        fs.writeFileSync(path.join(dir, "tokens.csv"), `${token},admin,admin-uid,system:masters\n`, { mode: 0o600 });

        const [client, peer, api] = await freePorts(3);
        // Each child's output goes to <name>.log. The children keep their own copies of these
        // descriptors: ours are closed once they started.
        const fds: number[] = [];
        const logTo = (name: string): ["ignore", number, number] => {
            const fd = fs.openSync(path.join(dir, `${name}.log`), "a");
            fds.push(fd);
            return ["ignore", fd, fd];
        };
        const logTail = (name: string) => fs.readFileSync(path.join(dir, `${name}.log`), "utf8").slice(-2000);
        const etcd = spawn(path.join(bin, "etcd"), [
            "--name", "n0", "--data-dir", path.join(dir, "etcd"),
            "--listen-client-urls", `http://[::1]:${client}`, "--advertise-client-urls", `http://[::1]:${client}`,
            "--listen-peer-urls", `http://[::1]:${peer}`, "--initial-advertise-peer-urls", `http://[::1]:${peer}`,
            "--initial-cluster", `n0=http://[::1]:${peer}`, "--initial-cluster-state", "new",
            // A test's data: no fsync, and a small quota.
            "--unsafe-no-fsync", "--quota-backend-bytes=1073741824", "--log-level=warn",
        ], { stdio: logTo("etcd") });
        procs.push(etcd);
        running.add(etcd);
        const apiserver = spawn(path.join(bin, "kube-apiserver"), [
            `--etcd-servers=http://[::1]:${client}`,
            "--bind-address=::1", "--advertise-address=::1", `--secure-port=${api}`,
            `--tls-cert-file=${dir}/server.crt`, `--tls-private-key-file=${dir}/server.key`, `--client-ca-file=${dir}/ca.crt`,
            `--token-auth-file=${dir}/tokens.csv`, "--anonymous-auth=false", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc", `--service-account-key-file=${dir}/sa.pub`, `--service-account-signing-key-file=${dir}/sa.key`,
            // IPv6-only, like the parks' clusters.
            "--service-cluster-ip-range=fd00:10:96::/112",
            // No nodes and no controller-manager: no endpoints to reconcile, no default service account.
            "--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount", "--profiling=false",
        ], { stdio: logTo("kube-apiserver") });
        procs.push(apiserver);
        running.add(apiserver);
        // Who started what, for sweepLeftovers if this process dies without cleaning up.
        fs.writeFileSync(path.join(dir, "pids"), [process.pid, etcd.pid, apiserver.pid].join("\n"));
        for (const fd of fds) fs.closeSync(fd);

        const kubeconfig = path.join(dir, "kubeconfig");
        fs.writeFileSync(kubeconfig, [
            "apiVersion: v1", "kind: Config",
            "clusters:", `- name: test`, "  cluster:", `    server: https://[::1]:${api}`, `    certificate-authority: ${dir}/ca.crt`,
            "users:", "- name: admin", "  user:", `    token: ${token}`,
            "contexts:", "- name: test", "  context: {cluster: test, user: admin}", "current-context: test", "",
        ].join("\n"), { mode: 0o600 });
        const kubectl = (args: string[], input?: string) => {
            const r = spawnSync(path.join(bin, "kubectl"), ["--kubeconfig", kubeconfig, "--request-timeout=60s", ...args], { input, encoding: "utf8", maxBuffer: 64 << 20, timeout: 120_000 });
            return { status: r.status, stdout: r.stdout ?? "", stderr: `${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
        };
        const deadline = Date.now() + 90_000;
        for (;;) {
            for (const [name, p] of [["etcd", etcd], ["kube-apiserver", apiserver]] as const) {
                if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${name} exited (${p.exitCode ?? p.signalCode}): ${logTail(name)}`);
            }
            if (kubectl(["get", "--raw", "/readyz", "--request-timeout=2s"]).stdout.trim() === "ok") break;
            if (Date.now() > deadline) throw new Error(`kube-apiserver not ready within 90 s: ${logTail("kube-apiserver")}`);
            await new Promise((r) => setTimeout(r, 250));
        }
        return { kubeconfig, kubectl, startedInMs: Date.now() - started, stop };
    } catch (err) {
        await stop();
        throw err;
    }
}
