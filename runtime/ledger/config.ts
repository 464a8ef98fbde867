// The ingest service's configuration file: written by the lab (lab/ledger/up.ts) or by a
// deployment, read by `nublar ledger serve` and by the auditor's commands. It holds passwords,
// so it is written mode 0600 and never logged.
import * as fs from "node:fs";
import { z } from "zod";
import { UserFacingError } from "../../model/errors";
import { SHARD_NAME } from "./pg/schema";

const Endpoint = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) });
const Credentials = z.strictObject({ user: z.string().min(1), password: z.string().min(1) });

export const ServiceConfig = z.strictObject({
    site: z.string().min(1),
    shards: z.array(z.string().regex(SHARD_NAME)).min(1),
    endpoints: z.array(Endpoint).min(1),
    ingest: Credentials,
    auditor: Credentials,
    redis: z.strictObject({ host: z.string(), port: z.number().int(), password: z.string().optional() }).optional(),
    checkpoint: z.strictObject({ entries: z.number().int().min(1), ms: z.number().int().min(100) }),
    /** ed25519 private key (PKCS#8 PEM) that signs checkpoints. Only the ingest service reads it. */
    signingKeyFile: z.string().min(1),
    /** The matching public key (SPKI PEM): what auditors verify with. */
    publicKeyFile: z.string().min(1),
    /** The data lake folder checkpoints are published to (S3 with Object Lock in production). */
    lakeDir: z.string().min(1),
    listen: z.strictObject({
        /** Unix socket: lab agents in their namespaces reach it through the shared filesystem. */
        socket: z.string().min(1),
        /** Optional TCP port, on ::1 only. */
        port: z.number().int().min(1).max(65535).optional(),
    }),
    /** Tail these agent event files (JSON lines) into a shard. */
    collect: z.strictObject({
        shard: z.string(),
        stateFile: z.string(),
        files: z.array(z.strictObject({ node: z.string(), file: z.string() })),
    }).optional(),
    maxBatch: z.number().int().min(1).max(100_000).optional(),
});
export type ServiceConfig = z.infer<typeof ServiceConfig>;

export class LedgerConfigError extends UserFacingError {
    readonly kind = "user";
    override name = "LedgerConfigError";
}

export function readServiceConfig(file: string): ServiceConfig {
    let raw: unknown;
    try {
        raw = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new LedgerConfigError(e.code === "ENOENT" ? `no ledger config at ${file} (is the lab up? try: npm run lab)` : `cannot read ledger config ${file}: ${e.message}`);
    }
    const parsed = ServiceConfig.safeParse(raw);
    if (!parsed.success) {
        throw new LedgerConfigError(`ledger config ${file} is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ")}`);
    }
    if (parsed.data.collect && !parsed.data.shards.includes(parsed.data.collect.shard)) {
        throw new LedgerConfigError(`ledger config ${file}: collect.shard ${parsed.data.collect.shard} is not one of the shards (${parsed.data.shards.join(", ")})`);
    }
    return parsed.data;
}

export function writeServiceConfig(file: string, config: ServiceConfig): void {
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
}
