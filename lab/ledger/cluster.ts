// A Unicorn ledger cluster on this machine, for the lab and the tests: a PostgreSQL primary and
// its standbys (Debian's postgresql-15) streaming over loopback, with synchronous quorum commit
// (`ANY 1 (s1, s2)`), plus a Redis cache. In production CloudNativePG runs the same topology
// (components/, the Kubernetes issue); this module is only the lab's stand-in for its operator.
//
// Everything listens on ::1 only; the superuser is reachable only through a unix socket in the
// instance's own 0700 directory. Daemons run as the postgres and redis users, never as root.
import * as fs from "node:fs";
import * as path from "node:path";
import * as crypto from "node:crypto";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { ROLES, databaseName, rolesSql, shardSql } from "../../runtime/ledger/pg/schema";
import { daemonPid } from "../daemons";

const run = promisify(execFile);
export const LOOPBACK = "::1";

export function pgBinDir(): string {
    const base = "/usr/lib/postgresql";
    const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a)) : [];
    if (!versions.length) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup: it installs postgresql)");
    return path.join(base, versions[0], "bin");
}

export interface ClusterPasswords {
    ingest: string;
    auditor: string;
    replicator: string;
    redis: string;
}

export interface ClusterLayout {
    /** Where the instances keep their data, sockets and logs. */
    dir: string;
    /** Ports of the PostgreSQL instances; the first starts as primary, the rest as standbys s1, s2... */
    pgPorts: number[];
    redisPort: number;
    shards: string[];
    passwords: ClusterPasswords;
}

export function newPasswords(): ClusterPasswords {
    const p = () => crypto.randomBytes(18).toString("base64url");
    return { ingest: p(), auditor: p(), replicator: p(), redis: p() };
}

async function asUser(user: string, cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
    try {
        const { stdout } = await run("runuser", ["-u", user, "--", cmd, ...args], { cwd: opts.cwd ?? "/", timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 });
        return stdout;
    } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`${path.basename(cmd)} ${args.join(" ")} failed: ${(e.stderr || e.message).trim()}`);
    }
}

function chownTree(p: string, user: string): void {
    execFileSync("chown", ["-R", `${user}:${user}`, p]);
}

export class PgInstance {
    constructor(readonly name: string, readonly dir: string, readonly port: number) {}

    get dataDir() { return path.join(this.dir, "data"); }
    get socketDir() { return this.dir; }
    get logFile() { return path.join(this.dir, "postgres.log"); }

    /** The postmaster's PID, when it runs: checked against its command line, which names the data dir. */
    pid(): number | undefined {
        return daemonPid({ dir: this.dataDir, marker: this.dataDir }, path.join(this.dataDir, "postmaster.pid"));
    }

    async start(): Promise<void> {
        if (this.pid()) return;
        await asUser("postgres", path.join(pgBinDir(), "pg_ctl"), ["-D", this.dataDir, "-l", this.logFile, "-w", "-t", "60", "start"]);
    }

    async stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
        if (!this.pid()) return;
        await asUser("postgres", path.join(pgBinDir(), "pg_ctl"), ["-D", this.dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
    }

    /** SIGKILL to the postmaster: a crash, for failover tests. Its backends exit on their own. */
    kill(): void {
        const pid = this.pid();
        if (pid) process.kill(pid, "SIGKILL");
    }

    async reload(): Promise<void> {
        await asUser("postgres", path.join(pgBinDir(), "pg_ctl"), ["-D", this.dataDir, "reload"]);
    }

    async promote(): Promise<void> {
        await asUser("postgres", path.join(pgBinDir(), "pg_ctl"), ["-D", this.dataDir, "-w", "-t", "60", "promote"]);
    }

    /** A superuser session over the instance's unix socket. */
    async superuser<T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
        const c = new pg.Client({ host: this.socketDir, port: this.port, user: "postgres", database: db });
        await c.connect();
        try {
            return await fn(c);
        } finally {
            await c.end().catch(() => undefined);
        }
    }

    async isPrimary(): Promise<boolean> {
        return this.superuser("postgres", async (c) => !(await c.query("SELECT pg_is_in_recovery() AS r")).rows[0].r);
    }

    /** How far this instance has received WAL (a standby) or written it (a primary). */
    async walPosition(): Promise<string> {
        return this.superuser("postgres", async (c) => (await c.query(
            "SELECT CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END::text AS lsn")).rows[0].lsn);
    }
}

