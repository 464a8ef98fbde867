// Structured events: every state change the agent sees or makes, as one JSON object per line.
// They go to a file (the event bus picks them up later), to a ring kept for `nublar events`,
// and to anyone following the stream.
//
// The names in them are the vocabulary's (model/vocabulary.ts). node-bfd, a library of its own,
// keeps its own names; `bfdEventOf` is where they become ours.
import * as fs from "node:fs";
import * as path from "node:path";
import { Diag, DIAG_NAMES, State, STATE_NAMES, type StateChange } from "node-bfd";
import { DIAGNOSTICS, type BfdState, type Diagnostic, type RouteEvent } from "../../model/vocabulary";

export type AgentEventType = "agent" | "bfd" | "route" | "address" | "nginx" | "error";

export interface AgentEvent {
    /** Milliseconds since the epoch, with a sub-millisecond fraction. */
    at: number;
    /** Sequence number, increasing for the life of the agent process. */
    seq: number;
    node: string;
    type: AgentEventType;
    [key: string]: unknown;
}

/** A `bfd` event's fields: one session's state change. */
export interface BfdEventFields {
    session: string;
    peer: string;
    from: BfdState;
    to: BfdState;
    diagnostic: Diagnostic;
    /** The peer's state as last heard: `admin-down` when it is shutting the session down on purpose. */
    remoteState: BfdState;
}

/** A `route` event's fields: the kernel added or removed one of the agent's routes. */
export interface RouteEventFields {
    event: RouteEvent;
    destination: string;
    source?: string;
    metric: number;
    dev?: string;
    protocol: number;
}

/** What each event type carries besides at, seq, node and type. */
export type AgentEventFields<T extends AgentEventType> = T extends "bfd" ? BfdEventFields : T extends "route" ? RouteEventFields : Record<string, unknown>;

/**
 * node-bfd's states and diagnostics in the vocabulary, keyed by node-bfd's own enums: a state or
 * diagnostic node-bfd adds, or one left out here, fails to compile. node-bfd names them with
 * STATE_NAMES and DIAG_NAMES; `bfdEventOf` reads those names back through these tables.
 */
export const NODE_BFD_STATES: Readonly<Record<State, BfdState>> = {
    [State.AdminDown]: "admin-down",
    [State.Down]: "down",
    [State.Init]: "init",
    [State.Up]: "up",
};
export const NODE_BFD_DIAGNOSTICS: Readonly<Record<Diag, Diagnostic>> = {
    [Diag.None]: DIAGNOSTICS.noDiagnostic,
    [Diag.ControlDetectionTimeExpired]: DIAGNOSTICS.controlDetectionTimeExpired,
    [Diag.EchoFunctionFailed]: DIAGNOSTICS.echoFunctionFailed,
    [Diag.NeighborSignaledSessionDown]: DIAGNOSTICS.neighborSignaledSessionDown,
    [Diag.ForwardingPlaneReset]: DIAGNOSTICS.forwardingPlaneReset,
    [Diag.PathDown]: DIAGNOSTICS.pathDown,
    [Diag.ConcatenatedPathDown]: DIAGNOSTICS.concatenatedPathDown,
    [Diag.AdministrativelyDown]: DIAGNOSTICS.administrativelyDown,
    [Diag.ReverseConcatenatedPathDown]: DIAGNOSTICS.reverseConcatenatedPathDown,
};

const byNodeBfdName = <K extends number, V>(names: Record<K, string>, ours: Record<K, V>): ReadonlyMap<string, V> =>
    new Map(Object.keys(ours).map((k) => [names[Number(k) as K], ours[Number(k) as K]]));
const STATE_OF_NAME = byNodeBfdName(STATE_NAMES, NODE_BFD_STATES);
const DIAGNOSTIC_OF_NAME = byNodeBfdName(DIAG_NAMES, NODE_BFD_DIAGNOSTICS);

/** node-bfd's name for a state, in the vocabulary; undefined for a name node-bfd does not give (STATE_NAMES). */
export const bfdStateOfNodeBfd = (name: string): BfdState | undefined => STATE_OF_NAME.get(name);
/** node-bfd's name for a diagnostic, in the vocabulary; undefined for a name node-bfd does not give (DIAG_NAMES). */
export const diagnosticOfNodeBfd = (name: string): Diagnostic | undefined => DIAGNOSTIC_OF_NAME.get(name);

/** A node-bfd state change as the agent's `bfd` event, or why it cannot be one (a name node-bfd gave that its tables do not have). */
export function bfdEventOf(c: StateChange): { ok: true; fields: BfdEventFields } | { ok: false; reason: string } {
    const from = bfdStateOfNodeBfd(c.from);
    const to = bfdStateOfNodeBfd(c.to);
    const remoteState = bfdStateOfNodeBfd(c.remoteState);
    const diagnostic = diagnosticOfNodeBfd(c.diagnostic);
    const unknown = [!from && `state '${c.from}'`, !to && `state '${c.to}'`, !remoteState && `remote state '${c.remoteState}'`, !diagnostic && `diagnostic '${c.diagnostic}'`].filter(Boolean);
    if (!from || !to || !remoteState || !diagnostic) return { ok: false, reason: `session ${c.id}: node-bfd reported ${unknown.join(", ")}, which the agent's vocabulary does not have` };
    return { ok: true, fields: { session: c.id, peer: c.peer, from, to, diagnostic, remoteState } };
}

const RING = 2000;

export class EventLog {
    private readonly ring: AgentEvent[] = [];
    private readonly followers = new Set<(e: AgentEvent) => void>();
    private seq = 0;
    private fd?: number;

    constructor(private readonly node: string, file?: string) {
        if (file) {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            this.fd = fs.openSync(file, "a", 0o640);
        }
    }

    emit<T extends AgentEventType>(type: T, fields: AgentEventFields<T>, at = performance.timeOrigin + performance.now()): AgentEvent {
        const e: AgentEvent = { at, seq: ++this.seq, node: this.node, type, ...fields };
        this.ring.push(e);
        if (this.ring.length > RING) this.ring.shift();
        if (this.fd !== undefined) {
            try {
                fs.writeSync(this.fd, `${JSON.stringify(e)}\n`);
            } catch {
                // A full disk must not stop forwarding decisions; the ring still has the event.
            }
        }
        for (const f of this.followers) f(e);
        return e;
    }

    recent(limit = 100): AgentEvent[] {
        return limit > 0 ? this.ring.slice(-limit) : [];
    }

    follow(listener: (e: AgentEvent) => void): () => void {
        this.followers.add(listener);
        return () => this.followers.delete(listener);
    }

    close(): void {
        if (this.fd !== undefined) fs.closeSync(this.fd);
        this.fd = undefined;
    }
}
