// DataLake: the Jurassic Data Lake on S3 (@pulumi/aws v7). Every bucket is versioned,
// encrypted with its region's KMS key, closed to the public, tiered by age, and replicated to
// a bucket in the site's replica region. Every bucket is created with Object Lock in
// compliance mode, so that not even the account's root can replace what it holds before its
// retention ends: years for ledger checkpoints, as long as the backup retention for ledger
// backups (so that CloudNativePG can still expire them), months for events (the ledger-anchor
// and lake-buckets policies).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface LakeBucketSpec {
    /** Short name: the bucket is `<lake>-<name>` in the primary region and `<lake>-<name>-replica` in the other. */
    name: string;
    /** Object Lock's default retention (compliance mode). */
    lock: { days: number } | { years: number };
    /** Delete current objects this many days old (never before their lock ends). Absent: keep them. */
    expireDays?: number;
}

export interface DataLakeArgs {
    /** The site's `aws` settings: region and replicaRegion. */
    region: string;
    replicaRegion: string;
    buckets?: LakeBucketSpec[];
    /** The ledger's backup retention (site ledger.backup.retentionDays): the ledger-backups bucket locks them this long. */
    ledgerBackupDays?: number;
    /** Age in days at which objects move to cheaper tiers. */
    tiers?: { infrequentAccessDays?: number; glacierDays?: number; deepArchiveDays?: number };
}

/** What a lake holds: checkpoints (kept, locked 7 years), telemetry events (90 days) and ledger backups (the backup retention). */
export function defaultLakeBuckets(ledgerBackupDays = 30): LakeBucketSpec[] {
    return [
        { name: "checkpoints", lock: { years: 7 } },
        { name: "events", lock: { days: 90 }, expireDays: 90 },
        // CloudNativePG expires its own backups after the retention; the lock is exactly that long.
        { name: "ledger-backups", lock: { days: ledgerBackupDays } },
    ];
}

function lockDays(spec: LakeBucketSpec): number {
    return "days" in spec.lock ? spec.lock.days : spec.lock.years * 366;
}

export class DataLake extends pulumi.ComponentResource {
    /** Short name -> the primary bucket's name. */
    readonly buckets: Record<string, pulumi.Output<string>> = {};

