// The ledger's plan, from the one site model: which shards, how many instances, the checkpoint
// cadence, and (for the lab) where everything lives on this machine and which agent event files
// feed the `network` shard. Pure: components and `nublar ledger` only apply or read it.
import * as path from "node:path";
import { PlanError } from "../network/addressing";
import type { Site } from "../site/model";

/** A shard's CloudNativePG Cluster on Kubernetes (components/k8s/ledger-cluster.ts): `<prefix>-<shard>`, `_` made `-`. */
export function ledgerClusterName(shard: string, prefix = "unicorn"): string {
    return `${prefix}-${shard.replace(/_/g, "-")}`;
}

export interface LedgerLabLayout {
    dir: string;
    pgPorts: number[];
    redisPort: number;
    /** The ingest service's unix socket (lab agents in their namespaces reach it through the filesystem). */
    socket: string;
    lakeDir: string;
    /** The service's config (passwords included), mode 0600: what `nublar ledger` reads in the lab. */
    configFile: string;
    signingKeyFile: string;
    publicKeyFile: string;
    pidFile: string;
    logFile: string;
    collectStateFile: string;
}

export interface LedgerPlan {
    site: string;
    shards: string[];
    instances: number;
    checkpoint: { entries: number; ms: number };
    /** The shard agents' events go to, when the site has one called `network`. */
    collect?: { shard: string; files: { node: string; file: string }[] };
    lab?: LedgerLabLayout;
}

export function planLedger(site: Site, lab?: { stateDir: string; agentEventsFile: (node: string) => string }): LedgerPlan {
    const l = site.ledger;
    const plan: LedgerPlan = { site: site.name, shards: [...l.shards], instances: l.instances, checkpoint: { ...l.checkpoint } };
    // With the event pipeline on, agents' events reach the ledger over the bus (runtime/agent/outbox.ts).
    if (l.shards.includes("network") && lab && !site.events.enabled) {
        plan.collect = { shard: "network", files: site.nodes.map((n) => ({ node: n.name, file: lab.agentEventsFile(n.name) })) };
    }
    if (lab && l.dataDurability !== "required") {
        // The lab's quorum is PostgreSQL's own synchronous replication, which has no "go on alone".
        throw new PlanError(`ledger.dataDurability: the lab ledger always waits for a standby ('required'), not '${l.dataDurability}'`);
    }
    if (lab) {
        const dir = path.join(lab.stateDir, "ledger");
        const base = l.labBasePort;
        plan.lab = {
            dir,
            pgPorts: Array.from({ length: l.instances }, (_, i) => base + i),
            redisPort: base + l.instances,
            socket: path.join(dir, "ingest.sock"),
            lakeDir: path.join(lab.stateDir, "lake"),
            configFile: path.join(dir, "service.json"),
            signingKeyFile: path.join(dir, "checkpoint-signing.key"),
            publicKeyFile: path.join(dir, "checkpoint-signing.pub"),
            pidFile: path.join(dir, "ingest.pid"),
            logFile: path.join(dir, "ingest.log"),
            collectStateFile: path.join(dir, "collect-offsets.json"),
        };
    }
    return plan;
}
