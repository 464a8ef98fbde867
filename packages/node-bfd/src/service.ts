// The client API: a BFD service whose sessions live in a worker thread.
//
//   const bfd = await BfdService.start();
//   bfd.on("state", (c) => console.log(c.peer, c.from, "->", c.to, c.diagnostic));
//   await bfd.add("gw-a", { peer: "2001:db8:a::1", local: "2001:db8:a::2", transmitIntervalMs: 10, receiveIntervalMs: 10 });
//   console.log(await bfd.snapshot());
//   await bfd.stop();
import { EventEmitter } from "node:events";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { RequestBody, Response, Snapshot, WorkerEvent } from "./protocol";
import type { Profile, RxGap, SessionSpec, StateChange } from "./types";

export class BfdError extends Error {}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export interface ServiceOptions {
    /** Listening ports, for tests that run several services in one namespace. */
    singleHopPort?: number;
    multihopPort?: number;
    /**
     * Niceness for the worker thread alone (e.g. -10): BFD timers then win the CPU over a
     * busy application main thread and other load. Negative values need CAP_SYS_NICE; if
     * refused, the worker runs at the process's priority and says so in snapshots.
     */
    workerNiceness?: number;
    /**
     * Run the worker thread under SCHED_FIFO at this real-time priority (1-99, needs root or
     * CAP_SYS_NICE). A woken BFD timer then preempts every ordinary thread at once, where a
     * niceness only weighs its share. The thread is idle between packets, and the kernel's
     * real-time throttling keeps a runaway from starving the machine.
     */
    workerRealtimePriority?: number;
}

export interface BfdService {
    on(event: "state", listener: (change: StateChange) => void): this;
    on(event: "error", listener: (err: Error) => void): this;
}

export class BfdService extends EventEmitter {
    private readonly pending = new Map<number, Pending>();
    private nextReq = 1;
    private stopped = false;

    private constructor(private readonly worker: Worker) {
        super();
        worker.on("message", (msg: Response | WorkerEvent) => {
            if ("event" in msg) {
                this.emit("state", msg.change);
                return;
            }
            const p = this.pending.get(msg.reqId);
            if (!p) return;
            this.pending.delete(msg.reqId);
            if (msg.ok) p.resolve(msg.result);
            else p.reject(Object.assign(new BfdError(msg.error), { name: msg.name }));
        });
        worker.on("error", (err) => {
            // The worker is gone: fail what waits, and every later call, rather than hang.
            this.stopped = true;
            for (const p of this.pending.values()) p.reject(err);
            this.pending.clear();
            if (this.listenerCount("error")) this.emit("error", err);
        });
    }

    static async start(opts: ServiceOptions = {}): Promise<BfdService> {
        const worker = new Worker(path.join(__dirname, "worker-entry.js"), { workerData: opts });
        await new Promise<void>((resolve, reject) => {
            worker.once("online", resolve);
            worker.once("error", reject);
        });
        return new BfdService(worker);
    }

    private call<T>(req: RequestBody): Promise<T> {
        if (this.stopped) return Promise.reject(new BfdError("the BFD service is stopped"));
        const reqId = this.nextReq++;
        return new Promise<T>((resolve, reject) => {
            this.pending.set(reqId, { resolve: resolve as (v: unknown) => void, reject });
            this.worker.postMessage({ ...req, reqId });
        });
    }

    add(id: string, spec: SessionSpec): Promise<void> {
        return this.call({ op: "add", id, spec });
    }

    update(id: string, spec: SessionSpec): Promise<void> {
        return this.call({ op: "update", id, spec });
    }

    remove(id: string): Promise<void> {
        return this.call({ op: "remove", id });
    }

    setProfile(name: string, profile: Profile): Promise<void> {
        return this.call({ op: "profile", name, profile });
    }

    snapshot(): Promise<Snapshot> {
        return this.call({ op: "snapshot" });
    }

    /** Each session's longest receive gap since the last call, and its detection time (telemetry). */
    rxGaps(): Promise<RxGap[]> {
        return this.call({ op: "rx-gaps" });
    }

    async stop(): Promise<void> {
        if (this.stopped) return;
        await this.call({ op: "stop" }).catch(() => undefined);
        this.stopped = true;
        await this.worker.terminate();
    }
}
