// Ledger, event bus, LAMP pod and data lake rules, with compliant and violating inputs shaped as
// the Kubernetes and AWS providers send them to the engine, called as the engine calls policies.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { labSiteInput } from "../../model/site/fixtures";
import { loadSiteFromStackFile, parseSite } from "../../model/site/load";
import type { Site } from "../../model/site/model";
import { UNKNOWN, validateResource, validateStack, type TestResource } from "../testing";
import { kafkaProducerAcks, kafkaReplication } from "./events";
import { lakeBuckets } from "./lake";
import { centos7EndOfLife, imageDigest, podDisruptionBudget, podProbes, podResources, yumGpgcheck } from "./lamp";
import { ledgerAnchor, ledgerBackups, ledgerQuorum } from "./ledger";
import { TYPES } from "./resources";
import { projectPath } from "../../model/project";

const STACKS = projectPath("stacks");
const siteResource = (site: Site): TestResource => ({ type: TYPES.site, name: site.name, props: { site } });
const park = () => loadSiteFromStackFile(path.join(STACKS, "Pulumi.isla-nublar.yaml"));
const DIGEST = `@sha256:${"ab".repeat(32)}`;

// ---- ledger ----

test("ledger rules: the shipped parks pass; the lab is exempt from backups and object lock, and says why", async () => {
    for (const policy of [ledgerQuorum, ledgerBackups, ledgerAnchor]) {
        assert.deepEqual((await validateResource(policy, siteResource(park()))).violations, [], policy.name);
    }
    const lab = loadSiteFromStackFile(path.join(STACKS, "Pulumi.lab.yaml"));
    assert.match((await validateResource(ledgerBackups, siteResource(lab))).notApplicable ?? "", /rebuilt from scratch/);
    assert.match((await validateResource(ledgerAnchor, siteResource(lab))).notApplicable ?? "", /write-once local folder/);
    assert.deepEqual((await validateResource(ledgerQuorum, siteResource(lab))).violations, []);
});

