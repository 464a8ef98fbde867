// The lab's stand-in for NixOS's switch-to-configuration: it runs ON a lab node, over SSH
// (so inside the node's namespace, in its sshd's private /run where /run/keys lives), and
// makes the node run a generation that the deploy uploaded (runtime/deploy/deploy.ts):
//   the overlay (VXLAN tunnels, forwarding on hubs), Nginx with the Lua balancer, and the
//   nublar agent, each restarted only if its config changed. As on NixOS, the agent runs as
//   the unprivileged user `nublar` with three capabilities, and gets its BFD key as a
//   credential it alone can read (lab/daemons.ts startAgent); its files are where the agent
//   config says (agent.json's paths: lab/daemons.ts labNodeRuntimePaths).
//
// Generations live under <root>/generations/<n>/ with the bundle the NixOS renderer wrote
// (model/nix/render.ts) plus overlay.json; <root>/current holds the running one. Like deploy-rs's
// magic rollback, `switch` leaves a watchdog behind: unless the deployer confirms in time,
// the node goes back to the previous generation on its own, even if the deploy cut it off.
//
// Usage: lab-system.ts <status|switch|confirm|rollback|watchdog|deactivate> --root DIR --node-dir DIR [--gen N] [--watchdog-s S]
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { agentConfigRecord, agentDaemon, daemonPid, HERE, nginxDaemon, nodeRuntimePaths, reloadNginx, removeLabNodeFiles, startAgent, startNginx, stopDaemon, stopNginx } from "./daemons";
import { applyOverlay, removeOverlay } from "./overlay";
import type { OverlayPlan } from "../model/network/site-plan";
import { linkKeysScript } from "../model/nix/activation";
import { PROJECT_ROOT } from "../model/project";

export interface LabOverlayFile {
    hub: boolean;
    overlays: OverlayPlan[];
}

export interface SystemStatus {
    current: number | null;
    previous: number | null;
    generations: number[];
    confirmed: boolean;
    agent: boolean;
    nginx: boolean;
}

class Usage extends Error {}

function args(argv: string[]) {
    const [verb, ...rest] = argv;
    const opts: Record<string, string> = {};
    for (let i = 0; i < rest.length; i += 2) {
        if (!rest[i]?.startsWith("--") || rest[i + 1] === undefined) throw new Usage(`bad argument '${rest[i]}'`);
        opts[rest[i].slice(2)] = rest[i + 1];
    }
    if (!opts.root || !opts["node-dir"]) throw new Usage("--root and --node-dir are required");
    return { verb, root: opts.root, nodeDir: opts["node-dir"], gen: opts.gen === undefined ? undefined : Number(opts.gen), watchdogS: Number(opts["watchdog-s"] ?? 0) };
}

const genDir = (root: string, n: number) => path.join(root, "generations", String(n));
const readNumber = (file: string): number | null => {
    try {
        const n = Number(fs.readFileSync(file, "utf8").trim());
        return Number.isInteger(n) ? n : null;
    } catch {
        return null;
    }
};

function status(root: string, nodeDir: string): SystemStatus {
    const current = readNumber(path.join(root, "current"));
    const dir = path.join(root, "generations");
    const generations = fs.existsSync(dir) ? fs.readdirSync(dir).map(Number).filter(Number.isInteger).sort((a, b) => a - b) : [];
    const rt = nodeRuntimePaths(nodeDir);
    return {
        current,
        previous: current === null ? null : readNumber(path.join(genDir(root, current), "previous")),
        generations,
        confirmed: current !== null && fs.existsSync(path.join(genDir(root, current), "confirmed")),
        agent: daemonPid(agentDaemon(rt.agentDir)) !== undefined,
        nginx: daemonPid(nginxDaemon(rt.nginxDir), path.join(rt.nginxDir, "nginx.pid")) !== undefined,
    };
}

/** Make the node run generation n. Each part restarts only if its config changed. */
function activate(root: string, nodeDir: string, n: number): void {
    const dir = genDir(root, n);
    const read = (f: string) => (fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), "utf8") : undefined);
    const agentJson = read("agent.json");
    const overlayJson = read("overlay.json");
    if (!agentJson || !overlayJson) throw new Error(`generation ${n} at ${dir} is incomplete (needs agent.json and overlay.json)`);
    const overlay = JSON.parse(overlayJson) as LabOverlayFile;
    const agent = JSON.parse(agentJson) as { paths: { socket: string; nginxControl?: string; nginxControlToken?: string }; pathAuth?: { keyFile: string } };
    const rt = nodeRuntimePaths(nodeDir);

    applyOverlay(HERE, overlay.overlays, overlay.hub);

    const nginxConf = read("nginx.conf");
    const nginxMarker = nginxDaemon(rt.nginxDir).marker;
    if (!nginxConf) stopNginx(rt.nginxDir);
    else {
        // The lab's nginx.conf names this checkout's balancer.lua (the bundle's copy is for NixOS).
        const running = daemonPid(nginxDaemon(rt.nginxDir), path.join(rt.nginxDir, "nginx.pid")) !== undefined;
        if (running && fs.readFileSync(nginxMarker, "utf8") !== nginxConf) reloadNginx(HERE, rt.nginxDir, nginxConf);
        else startNginx(HERE, rt.nginxDir, nginxConf, agent.paths.nginxControl!, agent.paths.nginxControlToken);
    }

    const record = agentConfigRecord(rt.agentDir);
    // The agent reads its BFD key at start: a new key (a secret, not in agent.json) needs a
    // restart too. Only a fingerprint of it is kept, on the node.
    const keyFile = agent.pathAuth?.keyFile;
    const keyPrint = keyFile && fs.existsSync(keyFile) ? createHash("sha256").update(fs.readFileSync(keyFile)).digest("hex") : "";
    const printFile = path.join(rt.agentDir, "key.sha256");
    const keyChanged = fs.existsSync(printFile) && fs.readFileSync(printFile, "utf8") !== keyPrint;
    // SIGTERM: the agent takes its sessions AdminDown, so peers keep their routes while it restarts.
    if ((fs.existsSync(record) && fs.readFileSync(record, "utf8") !== agentJson) || keyChanged) stopDaemon(agentDaemon(rt.agentDir));
    startAgent(HERE, rt.agentDir, agent.paths.socket, agentJson);
    fs.writeFileSync(printFile, keyPrint, { mode: 0o600 });
}

