// The operators the ledger and the event bus need, each from its project's Helm chart at a
// pinned version: CloudNativePG (1.25 or newer, for synchronous.dataDurability) and Strimzi
// (0.45 or newer, KRaft with node pools). Bump a version here, in one place, and review its
// release notes: the components' resources are written for these APIs.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

export const OPERATORS = {
    cloudnativePg: { release: "cnpg", chart: "cloudnative-pg", version: "0.23.0", repo: "https://cloudnative-pg.github.io/charts", namespace: "cnpg-system", appVersion: "1.25.0" },
    strimzi: { release: "strimzi", chart: "strimzi-kafka-operator", version: "0.45.0", repo: "https://strimzi.io/charts/", namespace: "strimzi-system", appVersion: "0.45.0" },
} as const;

export interface OperatorsArgs {
    cloudnativePg?: boolean;
    strimzi?: boolean;
    /** Namespaces Strimzi watches (where event buses live). */
    strimziWatchNamespaces?: string[];
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
        if (args.cloudnativePg !== false) this.ready.push(release("cloudnativePg", { replicaCount: 2 }));
        if (args.strimzi !== false) this.ready.push(release("strimzi", { replicas: 2, watchNamespaces: args.strimziWatchNamespaces ?? [] }));
        this.registerOutputs({});
    }
}