test("ledger rules: too few instances, 'preferred' durability, no backups or a directory anchor fail a park", async () => {
    const raw = (ledger: Record<string, unknown>) => {
        const input = labSiteInput(["edge"], { kind: "park", ledger });
        input.nodes[0].ssh = { host: "edge.example.net", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1DPPZ1bdOYcF29MZO/LFWFEfFqOlt3s2EXlc/YUWXB" };
        return siteResource(parseSite(input));
    };
    const q = await validateResource(ledgerQuorum, raw({ instances: 1, dataDurability: "preferred" }));
    assert.equal(q.violations.length, 2);
    assert.match(q.violations[0].message, /ledger\.instances is 1; the ledger needs 3/);
    assert.match(q.violations[1].message, /dataDurability is 'preferred'/);
    assert.match((await validateResource(ledgerBackups, raw({}))).violations[0]?.message ?? "", /ledger\.backup is not set/);
    assert.match((await validateResource(ledgerAnchor, raw({ anchor: "directory" }))).violations[0]?.message ?? "", /ledger\.anchor is 'directory'/);
    assert.equal((await validateResource(ledgerQuorum, raw({ instances: 2 }), { minInstances: 2 })).violations.length, 0);
});

test("ledger rules on CloudNativePG clusters and the lab's cluster resource", async () => {
    const cluster = (spec: Record<string, unknown>): TestResource => ({ type: TYPES.cnpgCluster, name: "unicorn-network", props: { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", spec } });
    const good = {
        instances: 3,
        postgresql: { synchronous: { method: "any", number: 1, dataDurability: "required" } },
        backup: { barmanObjectStore: { destinationPath: "s3://lake/unicorn" }, retentionPolicy: "30d" },
    };
    assert.deepEqual((await validateResource(ledgerQuorum, cluster(good))).violations, []);
    assert.deepEqual((await validateResource(ledgerBackups, cluster(good))).violations, []);
    const bad = await validateResource(ledgerQuorum, cluster({ instances: 2, postgresql: { synchronous: { method: "any", number: 1, dataDurability: "preferred" } } }));
    assert.equal(bad.violations.length, 2);
    assert.match(bad.violations[1].message, /dataDurability is 'preferred'/);
    assert.match((await validateResource(ledgerQuorum, cluster({ instances: 3, postgresql: {} }))).violations[0]?.message ?? "", /synchronous is unset/);
    assert.match((await validateResource(ledgerBackups, cluster({ instances: 3 }))).violations[0]?.message ?? "", /no backup configuration/);
    assert.match((await validateResource(ledgerBackups, cluster({ backup: { barmanObjectStore: {} } }))).violations[0]?.message ?? "", /no retentionPolicy/);
    // A lab's cluster (UnicornLedgerCluster labels it) keeps no backups, and says why; its quorum is still checked.
    const labeled = (spec: Record<string, unknown>): TestResource => ({ ...cluster(spec), props: { ...cluster(spec).props, metadata: { labels: { "nublar/site-kind": "lab" } } } });
    const lab = await validateResource(ledgerBackups, labeled({ instances: 3 }));
    assert.deepEqual(lab.violations, []);
    assert.match(lab.notApplicable ?? "", /keeps no backups/);
    assert.equal((await validateResource(ledgerQuorum, labeled({ instances: 1 }))).violations.length, 2);
    // Unknown at preview: no finding, no crash.
    assert.deepEqual((await validateResource(ledgerQuorum, cluster({ ...good, instances: UNKNOWN.number }))).violations, []);
    const labCluster = (instances: number): TestResource => ({ type: TYPES.labLedger, name: "lab-ledger-cluster", props: { plan: { instances }, passwords: UNKNOWN.object } });
    assert.deepEqual((await validateResource(ledgerQuorum, labCluster(3))).violations, []);
    assert.match((await validateResource(ledgerQuorum, labCluster(1))).violations[0]?.message ?? "", /runs 1 PostgreSQL instance/);
});

// ---- event bus ----

const kafka = (config: Record<string, unknown>, replicas = 3): TestResource => ({ type: TYPES.kafka, name: "events", props: { spec: { kafka: { replicas, config } } } });

test("kafka-replication: replication factor and min.insync.replicas, on the cluster and on topics", async () => {
    assert.deepEqual((await validateResource(kafkaReplication, kafka({ "default.replication.factor": 3, "min.insync.replicas": 2 }))).violations, []);
    const o = await validateResource(kafkaReplication, kafka({ "default.replication.factor": 1 }, 1));
    assert.match(o.violations[0]?.message ?? "", /spec\.kafka\.replicas is 1.*default\.replication\.factor is 1.*min\.insync\.replicas is unset/);
    const topic = (spec: Record<string, unknown>): TestResource => ({ type: TYPES.kafkaTopic, name: "park-events", props: { spec } });
    assert.deepEqual((await validateResource(kafkaReplication, topic({ replicas: 3, config: { "min.insync.replicas": 2 } }))).violations, []);
    assert.match((await validateResource(kafkaReplication, topic({ replicas: 3, config: { "min.insync.replicas": 1 } }))).violations[0]?.message ?? "", /min\.insync\.replicas is 1/);
    assert.match((await validateResource(kafkaReplication, topic({ replicas: 2 }))).violations[0]?.message ?? "", /spec\.replicas is 2/);
});

test("kafka-producer-acks: acks=1 in a ConfigMap, a properties file or a container's env fails; acks=all passes", async () => {
    const cm = (data: Record<string, string>): TestResource => ({ type: TYPES.configMap, name: "producer", props: { data } });
    assert.deepEqual((await validateResource(kafkaProducerAcks, cm({ "producer.properties": "acks=all\nenable.idempotence=true\n" }))).violations, []);
    assert.match((await validateResource(kafkaProducerAcks, cm({ "producer.properties": "bootstrap.servers=x:9092\nacks=1\n" }))).violations[0]?.message ?? "", /producer\.properties: acks = 1/);
    assert.match((await validateResource(kafkaProducerAcks, cm({ KAFKA_ACKS: "0" }))).violations[0]?.message ?? "", /data\.KAFKA_ACKS = 0/);
    const dep = workload({ env: [{ name: "KAFKA_PRODUCER_ACKS", value: "1" }] });
    assert.match((await validateResource(kafkaProducerAcks, dep)).violations[0]?.message ?? "", /container web env KAFKA_PRODUCER_ACKS = 1/);
});

// ---- LAMP pods ----

function workload(container: Record<string, unknown> = {}, type = "kubernetes:apps/v1:Deployment"): TestResource {
    return {
        type,
        name: "visitor-web",
        props: {
            metadata: { namespace: "lamp" },
            spec: {
                replicas: 2,
                selector: { matchLabels: { app: "visitor-web" } },
                template: {
                    metadata: { labels: { app: "visitor-web", tier: "web" } },
                    spec: {
                        containers: [{
                            name: "web",
                            image: `registry.park.example/lamp/httpd-php${DIGEST}`,
                            resources: { requests: { cpu: "250m", memory: "256Mi" }, limits: { cpu: "1", memory: "512Mi" } },
                            readinessProbe: { httpGet: { path: "/health.php", port: 80 } },
                            livenessProbe: { httpGet: { path: "/health.php", port: 80 } },
                            ...container,
                        }],
                    },
                },
            },
        },
    };
}

test("pod rules: a complete LAMP Deployment passes; each missing piece is named", async () => {
    for (const p of [podResources, podProbes, imageDigest, centos7EndOfLife]) assert.deepEqual((await validateResource(p, workload())).violations, [], p.name);
    assert.match((await validateResource(podResources, workload({ resources: { requests: { cpu: "100m" } } }))).violations[0]?.message ?? "", /container web lacks requests\.memory, limits\.cpu, limits\.memory/);
    assert.match((await validateResource(podProbes, workload({ livenessProbe: undefined }))).violations[0]?.message ?? "", /container web lacks livenessProbe/);
    assert.match((await validateResource(imageDigest, workload({ image: "centos:7" }))).violations[0]?.message ?? "", /image 'centos:7'/);
    // A bare Pod and a StatefulSet are read the same way.
    const pod: TestResource = { type: TYPES.pod, name: "debug", props: { spec: { containers: [{ name: "sh", image: "busybox:latest" }] } } };
    assert.equal((await validateResource(imageDigest, pod)).violations.length, 1);
    assert.equal((await validateResource(podProbes, workload({ readinessProbe: undefined }, "kubernetes:apps/v1:StatefulSet"))).violations.length, 1);
    // Unknown at preview (an image built in the same update): not a finding.
    assert.deepEqual((await validateResource(imageDigest, workload({ image: UNKNOWN.string }))).violations, []);
});

test("centos7-end-of-life is advisory, names the image, and honours its exception list", async () => {
    assert.equal(centos7EndOfLife.enforcementLevel, "advisory");
    const old = workload({ image: `quay.io/centos/centos:7${DIGEST}` });
    assert.match((await validateResource(centos7EndOfLife, old)).violations[0]?.message ?? "", /CentOS 7 is end of life: container web runs 'quay\.io\/centos\/centos:7@sha256/);
    assert.equal((await validateResource(centos7EndOfLife, workload({ image: `registry.park.example/lamp-centos7${DIGEST}` }))).violations.length, 1);
    assert.deepEqual((await validateResource(centos7EndOfLife, old, { exceptions: ["visitor-web"] })).violations, []);
    assert.deepEqual((await validateResource(centos7EndOfLife, old, { exceptions: ["quay.io/centos/"] })).violations, []);
    assert.deepEqual((await validateResource(centos7EndOfLife, workload({ image: `almalinux:9${DIGEST}` }))).violations, []);
});

test("yum-gpgcheck: a .repo with gpgcheck=0 or none fails; disabled repos are ignored", async () => {
    const repo = (text: string): TestResource => ({ type: TYPES.configMap, name: "yum-repos", props: { data: { "park.repo": text } } });
    assert.deepEqual((await validateResource(yumGpgcheck, repo("[base]\nbaseurl=https://mirror/7/os\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\n"))).violations, []);
    const bad = await validateResource(yumGpgcheck, repo("[base]\nbaseurl=https://m/os\ngpgcheck=1\n[epel]\nbaseurl=https://m/epel\ngpgcheck=0\n[extras]\nbaseurl=https://m/x\n[old]\nenabled=0\ngpgcheck=0\n"));
    assert.match(bad.violations[0]?.message ?? "", /park\.repo \[epel\] gpgcheck=0; park\.repo \[extras\] gpgcheck=unset\./);
});

test("pod-disruption-budget: a Deployment needs a PDB selecting its pods in its namespace", async () => {
    const pdb = (namespace: string, matchLabels: Record<string, string>): TestResource => ({ type: TYPES.pdb, name: "visitor-web-pdb", props: { metadata: { namespace }, spec: { minAvailable: 1, selector: { matchLabels } } } });
    assert.deepEqual((await validateStack(podDisruptionBudget, [workload(), pdb("lamp", { app: "visitor-web" })])).violations, []);
    const none = await validateStack(podDisruptionBudget, [workload()]);
    assert.match(none.violations[0]?.message ?? "", /Deployment 'visitor-web' has no PodDisruptionBudget selecting its pods \(app=visitor-web, tier=web\)/);
    assert.ok(none.violations[0]?.urn?.endsWith("::visitor-web"));
    assert.equal((await validateStack(podDisruptionBudget, [workload(), pdb("default", { app: "visitor-web" })])).violations.length, 1, "another namespace");
    assert.equal((await validateStack(podDisruptionBudget, [workload(), pdb("lamp", { app: "other" })])).violations.length, 1, "another selector");
});

// ---- data lake ----

function lake(missing: string[] = []): TestResource[] {
    const r: TestResource[] = [{ type: "aws:s3/bucketV2:BucketV2", name: "lake", props: { bucket: "jurassic-lake", objectLockEnabled: !missing.includes("lock") } }];
    const on = (type: string, name: string, props: Record<string, unknown>) => r.push({ type, name, props: { bucket: UNKNOWN.string, ...props }, propertyDependencies: { bucket: ["lake"] } });
    if (!missing.includes("versioning")) on("aws:s3/bucketVersioningV2:BucketVersioningV2", "lake-versioning", { versioningConfiguration: { status: "Enabled" } });
    if (!missing.includes("retention")) on("aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2", "lake-lock", { rule: { defaultRetention: { mode: missing.includes("governance") ? "GOVERNANCE" : "COMPLIANCE", years: 7 } } });
    if (!missing.includes("encryption")) on("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2", "lake-sse", { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" } }] });
    if (!missing.includes("replication")) on("aws:s3/bucketReplicationConfig:BucketReplicationConfig", "lake-replication", { role: UNKNOWN.string, rules: [{ status: "Enabled", destination: { bucket: UNKNOWN.string } }] });
    if (!missing.includes("public")) on("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "lake-pab", { blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
    return r;
}

test("lake-buckets: a complete lake bucket passes; each missing setting is named on the bucket", async () => {
    assert.deepEqual((await validateStack(lakeBuckets, lake())).violations, []);
    const cases: [string, RegExp][] = [
        ["versioning", /versioning \(status Enabled\)/],
        ["lock", /object lock \(objectLockEnabled at creation\)/],
        ["retention", /a default object lock retention/],
        ["governance", /COMPLIANCE mode \(it is GOVERNANCE\)/],
        ["encryption", /default encryption/],
        ["replication", /replication/],
        ["public", /public access block/],
    ];
    for (const [what, expected] of cases) {
        const o = await validateStack(lakeBuckets, lake([what]));
        assert.equal(o.violations.length, 1, what);
        assert.match(o.violations[0].message, expected, what);
        assert.match(o.violations[0].message, /BucketV2 'lake' lacks/);
    }
    // Settings tied to another bucket do not count for this one.
    const other = lake();
    other.push({ type: "aws:s3/bucketV2:BucketV2", name: "scratch", props: { bucket: "scratch" } });
    const o = await validateStack(lakeBuckets, other);
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /'scratch' lacks versioning/);
});

// ---- what preview leaves unknown, and edge cases found in review ----

test("unknown values at preview never read as 'unset': CloudNativePG, Kafka, pod resources and PDBs are decided at up", async () => {
    const cluster = (spec: unknown): TestResource => ({ type: TYPES.cnpgCluster, name: "c", props: { spec } });
    const cases: [typeof ledgerQuorum, unknown][] = [
        [ledgerQuorum, UNKNOWN.object], [ledgerQuorum, { instances: 3, postgresql: { synchronous: UNKNOWN.object } }],
        [ledgerBackups, UNKNOWN.object], [ledgerBackups, { instances: 3, backup: UNKNOWN.object }],
    ];
    for (const [p, spec] of cases) {
        const o = await validateResource(p, cluster(spec));
        assert.deepEqual([o.violations, o.unknown], [[], undefined], `${p.name} ${JSON.stringify(spec)}`);
    }
    // Absent is not unknown: no postgresql section means no synchronous commit.
    assert.match((await validateResource(ledgerQuorum, cluster({ instances: 3 }))).violations[0]?.message ?? "", /synchronous is unset/);
    // CloudNativePG's default dataDurability is `required`.
    assert.deepEqual((await validateResource(ledgerQuorum, cluster({ instances: 3, postgresql: { synchronous: { method: "any", number: 1 } } }))).violations, []);
    for (const r of [{ type: TYPES.kafka, name: "k", props: { spec: { kafka: UNKNOWN.object } } }, { type: TYPES.kafkaTopic, name: "t", props: { spec: UNKNOWN.object } }, { type: TYPES.kafkaTopic, name: "t", props: { spec: { replicas: UNKNOWN.number } } }]) {
        assert.deepEqual((await validateResource(kafkaReplication, r)).violations, [], JSON.stringify(r.props));
    }
    assert.deepEqual((await validateResource(podResources, workload({ resources: UNKNOWN.object }))).violations, []);
    const pdb = { type: TYPES.pdb, name: "p", props: { metadata: { namespace: UNKNOWN.string }, spec: { selector: { matchLabels: { app: "visitor-web" } } } } };
    assert.deepEqual((await validateStack(podDisruptionBudget, [workload(), pdb])).violations, []);
});

test("pod-disruption-budget understands matchExpressions; an empty selector covers nothing", async () => {
    const pdb = (selector: unknown): TestResource => ({ type: TYPES.pdb, name: "p", props: { metadata: { namespace: "lamp" }, spec: { minAvailable: 1, selector } } });
    assert.deepEqual((await validateStack(podDisruptionBudget, [workload(), pdb({ matchExpressions: [{ key: "app", operator: "In", values: ["visitor-web", "x"] }] })])).violations, []);
    assert.equal((await validateStack(podDisruptionBudget, [workload(), pdb({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] })])).violations.length, 1);
    assert.equal((await validateStack(podDisruptionBudget, [workload(), pdb({})])).violations.length, 1);
});

test("kafka-producer-acks reads acks settings only, and centos7-end-of-life only CentOS 7", async () => {
    const cm: TestResource = { type: TYPES.configMap, name: "c", props: { data: { "app.properties": "callbacks=3\ntracks=1\nstacks: 2\nproducer.acks=all\n" } } };
    assert.deepEqual((await validateResource(kafkaProducerAcks, cm)).violations, []);
    const { isCentos7 } = await import("./lamp");
    for (const yes of ["centos:7", "centos:7.9.2009", "quay.io/centos/centos:7", "centos:centos7", `registry/lamp-centos7${DIGEST}`, "centos7"]) assert.ok(isCentos7(yes), yes);
    for (const no of ["centos:8.7", "quay.io/centos/centos:stream8-20240107", `centos${"@sha256:" + "7".repeat(64)}`, "almalinux:7", "centos:17"]) assert.ok(!isCentos7(no), no);
});

test("lake-buckets: the replica bucket (the replication's destination) needs no replication of its own", async () => {
    const resources = lake();
    resources.push({ type: "aws:s3/bucketV2:BucketV2", name: "lake-replica", props: { bucket: "jurassic-lake-replica", objectLockEnabled: true } });
    const on = (type: string, name: string, props: Record<string, unknown>) => resources.push({ type, name, props: { bucket: UNKNOWN.string, ...props }, propertyDependencies: { bucket: ["lake-replica"] } });
    on("aws:s3/bucketVersioningV2:BucketVersioningV2", "replica-versioning", { versioningConfiguration: { status: "Enabled" } });
    on("aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2", "replica-lock", { rule: { defaultRetention: { mode: "COMPLIANCE", years: 7 } } });
    on("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2", "replica-sse", { rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" } }] });
    on("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "replica-pab", { blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
    const withoutLink = await validateStack(lakeBuckets, resources);
    assert.match(withoutLink.violations[0]?.message ?? "", /'lake-replica' lacks replication/);
    // The source's replication rule names the replica (its destination depends on it).
    resources.find((r) => r.name === "lake-replication")!.propertyDependencies!.rules = ["lake-replica"];
    assert.deepEqual((await validateStack(lakeBuckets, resources)).violations, []);
});
