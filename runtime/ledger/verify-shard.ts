// Verify with its I/O: stream a shard's rows out of PostgreSQL (COPY, binary) through the pure
// ChainVerifier, with the checkpoints from the database and from the data lake.
import type { KeyObject } from "node:crypto";
import { genesisHash } from "../../model/ledger/core/encoding";
import { ChainVerifier, mergeCheckpoints, type VerifyReport } from "../../model/ledger/core/verify";
import { ShardStore, type ShardAccess } from "./pg/store";
import type { LakeDirectorySink } from "./sinks";

export interface ShardVerifyOptions {
    access: ShardAccess;
    from?: number;
    to?: number;
    publicKey?: KeyObject;
    lake?: LakeDirectorySink;
    maxFindings?: number;
    /** Recompute every checkpoint's Merkle root too (see VerifyOptions.checkRoots). */
    checkRoots?: boolean;
}

export interface ShardVerifyResult extends VerifyReport {
    /** The instance read from. */
    endpoint: string;
    durationMs: number;
    entriesPerSecond: number;
}

export async function verifyShard(opts: ShardVerifyOptions): Promise<ShardVerifyResult> {
    const started = performance.now();
    const store = await ShardStore.open(opts.access, "any");
    try {
        await store.shardInfo();
        const dbCheckpoints = await store.checkpoints();
        const lake = opts.lake?.read(opts.access.shard);
        const merged = mergeCheckpoints(dbCheckpoints, lake?.checkpoints ?? []);
        // Start at the beginning of the checkpoint range holding `from`, so its root can be checked.
        let from = Math.max(1, opts.from ?? 1);
        const holding = merged.records.find((r) => r.signed.checkpoint.seq >= from);
        if (holding && holding.signed.checkpoint.from < from) from = holding.signed.checkpoint.from;
        const anchor = from === 1 ? genesisHash(opts.access.shard) : (await store.entry(from - 1))?.hash;
        const verifier = new ChainVerifier({
            shard: opts.access.shard, from, to: opts.to, checkpoints: merged.records, publicKey: opts.publicKey, maxFindings: opts.maxFindings, checkRoots: opts.checkRoots, findings: merged.findings,
            // A missing anchor shows up as a broken link at `from`.
            anchor: anchor ?? Buffer.alloc(32),
        });
        await store.copyRows(from, opts.to ?? null, (row) => verifier.push(row));
        const report = verifier.finish();
        for (const p of lake?.problems ?? []) report.warnings.push(`lake: ${p}`);
        if (!opts.lake) report.warnings.push("no data lake given: only the database's own checkpoints were used");
        const durationMs = performance.now() - started;
        return { ...report, endpoint: `[${store.endpoint.host}]:${store.endpoint.port}${store.primary ? " (primary)" : " (standby)"}`, durationMs, entriesPerSecond: report.entries / (durationMs / 1000) };
    } finally {
        await store.close();
    }
}
