// The lake on S3, or any S3-compatible store (the data center's lake bucket, components/aws/
// data-lake.ts): the same LakeStore the lab's folder implements (lake-sink.ts), with the AWS SDK.
// A PutObject is atomic: readers see the whole file or none. `If-None-Match: *` makes a second
// write of the same file (a batch re-read after a crash) a no-op where the store supports it;
// where it does not, the second write carries the same events under the same name.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { LakeStore } from "./lake-sink";

export interface S3LakeOptions {
    bucket: string;
    /** Key prefix inside the bucket, e.g. `events-lake/` (default none). */
    prefix?: string;
    /** Region and credentials come from the environment (the SDK's default chain) unless given. */
    client?: S3ClientConfig;
    /** SSE-KMS key for the objects; default: the bucket's own default encryption. */
    kmsKeyId?: string;
}

export class S3Lake implements LakeStore {
    private readonly s3: S3Client;
    private readonly prefix: string;

    constructor(private readonly o: S3LakeOptions) {
        this.s3 = new S3Client({ ...o.client });
        this.prefix = o.prefix ?? "";
    }

    async list(prefix: string): Promise<string[]> {
        const keys: string[] = [];
        let token: string | undefined;
        do {
            const r = await this.s3.send(new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }));
            for (const c of r.Contents ?? []) if (c.Key?.endsWith(".avro")) keys.push(c.Key.slice(this.prefix.length));
            token = r.IsTruncated ? r.NextContinuationToken : undefined;
        } while (token);
        return keys;
    }

    async get(key: string): Promise<Buffer> {
        const r = await this.s3.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.prefix + key }));
        return Buffer.from(await r.Body!.transformToByteArray());
    }

    async put(key: string, data: Buffer): Promise<void> {
        try {
            await this.s3.send(new PutObjectCommand({
                Bucket: this.o.bucket, Key: this.prefix + key, Body: data, ContentType: "application/avro", IfNoneMatch: "*",
                ...(this.o.kmsKeyId ? { ServerSideEncryption: "aws:kms", SSEKMSKeyId: this.o.kmsKeyId } : {}),
            }));
        } catch (err) {
            // 412: the file is already there (written before a crash): nothing to do.
            if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412) return;
            throw err;
        }
    }

    close(): void {
        this.s3.destroy();
    }
}
