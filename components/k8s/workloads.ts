// SiteWorkloads: what a site's `kubernetes` settings ask for, on its cluster: the namespace,
// the operators (pinned), the ledger's CloudNativePG clusters, the Strimzi event bus and the
// legacy LAMP apps. `Site` builds one for parks and data centers that have the settings.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { planEvents } from "../../model/events/plan";
import type { Site } from "../../model/site/model";
import { EventBus } from "./event-bus";
import { LegacyLampApp } from "./lamp";
import { UnicornLedgerCluster } from "./ledger-cluster";
import { Operators } from "./operators";

export interface SiteWorkloadsArgs {
    site: Site;
    /** Where the ledger's backups go when the site does not say (a data center's own lake). */
    defaultLedgerBackups?: string;
    /**
     * Images for what the site leaves out: the lab's own, built from Debian packages
     * (scripts/images). Outside the lab the site gives every image (model/site/model.ts).
     */
    defaultImages?: { lamp: string; cacheProxy: string; postgres?: string; redis?: string };
    /**
     * The lab's cluster: CloudNativePG from its release manifest with the lab's operator image
     * (no chart repository can be reached), and the ledger without backups (the lab keeps none),
     * its instances on one node, on these local volumes.
     */
    lab?: { cloudnativePgManifest: { file: string; image: string }; ledgerStorage: { storageClass: string; size: string } };
}

/** `what`, or the default, or a clear error naming the setting. */
function image(what: string, given: string | undefined, fallback: string | undefined): string {
    const ref = given ?? fallback;
    if (!ref) throw new Error(`${what} is not set: give an image pinned by digest (images/README.md)`);
    return ref;
}

export class SiteWorkloads extends pulumi.ComponentResource {
    readonly namespace: pulumi.Output<string>;

    constructor(name: string, args: SiteWorkloadsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:k8s:SiteWorkloads", name, {}, opts);
        const { site } = args;
        const k = site.kubernetes;
        if (!k) throw new Error(`${name}: site ${site.name} has no kubernetes settings`);
        const ns = new k8s.core.v1.Namespace(`${name}-ns`, { metadata: { name: k.namespace, labels: { "app.kubernetes.io/managed-by": "nublar", "nublar/site": site.name } } }, { parent: this });
        // Strimzi's chart binds roles in the namespaces it watches: they must exist first.
        const install = k.operators === "install";
        const operators = new Operators(`${name}-operators`, {
            cloudnativePg: install && k.ledger, strimzi: install && !!k.eventBus, strimziWatchNamespaces: [k.namespace],
            ...(args.lab ? { cloudnativePgManifest: args.lab.cloudnativePgManifest } : {}),
        }, { parent: this, dependsOn: [ns] });
        const after = { parent: this, dependsOn: [ns, ...operators.ready] };
        this.namespace = ns.metadata.name;

        if (k.ledger) {
            const destination = args.lab ? "none" : k.ledgerBackups?.destination ?? args.defaultLedgerBackups;
            if (!destination) throw new Error(`${name}: the ledger runs on Kubernetes but has no backup destination (kubernetes.ledgerBackups.destination)`);
            new UnicornLedgerCluster(`${name}-ledger`, {
                namespace: k.namespace,
                ledger: site.ledger,
                postgresImage: image("kubernetes.images.postgres", k.images?.postgres, args.defaultImages?.postgres),
                redisImage: image("kubernetes.images.redis", k.images?.redis, args.defaultImages?.redis),
                backupDestination: destination,
                backupCredentialsSecret: k.ledgerBackups?.credentialsSecretName ?? "lake-credentials",
                ...(args.lab ? { storage: args.lab.ledgerStorage, spread: "preferred" as const } : {}),
            }, after);
        }
        if (k.eventBus) {
            // The pipeline's own topics (model/events/plan.ts), unless the site lists one of them itself.
            const own = new Set(k.eventBus.topics.map((t) => t.name));
            const pipeline = (planEvents(site)?.topics ?? []).filter((t) => !own.has(t.name))
                .map((t) => ({ name: t.name, partitions: t.partitions, retentionHours: Number(t.configs?.["retention.ms"] ?? 604_800_000) / 3_600_000 }));
            new EventBus(`${name}-events`, { namespace: k.namespace, topics: [...k.eventBus.topics, ...pipeline] }, after);
        }
        for (const app of k.lamp) {
            new LegacyLampApp(app.name, {
                namespace: k.namespace,
                image: image(`kubernetes.lamp[${app.name}].image`, app.image, args.defaultImages?.lamp),
                cacheImage: image("kubernetes.images.cacheProxy", k.images?.cacheProxy, args.defaultImages?.cacheProxy),
                replicas: app.replicas,
                maxReplicas: app.maxReplicas,
                stateful: app.stateful,
                storage: { storageClass: app.storageClass, size: app.size },
            }, after);
        }
        this.registerOutputs({ namespace: this.namespace });
    }
}
