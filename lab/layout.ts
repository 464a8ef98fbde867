// Where the lab keeps each node's files, its event pipeline and its ledger on this machine:
// pure functions of the lab plan and the state folder. The CLI reads them without loading the
// Pulumi SDK; components/lab applies them.
import * as path from "node:path";
import { planEvents, type EventsPlan } from "../model/events/plan";
import { LAB_KUBE_DEFAULTS, planLabKube, type LabKubePlan } from "../model/kube/plan";
import { planLedger, type LedgerPlan } from "../model/ledger/plan";
import type { LabPlan } from "../model/network/lab-plan";
import type { Site } from "../model/site/model";
import { labNodeRuntimePaths } from "./daemons";

/**
 * The lab deploy's layout on a node: its folder and generations (components/nixos), and where
 * its daemons' files live (lab/daemons.ts labNodeRuntimePaths: the agent, which runs as an
 * unprivileged user, cannot reach the node's private folder).
 */
export function labNodeDirs(plan: LabPlan, stateRoot: string, node: string) {
    const nodeDir = path.join(stateRoot, plan.stateSubdir, "nodes", node);
    return { nodeDir, systemRoot: path.join(nodeDir, "system"), runtime: labNodeRuntimePaths(nodeDir) };
}

/**
 * Where a lab node's agent files live, for model/network/agent-plan.ts's `paths` option. The BFD key
 * is a Pulumi secret the deploy puts in /run/keys, as on NixOS (the lab node's sshd has a
 * private /run, which the daemons it starts share); the agent gets a private copy of it, as a
 * credential. Nginx's control token is written beside its socket (lab/daemons.ts prepareNginxControl).
 */
export function labAgentPaths(plan: LabPlan, stateRoot: string, bfdKeyFile: string) {
    return (node: string) => {
        const rt = labNodeDirs(plan, stateRoot, node).runtime;
        return { socket: rt.agentSocket, events: rt.events, nginxControl: rt.nginxControl, bfdKeyFile };
    };
}

/** The lab's event pipeline plan: the broker and the pipeline beside the park's files. */
export function labEventsPlan(site: Site, plan: LabPlan, stateRoot: string): EventsPlan | undefined {
    return planEvents(site, { stateDir: path.join(stateRoot, plan.stateSubdir), managementPrefix: plan.mgmt.prefix });
}

/** The lab's ledger plan: its files beside the park's, fed by every node's agent event file. */
export function labLedgerPlan(site: Site, plan: LabPlan, stateRoot: string): LedgerPlan {
    return planLedger(site, { stateDir: path.join(stateRoot, plan.stateSubdir), agentEventsFile: (n) => labNodeDirs(plan, stateRoot, n).runtime.events });
}

/**
 * The local volumes the lab's cluster needs for the site's LAMP apps (components/k8s/lamp.ts):
 * a Deployment's replicas share one ReadWriteMany volume on `ssd-rwx`; a StatefulSet's pods get
 * one each on their class, for as many pods as its HPA may run. One entry per class.
 */
export function labKubeVolumes(site: Site): { storageClass: string; accessMode: "ReadWriteOnce" | "ReadWriteMany"; size: string; count: number }[] {
    const byClass = new Map<string, { storageClass: string; accessMode: "ReadWriteOnce" | "ReadWriteMany"; size: string; count: number }>();
    const bytes = (s: string) => Number(s.slice(0, -2)) * { Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }[s.slice(-2) as "Mi" | "Gi" | "Ti"];
    for (const app of site.kubernetes?.lamp ?? []) {
        const storageClass = app.stateful ? app.storageClass : "ssd-rwx";
        const count = app.stateful ? (app.maxReplicas ?? Math.max(app.replicas * 3, 4)) : 1;
        const v = byClass.get(storageClass);
        if (!v) byClass.set(storageClass, { storageClass, accessMode: app.stateful ? "ReadWriteOnce" : "ReadWriteMany", size: app.size, count });
        else {
            v.count += count;
            if (bytes(app.size) > bytes(v.size)) v.size = app.size;
        }
    }
    // The ledger's CloudNativePG instances: one volume each (a cluster per shard, as in the parks).
    if (site.kubernetes?.ledger) byClass.set(LAB_LEDGER_STORAGE_CLASS, { storageClass: LAB_LEDGER_STORAGE_CLASS, accessMode: "ReadWriteOnce", size: LAB_LEDGER_VOLUME_SIZE, count: site.ledger.shards.length * site.ledger.instances });
    return [...byClass.values()];
}

/** The storage class of the lab's ledger volumes, and their nominal size (local folders: not enforced). */
export const LAB_LEDGER_STORAGE_CLASS = "ledger-local";
export const LAB_LEDGER_VOLUME_SIZE = "2Gi";

/** The lab's Kubernetes cluster plan (lab/kube), when the site has one: its folder beside the park's files. */
export function labKubePlan(plan: LabPlan, stateRoot: string): LabKubePlan | undefined {
    const node = plan.kube;
    if (!node) return undefined;
    return planLabKube({
        stateDir: path.join(stateRoot, plan.stateSubdir, "kube"), netns: node.netns, nodeName: node.nodeName, nodeAddress: node.mgmt.address, zone: node.zone,
        ...(node.ledger ? { clusterDns: LAB_KUBE_DEFAULTS.clusterDns } : {}),
    });
}
