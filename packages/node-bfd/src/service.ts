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
import { GTSM_MODES, type GtsmMode } from "./gtsm";
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
    /**
     * GTSM for single-hop sessions (RFC 5881 §5): accept their packets only with hop limit 255,
     * so that a sender off the link cannot take a session down with a spoofed packet.
     *
     * - "nftables" (the default): before the first single-hop session, node-bfd makes sure the
     *   kernel drops the others: it uses the table `inet nublar_bfd_gtsm` if it is in place
     *   (the nublar agent's, from `gtsmRuleset()`), and otherwise installs a table of its own
     *   that goes when the service stops or its process dies. This needs the `nft` command and
     *   CAP_NET_ADMIN; without them, `add` refuses single-hop sessions (a BfdError named
     *   "BfdGtsmError" that says why and what to do).
     * - "off-i-understand": no GTSM. Single-hop sessions run unprotected: anyone who can route a
     *   packet to this host and guess or learn the discriminators can take them down.
     */
    gtsm?: GtsmMode;
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
        const gtsm = opts.gtsm ?? "nftables";
        if (!GTSM_MODES.includes(gtsm)) {
            throw new BfdError(`gtsm ${JSON.stringify(gtsm)} is not one of ${GTSM_MODES.map((m) => JSON.stringify(m)).join(", ")} ("off-i-understand" runs single-hop sessions without GTSM)`);
        }
        const worker = new Worker(path.join(__dirname, "worker-entry.js"), { workerData: { ...opts, gtsm } });
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
