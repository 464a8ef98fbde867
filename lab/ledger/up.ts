// Bringing the lab's ledger up and down: the cluster (lab/ledger/cluster.ts), the key files, the
// service config, and the ingest service as a detached daemon. Every operation is idempotent, so
// `pulumi up --refresh` after a reboot starts what is missing and keeps the data.
import * as fs from "node:fs";
import * as path from "node:path";
import { LedgerCluster, LOOPBACK, type ClusterPasswords } from "./cluster";
import { daemonPid, startNublarDaemon } from "../daemons";
import { ROLES } from "../../runtime/ledger/pg/schema";
import { serviceRequest } from "../../runtime/ledger/service-client";
import { writeServiceConfig, type ServiceConfig } from "../../runtime/ledger/config";
import type { LedgerLabLayout, LedgerPlan } from "../../model/ledger/plan";


export interface LabLedgerInputs {
    plan: LedgerPlan;
    passwords: ClusterPasswords;
    /** PKCS#8 PEM of the ed25519 checkpoint key, and its SPKI PEM public half. */
    signingKey: string;
    publicKey: string;
}

function layout(plan: LedgerPlan): LedgerLabLayout {
    if (!plan.lab) throw new Error("the ledger plan has no lab layout (only lab sites run the ledger on this machine)");
    return plan.lab;
}

export function clusterFor(plan: LedgerPlan, passwords: ClusterPasswords): LedgerCluster {
    const lab = layout(plan);
    return new LedgerCluster({ dir: lab.dir, pgPorts: lab.pgPorts, redisPort: lab.redisPort, shards: plan.shards, passwords });
}

export function serviceConfig(inputs: LabLedgerInputs): ServiceConfig {
    const { plan, passwords } = inputs;
    const lab = layout(plan);
    return {
        site: plan.site,
        shards: plan.shards,
        endpoints: lab.pgPorts.map((port) => ({ host: LOOPBACK, port })),
        ingest: { user: ROLES.ingest, password: passwords.ingest },
        auditor: { user: ROLES.auditor, password: passwords.auditor },
        redis: { host: LOOPBACK, port: lab.redisPort, password: passwords.redis },
        checkpoint: plan.checkpoint,
        signingKeyFile: lab.signingKeyFile,
        publicKeyFile: lab.publicKeyFile,
        lakeDir: lab.lakeDir,
        // The unix socket only (mode 0660): a TCP port, even on ::1, would let any local user append.
        listen: { socket: lab.socket },
        collect: plan.collect ? { shard: plan.collect.shard, files: plan.collect.files, stateFile: lab.collectStateFile } : undefined,
    };
}

/** The ingest service's PID: its command line names its config file. */
export function servicePid(plan: LedgerPlan): number | undefined {
    const lab = layout(plan);
    return daemonPid({ dir: lab.dir, marker: lab.configFile }, lab.pidFile);
}

export async function labLedgerUp(inputs: LabLedgerInputs, progress: (m: string) => void = () => undefined): Promise<void> {
    const lab = layout(inputs.plan);
    const cluster = clusterFor(inputs.plan, inputs.passwords);
    fs.mkdirSync(lab.dir, { recursive: true, mode: 0o755 });
    allowTraversal(lab.dir);
    if (!fs.existsSync(path.join(cluster.instances[0].dataDir, "PG_VERSION"))) {
        progress("creating the ledger cluster (PostgreSQL primary + standbys, Redis)");
        await cluster.create(progress);
    } else {
        progress("starting the ledger cluster");
        await cluster.ensure(progress);
    }
    fs.writeFileSync(lab.signingKeyFile, inputs.signingKey, { mode: 0o600 });
    fs.writeFileSync(lab.publicKeyFile, inputs.publicKey, { mode: 0o644 });
    fs.mkdirSync(lab.lakeDir, { recursive: true });
    writeServiceConfig(lab.configFile, serviceConfig(inputs));
    await startService(inputs.plan, progress);
}

/**
 * PostgreSQL and Redis run as their own users, so they must be able to traverse (not list) the
 * lab's state folders, which other parts of the lab create 0700. Adds o+x up to the .nublar folder.
 */
function allowTraversal(dir: string): void {
    for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
        const st = fs.statSync(d);
        if (!(st.mode & 0o001)) fs.chmodSync(d, (st.mode & 0o7777) | 0o001);
        if (path.basename(d) === ".nublar") return;
    }
}

async function startService(plan: LedgerPlan, progress: (m: string) => void): Promise<void> {
    const lab = layout(plan);
    const old = servicePid(plan);
    if (old) {
        // A config change (new shards, cadence, passwords) takes a restart.
        process.kill(old, "SIGTERM");
        for (let i = 0; i < 100 && servicePid(plan); i++) await new Promise((r) => setTimeout(r, 50));
    }
    progress("starting the ledger ingest service");
    await startNublarDaemon({
        what: "the ledger ingest service", args: ["ledger", "serve", "--config", lab.configFile], logFile: lab.logFile, pidFile: lab.pidFile,
        alive: () => !!servicePid(plan), ready: () => serviceRequest(lab.socket, "GET", "/v1/status", undefined, 1000), timeoutMs: 30_000,
    });
}

export async function labLedgerDown(plan: LedgerPlan, passwords: ClusterPasswords, keepData = false): Promise<void> {
    const pid = servicePid(plan);
    if (pid) {
        process.kill(pid, "SIGTERM");
        for (let i = 0; i < 200 && servicePid(plan); i++) await new Promise((r) => setTimeout(r, 50));
        if (servicePid(plan)) process.kill(pid, "SIGKILL");
    }
    const cluster = clusterFor(plan, passwords);
    if (keepData) await cluster.stop();
    else {
        await cluster.destroy();
        fs.rmSync(layout(plan).lakeDir, { recursive: true, force: true });
    }
}

/** Is everything running? (What `pulumi refresh` asks.) */
export function labLedgerAlive(plan: LedgerPlan, passwords: ClusterPasswords): boolean {
    const cluster = clusterFor(plan, passwords);
    return !!servicePid(plan) && !!cluster.redisPid() && cluster.instances.every((i) => i.pid());
}
