// UnicornLedgerCluster: the ledger on a park's Kubernetes, one CloudNativePG `Cluster` per
// vertical shard (the lab runs the same shards on ::1, lab/ledger/). From the site's `ledger`
// settings: instances, synchronous quorum commit with dataDurability required, backups to the
// data lake with their schedule and retention, instances spread over failure domains, and the
// Redis cache tier beside them. The CloudNativePG operator itself is installed separately.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ledgerClusterName } from "../../model/ledger/plan";
import type { Site } from "../../model/site/model";
import { GeneratedKey } from "../nixos/secrets";
import { ComponentArgsError, FAILURE_DOMAIN_KEY, labelsFor, pinnedImage, selectorFor } from "./common";

/** The CloudNativePG API these resources are written for (operator 1.25 or newer: dataDurability). */
export const CNPG_API = "postgresql.cnpg.io/v1";

/** The label of a lab's ledger Cluster (value `lab`), which keeps no backups. */
export const LAB_CLUSTER_LABEL = "nublar/site-kind";

/** The cache tier's Redis: its user, and where its config file (a key of the password Secret) is mounted. */
const REDIS_UID = 999;
const REDIS_CONF_DIR = "/etc/redis";
export const REDIS_CONF_KEY = "redis.conf";

/** Redis's config for the cache tier, with its password (in "...", where Redis reads \xHH escapes). */
export function redisConf(password: string): string {
    const quoted = password.replace(/[\x00-\x1f\x7f"\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
    return [
        "# The ledger's cache tier (components/k8s/ledger-cluster.ts): IPv6, password required, no persistence",
        "# (acknowledged entries only, so losing it loses nothing).",
        "bind ::",
        "port 6379",
        'save ""',
        "appendonly no",
        "maxmemory 512mb",
        "maxmemory-policy allkeys-lru",
        `requirepass "${quoted}"`,
        "",
    ].join("\n");
}

export interface UnicornLedgerClusterArgs {
    namespace: string;
    /** The site's ledger settings (model/site/model.ts): shards, instances, dataDurability, backup. */
    ledger: Site["ledger"];
    /** PostgreSQL's image for CloudNativePG, pinned by digest. */
    postgresImage: string;
    /** Redis's image for the cache tier, pinned by digest. */
    redisImage: string;
    /**
     * Where base backups and WAL go: s3://<lake bucket>/<prefix>; one folder per shard below it.
     * `none` only for the lab, whose ledger keeps no backups (the policy pack exempts it).
     */
    backupDestination: string | "none";
    /** The Secret holding the lake's S3 credentials (ACCESS_KEY_ID, ACCESS_SECRET_KEY). */
    backupCredentialsSecret: string;
    storage?: { size?: string; storageClass?: string };
    /**
     * How strictly instances spread over failure domains: `required` (default: never two in one
     * domain) or `preferred` (the lab's single node, where all of them share one).
     */
    spread?: "required" | "preferred";
    /** Clusters are named `<prefix>-<shard>` in the namespace (CloudNativePG's Services add `-rw`, `-ro`). Default `unicorn`. */
    clusterPrefix?: string;
}

export class UnicornLedgerCluster extends pulumi.ComponentResource {
    /** Shard -> the Cluster's name (its read-write Service is `<name>-rw`). */
    readonly clusters: Record<string, pulumi.Output<string>> = {};
    readonly cacheService: k8s.core.v1.Service;

    constructor(name: string, args: UnicornLedgerClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:k8s:UnicornLedgerCluster", name, {}, opts);
        const { ledger, namespace } = args;
        const postgresImage = pinnedImage(`${name}.postgresImage`, args.postgresImage);
        const redisImage = pinnedImage(`${name}.redisImage`, args.redisImage);
        const backup = args.backupDestination === "none" ? undefined : ledger.backup;
        if (args.backupDestination !== "none" && !backup) throw new ComponentArgsError(`${name}: the site's ledger.backup is not set; a park's ledger must be backed up (schedule, retentionDays)`);
        if (args.backupDestination !== "none" && !/^s3:\/\/[a-z0-9.-]+(\/.*)?$/.test(args.backupDestination)) throw new ComponentArgsError(`${name}.backupDestination: '${args.backupDestination}' is not an s3://bucket/prefix URL`);
        const child = { parent: this };
        const destination = args.backupDestination.replace(/\/$/, "");

        const prefix = args.clusterPrefix ?? "unicorn";
        for (const shard of ledger.shards) {
            const cluster = `${name}-${shard.replace(/_/g, "-")}`;
            // A fixed, short name: Services and pods derive theirs from it (63 characters at most).
            const clusterName = ledgerClusterName(shard, prefix);
            if (clusterName.length > 50) throw new ComponentArgsError(`${name}: cluster name '${clusterName}' is too long for Kubernetes' derived names; shorten clusterPrefix or the shard name`);
            // The lab's clusters say so: the policy pack exempts them from backups (as it does the lab's site).
            const labels = { ...labelsFor(cluster, "ledger"), ...(backup ? {} : { [LAB_CLUSTER_LABEL]: "lab" }) };
            const created = new k8s.apiextensions.CustomResource(cluster, {
                apiVersion: CNPG_API,
                kind: "Cluster",
                metadata: { namespace, name: clusterName, labels },
                spec: {
                    instances: ledger.instances,
                    imageName: postgresImage,
                    // Commits wait for ANY 1 standby, as in the lab; `required` never lets the primary go on alone.
                    postgresql: {
                        synchronous: { method: "any", number: 1, dataDurability: ledger.dataDurability },
                        parameters: { synchronous_commit: "on", wal_level: "replica" },
                    },
                    bootstrap: { initdb: { database: shard, owner: "unicorn_owner" } },
                    storage: { size: args.storage?.size ?? "50Gi", storageClass: args.storage?.storageClass ?? "ssd" },
                    // One instance per failure domain: losing a zone never takes the quorum.
                    affinity: { enablePodAntiAffinity: true, topologyKey: FAILURE_DOMAIN_KEY, podAntiAffinityType: args.spread ?? "required" },
                    ...(backup ? { backup: {
                        retentionPolicy: `${backup.retentionDays}d`,
                        barmanObjectStore: {
                            destinationPath: `${destination}/${shard}`,
                            s3Credentials: {
                                accessKeyId: { name: args.backupCredentialsSecret, key: "ACCESS_KEY_ID" },
                                secretAccessKey: { name: args.backupCredentialsSecret, key: "ACCESS_SECRET_KEY" },
                            },
                            wal: { compression: "gzip" },
                            data: { compression: "gzip" },
                        },
                    } } : {}),
                },
            }, child);
            if (backup) {
                new k8s.apiextensions.CustomResource(`${cluster}-backup`, {
                    apiVersion: CNPG_API,
                    kind: "ScheduledBackup",
                    metadata: { namespace, labels },
                    spec: { schedule: backup.schedule, backupOwnerReference: "self", cluster: { name: created.metadata.name } },
                }, child);
            }
            this.clusters[shard] = created.metadata.name;
        }

        // The cache tier (runtime/ledger/cache.ts): acknowledged entries only, so losing it loses nothing.
        const cache = `${name}-cache`;
        const labels = labelsFor(cache, "ledger-cache");
        const selector = selectorFor(cache);
        // The cache's password: generated once, kept as a Pulumi secret and a Kubernetes Secret.
        // The Secret also holds Redis's whole config file, `requirepass` included: Redis reads the
        // password from a read-only file, never from its command line (which any process on the
        // node can read in /proc), and the probe's redis-cli takes it from REDISCLI_AUTH, not `-a`.
        const password = new GeneratedKey(`${cache}-password`, "password", child);
        const passwordSecret = new k8s.core.v1.Secret(`${cache}-password`, {
            metadata: { namespace, labels },
            stringData: { password: password.value, [REDIS_CONF_KEY]: pulumi.secret(password.value.apply(redisConf)) },
        }, child);
        new k8s.apps.v1.Deployment(cache, {
            metadata: { namespace, labels },
            spec: {
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels },
                    spec: {
                        // The config file's group: Redis (uid 999) reads it through the pod's fsGroup.
                        securityContext: { fsGroup: REDIS_UID },
                        containers: [{
                            name: "redis",
                            image: redisImage,
                            // IPv6 only, with a password (redisConf): the ledger service reads it from the same Secret.
                            command: ["redis-server", `${REDIS_CONF_DIR}/${REDIS_CONF_KEY}`],
                            // redis-cli (the readiness probe) reads the password from here, never from its arguments.
                            env: [{ name: "REDISCLI_AUTH", valueFrom: { secretKeyRef: { name: passwordSecret.metadata.name, key: "password" } } }],
                            ports: [{ name: "redis", containerPort: 6379 }],
                            resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { cpu: "500m", memory: "640Mi" } },
                            readinessProbe: { exec: { command: ["sh", "-c", "redis-cli -h ::1 ping | grep -q PONG"] }, periodSeconds: 5 },
                            livenessProbe: { tcpSocket: { port: 6379 }, initialDelaySeconds: 10, periodSeconds: 10 },
                            securityContext: { runAsNonRoot: true, runAsUser: REDIS_UID, allowPrivilegeEscalation: false },
                            volumeMounts: [{ name: "config", mountPath: REDIS_CONF_DIR, readOnly: true }],
                        }],
                        // Only the config file from the Secret, readable by root and the fsGroup (0440), nobody else.
                        volumes: [{ name: "config", secret: { secretName: passwordSecret.metadata.name, items: [{ key: REDIS_CONF_KEY, path: REDIS_CONF_KEY }], defaultMode: 0o440 } }],
                    },
                },
            },
        }, child);
        // A single cache pod may be evicted: the ledger reads fall back to PostgreSQL meanwhile.
        new k8s.policy.v1.PodDisruptionBudget(cache, { metadata: { namespace, labels }, spec: { maxUnavailable: 1, selector: { matchLabels: selector } } }, child);
        // Only the ledger's clients reach the cache: pods labelled nublar/ledger-client=true.
        new k8s.networking.v1.NetworkPolicy(cache, {
            metadata: { namespace, labels },
            spec: {
                podSelector: { matchLabels: selector },
                policyTypes: ["Ingress"],
                ingress: [{ from: [{ podSelector: { matchLabels: { "nublar/ledger-client": "true" } } }], ports: [{ protocol: "TCP", port: 6379 }] }],
            },
        }, child);
        this.cacheService = new k8s.core.v1.Service(cache, {
            metadata: { namespace, labels },
            spec: { selector, ipFamilyPolicy: "SingleStack", ipFamilies: ["IPv6"], ports: [{ name: "redis", port: 6379, targetPort: "redis" }] },
        }, child);
        this.registerOutputs({ clusters: this.clusters, cacheService: this.cacheService.metadata.name });
    }
}
