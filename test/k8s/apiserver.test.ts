// The components' Kubernetes objects against a real API server (Kubernetes 1.34, built from the
// Go modules by scripts/kube/build) with the CRDs of the operator versions nublar pins: the
// objects a park's `Site` registers (under Pulumi mocks, since the Kubernetes provider plugin
// cannot be fetched here; README "Kubernetes and AWS") are applied with server-side apply and
// strict field validation, stored, and read back as the server defaulted them.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { parseSite } from "../../model/site/load";
import { startKubeApi, KUBE_TOOLS, type KubeApi } from "../helpers/kube-api";
import { manifests, type RegisteredResource } from "../helpers/k8s-manifests";
import { settled } from "../helpers/pulumi-mocks";

const ROOT = path.resolve(__dirname, "..", "..");
const DIGEST = `@sha256:${"0123456789abcdef".repeat(4)}`;
const registered: RegisteredResource[] = [];
let kube: KubeApi;
let objects: Record<string, any>[];

/** A park with every workload: the ledger on CloudNativePG, the Strimzi bus, two LAMP apps. */
function parkWithWorkloads() {
    const raw = parse(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.isla-nublar.yaml"), "utf8")).config["nublar:site"];
    raw.kubernetes = {
        images: { postgres: `ghcr.io/cloudnative-pg/postgresql${DIGEST}`, redis: `docker.io/library/redis${DIGEST}`, cacheProxy: `docker.io/library/nginx${DIGEST}` },
        ledgerBackups: { destination: "s3://dc-eu-west-lake-ledger-backups/isla-nublar" },
        eventBus: { topics: [{ name: "nublar.sensors", partitions: 6 }, { name: "nublar.network" }] },
        lamp: [{ name: "visitor-web", image: `registry.park/centos7-lamp${DIGEST}` }, { name: "gift-shop", image: `registry.park/centos7-lamp${DIGEST}`, stateful: true }],
    };
    return parseSite(raw);
}

function kubectlOk(args: string[], input?: string): string {
    const r = kube.kubectl(args, input);
    assert.equal(r.status, 0, `kubectl ${args.join(" ")}:\n${r.stderr}`);
    return r.stdout;
}

const apply = (docs: Record<string, any>[], extra: string[] = []) =>
    kube.kubectl(["apply", "--server-side", "--field-manager=nublar", "--validate=strict", ...extra, "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            // What the provider sends: an unnamed object under its generated name.
            const named = args.type.startsWith("kubernetes:") && !args.inputs.metadata?.name
                ? { ...args.inputs, metadata: { ...(args.inputs.metadata ?? {}), name: `${args.name}-a1b2c3` } } : args.inputs;
            registered.push({ type: args.type, name: args.name, inputs: named });
            const extra = args.type.endsWith("nixos:GeneratedKey") ? { value: "generated-secret", publicKey: Buffer.alloc(32, args.name).toString("base64") }
                : args.type.endsWith("nixos:Deployment") ? { generation: 1, digest: "d" } : {};
            // The Kubernetes provider names an object that has no name (its Pulumi name plus a
            // suffix) and returns it in metadata.name: other objects refer to it by that.
            const metadata = args.type.startsWith("kubernetes:") ? { metadata: { ...(args.inputs.metadata ?? {}), name: args.inputs.metadata?.name ?? `${args.name}-a1b2c3` } } : {};
            return { id: `${args.name}-id`, state: { ...args.inputs, ...extra, ...metadata } };
        },
        call: (args) => args.inputs,
    }, "nublar", "k8s", true);
    const { Site } = await import("../../components/site");
    await settled((opts) => new Site("isla-nublar", { site: parkWithWorkloads(), stateRoot: "/tmp/nublar-k8s-test" }, opts));
    objects = manifests(registered, "all");
    kube = await startKubeApi();
    process.stderr.write(`# kube-apiserver ready in ${kube.startedInMs} ms (${fs.readFileSync(path.join(KUBE_TOOLS, "VERSIONS"), "utf8").trim().replace(/\n/g, ", ")})\n`);
    // The operators' CRDs, as their Helm charts would install them.
    const crds = ["cloudnative-pg/postgresql.cnpg.io_clusters.yaml", "cloudnative-pg/postgresql.cnpg.io_scheduledbackups.yaml", "strimzi/040-Crd-kafka.yaml", "strimzi/04A-Crd-kafkanodepool.yaml", "strimzi/043-Crd-kafkatopic.yaml"];
    for (const f of crds) kubectlOk(["apply", "--server-side", "-f", path.join(KUBE_TOOLS, "crds", f)]);
    kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
});

after(async () => {
    await kube?.stop();
});

