// The auditor's and operator's commands for the Unicorn ledger:
//   nublar ledger status | verify | proof | check-proof | append | read | failover | serve
// Exit codes: 0 fine; 1 tampering found (verify) or an invalid proof, or a problem to fix;
// 2 bad arguments; 3 the ledger cannot be reached; 4 inconclusive: the chain is consistent but no
// signed checkpoint could be checked (no public key, or nothing checkpointed yet).
import * as fs from "node:fs";
import * as path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { UserFacingError } from "../model/errors";
import { checkpointProblem, keyId, loadPublicKey } from "../model/ledger/core/checkpoint";
import { inclusionPath } from "../model/ledger/core/merkle";
import { checkProof, type InclusionProof } from "../model/ledger/core/proof";
import { readServiceConfig, type ServiceConfig } from "../runtime/ledger/config";
import type { ShardAccess } from "../runtime/ledger/pg/store";
import type { ShardVerifyResult } from "../runtime/ledger/verify-shard";
import type { LedgerPlan } from "../model/ledger/plan";
import { serviceRequest } from "../runtime/ledger/service-client";

// The database, Redis and service code (pg, ioredis) loads only when a ledger command runs, so
// that every other `nublar` command starts without it.
const lazy = {
    store: () => require("../runtime/ledger/pg/store") as typeof import("../runtime/ledger/pg/store"),
    sinks: () => require("../runtime/ledger/sinks") as typeof import("../runtime/ledger/sinks"),
    verify: () => require("../runtime/ledger/verify-shard") as typeof import("../runtime/ledger/verify-shard"),
    lab: () => require("../lab/ledger/up") as typeof import("../lab/ledger/up"),
    service: () => require("../runtime/ledger/service") as typeof import("../runtime/ledger/service"),
};

export const EXIT_TAMPERED = 1;
export const EXIT_UNREACHABLE = 3;
export const EXIT_INCONCLUSIVE = 4;

/** The ledger cannot be reached: exit 3. */
export class LedgerUnreachable extends UserFacingError { readonly kind = "unreachable"; }
/** A problem the user can fix: exit 1 with the message. */
export class LedgerUserError extends UserFacingError { readonly kind = "user"; }

const positiveInt = (v: string) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
    return n;
};

export interface LedgerCliContext {
    /** The ledger plan of a stack (lab layout included when the stack is a lab). */
    planFor(stack: string): LedgerPlan;
}

function configFor(ctx: LedgerCliContext, opts: { config?: string; stack: string }): ServiceConfig {
    if (opts.config) return readServiceConfig(opts.config);
    const plan = ctx.planFor(opts.stack);
    if (!plan.lab) throw new LedgerUserError(`stack ${opts.stack} runs its ledger on CloudNativePG, not on this machine: pass --config with its endpoints and auditor credentials`);
    return readServiceConfig(plan.lab.configFile);
}

function shardAccess(cfg: ServiceConfig, shard: string, who: "ingest" | "auditor" = "auditor"): ShardAccess {
    if (!cfg.shards.includes(shard)) throw new LedgerUserError(`unknown shard ${JSON.stringify(shard)}; this ledger has: ${cfg.shards.join(", ")}`);
    return { shard, endpoints: cfg.endpoints, user: cfg[who].user, password: cfg[who].password };
}

function readPublicKey(file: string) {
    try {
        return loadPublicKey(fs.readFileSync(file, "utf8"));
    } catch (err) {
        throw new LedgerUserError(`cannot use public key ${file}: ${(err as Error).message}`);
    }
}

async function reachable<T>(fn: () => Promise<T>): Promise<T> {
    try {
        return await fn();
    } catch (err) {
        if (err instanceof lazy.store().LedgerUnavailableError) throw new LedgerUnreachable(err.message);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ECONNREFUSED") throw new LedgerUnreachable(`the ledger service is not running (${(err as Error).message}); start the lab with: npm run lab`);
        throw err;
    }
}

function checkServiceAnswer(r: { status: number; body: Record<string, unknown> }) {
    if (r.status === 503) throw new LedgerUnreachable(String(r.body.error));
    if (r.status !== 200) throw new LedgerUserError(String(r.body.error ?? `HTTP ${r.status}`));
    return r.body;
}

const out = (json: boolean, value: unknown, text: () => string) => process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);

