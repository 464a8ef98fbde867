// Messages between the BfdService (main thread) and its worker.
import type { GtsmStatus } from "./gtsm";
import type { Profile, SessionSnapshot, SessionSpec, StateChange } from "./types";

export type RequestBody =
    | { op: "add"; id: string; spec: SessionSpec }
    | { op: "update"; id: string; spec: SessionSpec }
    | { op: "remove"; id: string }
    | { op: "profile"; name: string; profile: Profile }
    | { op: "snapshot" }
    | { op: "rx-gaps" }
    | { op: "stop" };

export type Request = { reqId: number } & RequestBody;

export type Response = { reqId: number } & ({ ok: true; result: unknown } | { ok: false; error: string; name: string });

export type WorkerEvent = { event: "state"; change: StateChange };

export interface Snapshot {
    sessions: SessionSnapshot[];
    /** Packets dropped before any session was found, by reason. */
    unmatchedDrops: Record<string, number>;
    /** The worker's event-loop delay since the previous snapshot (ms): timers fire this late. */
    loopDelayMs: { p50: number; p99: number; max: number };
    /** The worker thread's scheduling priority, as set (or why not). */
    priority: string;
    /** GTSM for single-hop sessions (RFC 5881 §5): how it is enforced, by which nftables table, or why it cannot be. */
    gtsm: GtsmStatus;
}
