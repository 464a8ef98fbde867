// Looking at a lab park as it is on this machine (for `nublar lab status`), and
// sweeping up what a crashed run left behind (for `nublar lab clean` and tests).
import * as fs from "node:fs";
import * as path from "node:path";
import { stopLabLedgerProcesses } from "./ledger/processes";
import { spawnSync } from "node:child_process";
import { PROJECT_ROOT, projectPath } from "../model/project";
import type { LabPlan } from "../model/network/lab-plan";
import { agentDaemon, bfddDaemon, bfddPidFile, bfddRuntimeDir, daemonPid, removeBfddRuntime, removeLabNodeFiles, helloDaemon, nginxDaemon, nodeRuntimePaths, stopDaemon, type Daemon } from "./daemons";
import { deleteLink, deleteNetns, netnsExists, sshdPid, stopSshd } from "./ops";

export interface LinkState {
    ifname: string;
    up: boolean;
    addresses: string[];
}

export interface NodeState {
    name: string;
    netns: string;
    present: boolean;
    sshd: { pid?: number; running: boolean };
    links: (LinkState & { expected: string[]; missing: string[] })[];
    healthy: boolean;
}

function linkState(netns: string, ifname: string): LinkState | undefined {
    const res = spawnSync("ip", ["-n", netns, "-j", "addr", "show", "dev", ifname], { encoding: "utf8" });
    if (res.status !== 0) return undefined;
    const [info] = JSON.parse(res.stdout) as { operstate: string; flags: string[]; addr_info: { family: string; local: string; prefixlen: number; scope: string }[] }[];
    return {
        ifname,
        up: info.flags.includes("UP") && info.operstate !== "DOWN",
        addresses: info.addr_info.filter((a) => a.family === "inet6" && a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
    };
}

/** Compare the plan with the machine: namespaces, links, addresses, sshd. */
export function inspectLab(plan: LabPlan, stateRoot: string): NodeState[] {
    return plan.nodes.map((node) => {
        const present = netnsExists(node.netns);
        const wanted = [
            { ifname: node.mgmt.ifname, expected: [`${node.mgmt.address}/64`] },
            ...node.uplinks.map((u) => ({ ifname: u.ifname, expected: [`${u.address}/64`] })),
        ];
        const links = wanted.map((w) => {
            const s = present ? linkState(node.netns, w.ifname) : undefined;
            const addresses = s?.addresses ?? [];
            return { ifname: w.ifname, up: s?.up ?? false, addresses, expected: w.expected, missing: w.expected.filter((e) => !addresses.includes(e)) };
        });
        const pid = sshdPid(path.join(stateRoot, plan.stateSubdir, "nodes", node.name));
        const healthy = present && pid !== undefined && links.every((l) => l.up && l.missing.length === 0);
        return { name: node.name, netns: node.netns, present, sshd: { pid, running: pid !== undefined }, links, healthy };
    });
}

/**
 * Remove everything a lab with this tag may have left on the machine: our sshd processes and
 * daemons (agent, Nginx, HTTP services, bfdd, rollback watchdogs; by the PIDs in our own pid
 * files), namespaces named nbl-<tag>-*, the management bridge,
 * and the lab's files under the state folder. Returns what it removed. Processes that are
 * not ours are never signalled: a namespace still holding one is reported and kept.
 */
export function cleanLab(tag: string, stateRoot: string): { removed: string[]; kept: string[] } {
    const removed: string[] = [];
    const kept: string[] = [];
    const dir = path.join(stateRoot, "lab", tag);

    const nodesDir = path.join(dir, "nodes");
    const ls = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : []);
    // Our daemons, each found by its own pid file and checked against its command line.
    const stop = (what: string, d: Daemon, pidFile?: string) => {
        const pid = daemonPid(d, pidFile);
        if (pid === undefined) return;
        stopDaemon(d, pidFile);
        removed.push(`${what} pid ${pid}`);
    };
    for (const node of ls(nodesDir)) {
        const nodeDir = path.join(nodesDir, node);
        const rt = nodeRuntimePaths(nodeDir);
        const root = path.join(nodeDir, "system");
        for (const gen of ls(path.join(root, "generations"))) {
            const genDir = path.join(root, "generations", gen);
            stop(`rollback watchdog (${node}, generation ${gen})`, { dir: genDir, marker: `watchdog --root ${root} ` }, path.join(genDir, "watchdog.pid"));
        }
        stop(`nublar-agent (${node})`, agentDaemon(rt.agentDir));
        stop(`nginx (${node})`, nginxDaemon(rt.nginxDir), path.join(rt.nginxDir, "nginx.pid"));
        for (const port of ls(rt.helloDir)) stop(`HTTP service :${port} (${node})`, helloDaemon(path.join(rt.helloDir, port)));
        const pid = sshdPid(nodeDir);
        if (pid !== undefined) {
            stopSshd(nodeDir);
            removed.push(`sshd pid ${pid} (${node})`);
        }
        // The agent's event log and outbox under /var/lib/nublar-lab (its runtime files were in
        // the node's private /run, gone with its sshd).
        for (const f of removeLabNodeFiles(nodeDir)) removed.push(`files ${f}`);
    }
    for (const what of stopLabLedgerProcesses(path.join(dir, "ledger"))) removed.push(what);
    // The Kubernetes cluster (lab/kube): its daemons, pods, mounts, cgroups and the kubelet's sysctls.
    const kubeDir = path.join(dir, "kube");
    if (fs.existsSync(path.join(kubeDir, "plan.json"))) {
        const r = spawnSync(process.execPath, ["--import", "tsx", projectPath("lab", "kube", "down-main.ts"), kubeDir, "--purge"], { cwd: PROJECT_ROOT, encoding: "utf8", timeout: 120_000 });
        if (r.status === 0) removed.push(`Kubernetes cluster ${kubeDir}`);
        else kept.push(`Kubernetes cluster ${kubeDir}: ${(r.stderr || String(r.error)).trim()}`);
    }
    // The event pipeline and its broker: pid files checked against command lines (lab/event-bus.ts).
    stop("event pipeline", { dir: path.join(dir, "events"), marker: path.join(dir, "events", "pipeline.json") }, path.join(dir, "events", "pipeline.pid"));
    stop("kafka broker", { dir: path.join(dir, "events", "broker"), marker: path.join(dir, "events", "broker", "server.properties") }, path.join(dir, "events", "broker", "broker.pid"));
    for (const provider of ls(path.join(dir, "routers"))) {
        const bfdd = path.join(dir, "routers", provider, "bfdd");
        stop(`bfdd (${provider})`, bfddDaemon(bfdd), bfddPidFile(bfdd));
        if (removeBfddRuntime(bfdd)) removed.push(`files ${bfddRuntimeDir(bfdd)}`);
    }

    const prefix = `nbl-${tag}-`;
    const namespaces = fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns").filter((n) => n.startsWith(prefix)) : [];
    for (const ns of namespaces) {
        try {
            deleteNetns(ns);
            removed.push(`namespace ${ns}`);
        } catch (err) {
            kept.push(`namespace ${ns}: ${(err as Error).message}`);
        }
    }

    const bridge = `nb${tag}`;
    if (deleteLink(undefined, bridge)) removed.push(`bridge ${bridge}`);
    // Management ports whose namespace is gone disappear with it; any strays are named nb<tag>.<hex>.
    const strays = spawnSync("ip", ["-j", "link", "show"], { encoding: "utf8" });
    for (const link of strays.status === 0 ? (JSON.parse(strays.stdout) as { ifname: string }[]) : []) {
        if (link.ifname.startsWith(`${bridge}.`) && deleteLink(undefined, link.ifname)) removed.push(`link ${link.ifname}`);
    }

    // The files hold the pid files that find our processes: keep them while a namespace had to be kept.
    if (fs.existsSync(dir) && kept.length === 0) {
        fs.rmSync(dir, { recursive: true, force: true });
        removed.push(`files ${dir}`);
    }
    // Leave the parent folders only if something else still lives there.
    for (const d of [path.join(stateRoot, "lab")]) {
        try {
            fs.rmdirSync(d);
        } catch {
            // Not empty: another lab's files.
        }
    }
    return { removed, kept };
}