function verifyText(r: ShardVerifyResult, key?: string): string {
    const lines: string[] = [];
    const range = r.lastSeq === null ? "no entries" : `${r.from}..${r.lastSeq}`;
    lines.push(`shard ${r.shard}: ${r.entries.toLocaleString("en")} entries (${range}), ${r.checkpoints.checked} of ${r.checkpoints.total} checkpoints checked${key ? ` against key ${key}` : ""}`);
    if (r.ok && r.entries === 0 && r.checkpoints.total === 0) {
        lines.push("EMPTY: no entries and no checkpoints, in the database or the lake");
    } else if (r.ok) {
        lines.push(r.checkpoints.checked ? "OK: the chain is intact and matches every signed checkpoint" : "CONSISTENT, NOT PROVEN: the chain is intact but no signed checkpoint was checked");
    } else {
        lines.push(`TAMPERED: first divergent seq ${r.firstDivergentSeq}`);
        for (const f of r.findings) lines.push(`  ${String(f.seq).padStart(10)}  ${f.kind.padEnd(20)}  ${f.message}`);
        if (r.moreFindings) lines.push(`  ... and ${r.moreFindings} more findings (--json lists the first ${r.findings.length})`);
    }
    for (const w of r.warnings) lines.push(`note: ${w}`);
    lines.push(`read from ${r.endpoint} in ${(r.durationMs / 1000).toFixed(2)} s (${Math.round(r.entriesPerSecond).toLocaleString("en")} entries/s)`);
    return lines.join("\n");
}