/** Where the deploy puts secrets: a tmpfs (the node sshd's private /run). */
const KEYS_DIR = "/run/keys";

/** Point /run/keys/<name> at generation n's keys; keep only n's and `keep`'s copies. */
function linkKeys(n: number, keep: number | null): void {
    const r = spawnSync("sh", ["-c", linkKeysScript(KEYS_DIR, String(n), String(keep ?? "none"))], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`linking the keys of generation ${n}: ${r.stderr.trim()}`);
}

function switchTo(root: string, nodeDir: string, n: number, watchdogS: number): void {
    if (!fs.existsSync(genDir(root, n))) throw new Error(`no generation ${n} under ${root}`);
    const current = readNumber(path.join(root, "current"));
    if (current !== null && current !== n) fs.writeFileSync(path.join(genDir(root, n), "previous"), `${current}\n`);
    linkKeys(n, current);
    fs.rmSync(path.join(genDir(root, n), "confirmed"), { force: true });
    fs.writeFileSync(path.join(root, "current"), `${n}\n`);
    if (watchdogS > 0) {
        // Started before activating: if activation itself hangs or cuts us off, it still fires.
        const child = spawn(process.execPath, ["--import", "tsx", __filename, "watchdog", "--root", root, "--node-dir", nodeDir, "--gen", String(n), "--watchdog-s", String(watchdogS)], {
            cwd: PROJECT_ROOT, detached: true, stdio: "ignore",
        });
        child.unref();
        fs.writeFileSync(path.join(genDir(root, n), "watchdog.pid"), `${child.pid}\n`);
    }
    activate(root, nodeDir, n);
}

/** Back to the generation before n, if n is still the running one. Returns what runs now. */
function rollback(root: string, nodeDir: string, n: number): number | null {
    const current = readNumber(path.join(root, "current"));
    if (current !== n) return current; // already rolled back, or a newer deploy took over
    const previous = readNumber(path.join(genDir(root, n), "previous"));
    fs.writeFileSync(path.join(genDir(root, n), "rolled-back"), `${new Date().toISOString()}\n`);
    if (previous === null) {
        // Nothing to go back to: the node's first generation. Stop what it started.
        deactivate(root, nodeDir);
        return null;
    }
    fs.writeFileSync(path.join(root, "current"), `${previous}\n`);
    linkKeys(previous, n);
    activate(root, nodeDir, previous);
    return previous;
}

/** Stop the node's system. `forget`: the node leaves the site (pulumi destroy), so its files go too. */
function deactivate(root: string, nodeDir: string, forget = false): void {
    const rt = nodeRuntimePaths(nodeDir);
    stopDaemon(agentDaemon(rt.agentDir));
    stopNginx(rt.nginxDir);
    removeOverlay(HERE);
    fs.rmSync(path.join(root, "current"), { force: true });
    if (forget) {
        for (const dir of [root, rt.agentDir, rt.nginxDir]) fs.rmSync(dir, { recursive: true, force: true });
        removeLabNodeFiles(nodeDir);
    }
}

function main(argv: string[]): void {
    const a = args(argv);
    const needGen = () => {
        if (a.gen === undefined || !Number.isInteger(a.gen) || a.gen < 1) throw new Usage("--gen N (a positive integer) is required");
        return a.gen;
    };
    switch (a.verb) {
        case "status":
            process.stdout.write(`${JSON.stringify(status(a.root, a.nodeDir))}\n`);
            return;
        case "switch":
            switchTo(a.root, a.nodeDir, needGen(), a.watchdogS);
            process.stdout.write(`${JSON.stringify(status(a.root, a.nodeDir))}\n`);
            return;
        case "confirm": {
            const n = needGen();
            if (readNumber(path.join(a.root, "current")) !== n) throw new Error(`generation ${n} is no longer running (rolled back?)`);
            fs.writeFileSync(path.join(genDir(a.root, n), "confirmed"), `${new Date().toISOString()}\n`);
            const pid = readNumber(path.join(genDir(a.root, n), "watchdog.pid"));
            if (pid) try { process.kill(pid, "SIGTERM"); } catch { /* already gone */ }
            return;
        }
        case "rollback":
            process.stdout.write(`${JSON.stringify({ running: rollback(a.root, a.nodeDir, needGen()) })}\n`);
            return;
        case "watchdog": {
            const n = needGen();
            const file = path.join(genDir(a.root, n), "confirmed");
            const deadline = Date.now() + a.watchdogS * 1000;
            const timer = setInterval(() => {
                if (fs.existsSync(file)) process.exit(0);
                if (Date.now() < deadline) return;
                clearInterval(timer);
                rollback(a.root, a.nodeDir, n);
            }, 250);
            return;
        }
        case "deactivate":
            deactivate(a.root, a.nodeDir, true);
            return;
        default:
            throw new Usage(`unknown command '${a.verb}'`);
    }
}

if (require.main === module) {
    try {
        main(process.argv.slice(2));
    } catch (err) {
        process.stderr.write(`lab-system: ${(err as Error).message}\n`);
        process.exit(err instanceof Usage ? 2 : 1);
    }
}
