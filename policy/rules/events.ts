// Event buses (Kafka on Strimzi): no acknowledged event lives on one broker only.
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { containersOf, configOf, isUnknown, known, podSpecOf, TYPES } from "./resources";

export const kafkaReplication: ResourceValidationPolicy = {
    name: "kafka-replication",
    description: "Kafka clusters and topics keep every event on at least three brokers, and accept a write only when at least two have it (replication factor >= 3, min.insync.replicas >= 2).",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "On the Strimzi Kafka set spec.kafka.replicas >= 3 and spec.kafka.config default.replication.factor: 3, min.insync.replicas: 2; on each KafkaTopic set spec.replicas: 3 and spec.config min.insync.replicas: 2.",
    configSchema: {
        properties: {
            minReplicationFactor: { type: "integer", minimum: 1, default: 3 },
            minInsyncReplicas: { type: "integer", minimum: 1, default: 2 },
        },
    },
    validateResource: (args, report) => {
        const { minReplicationFactor: rf, minInsyncReplicas: isr } = configOf(args, { minReplicationFactor: 3, minInsyncReplicas: 2 });
        const bad: string[] = [];
        if (args.type === TYPES.kafka) {
            // Unknown at preview: decided at `up`, never read as "unset".
            if (isUnknown(() => args.props.spec?.kafka) || isUnknown(() => args.props.spec?.kafka?.config)) return;
            const kafka = known(() => args.props.spec?.kafka) ?? {};
            const config = known(() => kafka.config) ?? {};
            const replicas = known(() => kafka.replicas);
            // With KRaft node pools the broker count lives in KafkaNodePool resources.
            if (replicas !== undefined && Number(replicas) < rf) bad.push(`spec.kafka.replicas is ${replicas}, below ${rf}`);
            const drf = Number(config["default.replication.factor"]);
            if (!(drf >= rf)) bad.push(`default.replication.factor is ${config["default.replication.factor"] ?? "unset (Kafka's default is 1)"}`);
            const misr = Number(config["min.insync.replicas"]);
            if (!(misr >= isr)) bad.push(`min.insync.replicas is ${config["min.insync.replicas"] ?? "unset (Kafka's default is 1)"}`);
            const trf = Number(config["offsets.topic.replication.factor"]);
            if (config["offsets.topic.replication.factor"] !== undefined && trf < rf) bad.push(`offsets.topic.replication.factor is ${trf}`);
        } else if (args.type === TYPES.kafkaTopic) {
            if (isUnknown(() => args.props.spec) || isUnknown(() => args.props.spec?.replicas) || isUnknown(() => args.props.spec?.config)) return;
            const spec = known(() => args.props.spec) ?? {};
            if (!(Number(spec.replicas) >= rf)) bad.push(`spec.replicas is ${spec.replicas ?? "unset"}`);
            const misr = spec.config?.["min.insync.replicas"];
            if (misr !== undefined && Number(misr) < isr) bad.push(`min.insync.replicas is ${misr}`);
        } else return;
        if (bad.length) report(`under-replicated: ${bad.join("; ")} (needs replication >= ${rf}, min.insync.replicas >= ${isr}). Fix: raise them in the resource's spec.`);
    },
};

const ACKS_KEY = /(^|[._-])acks$/i;
const ALL = new Set(["all", "-1"]);

/** acks settings found in a ConfigMap's data, a workload's env, or a bridge's producer config. */
function acksSettings(type: string, props: Record<string, any>): { where: string; value: string }[] {
    const out: { where: string; value: string }[] = [];
    if (type === TYPES.configMap) {
        const data = known(() => props.data) ?? {};
        for (const [k, v] of Object.entries(data)) {
            if (typeof v !== "string") continue;
            if (ACKS_KEY.test(k)) out.push({ where: `data.${k}`, value: v.trim() });
            // Properties files: `acks=1` or `producer.acks = 1`.
            for (const m of v.matchAll(/^\s*((?:[\w.-]*[._-])?acks)\s*[=:]\s*(\S+)\s*$/gim)) out.push({ where: `data.${k}: ${m[1]}`, value: m[2] });
        }
    }
    if (type === "kubernetes:kafka.strimzi.io/v1beta2:KafkaBridge") {
        const acks = known(() => props.spec?.producer?.config?.acks);
        if (acks !== undefined) out.push({ where: "spec.producer.config.acks", value: String(acks) });
    }
    const spec = podSpecOf(type, props);
    if (spec) {
        for (const { name, container } of containersOf(spec)) {
            for (const e of Array.isArray(container.env) ? container.env : []) {
                if (typeof e?.name === "string" && /(^|_)ACKS$/i.test(e.name) && typeof e.value === "string") out.push({ where: `container ${name} env ${e.name}`, value: e.value });
            }
        }
    }
    return out;
}

export const kafkaProducerAcks: ResourceValidationPolicy = {
    name: "kafka-producer-acks",
    description: "Producers wait for every in-sync replica (acks=all), so that an acknowledged event survives the loss of the leader.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Set acks=all (or -1) in the producer's configuration (ConfigMap, environment or KafkaBridge producer config), with enable.idempotence=true.",
    validateResource: (args, report) => {
        const bad = acksSettings(args.type, args.props).filter((s) => !ALL.has(s.value.toLowerCase()));
        if (bad.length) report(`producers do not wait for all in-sync replicas: ${bad.map((b) => `${b.where} = ${b.value}`).join("; ")}. Fix: set acks=all.`);
    },
};

export const eventPolicies = [kafkaReplication, kafkaProducerAcks];
