// The worker thread: owns the Transport (sockets, timers, sessions) and answers the
// main thread's requests over the worker port. See service.ts for the other side.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { Gtsm, type GtsmMode } from "./gtsm";
import { SINGLE_HOP_PORT, Transport } from "./transport";
import type { Request, Response, WorkerEvent } from "./protocol";

const port = parentPort!;
const options = workerData as { singleHopPort?: number; multihopPort?: number; workerNiceness?: number; workerRealtimePriority?: number; gtsm: GtsmMode };

/** Set this thread's own niceness: /proc/thread-self names our thread id, and Linux's
 * setpriority applies to a single thread when given a thread id. */
function setThreadNiceness(value: number): string {
    try {
        const tid = Number(fs.readlinkSync("/proc/thread-self").split("/").pop());
        os.setPriority(tid, value);
        return `worker thread ${tid} at niceness ${value}`;
    } catch (err) {
        return `could not set worker niceness ${value}: ${(err as Error).message}`;
    }
}
/** SCHED_FIFO for this thread: Node has no sched_setscheduler, chrt(1) from util-linux does it. */
function setThreadRealtime(prio: number): string {
    try {
        const tid = Number(fs.readlinkSync("/proc/thread-self").split("/").pop());
        const r = spawnSync("chrt", ["-f", "-p", String(prio), String(tid)], { encoding: "utf8" });
        if (r.status !== 0) return `could not set SCHED_FIFO ${prio}: ${(r.stderr || r.error?.message || "").trim()}`;
        return `worker thread ${tid} at SCHED_FIFO ${prio}`;
    } catch (err) {
        return `could not set SCHED_FIFO ${prio}: ${(err as Error).message}`;
    }
}
const priority = [
    options.workerNiceness === undefined ? undefined : setThreadNiceness(options.workerNiceness),
    options.workerRealtimePriority === undefined ? undefined : setThreadRealtime(options.workerRealtimePriority),
].filter(Boolean).join("; ") || "default";
const gtsm = new Gtsm(options.gtsm, options.singleHopPort ?? SINGLE_HOP_PORT);
const transport = new Transport({
    singleHopPort: options.singleHopPort,
    multihopPort: options.multihopPort,
    gtsm,
    onStateChange: (change) => port.postMessage({ event: "state", change } satisfies WorkerEvent),
});

port.on("message", async (req: Request) => {
    let res: Response;
    try {
        let result: unknown;
        switch (req.op) {
            case "add": result = await transport.add(req.id, req.spec); break;
            case "update": result = transport.update(req.id, req.spec); break;
            case "remove": result = transport.remove(req.id); break;
            case "profile": result = transport.setProfile(req.name, req.profile); break;
            case "snapshot": result = { sessions: transport.snapshot(), unmatchedDrops: transport.unmatchedDrops, loopDelayMs: transport.loopDelayMs(), priority, gtsm: gtsm.status() }; break;
            case "rx-gaps": result = transport.takeRxGaps(); break;
            case "stop": transport.close(); await gtsm.close(); result = undefined; break;
        }
        res = { reqId: req.reqId, ok: true, result };
    } catch (err) {
        res = { reqId: req.reqId, ok: false, error: (err as Error).message, name: (err as Error).name };
    }
    port.postMessage(res);
});
