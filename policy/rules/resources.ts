// What the policies look at: the resource types nublar's program and the Kubernetes and AWS
// providers register, and how to read the plan out of them. The site component carries the
// validated site description as its inputs, known at preview; node deployments carry the
// rendered agent config and Nginx config, known once their inputs resolve (at `up`).
import { UnknownValueError } from "@pulumi/policy";
import { AgentConfigError, parseAgentConfig, type AgentConfig } from "../../model/network/agent-config";
import type { Site } from "../../model/site/model";
import { RESOURCE_TYPES } from "../../provider/tokens";

export const TYPES = {
    site: "nublar:site:Site",
    deployment: RESOURCE_TYPES.deployment,
    labLedger: RESOURCE_TYPES.labLedgerCluster,
    cnpgCluster: "kubernetes:postgresql.cnpg.io/v1:Cluster",
    kafka: "kubernetes:kafka.strimzi.io/v1beta2:Kafka",
    kafkaTopic: "kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic",
    configMap: "kubernetes:core/v1:ConfigMap",
    pod: "kubernetes:core/v1:Pod",
    pdb: "kubernetes:policy/v1:PodDisruptionBudget",
    k8sSecret: "kubernetes:core/v1:Secret",
} as const;

/** Workload kinds and where their pod template's spec sits. */
const POD_SPEC_PATHS: Record<string, string[]> = {
    "kubernetes:core/v1:Pod": ["spec"],
    "kubernetes:apps/v1:Deployment": ["spec", "template", "spec"],
    "kubernetes:apps/v1:StatefulSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:DaemonSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:ReplicaSet": ["spec", "template", "spec"],
    "kubernetes:batch/v1:Job": ["spec", "template", "spec"],
    "kubernetes:batch/v1:CronJob": ["spec", "jobTemplate", "spec", "template", "spec"],
};

/** Workloads that keep replicas running (and so need a PodDisruptionBudget). */
export const REPLICATED_WORKLOADS = new Set(["kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"]);

export const BUCKET_TYPES = new Set(["aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"]);

/**
 * Runs `read`, and treats a value still unknown at preview as absent. The engine wraps inputs in
 * @pulumi/policy's unknown-checking proxy, which throws on touching an unknown; for resources
 * whose content is only known at `up`, the check runs then, and the site's plan was checked at
 * preview already.
 */
export function known<T>(read: () => T): T | undefined {
    try {
        return read();
    } catch (err) {
        if (err instanceof UnknownValueError) return undefined;
        throw err;
    }
}

/**
 * The site description of a site component. It comes from stack config, so it is always known;
 * it is read without the unknown-checking proxy (the planners touch every field of it, and a
 * 5,000-node site through a proxy is slow).
 */
export function siteOf(args: { type: string; props: Record<string, any> }): Site | undefined {
    if (args.type !== TYPES.site) return undefined;
    const site = rawProps(args.props).site;
    if (!site || typeof site !== "object" || !Array.isArray(site.nodes)) return undefined;
    return site as Site;
}

export type Rendered = { agent?: AgentConfig; agentError?: string; nginxConf?: string; node: string };

/** A node deployment's rendered agent config and Nginx config, when they are known. */
export function renderedOf(args: { type: string; props: Record<string, any> }): Rendered | undefined {
    if (args.type !== TYPES.deployment) return undefined;
    return known(() => {
        const files = args.props.files as Record<string, string> | undefined;
        if (!files || typeof files !== "object") return undefined;
        const node = String(args.props.node ?? "?");
        const out: Rendered = { node, nginxConf: typeof files["nginx.conf"] === "string" ? files["nginx.conf"] : undefined };
        const raw = files["agent.json"];
        if (typeof raw === "string") {
            try {
                out.agent = parseAgentConfig(JSON.parse(raw), `node ${node}'s agent.json`);
            } catch (err) {
                out.agentError = err instanceof AgentConfigError || err instanceof SyntaxError ? err.message : String(err);
            }
        }
        return out;
    });
}

export function podSpecOf(type: string, props: Record<string, any>): Record<string, any> | undefined {
    const path = POD_SPEC_PATHS[type];
    if (!path) return undefined;
    return known(() => {
        let v: any = props;
        for (const k of path) v = v?.[k];
        return v && typeof v === "object" ? v : undefined;
    });
}

export function containersOf(spec: Record<string, any>): { name: string; container: Record<string, any>; init: boolean }[] {
    const list = (xs: unknown, init: boolean) => (Array.isArray(xs) ? xs : []).map((c: any, i: number) => ({ name: String(c?.name ?? `#${i}`), container: c ?? {}, init }));
    return [...list(spec.containers, false), ...list(spec.initContainers, true)];
}

// @pulumi/policy's proxy internals: exported at runtime, @internal in its typings.
const proxy = require("@pulumi/policy/proxy") as Record<string, string>;
const UNKNOWN_SENTINELS = new Set(Object.entries(proxy).filter(([k]) => /^unknown\w+Value$/.test(k)).map(([, v]) => v));

/** Is this one of the engine's placeholders for a value not known until `up`? */
export function isUnknownValue(v: unknown): boolean {
    return typeof v === "string" && UNKNOWN_SENTINELS.has(v);
}

/**
 * The inputs without the unknown-checking proxy, for rules that walk every value (the secrets
 * scan): unknowns then show up as placeholder strings, which `isUnknownValue` tells apart.
 */
export function rawProps(props: Record<string, any>): Record<string, any> {
    return (props as any)?.[proxy.getSpecialProxyTarget] ?? props;
}

/** Is the value `read` reaches still unknown (at preview)? Absent values are not unknown. */
export function isUnknown(read: () => unknown): boolean {
    return known(() => (read(), false)) === undefined;
}

/** The resource a stack-level finding belongs to, as people read it. */
export function describe(r: { type: string; name: string }): string {
    return `${r.type} '${r.name}'`;
}

/**
 * Policy config with its defaults filled in (the engine passes only what the user set). Object
 * values merge one level down: `{"minimumTarget": {"park": 0.999}}` keeps the other kinds' minimums.
 */
export function configOf<T extends object>(args: { getConfig<C extends object>(): C }, defaults: T): T {
    const given = (args.getConfig<Partial<T>>() ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
    for (const [k, v] of Object.entries(given)) {
        const d = (defaults as Record<string, unknown>)[k];
        const plain = (x: unknown) => x !== null && typeof x === "object" && !Array.isArray(x);
        out[k] = plain(d) && plain(v) ? { ...(d as object), ...(v as object) } : v;
    }
    return out as T;
}

