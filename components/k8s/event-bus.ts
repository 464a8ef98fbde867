// EventBus: a park's Kafka on Kubernetes through the Strimzi operator, in KRaft mode with two
// KafkaNodePools (3 controllers, 3 brokers, spread over failure domains), replication factor 3,
// min.insync.replicas 2, and every topic as a KafkaTopic. The Strimzi operator itself is
// installed separately.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ComponentArgsError, FAILURE_DOMAIN_KEY, labelsFor } from "./common";

export const STRIMZI_API = "kafka.strimzi.io/v1beta2";

export interface EventBusTopic {
    name: string;
    partitions?: number;
    /** Retention in hours (default 7 days): long enough to replay into the ledger and the lake. */
    retentionHours?: number;
}

export interface EventBusArgs {
    namespace: string;
    /** The Kafka cluster's name in the namespace (pods are `<cluster>-brokers-0`...): short. Default `events`. */
    clusterName?: string;
    topics: EventBusTopic[];
    controllers?: number;
    brokers?: number;
    storage?: { size?: string; storageClass?: string };
}

export class EventBus extends pulumi.ComponentResource {
    readonly clusterName: pulumi.Output<string>;
    /** The bootstrap address clients use (Strimzi's `<cluster>-kafka-bootstrap` Service). */
    readonly bootstrap: pulumi.Output<string>;

    constructor(name: string, args: EventBusArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:k8s:EventBus", name, {}, opts);
        const controllers = args.controllers ?? 3;
        const brokers = args.brokers ?? 3;
        if (controllers < 3 || controllers % 2 === 0) throw new ComponentArgsError(`${name}.controllers: ${controllers}; KRaft needs an odd quorum of 3 or more`);
        if (brokers < 3) throw new ComponentArgsError(`${name}.brokers: ${brokers}; replication factor 3 needs 3 brokers`);
        const names = new Set<string>();
        for (const t of args.topics) {
            if (!/^[a-z0-9][a-z0-9.-]{0,248}$/.test(t.name)) throw new ComponentArgsError(`${name}.topics: '${t.name}' is not a valid topic name (a-z, 0-9, '.', '-')`);
            if (names.has(t.name)) throw new ComponentArgsError(`${name}.topics: '${t.name}' is listed twice`);
            names.add(t.name);
        }
        const { namespace } = args;
        const labels = labelsFor(name, "event-bus");
        const child = { parent: this };
        const storage = { type: "persistent-claim", size: args.storage?.size ?? "100Gi", class: args.storage?.storageClass ?? "ssd", deleteClaim: false };
        // Strimzi ties pools and topics to the cluster by its exact name: no generated suffix.
        const clusterName = args.clusterName ?? "events";
        if (!/^[a-z][a-z0-9-]{0,20}$/.test(clusterName)) throw new ComponentArgsError(`${name}.clusterName: '${clusterName}' must be 1-21 characters of a-z, 0-9 and '-' (pod names derive from it)`);
        const clusterLabel = { "strimzi.io/cluster": clusterName };
        const spread = { topologySpreadConstraints: [{ maxSkew: 1, topologyKey: FAILURE_DOMAIN_KEY, whenUnsatisfiable: "DoNotSchedule", labelSelector: { matchLabels: clusterLabel } }] };

        const pool = (pool: string, roles: string[], replicas: number) => new k8s.apiextensions.CustomResource(`${name}-${pool}`, {
            apiVersion: STRIMZI_API,
            kind: "KafkaNodePool",
            metadata: { namespace, name: pool, labels: { ...labels, ...clusterLabel } },
            spec: {
                replicas, roles, storage: { type: "jbod", volumes: [{ id: 0, ...storage, kraftMetadata: "shared" }] },
                resources: { requests: { cpu: "500m", memory: "2Gi" }, limits: { cpu: "2", memory: "4Gi" } },
                template: { pod: spread },
            },
        }, child);
        const pools = [pool("controllers", ["controller"], controllers), pool("brokers", ["broker"], brokers)];

        const kafka = new k8s.apiextensions.CustomResource(name, {
            apiVersion: STRIMZI_API,
            kind: "Kafka",
            metadata: { namespace, name: clusterName, labels, annotations: { "strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled" } },
            spec: {
                kafka: {
                    // Clients prove who they are with certificates (KafkaUser resources), over TLS.
                    listeners: [{ name: "tls", port: 9093, type: "internal", tls: true, authentication: { type: "tls" } }],
                    config: {
                        "default.replication.factor": 3,
                        "min.insync.replicas": 2,
                        "offsets.topic.replication.factor": 3,
                        "transaction.state.log.replication.factor": 3,
                        "transaction.state.log.min.isr": 2,
                        "unclean.leader.election.enable": false,
                        "auto.create.topics.enable": false,
                    },
                },
                entityOperator: { topicOperator: {}, userOperator: {} },
            },
        }, { ...child, dependsOn: pools });

        for (const t of args.topics) {
            new k8s.apiextensions.CustomResource(`${name}-topic-${t.name}`, {
                apiVersion: STRIMZI_API,
                kind: "KafkaTopic",
                metadata: { namespace, name: t.name, labels: { ...labels, ...clusterLabel } },
                spec: {
                    partitions: t.partitions ?? 6,
                    replicas: 3,
                    config: { "min.insync.replicas": 2, "retention.ms": (t.retentionHours ?? 168) * 3_600_000, "cleanup.policy": "delete" },
                },
            }, { ...child, dependsOn: [kafka] });
        }
        this.clusterName = kafka.metadata.name;
        this.bootstrap = kafka.metadata.name.apply((n) => `${n}-kafka-bootstrap.${namespace}.svc:9093`);
        this.registerOutputs({ clusterName: this.clusterName, bootstrap: this.bootstrap });
    }
}
