// The worker thread: owns the Transport (sockets, timers, sessions) and answers the
// main thread's requests over the worker port. See service.ts for the other side.
import { parentPort, workerData } from "node:worker_threads";
import { Transport } from "./transport";
import type { Request, Response, WorkerEvent } from "./protocol";

const port = parentPort!;
const transport = new Transport({
    ...(workerData as { singleHopPort?: number; multihopPort?: number }),
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
            case "snapshot": result = { sessions: transport.snapshot(), unmatchedDrops: transport.unmatchedDrops, loopDelayMs: transport.loopDelayMs() }; break;
            case "stop": transport.close(); result = undefined; break;
        }
        res = { reqId: req.reqId, ok: true, result };
    } catch (err) {
        res = { reqId: req.reqId, ok: false, error: (err as Error).message, name: (err as Error).name };
    }
    port.postMessage(res);
});
