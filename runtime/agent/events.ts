// Structured events: every state change the agent sees or makes, as one JSON object per line.
// They go to a file (the event bus picks them up later), to a ring kept for `nublar events`,
// and to anyone following the stream. The file is rotated at a size bound (EVENT_LOG_LIMITS;
// ./event-file.ts says how, and how its readers follow).
//
// The names in them are the vocabulary's (model/vocabulary.ts). node-bfd, a library of its own,
// keeps its own names; `bfdEventOf` is where they become ours.
import * as fs from "node:fs";
import * as path from "node:path";
import { Diag, DIAG_NAMES, State, STATE_NAMES, type StateChange } from "node-bfd";
import { DIAGNOSTICS, type BfdState, type Diagnostic, type RouteEvent } from "../../model/vocabulary";
import { MAX_ROTATED, rotatedPath } from "./event-file";

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

/**
 * The event log's disk bound: FILE is rotated (./event-file.ts) before it would pass maxBytes, and
 * `keep` rotated files are kept (FILE.1 ... FILE.<keep>), so the log never holds more than
 * (keep + 1) x maxBytes (a single line longer than maxBytes gets a file of its own).
 */
export const EVENT_LOG_LIMITS = { maxBytes: 16 << 20, keep: 2 } as const;

/**
 * Who may follow the log (GET /events?follow=1, ./api.ts): at most `followers` at once (any
 * listener counts, the outbox's too), and a follower with more than `bufferedBytes` written to it
 * and not yet read is dropped rather than queued for: its response ends with a last line saying
 * so, and its connection is cut if that is not taken within `graceMs`.
 */
export const FOLLOW_LIMITS: Readonly<FollowLimits> = { followers: 16, bufferedBytes: 1 << 20, graceMs: 5000 };

export interface FollowLimits {
    followers: number;
    bufferedBytes: number;
    graceMs: number;
}

export interface EventLogOptions {
    /** Rotate before FILE passes this many bytes (default EVENT_LOG_LIMITS.maxBytes). */
    maxBytes?: number;
    /** Rotated files kept, 1 to MAX_ROTATED (default EVENT_LOG_LIMITS.keep). */
    keep?: number;
    /** Default FOLLOW_LIMITS. */
    follow?: Partial<FollowLimits>;
}

export class EventLog {
    private readonly ring: AgentEvent[] = [];
    private readonly followers = new Set<(e: AgentEvent) => void>();
    private seq = 0;
    private fd?: number;
    private size = 0;
    private closed = false;
    private readonly maxBytes: number;
    private readonly keep: number;
    readonly stats = { rotations: 0, writeErrors: 0 };
    /** What the API's followers are held to (./api.ts). */
    readonly followLimits: Readonly<FollowLimits>;

    constructor(readonly node: string, private readonly file?: string, opts: EventLogOptions = {}) {
        this.maxBytes = Math.max(1, opts.maxBytes ?? EVENT_LOG_LIMITS.maxBytes);
        this.keep = Math.min(MAX_ROTATED, Math.max(1, Math.floor(opts.keep ?? EVENT_LOG_LIMITS.keep)));
        this.followLimits = { ...FOLLOW_LIMITS, ...opts.follow };
        if (file) {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            this.open();
        }
    }

    private open(): void {
        this.fd = fs.openSync(this.file!, "a", 0o640);
        this.size = fs.fstatSync(this.fd).size;
    }

    /** FILE becomes FILE.1 (and FILE.<i> FILE.<i+1>; the oldest is deleted), and a new FILE is started. Readers follow (./event-file.ts). */
    private rotate(): void {
        const file = this.file!;
        fs.closeSync(this.fd!);
        this.fd = undefined;
        try {
            fs.rmSync(rotatedPath(file, this.keep), { force: true });
            // Highest first: a file only ever moves up, which is what readers rely on.
            for (let i = this.keep - 1; i >= 0; i--) {
                try {
                    fs.renameSync(rotatedPath(file, i), rotatedPath(file, i + 1));
                } catch (err) {
                    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
                }
            }
            this.stats.rotations++;
        } finally {
            this.open(); // the new FILE, or, if the renames failed, FILE again: events still go somewhere
        }
    }

    emit<T extends AgentEventType>(type: T, fields: AgentEventFields<T>, at = performance.timeOrigin + performance.now()): AgentEvent {
        const e: AgentEvent = { at, seq: ++this.seq, node: this.node, type, ...fields };
        this.ring.push(e);
        if (this.ring.length > RING) this.ring.shift();
        if (this.file && !this.closed) {
            try {
                const line = Buffer.from(`${JSON.stringify(e)}\n`);
                if (this.fd === undefined) this.open();
                if (this.size > 0 && this.size + line.length > this.maxBytes) this.rotate();
                fs.writeSync(this.fd!, line);
                this.size += line.length;
            } catch {
                // A full disk must not stop forwarding decisions; the ring still has the event.
                this.stats.writeErrors++;
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

    /** Listeners following now (see FOLLOW_LIMITS). */
    get followerCount(): number {
        return this.followers.size;
    }

    close(): void {
        if (this.fd !== undefined) fs.closeSync(this.fd);
        this.fd = undefined;
        this.closed = true;
    }
}
