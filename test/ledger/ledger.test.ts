// The Unicorn ledger against real PostgreSQL 15 (primary + 2 standbys, ANY 1 quorum) and Redis,
// started on ::1 by this file and removed at its end.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { generateSigningKey } from "../../model/ledger/core/checkpoint";
import { chainEntry, genesisHead } from "../../model/ledger/core/encoding";
import { LedgerCache } from "../../runtime/ledger/cache";
import { ShardReader } from "../../runtime/ledger/reader";
import { LakeDirectorySink } from "../../runtime/ledger/sinks";
import { ShardStore } from "../../runtime/ledger/pg/store";
import { databaseName } from "../../runtime/ledger/pg/schema";
import { verifyShard } from "../../runtime/ledger/verify-shard";
import { ShardWriter, WriterError, type AppendItem } from "../../runtime/ledger/writer";
import { LOOPBACK, type LedgerCluster } from "../../lab/ledger/cluster";
import { auditorAccess, ingestAccess, startTestCluster } from "./fixture";

const TAMPER = ["t_payload", "t_delete", "t_reorder", "t_truncate", "t_rewrite"];
const SHARDS = ["network", "habitat", "idem", "cache", ...TAMPER];
const keys = generateSigningKey();
let cluster: LedgerCluster;
let lake: LakeDirectorySink;

before(async () => {
    cluster = await startTestCluster(SHARDS);
    lake = new LakeDirectorySink(`${cluster.layout.dir}/lake`);
});
after(async () => {
    await cluster?.destroy();
});

const items = (n: number, tag: string, keyed = false): AppendItem[] =>
    Array.from({ length: n }, (_, i) => ({ source: `sensor-${i % 7}`, payload: { tag, i, reading: { c: 20 + (i % 10) / 10 } }, ...(keyed ? { key: `${tag}-${i}` } : {}) }));

async function openWriter(shard: string, every = { entries: 500, ms: 60_000 }) {
    return ShardWriter.open({ access: ingestAccess(cluster, shard), signingKey: keys.privateKey, checkpointEvery: every, sinks: [lake] });
}

async function superuser<T>(shard: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const primary = (await cluster.primary())!;
    return primary.superuser(databaseName(shard), fn);
}

const verify = (shard: string, extra: { from?: number; to?: number; noLake?: boolean } = {}) =>
    verifyShard({ access: auditorAccess(cluster, shard), publicKey: keys.publicKey, lake: extra.noLake ? undefined : lake, from: extra.from, to: extra.to });

describe("the database enforces append-only", () => {
    test("the ingest role may insert and select, nothing else; triggers stop even the table owner's changes", async () => {
        const w = await openWriter("network");
        await w.append(items(10, "ro"));
        await w.close();
        const store = await ShardStore.open(ingestAccess(cluster, "network"), "primary");
        try {
            for (const sql of ["UPDATE ledger.entries SET payload = '{}' WHERE seq = 1", "DELETE FROM ledger.entries WHERE seq = 1", "TRUNCATE ledger.entries", "DROP TABLE ledger.entries", "CREATE TABLE ledger.x (a int)"]) {
                await assert.rejects(store.client.query(sql), /permission denied|must be owner/, sql);
            }
        } finally {
            await store.close();
        }
        // The owner role cannot log in; act as it from a superuser session to show the triggers hold.
        await superuser("network", async (c) => {
            await c.query("SET ROLE unicorn_owner");
            await assert.rejects(c.query("UPDATE ledger.entries SET payload = '{}' WHERE seq = 1"), /append-only: UPDATE is not allowed/);
            await assert.rejects(c.query("DELETE FROM ledger.entries WHERE seq = 2"), /append-only: DELETE is not allowed/);
            await assert.rejects(c.query("TRUNCATE ledger.entries"), /append-only: TRUNCATE is not allowed/);
            await assert.rejects(c.query("DELETE FROM ledger.shard"), /append-only: DELETE is not allowed/);
            await assert.rejects(c.query("TRUNCATE ledger.checkpoints"), /append-only: TRUNCATE is not allowed/);
        });
        const auditor = await ShardStore.open(auditorAccess(cluster, "network"), "any");
        try {
            await assert.rejects(auditor.client.query("INSERT INTO ledger.checkpoints VALUES (1, '{}', 'x')"), /permission denied/);
        } finally {
            await auditor.close();
        }
        // And nobody else gets in: no password, no role.
        const stranger = new pg.Client({ host: LOOPBACK, port: cluster.layout.pgPorts[0], user: "postgres", password: "guess", database: databaseName("network") });
        await assert.rejects(stranger.connect(), /no pg_hba.conf entry|password authentication failed/);
    });

    test("a second writer for the same shard is refused", async () => {
        const w = await openWriter("habitat");
        try {
            await assert.rejects(openWriter("habitat"), WriterError);
        } finally {
            await w.close();
        }
    });

    test("a batch is one transaction, acknowledged with its seqs and hashes; shards are separate chains", async () => {
        const net = await openWriter("network");
        const hab = await openWriter("habitat");
        try {
            const before = net.headSeq;
            const r = await net.append(items(250, "tx"));
            assert.deepEqual(r.map((x) => x.seq), Array.from({ length: 250 }, (_, i) => before + i + 1));
            const h = await hab.append(items(3, "hab"));
            assert.deepEqual(h.map((x) => x.seq), [1, 2, 3], "habitat counts from 1 on its own");
            // A bad entry rejects the whole request, naming it; nothing is written.
            await assert.rejects(net.append([...items(2, "bad"), { source: "x", payload: undefined }]), /entry 2: payload is missing/);
            await assert.rejects(net.append([{ source: "", payload: 1 }]), /entry 0: source must be a non-empty string/);
            assert.equal(net.headSeq, before + 250);
        } finally {
            await net.close();
            await hab.close();
        }
        assert.equal((await verify("network")).ok, true);
    });
});

