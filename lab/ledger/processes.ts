// Finding and stopping a lab ledger's processes by their pid files, without loading the
// database clients: `nublar lab clean` uses this, and every nublar command loads that.
import * as fs from "node:fs";
import * as path from "node:path";
import { daemonPid } from "../daemons";

/**
 * Stops whatever a lab ledger in `dir` left running, found by its pid files and checked against
 * each process's command line (`nublar lab clean`, after a crash or a lost Pulumi state).
 */
export function stopLabLedgerProcesses(dir: string): string[] {
    const stopped: string[] = [];
    const kill = (what: string, pid: number | undefined) => {
        if (!pid) return;
        process.kill(pid, "SIGKILL"); // a postmaster's backends exit when it dies
        stopped.push(`${what} pid ${pid}`);
    };
    kill("ledger ingest service", daemonPid({ dir, marker: "ledger serve" }, path.join(dir, "ingest.pid")));
    for (const inst of (fs.existsSync(dir) ? fs.readdirSync(dir) : []).filter((e) => /^pg-n\d+$/.test(e))) {
        const data = path.join(dir, inst, "data");
        kill(`postgres ${inst}`, daemonPid({ dir: data, marker: data }, path.join(data, "postmaster.pid")));
    }
    kill("redis", daemonPid({ dir, marker: "redis-server" }, path.join(dir, "redis", "redis.pid")));
    return stopped;
}