export function registerLedgerCommands(program: Command, ctx: LedgerCliContext): void {
    const ledger = program.command("ledger").description("the Unicorn ledger: tamper-evident telemetry history (verify, proofs, status)");
    const stackOpt = () => new Option("-s, --stack <name>", "stack whose ledger to use (the lab runs one on this machine)").default("lab");
    const configOpt = () => new Option("-c, --config <file>", "ledger config (endpoints, credentials, key and lake) instead of the stack's lab ledger");
    const jsonOpt = () => new Option("--json", "machine-readable output");
    const shardOpt = () => new Option("--shard <name>", "shard (e.g. network, habitat, security, audit)").makeOptionMandatory();

    ledger.command("verify")
        .description("recompute a shard's hash chain and check it against every signed checkpoint; reports the first divergent seq.\n" +
            "Exit: 0 intact and signed, 1 tampering found, 3 unreachable, 4 consistent but not proven (no key or no checkpoint)")
        .addOption(shardOpt())
        .addOption(new Option("--from <seq>", "first seq to check (widened to its checkpoint's range)").argParser(positiveInt))
        .addOption(new Option("--to <seq>", "last seq to check").argParser(positiveInt))
        .addOption(new Option("--public-key <file>", "the checkpoint signer's public key (PEM) you trust; default: the ledger config's"))
        .addOption(new Option("--lake <dir>", "data lake folder with the published checkpoints; default: the ledger config's"))
        .addOption(new Option("--no-lake", "use only the database's own checkpoints"))
        .option("--roots", "also recompute every checkpoint's Merkle root (what inclusion proofs rest on); slower")
        .addOption(stackOpt()).addOption(configOpt()).addOption(jsonOpt())
        .action(async (opts: { shard: string; from?: number; to?: number; publicKey?: string; lake?: string | false; roots?: boolean; stack: string; config?: string; json?: boolean }) => {
            if (opts.from && opts.to && opts.from > opts.to) throw new LedgerUserError(`--from ${opts.from} is after --to ${opts.to}`);
            const cfg = configFor(ctx, opts);
            const access = shardAccess(cfg, opts.shard);
            const keyFile = opts.publicKey ?? cfg.publicKeyFile;
            const publicKey = fs.existsSync(keyFile) ? readPublicKey(keyFile) : undefined;
            if (!publicKey && opts.publicKey) throw new LedgerUserError(`no public key at ${opts.publicKey}`);
            const lake = opts.lake === false ? undefined : new (lazy.sinks().LakeDirectorySink)(typeof opts.lake === "string" ? opts.lake : cfg.lakeDir);
            const r = await reachable(() => lazy.verify().verifyShard({ access, from: opts.from, to: opts.to, publicKey, lake, checkRoots: opts.roots }));
            out(!!opts.json, r, () => verifyText(r, publicKey ? keyId(publicKey) : undefined));
            const empty = r.entries === 0 && r.checkpoints.total === 0;
            process.exitCode = !r.ok ? EXIT_TAMPERED : empty ? 0 : r.checkpoints.checked === 0 || !publicKey ? EXIT_INCONCLUSIVE : 0;
        });

    ledger.command("proof")
        .description("print an inclusion proof of one entry against its signed checkpoint, checkable offline (nublar ledger check-proof)")
        .addOption(shardOpt())
        .addOption(new Option("--seq <n>", "the entry's seq").argParser(positiveInt).makeOptionMandatory())
        .addOption(new Option("-o, --out <file>", "write the proof here instead of stdout"))
        .addOption(stackOpt()).addOption(configOpt())
        .action(async (opts: { shard: string; seq: number; out?: string; stack: string; config?: string }) => {
            const cfg = configFor(ctx, opts);
            const access = shardAccess(cfg, opts.shard);
            const publicKeyPem = fs.readFileSync(cfg.publicKeyFile, "utf8");
            const proof = await reachable(async () => {
                const store = await lazy.store().ShardStore.open(access, "any");
                try {
                    const entry = await store.entry(opts.seq);
                    if (!entry) throw new LedgerUserError(`shard ${opts.shard} has no entry ${opts.seq} (head is ${(await store.head()).seq})`);
                    const cp = (await store.checkpoints()).find((c) => c.checkpoint.from <= opts.seq && opts.seq <= c.checkpoint.seq);
                    if (!cp) throw new LedgerUserError(`entry ${opts.seq} is not covered by a signed checkpoint yet (one is cut every ${cfg.checkpoint.entries} entries or ${cfg.checkpoint.ms} ms); try again shortly`);
                    const problem = checkpointProblem(cp, loadPublicKey(publicKeyPem));
                    if (problem) throw new LedgerUserError(`the checkpoint covering ${opts.seq} does not verify (${problem}): run nublar ledger verify --shard ${opts.shard}`);
                    const leaves = await store.hashes(cp.checkpoint.from, cp.checkpoint.seq);
                    const p: InclusionProof = {
                        format: "unicorn/1", kind: "inclusion", shard: opts.shard,
                        entry: { seq: entry.seq, timeUs: entry.timeUs, time: new Date(entry.timeUs / 1000).toISOString(), source: entry.source, payload: entry.payload, prevHash: entry.prevHash.toString("hex"), hash: entry.hash.toString("hex") },
                        leafIndex: opts.seq - cp.checkpoint.from, treeSize: leaves.length,
                        path: inclusionPath(leaves, opts.seq - cp.checkpoint.from).map((h) => h.toString("hex")),
                        checkpoint: cp, publicKey: publicKeyPem,
                    };
                    return p;
                } finally {
                    await store.close();
                }
            });
            const text = `${JSON.stringify(proof, null, 2)}\n`;
            if (opts.out) {
                fs.writeFileSync(opts.out, text);
                process.stderr.write(`proof of ${opts.shard} #${opts.seq} against checkpoint ${proof.checkpoint.checkpoint.seq} written to ${opts.out}\n`);
            } else {
                process.stdout.write(text);
            }
        });

    ledger.command("check-proof")
        .description("check an inclusion proof offline (no database): the entry's hash, its Merkle path, and the checkpoint's signature.\n" +
            "Pin the signer with --public-key; without it the key inside the proof is used (and said so). Exit: 0 valid, 1 invalid")
        .argument("<file>", "proof file (from nublar ledger proof), or - for stdin")
        .addOption(new Option("--public-key <file>", "the signer's public key (PEM) you trust"))
        .addOption(jsonOpt())
        .action((file: string, opts: { publicKey?: string; json?: boolean }) => {
            let proof: InclusionProof;
            try {
                proof = JSON.parse(fs.readFileSync(file === "-" ? 0 : file, "utf8"));
            } catch (err) {
                throw new LedgerUserError(`cannot read proof ${file}: ${(err as Error).message}`);
            }
            const pinned = !!opts.publicKey;
            let key;
            try {
                key = opts.publicKey ? readPublicKey(opts.publicKey) : loadPublicKey(String(proof?.publicKey ?? ""));
            } catch (err) {
                throw new LedgerUserError(`no usable public key: ${(err as Error).message}`);
            }
            const r = checkProof(proof, key);
            const result = { ...r, shard: proof?.shard, seq: proof?.entry?.seq, checkpoint: proof?.checkpoint?.checkpoint?.seq, key: keyId(key), keyPinned: pinned };
            out(!!opts.json, result, () => [
                r.ok ? `VALID: entry ${result.seq} of shard ${result.shard} is in the history signed by checkpoint ${result.checkpoint} (key ${result.key})` : `INVALID: ${r.problems.join("; ")}`,
                ...(pinned ? [] : ["note: checked with the public key inside the proof; pin the signer's key with --public-key"]),
            ].join("\n"));
            process.exitCode = r.ok ? 0 : 1;
        });

    ledger.command("status")
        .description("shard heads, writers, cache and replication of the lab ledger")
        .addOption(stackOpt()).addOption(configOpt()).addOption(jsonOpt())
        .action(async (opts: { stack: string; config?: string; json?: boolean }) => {
            const cfg = configFor(ctx, opts);
            const svc = await reachable(() => serviceRequest(cfg.listen.socket, "GET", "/v1/status")).then(checkServiceAnswer);
            let replication: unknown;
            if (!opts.config) {
                const plan = ctx.planFor(opts.stack);
                const cluster = lazy.lab().clusterFor(plan, { ingest: "", auditor: "", replicator: "", redis: "" });
                replication = await cluster.replication().catch((err) => ({ error: (err as Error).message }));
            }
            const value = { ...svc, replication };
            out(!!opts.json, value, () => {
                const shards = svc.shards as Record<string, { head: number; primary: string; checkpoints: number; failovers: number }>;
                const lines = [`ledger of site ${svc.site}, ingest up ${svc.uptimeSeconds} s`];
                for (const [s, v] of Object.entries(shards)) lines.push(`  ${s.padEnd(10)} head ${String(v.head).padStart(9)}  writer on ${v.primary}  checkpoints ${v.checkpoints}  failovers ${v.failovers}`);
                const repl = replication as { primary?: string; standbys?: { name: string; state: string; syncState: string; flushLagBytes: number }[] } | undefined;
                if (repl?.primary) lines.push(`  replication: primary ${repl.primary}; ${repl.standbys!.map((s) => `${s.name} ${s.state}/${s.syncState} lag ${s.flushLagBytes} B`).join(", ") || "no standbys"}`);
                const cache = svc.cache as { status: string; hits: number; misses: number; errors: number } | null;
                if (cache) lines.push(`  cache: redis ${cache.status}, ${cache.hits} hits, ${cache.misses} misses, ${cache.errors} errors`);
                const col = svc.collector as { appended: number; duplicates: number; malformed: number } | null;
                if (col) lines.push(`  agent events: ${col.appended} appended, ${col.duplicates} duplicates skipped, ${col.malformed} malformed kept`);
                return lines.join("\n");
            });
        });

    ledger.command("append")
        .description("append one entry through the ingest service; prints its seq and hash once a quorum holds it")
        .addOption(shardOpt())
        .requiredOption("--source <name>", "who produced it (a node, sensor or tool)")
        .addOption(new Option("--key <key>", "idempotency key: appending the same key again returns the first entry"))
        .addOption(new Option("--time <iso>", "event time (default: now)"))
        .argument("<payload>", "the payload, as JSON")
        .addOption(stackOpt()).addOption(configOpt()).addOption(jsonOpt())
        .action(async (payloadText: string, opts: { shard: string; source: string; key?: string; time?: string; stack: string; config?: string; json?: boolean }) => {
            let payload: unknown;
            try {
                payload = JSON.parse(payloadText);
            } catch (err) {
                throw new LedgerUserError(`payload is not JSON: ${(err as Error).message}`);
            }
            const cfg = configFor(ctx, opts);
            const body = checkServiceAnswer(await reachable(() => serviceRequest(cfg.listen.socket, "POST", `/v1/shards/${encodeURIComponent(opts.shard)}/entries`, { entries: [{ source: opts.source, payload, key: opts.key, time: opts.time }] })));
            const [r] = body.results as { seq: number; hash: string; duplicate: boolean }[];
            out(!!opts.json, r, () => `${opts.shard} #${r.seq} ${r.hash}${r.duplicate ? " (already there: same key)" : ""}`);
        });

    ledger.command("read")
        .description("read entries (from the Redis cache when it holds them all, else PostgreSQL)")
        .addOption(shardOpt())
        .addOption(new Option("--from <seq>", "first seq").argParser(positiveInt).default(1))
        .addOption(new Option("--limit <n>", "how many").argParser(positiveInt).default(20))
        .addOption(stackOpt()).addOption(configOpt()).addOption(jsonOpt())
        .action(async (opts: { shard: string; from: number; limit: number; stack: string; config?: string; json?: boolean }) => {
            const cfg = configFor(ctx, opts);
            const body = checkServiceAnswer(await reachable(() => serviceRequest(cfg.listen.socket, "GET", `/v1/shards/${encodeURIComponent(opts.shard)}/entries?from=${opts.from}&limit=${opts.limit}`)));
            const entries = body.entries as { seq: number; time: string; source: string; payload: unknown; hash: string }[];
            out(!!opts.json, body, () => [`${entries.length} entries from the ${body.source}`, ...entries.map((e) => `${String(e.seq).padStart(8)}  ${e.time}  ${e.source.padEnd(24)}  ${JSON.stringify(e.payload).slice(0, 100)}`)].join("\n"));
        });

    ledger.command("failover")
        .description("lab: promote the standby holding the most WAL, then rebuild the old primary as its standby.\n" +
            "With --kill, first crash the current primary (kill -9): a failover drill")
        .option("--kill", "kill the current primary first")
        .addOption(stackOpt()).addOption(jsonOpt())
        .action(async (opts: { kill?: boolean; stack: string; json?: boolean }) => {
            const cluster = await labCluster(ctx, opts.stack);
            const old = await cluster.primary();
            if (old && !opts.kill) throw new LedgerUserError(`${old.name} is a running primary; use --kill to crash it first (a drill), or stop it`);
            const t0 = Date.now();
            if (old) old.kill();
            const promoted = await cluster.failover((m) => process.stderr.write(`${m}\n`));
            const promotedMs = Date.now() - t0;
            const stale = cluster.instances.filter((i) => !i.pid());
            for (const s of stale) {
                process.stderr.write(`rebuilding ${s.name} as a standby of ${promoted.name}\n`);
                await cluster.cloneStandby(s, promoted);
            }
            await cluster.waitForQuorum();
            const repl = await cluster.replication();
            out(!!opts.json, { promoted: promoted.name, promotedMs, rebuilt: stale.map((s) => s.name), replication: repl }, () =>
                `primary is now ${promoted.name} (promoted ${promotedMs} ms after the start); rebuilt ${stale.map((s) => s.name).join(", ") || "nothing"}; standbys: ${repl?.standbys.map((s) => `${s.name} ${s.syncState}`).join(", ")}`);
        });

    ledger.command("rebuild")
        .description("lab: rebuild a stopped or stale instance (e.g. an old primary after a failover) as a standby of the current primary")
        .argument("<instance>", "n0, n1, ...")
        .addOption(stackOpt())
        .action(async (name: string, opts: { stack: string }) => {
            const cluster = await labCluster(ctx, opts.stack);
            const inst = cluster.instances.find((i) => i.name === name);
            if (!inst) throw new LedgerUserError(`no instance ${name}; the lab ledger has ${cluster.instances.map((i) => i.name).join(", ")}`);
            const primary = await cluster.primary();
            if (!primary) throw new LedgerUnreachable("no running primary to follow; run nublar ledger failover first");
            if (primary === inst) throw new LedgerUserError(`${name} is the running primary`);
            process.stderr.write(`rebuilding ${name} from a base backup of ${primary.name}\n`);
            await cluster.cloneStandby(inst, primary);
            await cluster.waitForQuorum();
            const repl = await cluster.replication();
            process.stdout.write(`${name} follows ${primary.name}; standbys: ${repl?.standbys.map((s) => `${s.name} ${s.state}/${s.syncState}`).join(", ")}\n`);
        });

    ledger.command("serve")
        .description("run the ingest service (the lab starts it; see runtime/ledger/service.ts)")
        .requiredOption("-c, --config <file>", "service config (JSON, mode 0600)")
        .action(async (opts: { config: string }) => {
            await lazy.service().runService(readServiceConfig(opts.config));
            await new Promise(() => undefined);
        });
}

/** The lab's cluster, with the passwords it needs to rebuild standbys. */
async function labCluster(ctx: LedgerCliContext, stack: string) {
    const plan = ctx.planFor(stack);
    const cfg = configFor(ctx, { stack });
    const cluster = lazy.lab().clusterFor(plan, { ingest: cfg.ingest.password, auditor: cfg.auditor.password, replicator: "", redis: cfg.redis?.password ?? "" });
    // The replicator password lives only in the standbys' config; read it back from there.
    cluster.layout.passwords.replicator = readReplicatorPassword(cluster.instances.map((i) => i.dataDir));
    return cluster;
}

function readReplicatorPassword(dataDirs: string[]): string {
    for (const d of dataDirs) {
        try {
            const m = /password=(\S+)/.exec(fs.readFileSync(path.join(d, "postgresql.auto.conf"), "utf8"));
            if (m) return m[1];
        } catch {
            // not readable or not a standby
        }
    }
    throw new LedgerUserError("cannot find the replication password in any standby's config; is the lab ledger up?");
}
