// The data lake's S3 buckets: versioned, object-locked, encrypted, replicated to a second
// region, and closed to the public. With the AWS provider, most of these are separate resources
// naming the bucket, so the rule looks at the whole stack and ties each one to its bucket.
import type { PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { BUCKET_TYPES, describe, known } from "./resources";

const KIND_OF: Record<string, keyof Settings> = {
    "aws:s3/bucketVersioningV2:BucketVersioningV2": "versioning",
    "aws:s3/bucketVersioning:BucketVersioning": "versioning",
    "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2": "objectLock",
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": "objectLock",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": "encryption",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "encryption",
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": "replication",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "publicAccessBlock",
};

interface Settings {
    versioning: PolicyResource[];
    objectLock: PolicyResource[];
    encryption: PolicyResource[];
    replication: PolicyResource[];
    publicAccessBlock: PolicyResource[];
}

/** Does `setting` configure `bucket`? By dependency on its id (the usual `bucket: b.id`), or by its name. */
function configures(setting: PolicyResource, bucket: PolicyResource): boolean {
    if ((setting.propertyDependencies?.bucket ?? []).some((d) => d.urn === bucket.urn)) return true;
    const name = known(() => setting.props.bucket);
    const bucketName = known(() => bucket.props.bucket);
    return typeof name === "string" && name !== "" && name === bucketName;
}

/** Is `bucket` where another bucket's replication rule sends its objects (the replica)? */
function isReplicaOf(bucket: PolicyResource, replication: PolicyResource[]): boolean {
    return replication.some((r) => (r.propertyDependencies?.rules ?? []).some((d) => d.urn === bucket.urn) && !configures(r, bucket));
}

function checkBucket(bucket: PolicyResource, s: Settings, replica: boolean): string[] {
    const missing: string[] = [];
    const p = bucket.props;
    const v1 = bucket.type === "aws:s3/bucket:Bucket";
    // Versioning: inline (provider v6 Bucket) or a BucketVersioning resource.
    const inlineVersioning = v1 && known(() => p.versioning?.enabled) === true;
    if (!inlineVersioning && !s.versioning.some((r) => known(() => r.props.versioningConfiguration?.status) === "Enabled")) missing.push("versioning (status Enabled)");
    // Object Lock must be enabled at creation, with a default retention in compliance mode.
    const lockEnabled = known(() => p.objectLockEnabled) === true || known(() => p.objectLockConfiguration?.objectLockEnabled) === "Enabled";
    const retention = [...s.objectLock.map((r) => known(() => r.props.rule?.defaultRetention)), known(() => p.objectLockConfiguration?.rule?.defaultRetention)]
        .find((d) => d && (d.days || d.years));
    if (!lockEnabled) missing.push("object lock (objectLockEnabled at creation)");
    else if (!retention) missing.push("a default object lock retention (COMPLIANCE mode, days or years)");
    else if (retention.mode !== "COMPLIANCE") missing.push(`object lock in COMPLIANCE mode (it is ${retention.mode})`);
    // Encryption at rest with a named algorithm.
    const rules = [...s.encryption.flatMap((r) => known(() => r.props.rules) ?? []), ...(known(() => p.serverSideEncryptionConfiguration?.rule) ? [p.serverSideEncryptionConfiguration.rule] : [])];
    if (!rules.some((r: any) => ["aws:kms", "aws:kms:dsse", "AES256"].includes(known(() => r?.applyServerSideEncryptionByDefault?.sseAlgorithm)))) missing.push("default encryption (aws:kms or AES256)");
    // Replication to another bucket, enabled.
    const replicated = s.replication.some((r) => (known(() => r.props.rules) ?? []).some((x: any) => x?.status === "Enabled"))
        || (known(() => p.replicationConfiguration?.rules) ?? []).some((x: any) => x?.status === "Enabled");
    // The replica bucket in the other region is the replication's destination, not a source.
    if (!replicated && !replica) missing.push("replication (an enabled BucketReplicationConfig rule)");
    // All four public access blocks.
    const blocks = s.publicAccessBlock.some((r) => ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"].every((k) => known(() => r.props[k]) === true));
    if (!blocks) missing.push("a public access block with all four settings true");
    return missing;
}

export const lakeBuckets: StackValidationPolicy = {
    name: "lake-buckets",
    description: "Every S3 bucket of the data lake is versioned, object-locked in compliance mode, encrypted, replicated to another region, and blocks public access.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Create the bucket with objectLockEnabled: true and add BucketVersioning (Enabled), BucketObjectLockConfiguration (COMPLIANCE retention), BucketServerSideEncryptionConfiguration (aws:kms), BucketReplicationConfig (to the site's aws.replicaRegion) and BucketPublicAccessBlock (all four true), each with bucket: <bucket>.id.",
    validateStack: (args, report) => {
        const buckets = args.resources.filter((r) => BUCKET_TYPES.has(r.type));
        const settings = args.resources.filter((r) => KIND_OF[r.type]);
        const replication = settings.filter((r) => KIND_OF[r.type] === "replication");
        for (const bucket of buckets) {
            const s: Settings = { versioning: [], objectLock: [], encryption: [], replication: [], publicAccessBlock: [] };
            for (const r of settings) if (configures(r, bucket)) s[KIND_OF[r.type]].push(r);
            const missing = checkBucket(bucket, s, isReplicaOf(bucket, replication));
            if (missing.length) report(`${describe(bucket)} lacks ${missing.join(", ")}. Fix: add the missing bucket settings (see the remediation steps).`, bucket.urn);
        }
    },
};

export const lakePolicies = [lakeBuckets];
