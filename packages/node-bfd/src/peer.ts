// A BFD speaker as a process: used by the interop tests and the benchmarks, and handy
// by hand in a namespace. Reads JSON commands on stdin, writes JSON events on stdout.
//   {"op":"add","id":"x","spec":{...}}  {"op":"update",...}  {"op":"remove","id":"x"}
//   {"op":"snapshot"}  {"op":"stop"}
// Events: {"event":"ready"} {"event":"state",...} {"event":"result","op":...,"ok":true,...}
import * as readline from "node:readline";
import { BfdService, type ServiceOptions } from "./service";

/**
 * Keep this process's main thread busy (`duty` of every 100 ms) for `seconds`: shows that
 * sessions, which live in the worker, keep their timing when the application is busy.
 */
function burn(seconds: number, duty: number): string {
    const until = Date.now() + seconds * 1000;
    const tick = () => {
        const stop = Date.now() + 100 * duty;
        while (Date.now() < stop) {
            // Busy: nothing else runs on this thread.
        }
        if (Date.now() < until) setTimeout(tick, 100 * (1 - duty));
    };
    setTimeout(tick, 0);
    return `burning ${Math.round(duty * 100)}% of the main thread for ${seconds} s`;
}

async function main() {
    // NODE_BFD_WORKER_NICE: niceness for the session worker thread; NODE_BFD_GTSM: "nftables"
    // (the default) or "off-i-understand" (see ServiceOptions).
    const nice = process.env.NODE_BFD_WORKER_NICE;
    const gtsm = process.env.NODE_BFD_GTSM as ServiceOptions["gtsm"];
    const bfd = await BfdService.start({ ...(nice ? { workerNiceness: Number(nice) } : {}), ...(gtsm ? { gtsm } : {}) });
    const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
    bfd.on("state", (c) => out({ event: "state", ...c, mono: performance.now() }));
    const rl = readline.createInterface({ input: process.stdin });
    out({ event: "ready" });
    for await (const line of rl) {
        if (!line.trim()) continue;
        let cmd: any;
        try {
            cmd = JSON.parse(line);
        } catch {
            out({ event: "result", ok: false, error: "not JSON" });
            continue;
        }
        try {
            let result: unknown;
            if (cmd.op === "add") result = await bfd.add(cmd.id, cmd.spec);
            else if (cmd.op === "update") result = await bfd.update(cmd.id, cmd.spec);
            else if (cmd.op === "remove") result = await bfd.remove(cmd.id);
            else if (cmd.op === "profile") result = await bfd.setProfile(cmd.name, cmd.profile);
            else if (cmd.op === "snapshot") result = await bfd.snapshot();
            else if (cmd.op === "burn") result = burn(cmd.seconds, cmd.duty);
            else if (cmd.op === "stop") break;
            else throw new Error(`unknown op '${cmd.op}'`);
            out({ event: "result", op: cmd.op, tag: cmd.tag, ok: true, result });
        } catch (err) {
            out({ event: "result", op: cmd.op, tag: cmd.tag, ok: false, error: (err as Error).message });
        }
    }
    await bfd.stop();
    process.exit(0);
}

main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
});
