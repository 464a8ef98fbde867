// bench/ledger: the Unicorn ledger on a real PostgreSQL 15 primary + 2 standbys (ANY 1 quorum
// commit, fsync on) and Redis, all on ::1, started fresh for the run.
//   1. Ingest throughput, closed loop: producers append batches of B entries and wait for the
//      acknowledgement, for B = 1, 10, 100, 1000, on 1 shard and on 4 shards. The peer in the
//      same run: plain INSERTs of the same rows into a plain table (no chain, no triggers, no
//      idempotency keys) by the same number of producers, at the same quorum commit.
//   2. Append latency, open loop: single events arriving at a fixed rate (5k, 17k and 50k per
//      second) on 1 shard; latency from arrival to acknowledgement, p50 and p99.
//   Each cell runs --rounds times (3), interleaved with its peer: this machine is shared and
//   noisy, so rates are the median of the rounds and ratios are taken round by round.
//   3. Verify speed: `nublar ledger verify`'s code over a shard of N entries, beside the peer
//      that only reads the same rows with the same COPY and does nothing with them.
// Usage: node --import tsx bench/ledger.ts [--seconds S] [--verify-entries N] [--producers P]
import * as os from "node:os";
import pg from "pg";
import { generateSigningKey } from "../model/ledger/core/checkpoint";
import { LakeDirectorySink } from "../runtime/ledger/sinks";
import { ShardStore } from "../runtime/ledger/pg/store";
import { databaseName } from "../runtime/ledger/pg/schema";
import { verifyShard } from "../runtime/ledger/verify-shard";
import { ShardWriter, type AppendItem } from "../runtime/ledger/writer";
import { auditorAccess, ingestAccess, startTestCluster } from "../test/ledger/fixture";
import { summary, writeResult } from "./machine";

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : def;
};
const SECONDS = arg("seconds", 4);
/** Each cell runs this many times, interleaved with its peer, and the medians are reported. */
const ROUNDS = arg("rounds", 3);
const VERIFY_ENTRIES = arg("verify-entries", 1_000_000);
const PRODUCERS = arg("producers", 32);
const CHECKPOINT_ENTRIES = arg("checkpoint-entries", 1000);
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const BATCHES = args.includes("--batches") ? args[args.indexOf("--batches") + 1].split(",").map(Number) : [1, 10, 100, 1000];
const RATES = args.includes("--rates") ? args[args.indexOf("--rates") + 1].split(",").map(Number) : [5_000, 17_000, 50_000];
const log = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

// A park-like payload: one sensor reading, about 120 bytes of canonical JSON.
let counter = 0;
const item = (): AppendItem => {
    const n = counter++;
    return { source: `sensor-${n % 64}`, payload: { kind: "reading", paddock: `p-${n % 12}`, temperature_c: 20 + (n % 100) / 10, fence_kv: 10, n } };
};

interface Run { entriesPerSecond: number; latencies: number[]; entries: number }

/** Closed loop: each producer appends a batch, waits for its ack, repeats, for SECONDS. */
async function closedLoop(append: (batch: AppendItem[], producer: number) => Promise<unknown>, batch: number, producers: number): Promise<Run> {
    const latencies: number[] = [];
    let entries = 0;
    const end = performance.now() + SECONDS * 1000;
    const start = performance.now();
    await Promise.all(Array.from({ length: producers }, async (_, p) => {
        while (performance.now() < end) {
            const items = Array.from({ length: batch }, item);
            const t = performance.now();
            await append(items, p);
            latencies.push(performance.now() - t);
            entries += batch;
        }
    }));
    const secs = (performance.now() - start) / 1000;
    return { entriesPerSecond: Math.round(entries / secs), latencies, entries };
}

