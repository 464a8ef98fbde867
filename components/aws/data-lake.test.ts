// DataLake under Pulumi mocks: every bucket and its replica are versioned, locked in
// compliance mode, KMS-encrypted, tiered and closed to the public; each replicates to the
// other region; and the nublar-sla lake rule, fed the dependencies the engine would track,
// finds nothing (and does find a bucket left open).
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { lakeBuckets } from "../../policy/rules/lake";
import { noPlaintextSecrets } from "../../policy/rules/secrets";
import { validateResource, validateStack, type TestResource } from "../../policy/testing";
import { settled } from "../../test/helpers/pulumi-mocks";

interface Registered { type: string; name: string; inputs: Record<string, any>; id: string; arn: string; provider?: string }
const registered: Registered[] = [];

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            const id = args.inputs.bucket && args.type === "aws:s3/bucket:Bucket" ? args.inputs.bucket : `${args.name}-id`;
            const arn = args.type === "aws:s3/bucket:Bucket" ? `arn:aws:s3:::${id}` : `arn:aws:mock:::${args.name}`;
            registered.push({ type: args.type, name: args.name, inputs: args.inputs, id, arn, provider: args.provider });
            return { id, state: { ...args.inputs, arn, bucket: args.inputs.bucket ?? id } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

async function lake(args: Partial<import("./data-lake").DataLakeArgs> = {}) {
    const { DataLake } = await import("./data-lake");
    registered.length = 0;
    await settled((opts) => new DataLake("jurassic-lake", { region: "eu-west-1", replicaRegion: "eu-central-1", ...args }, opts));
    return registered.filter((r) => !r.type.startsWith("nublar:"));
}

/**
 * The resources as the policy engine sees them, with the dependencies it tracks: a setting's
 * `bucket` input came from that bucket's id, a replication rule's destination from its arn.
 */
function asEngineSees(rs: Registered[]): TestResource[] {
    const buckets = rs.filter((r) => r.type === "aws:s3/bucket:Bucket");
    return rs.map((r) => {
        const deps: Record<string, string[]> = {};
        const b = buckets.find((x) => x.id === r.inputs.bucket);
        if (b && r !== b) deps.bucket = [b.name];
        const dest = (r.inputs.rules ?? []).map((rule: any) => buckets.find((x) => x.arn === rule?.destination?.bucket)?.name).filter(Boolean);
        if (dest.length) deps.rules = dest;
        return { type: r.type, name: r.name, props: r.inputs, propertyDependencies: deps };
    });
}

test("every lake bucket and its replica: versioned, locked (compliance), KMS-encrypted, tiered, private; each replicates to the other region", async () => {
    const rs = await lake({ ledgerBackupDays: 14 });
    const buckets = rs.filter((r) => r.type === "aws:s3/bucket:Bucket");
    assert.deepEqual(buckets.map((b) => b.inputs.bucket).sort(), [
        "jurassic-lake-checkpoints", "jurassic-lake-checkpoints-replica", "jurassic-lake-events", "jurassic-lake-events-replica", "jurassic-lake-ledger-backups", "jurassic-lake-ledger-backups-replica",
    ]);
    assert.ok(buckets.every((b) => b.inputs.objectLockEnabled === true && b.inputs.forceDestroy === false));
    const of = (type: string, bucket: Registered) => rs.filter((r) => r.type === type && r.inputs.bucket === bucket.id);
    for (const b of buckets) {
        assert.equal(of("aws:s3/bucketVersioning:BucketVersioning", b)[0]?.inputs.versioningConfiguration.status, "Enabled", b.name);
        assert.equal(of("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", b)[0]?.inputs.rule.defaultRetention.mode, "COMPLIANCE", b.name);
        assert.equal(of("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", b)[0]?.inputs.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm, "aws:kms", b.name);
        const pab = of("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", b)[0]?.inputs;
        assert.ok(pab.blockPublicAcls && pab.blockPublicPolicy && pab.ignorePublicAcls && pab.restrictPublicBuckets, b.name);
        const life = of("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", b)[0]?.inputs.rules[0];
        // Events expire at 90 days, before the colder tiers; the rest go through all of them.
        const events = /-events(-replica)?$/.test(b.inputs.bucket);
        assert.deepEqual(life.transitions.map((t: any) => t.storageClass), events ? ["STANDARD_IA"] : ["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"], b.name);
        assert.equal(life.expiration?.days, events ? 90 : undefined, b.name);
        assert.ok(life.noncurrentVersionExpiration.noncurrentDays > 0, b.name);
    }
    const lock = (name: string) => of("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", buckets.find((b) => b.inputs.bucket === name)!)[0].inputs.rule.defaultRetention;
    assert.equal(lock("jurassic-lake-checkpoints").years, 7);
    assert.equal(lock("jurassic-lake-ledger-backups").days, 14, "the ledger's backup retention");
    const replications = rs.filter((r) => r.type === "aws:s3/bucketReplicationConfig:BucketReplicationConfig");
    assert.equal(replications.length, 3);
    for (const rep of replications) {
        const source = buckets.find((b) => b.id === rep.inputs.bucket)!;
        assert.equal(rep.inputs.rules[0].destination.bucket, `arn:aws:s3:::${source.inputs.bucket}-replica`);
        assert.equal(rep.inputs.rules[0].status, "Enabled");
    }
    // Two providers, one per region, and a KMS key in each.
    assert.deepEqual(rs.filter((r) => r.type === "pulumi:providers:aws").map((p) => p.inputs.region).sort(), ["eu-central-1", "eu-west-1"]);
    assert.equal(rs.filter((r) => r.type === "aws:kms/key:Key").length, 2);
    assert.ok(rs.filter((r) => r.type === "aws:kms/key:Key").every((k) => k.inputs.enableKeyRotation === true));
});

test("the nublar-sla lake rule finds nothing on the lake, and finds a bucket left open", async () => {
    const rs = await lake();
    const seen = asEngineSees(rs);
    assert.deepEqual((await validateStack(lakeBuckets, seen)).violations, []);
    for (const r of seen) assert.deepEqual((await validateResource(noPlaintextSecrets, r)).violations, [], `${r.type} ${r.name}`);
    const open = seen.filter((r) => !(r.type === "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock" && r.name === "jurassic-lake-events"));
    const o = await validateStack(lakeBuckets, open);
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /'jurassic-lake-events' lacks a public access block/);
});

test("bad arguments are refused by name", async () => {
    const { DataLake } = await import("./data-lake");
    assert.throws(() => new DataLake("l", { region: "eu-west-1", replicaRegion: "eu-west-1" }), /replicaRegion must differ from region/);
    assert.throws(() => new DataLake("l2", { region: "eu-west-1", replicaRegion: "eu-central-1", buckets: [{ name: "x", lock: { days: 0 } }] }), /l2\.buckets\.x\.lock/);
});
