// CloudNativePG's view of a ledger cluster in the lab's Kubernetes cluster, and the operations
// a drill needs: a switchover (CloudNativePG promotes the target and demotes the old primary),
// and a crash of the primary's postgres (kill -9 of its postmaster: the instance manager
// restarts it in place, or the operator fails over, whichever comes first). Everything goes
// through the cluster's API as its admin (labKubectl): the same requests `kubectl cnpg` makes.
import type { LabKubePlan } from "../../model/kube/plan";
import { LabCommandError } from "../ops";
import { labKubectl } from "./cluster";

/** What CloudNativePG says of a Cluster (its status). */
export interface CnpgStatus {
    name: string;
    /** The primary's pod (instance) name, as the operator last saw it. */
    currentPrimary: string;
    /** Where a switchover or failover is going ("pending" while the operator picks one); the current primary otherwise. */
    targetPrimary: string;
    /** CloudNativePG's phase, e.g. "Cluster in healthy state", "Switchover in progress", "Failing over". */
    phase: string;
    instances: number;
    readyInstances: number;
    /** Instances by health ("healthy", "failed", ...), as the operator groups them. */
    instancesStatus: Record<string, string[]>;
}

export const CNPG_HEALTHY_PHASE = "Cluster in healthy state";

function kubectl(plan: LabKubePlan, what: string, args: string[]): string {
    const r = labKubectl(plan, args, { timeoutMs: 60_000, requestTimeout: "30s" });
    if (r.status !== 0) throw new LabCommandError(what, ["kubectl", ...args], r.stderr.trim() || `exit ${r.status}`);
    return r.stdout;
}

export function cnpgStatus(plan: LabKubePlan, namespace: string, cluster: string): CnpgStatus {
    const out = kubectl(plan, `reading CloudNativePG cluster ${namespace}/${cluster}`, ["-n", namespace, "get", "clusters.postgresql.cnpg.io", cluster, "-o", "json"]);
    const c = JSON.parse(out) as { metadata: { name: string }; spec: { instances: number }; status?: Record<string, unknown> };
    const s = c.status ?? {};
    return {
        name: c.metadata.name,
        currentPrimary: String(s.currentPrimary ?? ""),
        targetPrimary: String(s.targetPrimary ?? ""),
        phase: String(s.phase ?? ""),
        instances: c.spec.instances,
        readyInstances: Number(s.readyInstances ?? 0),
        instancesStatus: (s.instancesStatus as Record<string, string[]> | undefined) ?? {},
    };
}

/** Whether the cluster is healthy with every instance ready and a settled primary. */
export function cnpgSettled(s: CnpgStatus): boolean {
    return s.phase === CNPG_HEALTHY_PHASE && s.readyInstances === s.instances && !!s.currentPrimary && s.currentPrimary === s.targetPrimary;
}

/** Waits until `until` holds of the cluster's status; fails after timeoutMs with the last status seen. */
export async function cnpgWait(plan: LabKubePlan, namespace: string, cluster: string, until: (s: CnpgStatus) => boolean, timeoutMs: number, what = "the cluster to settle"): Promise<CnpgStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: CnpgStatus | undefined;
    let error = "";
    while (Date.now() < deadline) {
        try {
            last = cnpgStatus(plan, namespace, cluster);
            if (until(last)) return last;
        } catch (e) {
            error = (e as Error).message;
        }
        await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`waited ${Math.round(timeoutMs / 1000)} s for ${what} (${namespace}/${cluster}); last seen: ${last ? JSON.stringify(last) : error}`);
}

/**
 * Asks CloudNativePG for a switchover to `target` (an instance's pod name): the target
 * primary in the Cluster's status, as `kubectl cnpg promote` means to (its 1.25.0 plugin loses
 * the field; CloudNativePG issues 6475, 6594). Refuses a target that is not a healthy standby.
 */