function lsnValue(lsn: string): bigint {
    const [hi, lo] = lsn.split("/");
    return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

export class LedgerCluster {
    readonly instances: PgInstance[];

    constructor(readonly layout: ClusterLayout) {
        this.instances = layout.pgPorts.map((port, i) => new PgInstance(i === 0 ? "n0" : `n${i}`, path.join(layout.dir, `pg-n${i}`), port));
    }

    get redisDir() { return path.join(this.layout.dir, "redis"); }
    get redisPidFile() { return path.join(this.redisDir, "redis.pid"); }
    /** Application names the primary waits for: every instance but itself. */
    standbyNames(primary: PgInstance): string[] {
        return this.instances.filter((i) => i !== primary).map((i) => i.name);
    }

    private nodeConf(inst: PgInstance): string {
        return [
            `port = ${inst.port}`,
            `unix_socket_directories = '${inst.socketDir}'`,
            `cluster_name = 'unicorn-${inst.name}'`,
            "",
        ].join("\n");
    }

    private baseConf(): string {
        return [
            "# Written by nublar (lab/ledger/cluster.ts). Per-instance settings are in node.conf.",
            `listen_addresses = '${LOOPBACK}'`,
            "unix_socket_permissions = 0700",
            "max_connections = 60",
            "shared_buffers = '128MB'",
            "wal_level = replica",
            "max_wal_senders = 10",
            "wal_keep_size = '512MB'",
            "hot_standby = on",
            "hot_standby_feedback = on",
            // An append is acknowledged only once a quorum holds it: the primary, plus any one
            // standby that has flushed the commit to disk.
            "synchronous_commit = on",
            `synchronous_standby_names = 'ANY 1 (${this.standbyNames(this.instances[0]).join(", ")})'`,
            "password_encryption = 'scram-sha-256'",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "include_if_exists = 'node.conf'",
            "",
        ].join("\n");
    }

    private hba(): string {
        return [
            "# Written by nublar: the superuser only over the 0700 unix socket; everyone else over ::1 with a password.",
            "local   all          postgres                              trust",
            `host    replication  ${ROLES.replicator}  ::1/128            scram-sha-256`,
            `host    all          ${ROLES.ingest},${ROLES.auditor}  ::1/128  scram-sha-256`,
            "",
        ].join("\n");
    }

    private standbyConninfo(standby: PgInstance, primary: PgInstance): string {
        return `host=${LOOPBACK} port=${primary.port} user=${ROLES.replicator} password=${this.layout.passwords.replicator} application_name=${standby.name}`;
    }

    /** Creates the cluster from nothing: initdb, roles, shard databases, standbys, Redis. */
    async create(progress: (msg: string) => void = () => undefined): Promise<void> {
        const { dir } = this.layout;
        fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
        const primary = this.instances[0];
        fs.mkdirSync(primary.dir, { recursive: true, mode: 0o700 });
        chownTree(primary.dir, "postgres");
        progress(`initdb ${primary.dataDir}`);
        const pwfile = path.join(primary.dir, "initdb.pw");
        fs.writeFileSync(pwfile, crypto.randomBytes(18).toString("base64url"), { mode: 0o600 });
        chownTree(pwfile, "postgres");
        await asUser("postgres", path.join(pgBinDir(), "initdb"), ["-D", primary.dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"]);
        fs.rmSync(pwfile);
        fs.appendFileSync(path.join(primary.dataDir, "postgresql.conf"), `\n${this.baseConf()}`);
        fs.writeFileSync(path.join(primary.dataDir, "pg_hba.conf"), this.hba());
        fs.writeFileSync(path.join(primary.dataDir, "node.conf"), this.nodeConf(primary));
        chownTree(primary.dir, "postgres");
        // The primary must not wait for standbys while it has none: bootstrap with quorum off.
        fs.appendFileSync(path.join(primary.dataDir, "node.conf"), "synchronous_standby_names = ''\n");
        await primary.start();
        progress("roles and shard databases");
        await this.bootstrap(primary, progress);
        for (const standby of this.instances.slice(1)) {
            progress(`standby ${standby.name}: pg_basebackup from ${primary.name}`);
            await this.cloneStandby(standby, primary);
        }
        fs.writeFileSync(path.join(primary.dataDir, "node.conf"), this.nodeConf(primary));
        await primary.reload();
        await this.waitForQuorum();
        await this.startRedis();
    }

    /** Waits until every standby streams and counts for the quorum (a reload takes effect asynchronously). */
    async waitForQuorum(timeoutMs = 30_000): Promise<void> {
        const want = this.instances.filter((i) => i.pid()).length - 1;
        const deadline = Date.now() + timeoutMs;
        let last = "";
        while (Date.now() < deadline) {
            const r = await this.replication().catch(() => undefined);
            const ready = r?.standbys.filter((s) => s.state === "streaming" && s.syncState === "quorum").length ?? 0;
            if (ready >= want) return;
            last = JSON.stringify(r);
            await new Promise((res) => setTimeout(res, 100));
        }
        throw new Error(`standbys did not join the quorum within ${timeoutMs} ms: ${last}`);
    }

    /** (Re)builds `standby` as a streaming replica of `primary`, from a fresh base backup. */
    async cloneStandby(standby: PgInstance, primary: PgInstance): Promise<void> {
        await standby.stop("immediate").catch(() => undefined);
        fs.rmSync(standby.dir, { recursive: true, force: true });
        fs.mkdirSync(standby.dir, { recursive: true, mode: 0o700 });
        chownTree(standby.dir, "postgres");
        const pgpass = path.join(standby.dir, ".pgpass");
        fs.writeFileSync(pgpass, `${LOOPBACK}:${primary.port}:*:${ROLES.replicator}:${this.layout.passwords.replicator}\n`.replace(/^::1/, "\\:\\:1"), { mode: 0o600 });
        chownTree(pgpass, "postgres");
        await asUser("postgres", "env", [`PGPASSFILE=${pgpass}`, path.join(pgBinDir(), "pg_basebackup"), "-h", LOOPBACK, "-p", String(primary.port), "-U", ROLES.replicator, "-D", standby.dataDir, "-X", "stream", "-c", "fast", "--no-password"]);
        fs.rmSync(pgpass);
        fs.writeFileSync(path.join(standby.dataDir, "node.conf"), this.nodeConf(standby));
        fs.writeFileSync(path.join(standby.dataDir, "standby.signal"), "");
        // primary_conninfo (with the replicator's password) lives in postgresql.auto.conf, mode 0600.
        await this.setAutoConf(standby, { primary_conninfo: this.standbyConninfo(standby, primary), recovery_target_timeline: "latest" });
        chownTree(standby.dir, "postgres");
        await standby.start();
    }

    private async setAutoConf(inst: PgInstance, settings: Record<string, string>): Promise<void> {
        const file = path.join(inst.dataDir, "postgresql.auto.conf");
        let text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
        for (const [k, v] of Object.entries(settings)) {
            text = text.split("\n").filter((l) => !l.startsWith(`${k} `) && !l.startsWith(`${k}=`)).join("\n");
            text = `${text.trimEnd()}\n${k} = '${v.replace(/'/g, "''")}'\n`;
        }
        fs.writeFileSync(file, text, { mode: 0o600 });
        chownTree(file, "postgres");
    }

    /** Roles with their current passwords, every shard's database and schema (idempotent). */
    private async bootstrap(primary: PgInstance, progress: (msg: string) => void): Promise<void> {
        await primary.superuser("postgres", async (c) => {
            await c.query(rolesSql(this.layout.passwords));
            for (const shard of this.layout.shards) {
                const db = databaseName(shard);
                if (!(await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [db])).rowCount) {
                    progress(`shard ${shard}: database ${db}`);
                    await c.query(`CREATE DATABASE ${db} OWNER ${ROLES.owner}`);
                }
            }
        });
        for (const shard of this.layout.shards) await primary.superuser(databaseName(shard), (c) => c.query(shardSql(shard)));
    }

    /** Points a standby at `primary` (primary_conninfo takes a reload since PostgreSQL 13). */
    private async follow(standby: PgInstance, primary: PgInstance): Promise<void> {
        await this.setAutoConf(standby, { primary_conninfo: this.standbyConninfo(standby, primary) });
        await standby.reload();
    }

    /**
     * An existing cluster, brought to the layout: every instance and Redis started, roles and
     * passwords current, every shard database present, standbys following the current primary.
     */
    async ensure(progress: (msg: string) => void = () => undefined): Promise<void> {
        for (const i of this.instances) await i.start();
        const primaries: PgInstance[] = [];
        for (const i of this.instances) if (await i.isPrimary().catch(() => false)) primaries.push(i);
        if (primaries.length > 1) {
            // Split brain: an old primary came back after a failover. Never pick one silently.
            throw new Error(`ledger instances ${primaries.map((p) => p.name).join(" and ")} are both primaries (an old primary restarted after a failover); stop the stale one and rebuild it as a standby: nublar ledger rebuild <name>`);
        }
        const primary = primaries[0];
        if (!primary) throw new Error("no instance of the ledger cluster is a primary; see the postgres.log files under " + this.layout.dir);
        await this.bootstrap(primary, progress);
        for (const f of this.instances.filter((i) => i !== primary)) await this.follow(f, primary);
        await this.waitForQuorum();
        await this.startRedis();
    }

    /** Starts every instance (and Redis) that is not running. */
    async start(): Promise<void> {
        for (const i of this.instances) await i.start();
        await this.startRedis();
    }

    async stop(): Promise<void> {
        // Standbys first, so the primary's last commits do not wait for a quorum that is leaving.
        for (const i of [...this.instances].reverse()) await i.stop("fast").catch(() => i.kill());
        this.stopRedis();
    }

    async primary(): Promise<PgInstance | undefined> {
        for (const i of this.instances) {
            if (!i.pid()) continue;
            try {
                if (await i.isPrimary()) return i;
            } catch {
                // not accepting connections: not the primary we want
            }
        }
        return undefined;
    }

    /**
     * Failover, as an operator (or CloudNativePG) does it: promote the running standby that has
     * received the most WAL (it holds every acknowledged commit, since a quorum of one standby
     * acknowledged each), then point the other standbys at it.
     */
    async failover(progress: (msg: string) => void = () => undefined): Promise<PgInstance> {
        const alive = this.instances.filter((i) => i.pid());
        const positions: { inst: PgInstance; lsn: bigint }[] = [];
        for (const inst of alive) {
            // An instance that does not answer (a dying old primary) is simply not a candidate.
            const primary = await inst.isPrimary().catch(() => undefined);
            if (primary) throw new Error(`${inst.name} is still a running primary; stop it before failing over`);
            const lsn = primary === false ? await inst.walPosition().catch(() => undefined) : undefined;
            if (lsn) positions.push({ inst, lsn: lsnValue(lsn) });
        }
        if (!positions.length) throw new Error("no running standby to promote");
        positions.sort((a, b) => (b.lsn > a.lsn ? 1 : b.lsn < a.lsn ? -1 : 0));
        const next = positions[0].inst;
        progress(`promoting ${next.name} (WAL ${positions.map((p) => `${p.inst.name}=${p.lsn.toString(16)}`).join(" ")})`);
        await next.promote();
        const followers = positions.slice(1).map((p) => p.inst);
        // Keep quorum commit on the new primary: ANY 1 of whoever can follow it.
        const names = this.standbyNames(next);
        await next.superuser("postgres", async (c) => {
            await c.query(`ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (${names.join(", ")})'`);
            await c.query("SELECT pg_reload_conf()");
        });
        for (const f of followers) {
            progress(`${f.name} now follows ${next.name}`);
            await this.follow(f, next);
        }
        return next;
    }

    /** The replication state the primary sees: which standbys stream, and which count for quorum. */
    async replication(): Promise<{ primary: string; standbys: { name: string; state: string; syncState: string; flushLagBytes: number }[] } | undefined> {
        const p = await this.primary();
        if (!p) return undefined;
        const rows = await p.superuser("postgres", async (c) => (await c.query(
            "SELECT application_name, state, sync_state, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::bigint AS lag FROM pg_stat_replication ORDER BY application_name")).rows);
        return { primary: p.name, standbys: rows.map((r) => ({ name: r.application_name, state: r.state, syncState: r.sync_state, flushLagBytes: Number(r.lag) })) };
    }

    async startRedis(): Promise<void> {
        if (this.redisPid()) return;
        fs.mkdirSync(this.redisDir, { recursive: true, mode: 0o750 });
        const conf = path.join(this.redisDir, "redis.conf");
        fs.writeFileSync(conf, [
            "# Written by nublar: the ledger's cache tier. Loopback only, password required, no persistence",
            "# (everything in it can be re-read from PostgreSQL).",
            `bind ${LOOPBACK}`,
            `port ${this.layout.redisPort}`,
            "protected-mode yes",
            `requirepass ${this.layout.passwords.redis}`,
            'save ""',
            "appendonly no",
            "maxmemory 256mb",
            "maxmemory-policy allkeys-lru",
            "daemonize yes",
            `pidfile ${this.redisPidFile}`,
            `logfile ${path.join(this.redisDir, "redis.log")}`,
            `dir ${this.redisDir}`,
            "",
        ].join("\n"), { mode: 0o600 });
        chownTree(this.redisDir, "redis");
        await asUser("redis", "/usr/bin/redis-server", [conf]);
        for (let i = 0; i < 100 && !this.redisPid(); i++) await new Promise((r) => setTimeout(r, 50));
        if (!this.redisPid()) throw new Error(`redis did not start; see ${path.join(this.redisDir, "redis.log")}`);
    }

    redisPid(): number | undefined {
        return daemonPid({ dir: this.redisDir, marker: `redis-server ${LOOPBACK}:${this.layout.redisPort}` }, this.redisPidFile);
    }

    stopRedis(): void {
        const pid = this.redisPid();
        if (pid) process.kill(pid, "SIGTERM");
        fs.rmSync(this.redisPidFile, { force: true });
    }

    /** Stops everything and deletes the cluster's files. */
    async destroy(): Promise<void> {
        for (const i of this.instances) await i.stop("immediate").catch(() => i.kill());
        this.stopRedis();
        fs.rmSync(this.layout.dir, { recursive: true, force: true });
    }
}
