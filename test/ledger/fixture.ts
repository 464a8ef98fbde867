// A real ledger cluster for a test file: PostgreSQL primary + 2 standbys and Redis on ::1, on free
// ports, in a fresh directory; destroyed (processes stopped, files removed) even when tests fail.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LedgerCluster, LOOPBACK, newPasswords } from "../../lab/ledger/cluster";
import { ROLES } from "../../runtime/ledger/pg/schema";
import type { ShardAccess } from "../../runtime/ledger/pg/store";

import { freePort } from "../helpers/ports";

export async function startTestCluster(shards: string[], standbys = 2): Promise<LedgerCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-ledger-"));
    fs.chmodSync(dir, 0o755);
    const pgPorts: number[] = [];
    for (let i = 0; i <= standbys; i++) pgPorts.push(await freePort());
    const cluster = new LedgerCluster({ dir, pgPorts, redisPort: await freePort(), shards, passwords: newPasswords() });
    // Safety net for a test process that dies before its after() hook: the daemons are detached,
    // so stop exactly the ones this cluster started (by their pid files) on the way out.
    process.once("exit", () => {
        for (const i of cluster.instances) { const pid = i.pid(); if (pid) process.kill(pid, "SIGKILL"); }
        const r = cluster.redisPid();
        if (r) process.kill(r, "SIGKILL");
        fs.rmSync(dir, { recursive: true, force: true });
    });
    try {
        await cluster.create();
    } catch (err) {
        await cluster.destroy();
        throw err;
    }
    return cluster;
}

export function ingestAccess(cluster: LedgerCluster, shard: string): ShardAccess {
    return { shard, endpoints: cluster.layout.pgPorts.map((port) => ({ host: LOOPBACK, port })), user: ROLES.ingest, password: cluster.layout.passwords.ingest };
}

export function auditorAccess(cluster: LedgerCluster, shard: string): ShardAccess {
    return { ...ingestAccess(cluster, shard), user: ROLES.auditor, password: cluster.layout.passwords.auditor };
}
