// The components' Kubernetes objects against a real API server (Kubernetes 1.34, built from the
// Go modules by scripts/kube/build) with the CRDs of the operator versions nublar pins: a park's
// workloads (components/k8s/workloads.ts) are applied by a real `pulumi up`, through the real
// Kubernetes provider plugin (scripts/kube/build-pulumi-kubernetes), with server-side apply,
// then read back as the server stored and defaulted them. Objects that break the schema are
// refused by kubectl's strict validation, and nothing of them is stored.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { startKubeApi, KUBE_CRDS, KUBE_TOOLS, type KubeApi } from "../helpers/kube-api";
import { TestProject } from "../engine/project";

const ROOT = path.resolve(__dirname, "..", "..");
const DIGEST = `@sha256:${"0123456789abcdef".repeat(4)}`;
const STACK = "k8s-apiserver";
const project = new TestProject(path.join(__dirname, "fixtures", "workloads-program"));
let kube: KubeApi;
let objects: Record<string, any>[];

/** A park with every workload: the ledger on CloudNativePG, the Strimzi bus, two LAMP apps. */
function parkWithWorkloads() {
    const raw = parse(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.isla-nublar.yaml"), "utf8")).config["nublar:site"];
    raw.kubernetes = {
        // The operators' CRDs are installed below, as their charts would; the operators themselves
        // would only wait for a kubelet.
        operators: "preinstalled",
        images: { postgres: `ghcr.io/cloudnative-pg/postgresql${DIGEST}`, redis: `docker.io/library/redis${DIGEST}`, cacheProxy: `docker.io/library/nginx${DIGEST}` },
        ledgerBackups: { destination: "s3://dc-eu-west-lake-ledger-backups/isla-nublar" },
        eventBus: { topics: [{ name: "nublar.sensors", partitions: 6 }, { name: "nublar.network" }] },
        lamp: [{ name: "visitor-web", image: `registry.park/centos7-lamp${DIGEST}` }, { name: "gift-shop", image: `registry.park/centos7-lamp${DIGEST}`, stateful: true }],
    };
    return raw;
}

function kubectlOk(args: string[], input?: string): string {
    const r = kube.kubectl(args, input);
    assert.equal(r.status, 0, `kubectl ${args.join(" ")}:\n${r.stderr}`);
    return r.stdout;
}

const apply = (docs: Record<string, any>[], extra: string[] = []) =>
    kube.kubectl(["apply", "--server-side", "--field-manager=nublar", "--validate=strict", ...extra, "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n"));

/** An object as stored, made into something to apply again (no server-set fields). */
function asManifest(o: Record<string, any>): Record<string, any> {
    const { metadata, status: _status, ...rest } = structuredClone(o);
    const { name, namespace, labels, annotations } = metadata;
    // A Service's addresses are the server's to give.
    if (rest.kind === "Service") {
        delete rest.spec.clusterIP;
        delete rest.spec.clusterIPs;
    }
    return { ...rest, metadata: { name, namespace, labels, annotations } };
}

before(async () => {
    kube = await startKubeApi();
    process.stderr.write(`# kube-apiserver ready in ${kube.startedInMs} ms (${[KUBE_TOOLS, KUBE_CRDS].map((d) => fs.readFileSync(path.join(d, "VERSIONS"), "utf8")).join("").trim().replace(/\n/g, ", ")})\n`);
    // The operators' CRDs, as their Helm charts would install them.
    const crds = ["cloudnative-pg/postgresql.cnpg.io_clusters.yaml", "cloudnative-pg/postgresql.cnpg.io_scheduledbackups.yaml", "strimzi/040-Crd-kafka.yaml", "strimzi/04A-Crd-kafkanodepool.yaml", "strimzi/043-Crd-kafkatopic.yaml"];
    for (const f of crds) kubectlOk(["apply", "--server-side", "-f", path.join(KUBE_CRDS, "crds", f)]);
    kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    project.addStack(STACK, parkWithWorkloads());
    const set = project.pulumi(["config", "set", "--secret", "test:kubeconfig", fs.readFileSync(kube.kubeconfig, "utf8")], STACK);
    assert.equal(set.status, 0, set.output);
});

after(async () => {
    await kube?.stop();
    project.remove();
});

test("pulumi up applies every object of the park's workloads through the real Kubernetes provider, and the server stores them", () => {
    const t = Date.now();
    const up = project.pulumi(["up", "--yes", "--skip-preview"], STACK, 600_000);
    assert.equal(up.status, 0, up.output.slice(-6000));
    process.stderr.write(`# pulumi up of the park's workloads: ${Date.now() - t} ms\n`);
    const state = JSON.parse(project.pulumi(["stack", "export"], STACK).stdout).deployment.resources as { type: string; provider?: string }[];
    const applied = state.filter((r) => r.type.startsWith("kubernetes:"));
    assert.ok(applied.every((r) => r.provider?.includes("pulumi:providers:kubernetes::test-apiserver")), "every object through the real provider");
    const kinds = new Set(applied.map((r) => r.type.split(":").pop()!));
    for (const k of ["Cluster", "Deployment", "HorizontalPodAutoscaler", "Kafka", "KafkaNodePool", "KafkaTopic", "Namespace", "PodDisruptionBudget", "ScheduledBackup", "Service", "StatefulSet"]) {
        assert.ok(kinds.has(k), `the park registers a ${k} (has: ${[...kinds].join(", ")})`);
    }
    // Read back: what the state says exists, the server has.
    const ns = "nublar";
    const stored = JSON.parse(kubectlOk(["get", "deployments,statefulsets,services,configmaps,persistentvolumeclaims,poddisruptionbudgets,horizontalpodautoscalers,clusters.postgresql.cnpg.io,scheduledbackups.postgresql.cnpg.io,kafkas.kafka.strimzi.io,kafkanodepools.kafka.strimzi.io,kafkatopics.kafka.strimzi.io,networkpolicies,secrets", "-n", ns, "-o", "json"])).items as Record<string, any>[];
    objects = stored.filter((o) => o.metadata.labels?.["app.kubernetes.io/managed-by"] === "nublar" || o.metadata.annotations?.["pulumi.com/skipAwait"]);
    const namespaced = applied.filter((r) => !["Namespace"].includes(r.type.split(":").pop()!));
    assert.equal(objects.length, namespaced.length, `every applied object is stored (${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")})`);
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
    const deployment = asManifest(objects.find((o) => o.kind === "Deployment")!);
    deployment.metadata.name = "typo";
    deployment.spec.replica = 2;
    const a = apply([deployment]);
    assert.notEqual(a.status, 0);
    assert.match(a.stderr, /\.spec\.replica: field not declared in schema/);
    const cluster = asManifest(objects.find((o) => o.kind === "Cluster")!);
    cluster.metadata.name = "wrong-type";
    cluster.spec.instances = "three";
    const b = apply([cluster]);
    assert.notEqual(b.status, 0);
    assert.match(b.stderr, /spec\.instances/);
    const service = asManifest(objects.find((o) => o.kind === "Service" && o.spec.clusterIP !== "None")!);
    service.metadata.name = "ipv4";
    service.spec.ipFamilies = ["IPv4"];
    const c = apply([service]);
    assert.notEqual(c.status, 0);
    assert.match(c.stderr, /IPv4.*not configured on this cluster/);
    for (const [kind, name, ns] of [["deployment", "typo", deployment.metadata.namespace], ["clusters.postgresql.cnpg.io", "wrong-type", cluster.metadata.namespace], ["service", "ipv4", service.metadata.namespace]]) {
        assert.notEqual(kube.kubectl(["get", kind, name, "-n", ns]).status, 0, `${kind}/${name} was not stored`);
    }
});