/** Open loop: single events arrive every 1/rate s (in 1 ms ticks); latency from arrival to ack. */
async function openLoop(writer: ShardWriter, rate: number): Promise<Run & { backlogged: boolean }> {
    const latencies: number[] = [];
    const pending: Promise<void>[] = [];
    const start = performance.now();
    const end = start + SECONDS * 1000;
    let sent = 0;
    let acked = 0;
    while (performance.now() < end) {
        const due = Math.floor(((performance.now() - start) / 1000) * rate);
        for (; sent < due; sent++) {
            const arrival = start + (sent / rate) * 1000; // when the event arrived, not when we got to it
            pending.push(writer.append([item()]).then(() => { latencies.push(performance.now() - arrival); acked++; }));
        }
        // Yield to I/O between arrivals. (1 ms timer ticks instead made arrivals late by whole
        // event-loop stalls and raised p50 several-fold in trials; this spin costs CPU instead.)
        await new Promise((r) => setImmediate(r));
    }
    const sentBy = sent;
    await Promise.all(pending);
    const secs = (performance.now() - start) / 1000;
    return { entriesPerSecond: Math.round(acked / secs), latencies, entries: acked, backlogged: secs > SECONDS * 1.2 || sentBy < rate * SECONDS * 0.95 };
}

async function main() {
    const shards = ["b1", "b2", "b3", "b4", "verify"];
    log(`starting PostgreSQL primary + 2 standbys and Redis on ::1 (${os.cpus().length} CPUs)`);
    const cluster = await startTestCluster(shards);
    const keys = generateSigningKey();
    const lake = new LakeDirectorySink(`${cluster.layout.dir}/lake`);
    const result: Record<string, unknown> = { seconds: SECONDS, rounds: ROUNDS, producers: PRODUCERS, commit: "synchronous_commit=on, synchronous_standby_names='ANY 1 (n1, n2)', fsync=on", checkpointEvery: { entries: CHECKPOINT_ENTRIES, ms: 5000 } };
    try {
        // The peer: a plain table with the same columns and no ledger machinery.
        const primary = cluster.instances[0];
        await primary.superuser(databaseName("b1"), async (c) => {
            await c.query("CREATE TABLE ledger.plain (id bigserial PRIMARY KEY, time timestamptz NOT NULL, source text NOT NULL, payload jsonb NOT NULL)");
        });
        // (As the superuser over the unix socket: the ingest role's connection limit is for the ledger.)
        const pool = new pg.Pool({ host: primary.socketDir, port: primary.port, user: "postgres", database: databaseName("b1"), max: 8 });
        const plainInsert = async (batch: AppendItem[]) => {
            await pool.query("INSERT INTO ledger.plain (time, source, payload) SELECT now(), s, p::jsonb FROM unnest($1::text[], $2::text[]) AS u(s, p)",
                [batch.map((b) => b.source), batch.map((b) => JSON.stringify(b.payload))]);
        };

        const writers: ShardWriter[] = [];
        for (const s of ["b1", "b2", "b3", "b4"]) {
            writers.push(await ShardWriter.open({ access: ingestAccess(cluster, s), signingKey: keys.privateKey, checkpointEvery: { entries: CHECKPOINT_ENTRIES, ms: 5000 }, sinks: [lake] }));
        }
        const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        /** Rounds of the same cell: the median rate, latency percentiles over every append. */
        const pooled = (runs: Run[]) => {
            const all = runs.flatMap((r) => r.latencies);
            return { entriesPerSecond: median(runs.map((r) => r.entriesPerSecond)), perRound: runs.map((r) => r.entriesPerSecond), latencyMs: summary(all) };
        };
        const throughput: unknown[] = [];
        for (const batch of ONLY && ONLY !== "throughput" ? [] : BATCHES) {
            const producers = batch >= 1000 ? Math.min(PRODUCERS, 8) : PRODUCERS;
            const runs = { plain: [] as Run[], one: [] as Run[], four: [] as Run[] };
            for (let round = 0; round < ROUNDS; round++) {
                runs.plain.push(await closedLoop((b) => plainInsert(b), batch, producers));
                runs.one.push(await closedLoop((b) => writers[0].append(b), batch, producers));
                runs.four.push(await closedLoop((b, p) => writers[p % 4].append(b), batch, producers));
            }
            const [plain, one, four] = [pooled(runs.plain), pooled(runs.one), pooled(runs.four)];
            const ratios = runs.one.map((r, i) => r.entriesPerSecond / runs.plain[i].entriesPerSecond);
            const row = { batch, producers, plainInsert: plain, ledger1Shard: one, ledger4Shards: four, ratio1ShardToPlainMedian: +median(ratios).toFixed(2), ratio1ShardToPlainPerRound: ratios.map((r) => +r.toFixed(2)) };
            throughput.push(row);
            log(`batch ${batch} x ${producers} producers (median of ${ROUNDS}): plain ${plain.entriesPerSecond}/s (p50 ${plain.latencyMs.p50} ms, p99 ${plain.latencyMs.p99}), ledger 1 shard ${one.entriesPerSecond}/s (p50 ${one.latencyMs.p50}, p99 ${one.latencyMs.p99}), 4 shards ${four.entriesPerSecond}/s (p50 ${four.latencyMs.p50}, p99 ${four.latencyMs.p99}); ledger/plain ${row.ratio1ShardToPlainMedian} (${row.ratio1ShardToPlainPerRound.join(", ")})`);
        }
        result.throughput = throughput;

        const latency: unknown[] = [];
        for (const rate of ONLY && ONLY !== "latency" ? [] : RATES) {
            const runs: (Run & { backlogged: boolean })[] = [];
            for (let round = 0; round < ROUNDS; round++) runs.push(await openLoop(writers[0], rate));
            const r = { offered: rate, ...pooled(runs), backlogged: runs.some((x) => x.backlogged) };
            latency.push(r);
            log(`open loop ${rate}/s on 1 shard (median of ${ROUNDS}): achieved ${r.entriesPerSecond}/s, latency p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms${r.backlogged ? " (could not keep up)" : ""}`);
        }
        result.openLoopLatency = latency;
        result.writerStats = writers.map((w) => ({ shard: w.shard, ...w.stats }));
        for (const w of writers) await w.close();
        await pool.end();

        if (ONLY && ONLY !== "verify") {
            log("(--only: no verify run, no results file)");
            return;
        }
        // Verify: fill a shard with N entries, then verify it, beside a bare COPY of the same rows.
        log(`filling the verify shard with ${VERIFY_ENTRIES} entries`);
        const vw = await ShardWriter.open({ access: ingestAccess(cluster, "verify"), signingKey: keys.privateKey, checkpointEvery: { entries: 1000, ms: 60_000 }, sinks: [lake], maxBatch: 10_000 });
        const fill = performance.now();
        for (let n = 0; n < VERIFY_ENTRIES; n += 10_000) {
            await Promise.all([0, 1].map(() => vw.append(Array.from({ length: 5_000 }, item))));
        }
        await vw.checkpointNow();
        const fillSecs = (performance.now() - fill) / 1000;
        await vw.close();
        const runs: { verify: number; copyOnly: number }[] = [];
        for (let i = 0; i < 3; i++) {
            const store = await ShardStore.open(auditorAccess(cluster, "verify"), "any");
            const t = performance.now();
            const rows = await store.copyRows(1, null, () => undefined);
            const copyOnly = rows / ((performance.now() - t) / 1000);
            await store.close();
            const r = await verifyShard({ access: auditorAccess(cluster, "verify"), publicKey: keys.publicKey, lake });
            if (!r.ok) throw new Error(`verify found problems in an untouched shard: ${JSON.stringify(r.findings.slice(0, 3))}`);
            runs.push({ verify: Math.round(r.entriesPerSecond), copyOnly: Math.round(copyOnly) });
            log(`verify run ${i + 1}: ${r.entries} entries, ${r.checkpoints.checked} checkpoints: ${Math.round(r.entriesPerSecond)} entries/s; COPY alone ${Math.round(copyOnly)} rows/s`);
        }
        const med = median;
        result.verify = {
            entries: VERIFY_ENTRIES, fillSeconds: +fillSecs.toFixed(1), fillEntriesPerSecond: Math.round(VERIFY_ENTRIES / fillSecs), runs,
            medianEntriesPerSecond: med(runs.map((r) => r.verify)), medianCopyOnlyRowsPerSecond: med(runs.map((r) => r.copyOnly)),
            ratioToCopyOnly: +(med(runs.map((r) => r.verify)) / med(runs.map((r) => r.copyOnly))).toFixed(2),
        };
        const file = writeResult("ledger", result);
        log(`results in ${file}`);
    } finally {
        await cluster.destroy();
    }
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
