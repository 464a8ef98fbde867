// Site with `kubernetes` (and a data center's `aws.dataLake`) settings, under Pulumi mocks:
// what it composes, that the operators are pinned, that the ledger backs up where it should,
// and that the nublar-sla pack finds nothing mandatory in any of it.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { parse } from "yaml";
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { policies } from "../../policy/policies";
import { validateResource } from "../../policy/testing";
import { parseSite } from "../../model/site/load";
import { settled } from "../../test/helpers/pulumi-mocks";
import { OPERATORS } from "./operators";
import { PROJECT_ROOT } from "../../model/project";

interface Registered { type: string; name: string; inputs: Record<string, any> }
const registered: Registered[] = [];
const ROOT = PROJECT_ROOT;
const DIGEST = `@sha256:${"fedcba9876543210".repeat(4)}`;
const stackSite = (stack: string) => parse(fs.readFileSync(path.join(ROOT, "stacks", `Pulumi.${stack}.yaml`), "utf8")).config["nublar:site"];

const KUBERNETES = {
    images: { postgres: `ghcr.io/cloudnative-pg/postgresql${DIGEST}`, redis: `docker.io/library/redis${DIGEST}`, cacheProxy: `docker.io/library/nginx${DIGEST}` },
    eventBus: { topics: [{ name: "sensor.readings" }, { name: "network.changes" }] },
    lamp: [{ name: "visitor-web", image: `registry.park/centos7-lamp${DIGEST}` }, { name: "gift-shop", image: `registry.park/centos7-lamp${DIGEST}`, stateful: true }],
};

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            registered.push({ type: args.type, name: args.name, inputs: args.inputs });
            const extra = args.type.endsWith("nixos:GeneratedKey") ? { value: "SECRET", publicKey: "PUBLIC" } : args.type.endsWith("nixos:Deployment") ? { generation: 1, digest: "d" } : {};
            return { id: `${args.name}-id`, state: { ...args.inputs, ...extra, metadata: { ...(args.inputs.metadata ?? {}), name: args.inputs.metadata?.name ?? args.name } } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

async function site(raw: unknown): Promise<Registered[] & { resources?: pulumi.Resource[] }> {
    const { Site } = await import("../site");
    registered.length = 0;
    const { resources } = await settled((opts) => new Site("park", { site: parseSite(raw), stateRoot: "/tmp/nublar-unit" }, opts));
    return Object.assign([...registered], { resources });
}

test("a park with kubernetes settings: the operators at their pinned versions, a CloudNativePG cluster per shard backing up to its lake prefix, the event bus and the LAMP apps", async () => {
    const raw = stackSite("isla-nublar");
    raw.kubernetes = { ...KUBERNETES, ledgerBackups: { destination: "s3://dc-eu-west-lake-ledger-backups/isla-nublar" } };
    const rs = await site(raw);
    const types = (t: string) => rs.filter((r) => r.type === t);
    assert.equal(types("nublar:k8s:SiteWorkloads").length, 1);
    assert.deepEqual(types("kubernetes:helm.sh/v3:Release").map((r) => [r.inputs.chart, r.inputs.version]).sort(), [
        [OPERATORS.cloudnativePg.chart, OPERATORS.cloudnativePg.version], [OPERATORS.strimzi.chart, OPERATORS.strimzi.version],
    ].sort());
    const clusters = types("kubernetes:postgresql.cnpg.io/v1:Cluster");
    assert.equal(clusters.length, 4);
    assert.ok(clusters.every((c) => c.inputs.metadata.namespace === "nublar" && c.inputs.spec.backup.barmanObjectStore.destinationPath.startsWith("s3://dc-eu-west-lake-ledger-backups/isla-nublar/")));
    assert.equal(types("kubernetes:kafka.strimzi.io/v1beta2:Kafka").length, 1);
    assert.deepEqual(types("kubernetes:apps/v1:Deployment").map((d) => d.name).sort(), ["park-workloads-ledger-cache", "visitor-web"]);
    assert.deepEqual(types("kubernetes:apps/v1:StatefulSet").map((d) => d.name), ["gift-shop"]);
    // Every resource through the pack's resource rules: nothing mandatory (CentOS 7 is advisory).
    const found: string[] = [];
    for (const p of policies) {
        if (p.enforcementLevel === "advisory" || !("validateResource" in p)) continue;
        for (const r of rs) found.push(...(await validateResource(p as ResourceValidationPolicy, { type: r.type, name: r.name, props: r.inputs })).violations.map((v) => `${p.name} ${r.type} ${r.name}: ${v.message}`));
    }
    assert.deepEqual(found, []);
});

test("a lab with the ledger on its cluster: CloudNativePG from the module's manifest with the lab's operator image, a cluster per shard without backups on local volumes, the cluster's DNS; the pack passes", async () => {
    const raw = stackSite("lab");
    raw.kubernetes = { ledger: true, lamp: [] };
    raw.ledger = { ...(raw.ledger ?? {}), shards: ["habitat", "audit"] };
    const rs = await site(raw);
    const types = (t: string) => rs.filter((r) => r.type === t);
    assert.equal(types("kubernetes:helm.sh/v3:Release").length, 0, "no chart: its repository cannot be reached");
    const [group] = types("kubernetes:yaml/v2:ConfigGroup");
    assert.ok(group, rs.map((r) => r.type).join(", "));
    assert.doesNotMatch(group.inputs.yaml, /ghcr\.io\/cloudnative-pg\/cloudnative-pg:/);
    assert.match(group.inputs.yaml, /image: nublar\.local\/cnpg@sha256:/);
    const clusters = types("kubernetes:postgresql.cnpg.io/v1:Cluster");
    assert.deepEqual(clusters.map((c) => c.inputs.metadata.name).sort(), ["unicorn-audit", "unicorn-habitat"]);
    for (const c of clusters) {
        assert.equal(c.inputs.spec.backup, undefined);
        assert.equal(c.inputs.spec.storage.storageClass, "ledger-local");
        assert.equal(c.inputs.spec.affinity.podAntiAffinityType, "preferred");
        assert.match(c.inputs.spec.imageName, /^nublar\.local\/postgres:15@sha256:/);
        assert.deepEqual(c.inputs.spec.postgresql.synchronous, { method: "any", number: 1, dataDurability: "required" });
    }
    assert.equal(types("kubernetes:postgresql.cnpg.io/v1:ScheduledBackup").length, 0);
    assert.equal(types("nublar:lab:ClusterDns").length, 1);
    const dns = types("kubernetes:core/v1:Service").find((r) => r.inputs.metadata.name === "kube-dns")!;
    assert.equal(dns.inputs.spec.clusterIP, "fd00:10:96::a");
    // One local volume per instance, and the ledger's images imported.
    assert.equal(types("kubernetes:core/v1:PersistentVolume").filter((v) => v.inputs.spec.storageClassName === "ledger-local").length, 2 * 3);
    const cluster = rs.find((r) => r.type === "nublar:lab:KubeCluster")!;
    assert.ok(cluster.inputs.images.some((t: string) => t.endsWith("postgres.oci.tar")));
    assert.equal(cluster.inputs.plan.clusterDns, "fd00:10:96::a");
    // The Kubernetes objects through the pack's resource rules (the lab's nodes are another test's).
    const found: string[] = [];
    for (const p of policies) {
        if (p.enforcementLevel === "advisory" || !("validateResource" in p)) continue;
        for (const r of rs.filter((x) => x.type.startsWith("kubernetes:"))) found.push(...(await validateResource(p as ResourceValidationPolicy, { type: r.type, name: r.name, props: r.inputs })).violations.map((v) => `${p.name} ${r.type} ${r.name}: ${v.message}`));
    }
    assert.deepEqual(found, []);
});

test("a data center with aws.dataLake: the lake, and the ledger backing up into the lake's ledger-backups bucket", async () => {
    const raw = stackSite("dc-eu-west");
    raw.aws = { ...raw.aws, dataLake: true };
    raw.kubernetes = { images: KUBERNETES.images };
    const rs = await site(raw);
    assert.equal(rs.filter((r) => r.type === "nublar:aws:DataLake").length, 1);
    const buckets = rs.filter((r) => r.type === "aws:s3/bucket:Bucket").map((b) => b.inputs.bucket);
    assert.ok(buckets.includes("park-lake-ledger-backups"), buckets.join(", "));
    const cluster = rs.find((r) => r.type === "kubernetes:postgresql.cnpg.io/v1:Cluster")!;
    assert.match(cluster.inputs.spec.backup.barmanObjectStore.destinationPath, /^s3:\/\/park-lake-ledger-backups\/unicorn\//);
    // No event bus or LAMP apps asked for: none built, and no Strimzi.
    assert.ok(!rs.some((r) => r.type.startsWith("kubernetes:kafka.strimzi.io")));
    assert.deepEqual(rs.filter((r) => r.type === "kubernetes:helm.sh/v3:Release").map((r) => r.inputs.chart), [OPERATORS.cloudnativePg.chart]);
});

test("the schema refuses kubernetes settings that cannot work, naming the key", () => {
    const park = stackSite("isla-nublar");
    assert.throws(() => parseSite({ ...park, kubernetes: { images: KUBERNETES.images } }), /kubernetes\.ledgerBackups.*is required when the ledger runs on Kubernetes/);
    assert.throws(() => parseSite({ ...park, kubernetes: { ...KUBERNETES, images: { ...KUBERNETES.images, redis: "redis:7" } } }), /kubernetes\.images\.redis.*pinned by digest/);
    // The lab's cluster may run the ledger (CloudNativePG, without backups) but never the event bus.
    assert.doesNotThrow(() => parseSite({ ...stackSite("lab"), kubernetes: { lamp: [{ name: "web" }] } }), "the lab's ledger keeps no backups");
    assert.throws(() => parseSite({ ...stackSite("lab"), kubernetes: { ledger: false, eventBus: { topics: [{ name: "t" }] } } }), /kubernetes\.eventBus.*not allowed in the lab/);
    assert.doesNotThrow(() => parseSite({ ...stackSite("lab"), kubernetes: { ledger: false, lamp: [{ name: "web" }] } }), "the lab's own images by default");
    // Outside the lab every image is given.
    assert.throws(() => parseSite({ ...park, kubernetes: { ...KUBERNETES, images: undefined } }), /kubernetes\.images.*required outside the lab/);
    assert.throws(() => parseSite({ ...park, kubernetes: { ...KUBERNETES, lamp: [{ name: "web" }] } }), /kubernetes\.lamp\[0\]\.image.*required outside the lab/);
    assert.throws(() => parseSite({ ...park, kubernetes: { ...KUBERNETES, ledger: false, lamp: [KUBERNETES.lamp[0], KUBERNETES.lamp[0]] } }), /duplicate LAMP app name/);
});

/**
 * Every resource's URN for a park with every workload, against the committed list: a refactor
 * that moves or renames a resource changes its URN, and Pulumi would replace it (a ledger
 * cluster deleted and created again). Each URN in the list must still exist, or be an alias of
 * a resource that does. New URNs are fine: regenerate with UPDATE_GOLDEN=1.
 */
test("a refactor keeps every URN, or adds an alias for it (components/k8s/urns.golden)", async () => {
    // Every resource below the site, for a park and for a data center with its lake.
    const resources: pulumi.Resource[] = [];
    const parkSite = stackSite("isla-nublar");
    parkSite.kubernetes = { ...KUBERNETES, ledgerBackups: { destination: "s3://lake/isla-nublar" } };
    resources.push(...(await site(parkSite)).resources!);
    const dc = stackSite("dc-eu-west");
    dc.aws = { ...dc.aws, dataLake: true };
    dc.kubernetes = { images: KUBERNETES.images };
    resources.push(...(await site(dc)).resources!);
    // Pulumi's mocks build a URN from its parent's own type only, the SDK builds aliases from
    // the whole chain: compare both as "<parent type>$<type>::<name>".
    const short = (urn: string) => {
        const parts = urn.split("::"); // urn:pulumi:<stack> :: <project> :: <type chain> :: <name>
        return `${parts[2].split("$").slice(-2).join("$")}::${parts.slice(3).join("::")}`;
    };
    const urns = (await Promise.all(resources.map((r) => new Promise<string>((resolve) => r.urn.apply(resolve))))).map(short);
    const aliases = (await Promise.all(resources.flatMap((r) => ((r as any).__aliases ?? []) as pulumi.Output<string>[]).map((a) => new Promise<string>((resolve) => a.apply(resolve))))).map(short);
    // Only the cloud parts: the node deployments' URNs are covered by their own tests.
    const ours = (u: string) => /nublar:k8s:|nublar:aws:/.test(u);
    const current = [...new Set(urns.filter(ours))].sort();
    const golden = path.join(__dirname, "urns.golden");
    if (process.env.UPDATE_GOLDEN) fs.writeFileSync(golden, `${current.join("\n")}\n`);
    const expected = fs.readFileSync(golden, "utf8").trim().split("\n");
    const kept = new Set([...current, ...aliases]);
    const lost = expected.filter((u) => !kept.has(u));
    assert.deepEqual(lost, [], "these resources would be replaced: keep their names and parents, or add aliases (then UPDATE_GOLDEN=1)");
    const added = current.filter((u) => !expected.includes(u));
    assert.deepEqual(added, [], "new resources: check them, then UPDATE_GOLDEN=1 node --import tsx --test components/k8s/workloads.test.ts");
});