describe("idempotency keys", () => {
    test("a retried batch, a partly new retry and a key repeated inside one batch never duplicate", async () => {
        const w = await openWriter("idem");
        try {
            const first = await w.append(items(100, "a", true));
            const retry = await w.append(items(100, "a", true));
            assert.deepEqual(retry.map((r) => r.seq), first.map((r) => r.seq));
            assert.ok(retry.every((r) => r.duplicate) && first.every((r) => !r.duplicate));
            const mixed = await w.append(items(150, "a", true));
            assert.equal(mixed.filter((r) => r.duplicate).length, 100);
            assert.deepEqual(mixed.slice(100).map((r) => r.seq), Array.from({ length: 50 }, (_, i) => 101 + i));
            const twice = await w.append([{ source: "s", payload: 1, key: "k" }, { source: "s", payload: 2, key: "k" }]);
            assert.equal(twice[0].seq, twice[1].seq);
            assert.equal(twice[1].duplicate, true);
            // Concurrent retries of the same requests, as clients timing out and resending would do.
            const concurrent = await Promise.all(Array.from({ length: 8 }, () => w.append(items(40, "c", true))));
            for (const c of concurrent) assert.deepEqual(c.map((r) => r.seq), concurrent[0].map((r) => r.seq));
            // The writer restarted (a new process): keys still hold, from the database.
            await w.close();
            const w2 = await openWriter("idem");
            const again = await w2.append(items(150, "a", true));
            assert.deepEqual(again.map((r) => r.seq), mixed.map((r) => r.seq));
            await w2.close();
        } finally {
            await w.close();
        }
        const count = await superuser("idem", async (c) => (await c.query("SELECT count(*)::int AS n, count(DISTINCT idem_key)::int AS k FROM ledger.entries")).rows[0]);
        assert.deepEqual(count, { n: 150 + 1 + 40, k: 150 + 1 + 40 });
        assert.equal((await verify("idem")).ok, true);
    });

    test("a connection killed mid-load: the writer reconnects, works out what committed, and loses or repeats nothing", async () => {
        const w = await openWriter("idem", { entries: 200, ms: 60_000 });
        const acked: number[] = [];
        let stop = false;
        const load = (async () => {
            for (let i = 0; !stop; i++) {
                const r = await w.append(items(50, `kill-${i}`));
                acked.push(...r.map((x) => x.seq));
            }
        })();
        for (let k = 0; k < 5; k++) {
            await new Promise((r) => setTimeout(r, 150));
            await superuser("idem", (c) => c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'unicorn_ingest' AND datname = current_database()"));
        }
        stop = true;
        await load;
        await w.close();
        assert.ok(w.stats.failovers >= 1, `the kills were seen (${w.stats.failovers})`);
        const rows = await superuser("idem", async (c) => (await c.query("SELECT seq FROM ledger.entries ORDER BY seq")).rows.map((r) => Number(r.seq)));
        const stored = new Set(rows);
        assert.ok(acked.every((s) => stored.has(s)), "every acknowledged entry is stored");
        assert.equal(new Set(acked).size, acked.length, "no seq acknowledged twice");
        const report = await verify("idem");
        assert.equal(report.ok, true, JSON.stringify(report.findings));
    });
});

describe("signed checkpoints", () => {
    test("every N entries a checkpoint is signed, stored and published with its leaves; the timer cuts one too", async () => {
        const w = await ShardWriter.open({ access: ingestAccess(cluster, "habitat"), signingKey: keys.privateKey, checkpointEvery: { entries: 100, ms: 300 }, sinks: [lake] });
        try {
            const start = w.headSeq;
            await w.append(items(250, "cp"));
            // Checkpoints are cut right after the batch that completes them is acknowledged.
            for (let i = 0; i < 100 && lake.read("habitat").checkpoints.filter((c) => c.signed.checkpoint.seq > start).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
            const published = lake.read("habitat").checkpoints.map((c) => c.signed.checkpoint);
            const mine = published.filter((c) => c.seq > start);
            assert.ok(mine.length >= 2, "two checkpoints for 250 entries at N=100");
            await new Promise((r) => setTimeout(r, 900));
            const after = lake.read("habitat").checkpoints.map((c) => c.signed.checkpoint);
            assert.equal(after.at(-1)!.seq, w.headSeq, "the timer checkpointed the tail");
            for (let i = 1; i < after.length; i++) assert.equal(after[i].from, after[i - 1].seq + 1, "ranges are contiguous");
            const db = await superuser("habitat", async (c) => (await c.query("SELECT count(*)::int AS n FROM ledger.checkpoints")).rows[0].n);
            assert.equal(db, after.length, "the database and the lake hold the same checkpoints");
        } finally {
            await w.close();
        }
        const report = await verify("habitat");
        assert.equal(report.ok, true, JSON.stringify(report.findings));
        assert.equal(report.checkpoints.checked, report.checkpoints.total);
    });
});

describe("tampering, as a superuser who bypasses the triggers", () => {
    const N = 2000;
    before(async () => {
        for (const shard of TAMPER) {
            const w = await openWriter(shard);
            for (let i = 0; i < 4; i++) await w.append(items(N / 4, `${shard}-${i}`));
            await w.close();
        }
    });
    const bypass = (shard: string, sql: string) => superuser(shard, async (c) => {
        await c.query("SET session_replication_role = replica"); // triggers off: what a superuser can do
        await c.query(sql);
    });
    const expectAt = async (shard: string, seq: number, kind: string) => {
        const r = await verify(shard);
        assert.equal(r.ok, false);
        assert.equal(r.firstDivergentSeq, seq, JSON.stringify(r.findings.slice(0, 3)));
        assert.equal(r.findings.find((f) => f.seq === seq)?.kind, kind, JSON.stringify(r.findings.slice(0, 3)));
        return r;
    };

    test("a modified payload: 'altered' at its seq", async () => {
        assert.equal((await verify("t_payload")).ok, true);
        await bypass("t_payload", `UPDATE ledger.entries SET payload = '{"tag":"forged"}' WHERE seq = 1234`);
        await expectAt("t_payload", 1234, "altered");
    });

    test("a deleted entry: 'missing' at its seq", async () => {
        await bypass("t_delete", "DELETE FROM ledger.entries WHERE seq = 777");
        await expectAt("t_delete", 777, "missing");
    });

    test("two entries swapped: diverges at the lower seq", async () => {
        await bypass("t_reorder", "UPDATE ledger.entries SET seq = 999999 WHERE seq = 300; UPDATE ledger.entries SET seq = 300 WHERE seq = 1600; UPDATE ledger.entries SET seq = 1600 WHERE seq = 999999");
        const r = await expectAt("t_reorder", 300, "altered");
        assert.ok(r.findings.some((f) => f.seq === 1600 && f.kind === "altered"));
    });

    test("a truncated tail: caught through the checkpoint that signed it", async () => {
        await bypass("t_truncate", "DELETE FROM ledger.entries WHERE seq > 1800");
        const r = await expectAt("t_truncate", 1801, "missing");
        assert.match(r.findings[0].message, /1801\.\.2000 were removed/);
    });

    test("an edit with the whole chain recomputed: only the signed checkpoints catch it, at the exact seq", async () => {
        // Rewrite from 1111 on, recomputing every later hash exactly as the writer would.
        await superuser("t_rewrite", async (c) => {
            const rows = (await c.query("SELECT seq, (extract(epoch from time) * 1000000)::int8 AS us, source, payload FROM ledger.entries WHERE seq >= 1110 ORDER BY seq")).rows;
            const prev = (await c.query("SELECT hash FROM ledger.entries WHERE seq = 1110")).rows[0].hash as Buffer;
            let head = { seq: 1110, hash: prev };
            const updates: { seq: number; payload: string; prev: string; hash: string }[] = [];
            for (const r of rows.slice(1)) {
                const payload = Number(r.seq) === 1111 ? '{"tag":"rewritten"}' : r.payload;
                const e = chainEntry(head, Number(r.us), r.source, payload);
                updates.push({ seq: e.seq, payload, prev: e.prevHash.toString("hex"), hash: e.hash.toString("hex") });
                head = e;
            }
            await c.query("SET session_replication_role = replica");
            await c.query(`UPDATE ledger.entries e SET payload = u.p, prev_hash = decode(u.ph, 'hex'), hash = decode(u.h, 'hex')
                           FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) AS u(s, p, ph, h) WHERE e.seq = u.s`,
            [updates.map((u) => u.seq), updates.map((u) => u.payload), updates.map((u) => u.prev), updates.map((u) => u.hash)]);
        });
        const noKey = await verifyShard({ access: auditorAccess(cluster, "t_rewrite") });
        assert.equal(noKey.ok, true, "the chain alone looks intact: that is the attack");
        await expectAt("t_rewrite", 1111, "rewritten");
        const dbOnly = await verify("t_rewrite", { noLake: true });
        assert.equal(dbOnly.firstDivergentSeq, 1001, "without the lake's leaves: the start of the checkpoint's range");
        // And the writer refuses to extend a ledger that contradicts its last checkpoint.
        await assert.rejects(openWriter("t_rewrite"), /does not match its signed checkpoint/);
    });

    test("verify over a range checks only that range", async () => {
        // t_payload was altered at 1234; checkpoints every 500.
        const r = await verify("t_payload", { from: 1600, to: 2000 });
        assert.equal(r.ok, true, JSON.stringify(r.findings));
        assert.equal(r.from, 1501, "widened to the checkpoint range holding 1600");
        assert.equal(r.checkpoints.checked, 1);
        const before = await verify("t_payload", { from: 1, to: 1000 });
        assert.equal(before.ok, true);
        const around = await verify("t_payload", { from: 1200, to: 1300 });
        assert.equal(around.firstDivergentSeq, 1234);
    });
});

describe("the Redis cache tier", () => {
    test("serves exactly what PostgreSQL holds; when Redis is down reads fall back and ingest carries on", async () => {
        const redis = { host: LOOPBACK, port: cluster.layout.redisPort, password: cluster.layout.passwords.redis };
        const cache = new LedgerCache(redis);
        const w = await ShardWriter.open({ access: ingestAccess(cluster, "cache"), signingKey: keys.privateKey, checkpointEvery: { entries: 500, ms: 60_000 }, sinks: [lake], cache });
        const reader = new ShardReader(auditorAccess(cluster, "cache"), cache);
        try {
            await w.append(items(300, "warm"));
            await new Promise((r) => setTimeout(r, 100)); // cache writes are asynchronous, after the ack
            const hit = await reader.read(1, 300);
            assert.equal(hit.source, "cache");
            const db = await ShardStore.open(auditorAccess(cluster, "cache"), "any");
            const truth = await db.entries(1, 1000);
            assert.deepEqual(hit.entries.map((e) => [e.seq, e.hash.toString("hex"), e.payload]), truth.slice(0, 300).map((e) => [e.seq, e.hash.toString("hex"), e.payload]));
            // Past the cached head: never a partial answer from the cache.
            const past = await reader.read(250, 100);
            assert.deepEqual([past.entries.length, past.entries.at(-1)!.seq], [51, 300]);

            cluster.stopRedis();
            await new Promise((r) => setTimeout(r, 200));
            const during = await w.append(items(200, "redis-down"));
            assert.equal(during.length, 200, "ingest carries on without Redis");
            const fallback = await reader.read(280, 100);
            assert.equal(fallback.source, "database");
            assert.deepEqual(fallback.entries.map((e) => e.seq), Array.from({ length: 100 }, (_, i) => 280 + i));

            await cluster.startRedis();
            for (let i = 0; i < 50 && cache.redis.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 100));
            const cold = await reader.read(301, 100);
            assert.equal(cold.source, "database", "a restarted, empty Redis is a miss");
            await new Promise((r) => setTimeout(r, 100));
            assert.equal((await reader.read(301, 100)).source, "cache", "then backfilled");
            await w.append(items(100, "after"));
            await new Promise((r) => setTimeout(r, 100));
            // Coherence: every cached entry equals the database's, and the head never runs ahead.
            const all = await db.entries(1, 10_000);
            const id = await reader.id();
            const cachedHead = await cache.head(id);
            assert.ok(cachedHead && cachedHead.seq <= all.at(-1)!.seq);
            let compared = 0;
            for (const e of all) {
                const c = await cache.entries(id, e.seq, 1);
                if (!c) continue;
                compared++;
                assert.deepEqual([c[0].hash, c[0].payload, c[0].timeUs, c[0].source], [e.hash, e.payload, e.timeUs, e.source], `seq ${e.seq}`);
            }
            // 301..400 backfilled after the restart, plus the 100 appended after it.
            assert.ok(compared >= 200, `compared ${compared} cached entries`);
            await db.close();
        } finally {
            await w.close();
            await reader.close();
            await cache.close();
        }
    });
});

test("shard heads are independent chains from distinct genesis hashes", () => {
    assert.notDeepEqual(genesisHead("network").hash, genesisHead("habitat").hash);
});
