// The operators the ledger and the event bus need, each at a pinned version: CloudNativePG (1.25
// or newer, for synchronous.dataDurability) and Strimzi (0.45 or newer, KRaft with node pools).
// From each project's Helm chart; or, where the chart repositories cannot be reached (the lab),
// CloudNativePG from the release manifest its Go module ships (releases/cnpg-<version>.yaml),
// rendered and applied by the Kubernetes provider with the operator image swapped for a local one.
// Bump a version here, in one place, and review its release notes: the components' resources
// are written for these APIs.
import * as fs from "node:fs";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ComponentArgsError, pinnedImage } from "./common";

export const OPERATORS = {
    cloudnativePg: { release: "cnpg", chart: "cloudnative-pg", version: "0.23.0", repo: "https://cloudnative-pg.github.io/charts", namespace: "cnpg-system", appVersion: "1.25.0" },
    strimzi: { release: "strimzi", chart: "strimzi-kafka-operator", version: "0.45.0", repo: "https://strimzi.io/charts/", namespace: "strimzi-system", appVersion: "0.45.0" },
} as const;

/** The operator image CloudNativePG's release manifest names (its Deployment, and OPERATOR_IMAGE_NAME). */
export const CNPG_UPSTREAM_IMAGE = `ghcr.io/cloudnative-pg/cloudnative-pg:${OPERATORS.cloudnativePg.appVersion}`;

export interface OperatorsArgs {
    cloudnativePg?: boolean;
    strimzi?: boolean;
    /** Namespaces Strimzi watches (where event buses live). */
    strimziWatchNamespaces?: string[];
    /**
     * CloudNativePG from its release manifest instead of the chart: the file (the module's
     * releases/cnpg-<appVersion>.yaml) and the operator image to run (pinned by digest), which
     * is also the instance manager the operator copies into every PostgreSQL pod.
     */
    cloudnativePgManifest?: { file: string; image: string };
}

/**
 * CloudNativePG's release manifest with its operator image replaced: every mention (the
 * Deployment's image and OPERATOR_IMAGE_NAME), and nothing else. Refuses a manifest of another
 * version, or one that no longer names the upstream image (the swap would silently miss).
 */
export function cnpgManifestWithImage(text: string, image: string, what = "CloudNativePG's manifest"): string {
    const mentions = text.split(CNPG_UPSTREAM_IMAGE).length - 1;
    if (mentions < 2) throw new ComponentArgsError(`${what} names ${CNPG_UPSTREAM_IMAGE} ${mentions} time(s), not in both its Deployment and OPERATOR_IMAGE_NAME: is it the release manifest of CloudNativePG ${OPERATORS.cloudnativePg.appVersion}?`);
    pinnedImage("cloudnativePgManifest.image", image);
    return text.split(CNPG_UPSTREAM_IMAGE).join(image);
}

export class Operators extends pulumi.ComponentResource {
    /** What the workloads must wait for. */
    readonly ready: pulumi.Resource[] = [];

    constructor(name: string, args: OperatorsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:k8s:Operators", name, {}, opts);
        const release = (key: keyof typeof OPERATORS, values: Record<string, unknown>) => {
            const o = OPERATORS[key];
            return new k8s.helm.v3.Release(`${name}-${o.chart}`, {
                // Helm names are at most 53 characters: a short fixed one, not a generated one.
                name: o.release,
                chart: o.chart,
                version: o.version,
                repositoryOpts: { repo: o.repo },
                namespace: o.namespace,
                createNamespace: true,
                atomic: true,
                values,
            }, { parent: this });
        };
        if (args.cloudnativePg !== false) {
            const m = args.cloudnativePgManifest;
            if (m) {
                let text: string;
                try {
                    text = fs.readFileSync(m.file, "utf8");
                } catch (e) {
                    throw new ComponentArgsError(`${name}: CloudNativePG's release manifest ${m.file} cannot be read (${(e as Error).message}); run scripts/setup`);
                }
                // Applied server-side by the provider (its CRDs are too large for a client-side apply's annotation).
                this.ready.push(new k8s.yaml.v2.ConfigGroup(`${name}-cloudnative-pg`, { yaml: cnpgManifestWithImage(text, m.image, m.file) }, { parent: this }));
            } else this.ready.push(release("cloudnativePg", { replicaCount: 2 }));
        }
        if (args.strimzi !== false) this.ready.push(release("strimzi", { replicas: 2, watchNamespaces: args.strimziWatchNamespaces ?? [] }));
        this.registerOutputs({});
    }
}