export function cnpgSwitchover(plan: LabKubePlan, namespace: string, cluster: string, target: string, now = new Date()): void {
    const s = cnpgStatus(plan, namespace, cluster);
    if (s.currentPrimary === target) throw new Error(`${target} is already the primary of ${namespace}/${cluster}`);
    if (!(s.instancesStatus.healthy ?? []).includes(target)) throw new Error(`${target} is not a healthy instance of ${namespace}/${cluster} (healthy: ${(s.instancesStatus.healthy ?? []).join(", ") || "none"})`);
    if (s.phase !== CNPG_HEALTHY_PHASE) throw new Error(`${namespace}/${cluster} is not healthy (phase '${s.phase}'): a switchover now would race the operator`);
    // The operator compares this timestamp with its own; microseconds, as the plugin writes it.
    const stamp = now.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
    const patch = { status: { targetPrimary: target, targetPrimaryTimestamp: stamp, phase: "Switchover in progress", phaseReason: `Switching over to ${target}` } };
    kubectl(plan, `asking CloudNativePG for a switchover of ${namespace}/${cluster} to ${target}`,
        ["-n", namespace, "patch", "clusters.postgresql.cnpg.io", cluster, "--subresource=status", "--type=merge", "-p", JSON.stringify(patch)]);
}

/** How many times the kubelet restarted an instance's postgres container (its instance manager exits when postgres dies). */
export function cnpgRestarts(plan: LabKubePlan, namespace: string, pod: string): number {
    const out = kubectl(plan, `reading ${pod}'s restarts`, ["-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[?(@.name==\"postgres\")].restartCount}"]);
    return Number(out.trim() || 0);
}

/**
 * kill -9 of the primary's postmaster (in its pod, as the postgres user): a crash, not a
 * shutdown. The instance manager then exits and the kubelet restarts the container, unless the
 * operator has failed over first. Returns the pod and its restart count before the kill.
 */
export function cnpgKillPrimary(plan: LabKubePlan, namespace: string, cluster: string): { pod: string; restartsBefore: number } {
    const { currentPrimary } = cnpgStatus(plan, namespace, cluster);
    if (!currentPrimary) throw new Error(`${namespace}/${cluster} has no primary to kill`);
    const restartsBefore = cnpgRestarts(plan, namespace, currentPrimary);
    kubectl(plan, `killing the postmaster of ${currentPrimary}`,
        ["-n", namespace, "exec", currentPrimary, "-c", "postgres", "--", "sh", "-c", 'kill -9 "$(head -n 1 "$PGDATA/postmaster.pid")"']);
    return { pod: currentPrimary, restartsBefore };
}

/** A standby as its primary sees it (pg_stat_replication). */
export interface CnpgStandby {
    instance: string;
    /** streaming, catchup, ... */
    state: string;
    /** quorum (one of ANY n), sync, potential or async. */
    syncState: string;
    /** WAL the primary wrote that the standby has not replayed yet. */
    replayLagBytes: number;
    /** PostgreSQL's replay_lag; null when it has nothing to measure (an idle primary). */
    replayLagMs: number | null;
}

/** The primary's standbys, from its pg_stat_replication. */
export function cnpgReplication(plan: LabKubePlan, namespace: string, primary: string): CnpgStandby[] {
    const rows = cnpgPsql(plan, namespace, primary, "postgres",
        "select application_name, state, sync_state, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint, " +
        "(extract(epoch from replay_lag) * 1000)::bigint from pg_stat_replication order by application_name");
    return rows.split("\n").filter((l) => l.trim()).map((l) => {
        const [instance, state, syncState, bytes, ms] = l.split("|");
        return { instance, state, syncState, replayLagBytes: Number(bytes), replayLagMs: ms === "" ? null : Number(ms) };
    });
}

/** Runs SQL in an instance's pod as the superuser over its local socket (psql -At): the rows, one per line. */
export function cnpgPsql(plan: LabKubePlan, namespace: string, pod: string, database: string, sql: string): string {
    return kubectl(plan, `running SQL on ${pod}`, ["-n", namespace, "exec", pod, "-c", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-At", "-d", database, "-c", sql]);
}