test("every object the park's workloads register is accepted by the API server (strict field validation) and stored", () => {
    const kinds = [...new Set(objects.map((o) => o.kind))].sort();
    for (const k of ["Cluster", "Deployment", "HorizontalPodAutoscaler", "Kafka", "KafkaNodePool", "KafkaTopic", "Namespace", "PodDisruptionBudget", "ScheduledBackup", "Service", "StatefulSet"]) {
        assert.ok(kinds.includes(k), `the park registers a ${k} (has: ${kinds.join(", ")})`);
    }
    // Namespaces first: everything else lives in one.
    const namespaces = objects.filter((o) => o.kind === "Namespace");
    kubectlOk(["apply", "--server-side", "--field-manager=nublar", "--validate=strict", "-f", "-"], namespaces.map((d) => JSON.stringify(d)).join("\n"));
    const rest = objects.filter((o) => o.kind !== "Namespace");
    const r = apply(rest);
    assert.equal(r.status, 0, r.stderr);
    // Read back: every object is there.
    for (const o of rest) {
        const [group] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : [""];
        const resource = group ? `${o.kind.toLowerCase()}.${group}` : o.kind.toLowerCase();
        const got = JSON.parse(kubectlOk(["get", resource, o.metadata.name, ...(o.metadata.namespace ? ["-n", o.metadata.namespace] : []), "-o", "json"]));
        assert.equal(got.metadata.name, o.metadata.name);
    }
});

test("as stored: IPv6-only Services, the ledger's synchronous quorum, the bus's replication, the topics' partitions", () => {
    const services = JSON.parse(kubectlOk(["get", "services", "-A", "-o", "json"])).items;
    assert.ok(services.length >= 3);
    for (const s of services.filter((x: any) => x.metadata.name !== "kubernetes")) {
        assert.deepEqual(s.spec.ipFamilies, ["IPv6"], s.metadata.name);
        // Headless services have no cluster IP; the others got one from fd00:10:96::/112.
        if (s.spec.clusterIP !== "None") assert.match(s.spec.clusterIP, /^fd00:10:96::/, s.metadata.name);
    }
    const clusters = JSON.parse(kubectlOk(["get", "clusters.postgresql.cnpg.io", "-A", "-o", "json"])).items;
    assert.equal(clusters.length, 4, "a cluster per shard");
    for (const c of clusters) {
        assert.ok(c.spec.instances >= 3);
        assert.deepEqual({ method: c.spec.postgresql.synchronous.method, number: c.spec.postgresql.synchronous.number, dataDurability: c.spec.postgresql.synchronous.dataDurability },
            { method: "any", number: 1, dataDurability: "required" }, c.metadata.name);
    }
    const [kafka] = JSON.parse(kubectlOk(["get", "kafkas.kafka.strimzi.io", "-A", "-o", "json"])).items;
    assert.equal(kafka.spec.kafka.config["default.replication.factor"], 3);
    assert.equal(kafka.spec.kafka.config["min.insync.replicas"], 2);
    const pools = JSON.parse(kubectlOk(["get", "kafkanodepools.kafka.strimzi.io", "-A", "-o", "json"])).items;
    assert.deepEqual(pools.map((p: any) => [p.spec.roles.join(","), p.spec.replicas]).sort(), [["broker", 3], ["controller", 3]]);
    const topics = JSON.parse(kubectlOk(["get", "kafkatopics.kafka.strimzi.io", "-A", "-o", "json"])).items;
    assert.equal(topics.find((t: any) => t.spec.topicName === "nublar.sensors" || t.metadata.name === "nublar.sensors")?.spec.partitions, 6);
    const pdbs = JSON.parse(kubectlOk(["get", "poddisruptionbudgets", "-A", "-o", "json"])).items;
    assert.ok(pdbs.length >= 2);
});

test("the server is not a rubber stamp: a misspelt field, a wrong type and an IPv4 Service are refused, and nothing is stored", () => {
    const deployment = structuredClone(objects.find((o) => o.kind === "Deployment")!);
    deployment.metadata.name = "typo";
    deployment.spec.replica = 2;
    const a = apply([deployment]);
    assert.notEqual(a.status, 0);
    assert.match(a.stderr, /\.spec\.replica: field not declared in schema/);
    const cluster = structuredClone(objects.find((o) => o.kind === "Cluster")!);
    cluster.metadata.name = "wrong-type";
    cluster.spec.instances = "three";
    const b = apply([cluster]);
    assert.notEqual(b.status, 0);
    assert.match(b.stderr, /spec\.instances/);
    const service = structuredClone(objects.find((o) => o.kind === "Service")!);
    service.metadata.name = "ipv4";
    service.spec.ipFamilies = ["IPv4"];
    const c = apply([service]);
    assert.notEqual(c.status, 0);
    assert.match(c.stderr, /IPv4.*not configured on this cluster/);
    for (const [kind, name, ns] of [["deployment", "typo", deployment.metadata.namespace], ["clusters.postgresql.cnpg.io", "wrong-type", cluster.metadata.namespace], ["service", "ipv4", service.metadata.namespace]]) {
        assert.notEqual(kube.kubectl(["get", kind, name, "-n", ns]).status, 0, `${kind}/${name} was not stored`);
    }
});