    constructor(name: string, args: DataLakeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:aws:DataLake", name, {}, opts);
        for (const b of args.buckets ?? []) {
            const n = "days" in b.lock ? b.lock.days : b.lock.years;
            if (!Number.isInteger(n) || n < 1) throw new Error(`${name}.buckets.${b.name}.lock: retention must be a whole number of days or years, at least 1`);
        }
        if (args.region === args.replicaRegion) throw new Error(`${name}: replicaRegion must differ from region (${args.region}); a replica in the same region survives nothing regional`);
        const specs = args.buckets ?? defaultLakeBuckets(args.ledgerBackupDays);
        const tiers = { infrequentAccessDays: 30, glacierDays: 90, deepArchiveDays: 365, ...args.tiers };
        const primary = new aws.Provider(`${name}-${args.region}`, { region: args.region as aws.Region }, { parent: this });
        const replica = new aws.Provider(`${name}-${args.replicaRegion}`, { region: args.replicaRegion as aws.Region }, { parent: this });
        const key = (region: string, provider: aws.Provider) => new aws.kms.Key(`${name}-${region}`, {
            description: `nublar data lake ${name} (${region})`, enableKeyRotation: true, deletionWindowInDays: 30,
        }, { parent: this, provider });
        const keys = { primary: key(args.region, primary), replica: key(args.replicaRegion, replica) };

        // One role for S3 to replicate every bucket of the lake.
        const role = new aws.iam.Role(`${name}-replication`, {
            assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: "s3.amazonaws.com" }, Action: "sts:AssumeRole" }] }),
        }, { parent: this, provider: primary });

        const sourceArns: pulumi.Output<string>[] = [];
        const replicaArns: pulumi.Output<string>[] = [];
        for (const spec of specs) {
            const make = (suffix: string, provider: aws.Provider, kmsKey: aws.kms.Key) => {
                const id = `${name}-${spec.name}${suffix}`;
                const opts = { parent: this, provider };
                const bucket = new aws.s3.Bucket(id, { bucket: id, objectLockEnabled: true, forceDestroy: false }, opts);
                const versioning = new aws.s3.BucketVersioning(id, { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } }, opts);
                new aws.s3.BucketObjectLockConfiguration(id, { bucket: bucket.id, rule: { defaultRetention: { mode: "COMPLIANCE", ...spec.lock } } }, { ...opts, dependsOn: [versioning] });
                new aws.s3.BucketServerSideEncryptionConfiguration(id, {
                    bucket: bucket.id,
                    rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: kmsKey.arn }, bucketKeyEnabled: true }],
                }, opts);
                new aws.s3.BucketPublicAccessBlock(id, { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, opts);
                new aws.s3.BucketLifecycleConfiguration(id, {
                    bucket: bucket.id,
                    rules: [{
                        id: "tiers",
                        status: "Enabled",
                        filter: {},
                        // Objects that expire before a tier never reach it.
                        transitions: [
                            { days: tiers.infrequentAccessDays, storageClass: "STANDARD_IA" },
                            { days: tiers.glacierDays, storageClass: "GLACIER_IR" },
                            { days: tiers.deepArchiveDays, storageClass: "DEEP_ARCHIVE" },
                        ].filter((t) => spec.expireDays === undefined || t.days < spec.expireDays),
                        ...(spec.expireDays !== undefined ? { expiration: { days: spec.expireDays } } : {}),
                        // Versions replaced or deleted go once their lock has passed.
                        noncurrentVersionExpiration: { noncurrentDays: lockDays(spec) + 1 },
                    }],
                }, { ...opts, dependsOn: [versioning] });
                return { bucket, versioning };
            };
            const source = make("", primary, keys.primary);
            const target = make("-replica", replica, keys.replica);
            sourceArns.push(source.bucket.arn);
            replicaArns.push(target.bucket.arn);
            new aws.s3.BucketReplicationConfig(`${name}-${spec.name}`, {
                bucket: source.bucket.id,
                role: role.arn,
                rules: [{
                    id: "replica",
                    status: "Enabled",
                    filter: {},
                    deleteMarkerReplication: { status: "Enabled" },
                    sourceSelectionCriteria: { sseKmsEncryptedObjects: { status: "Enabled" } },
                    destination: { bucket: target.bucket.arn, storageClass: "STANDARD", encryptionConfiguration: { replicaKmsKeyId: keys.replica.arn } },
                }],
            }, { parent: this, provider: primary, dependsOn: [source.versioning, target.versioning] });
            this.buckets[spec.name] = source.bucket.bucket;
        }

        new aws.iam.RolePolicy(`${name}-replication`, {
            role: role.id,
            policy: pulumi.all([pulumi.all(sourceArns), pulumi.all(replicaArns), keys.primary.arn, keys.replica.arn]).apply(([sources, replicas, k1, k2]) => JSON.stringify({
                Version: "2012-10-17",
                Statement: [
                    { Effect: "Allow", Action: ["s3:GetReplicationConfiguration", "s3:ListBucket"], Resource: sources },
                    { Effect: "Allow", Action: ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging", "s3:GetObjectRetention", "s3:GetObjectLegalHold"], Resource: sources.map((a) => `${a}/*`) },
                    { Effect: "Allow", Action: ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"], Resource: replicas.map((a) => `${a}/*`) },
                    { Effect: "Allow", Action: ["kms:Decrypt"], Resource: [k1] },
                    { Effect: "Allow", Action: ["kms:Encrypt", "kms:GenerateDataKey"], Resource: [k2] },
                ],
            })),
        }, { parent: this, provider: primary });
        this.registerOutputs({ buckets: this.buckets });
    }
}
