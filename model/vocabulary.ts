// nublar's one vocabulary: the names that cross a boundary between the agent, the event bus,
// the ledger, the alerts and the dashboard. Each is defined here once, as a table whose keys
// or values are the TypeScript type used everywhere else (one name table per enum, as BIRD
// does). Nothing here may import the runtime: node-bfd keeps its own names, and the agent maps
// them onto these at its boundary (runtime/agent/events.ts).

/** A ledger shard's name: also its database (`unicorn_<shard>`), so lowercase and short. */
export const SHARD_NAME = /^[a-z][a-z0-9_]{0,39}$/;

// --- BFD session states --------------------------------------------------------------------

/**
 * BFD session states (RFC 5880 §4.1, in the order of their wire values 0-3). Keys: the spelling
 * of the agent's event log, its API and its metrics (`admin-down`). Values: the symbols of the
 * envelope's Avro enum `BfdState`, which the bus, the ledger's bus entries, the alerts and the
 * dashboard carry (`AdminDown`). An Avro enum symbol cannot contain `-`, and renaming the symbols
 * would change the schema, so both spellings stay; this table is the one translation.
 */
export const BFD_STATES = { "admin-down": "AdminDown", down: "Down", init: "Init", up: "Up" } as const;
/** A BFD state as the agent writes it: `admin-down`, `down`, `init`, `up`. */
export type BfdState = keyof typeof BFD_STATES;
/** A BFD state as the envelope carries it (Avro enum symbol): `AdminDown`, `Down`, `Init`, `Up`. */
export type BfdStateSymbol = (typeof BFD_STATES)[BfdState];

/** The agent's spelling of each envelope symbol: BFD_STATES read backwards. */
export const BFD_STATE_OF_SYMBOL = Object.fromEntries(Object.entries(BFD_STATES).map(([k, v]) => [v, k])) as { readonly [S in BfdStateSymbol]: BfdState };

export function isBfdState(v: unknown): v is BfdState {
    return typeof v === "string" && Object.hasOwn(BFD_STATES, v);
}

export function isBfdStateSymbol(v: unknown): v is BfdStateSymbol {
    return typeof v === "string" && Object.hasOwn(BFD_STATE_OF_SYMBOL, v);
}

// --- BFD diagnostics -----------------------------------------------------------------------

/**
 * BFD diagnostic codes (RFC 5880 §4.1), in the order of their wire values 0-8. Keys: the RFC's
 * names, for code. Values: the spelling the agent writes in its events (node-bfd's, and close to
 * FRR's), which the bus and the ledger carry as a string. Code 0 is "ok": nothing to show.
 */
export const DIAGNOSTICS = {
    noDiagnostic: "ok",
    controlDetectionTimeExpired: "control detection time expired",
    echoFunctionFailed: "echo function failed",
    neighborSignaledSessionDown: "neighbor signaled session down",
    forwardingPlaneReset: "forwarding plane reset",
    pathDown: "path down",
    concatenatedPathDown: "concatenated path down",
    administrativelyDown: "administratively down",
    reverseConcatenatedPathDown: "reverse concatenated path down",
} as const;
export type Diagnostic = (typeof DIAGNOSTICS)[keyof typeof DIAGNOSTICS];

const DIAGNOSTIC_VALUES: ReadonlySet<string> = new Set(Object.values(DIAGNOSTICS));

export function isDiagnostic(v: unknown): v is Diagnostic {
    return typeof v === "string" && DIAGNOSTIC_VALUES.has(v);
}

// --- Route events --------------------------------------------------------------------------

/**
 * What the kernel told the agent about one of its routes (rtnetlink RTM_NEWROUTE and
 * RTM_DELROUTE), as the agent's `route` events and the envelope's `route-change.event` name it,
 * and what each means for the route.
 */
export const ROUTE_EVENTS = { "route-added": "installed", "route-removed": "withdrawn" } as const;
export type RouteEvent = keyof typeof ROUTE_EVENTS;
export type RouteOutcome = (typeof ROUTE_EVENTS)[RouteEvent];

export function isRouteEvent(v: unknown): v is RouteEvent {
    return typeof v === "string" && Object.hasOwn(ROUTE_EVENTS, v);
}

// --- BFD session ids -----------------------------------------------------------------------

/** The kinds of BFD session an agent runs, and the first segment of their ids. */
export const SESSION_KINDS = { gateway: "gw", path: "path" } as const;
export type SessionKind = keyof typeof SESSION_KINDS;

/** What a session id says: a gateway session to a provider's router, or a path session to another node over a provider. */
export type SessionRef = { kind: "gateway"; provider: string } | { kind: "path"; peerNode: string; provider: string };
export type SessionId = `${(typeof SESSION_KINDS)["gateway"]}/${string}` | `${(typeof SESSION_KINDS)["path"]}/${string}/${string}`;

export type SessionIdVerdict = { ok: true; session: SessionRef } | { ok: false; reason: string };

/** One segment of a session id: a site name (node or provider), so no `/`, no space, not empty. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class SessionIdError extends Error {}

/** The session's id: `gw/<provider>` or `path/<peer node>/<provider>`. Throws SessionIdError for a name that cannot be a segment. */
export function sessionId(ref: SessionRef): SessionId {
    const parts = ref.kind === "gateway" ? [ref.provider] : [ref.peerNode, ref.provider];
    const bad = parts.find((p) => typeof p !== "string" || !SEGMENT.test(p));
    if (bad !== undefined) throw new SessionIdError(`cannot name a ${ref.kind} session after '${String(bad)}': names in a session id are letters, digits, '.', '_' and '-'`);
    return `${SESSION_KINDS[ref.kind]}/${parts.join("/")}` as SessionId;
}

/** What a session id names, or why it names nothing: the one reading of `sessionId`'s output. */
export function parseSessionId(id: unknown): SessionIdVerdict {
    if (typeof id !== "string") return { ok: false, reason: `a session id is a string, not ${typeof id}` };
    const [head, ...rest] = id.split("/");
    const refuse = (why: string): SessionIdVerdict => ({ ok: false, reason: `'${id.slice(0, 200)}' is not a session id: ${why}` });
    const bad = rest.find((p) => !SEGMENT.test(p));
    if (head === SESSION_KINDS.gateway) {
        if (rest.length !== 1 || bad !== undefined) return refuse("expected gw/<provider>");
        return { ok: true, session: { kind: "gateway", provider: rest[0] } };
    }
    if (head === SESSION_KINDS.path) {
        if (rest.length !== 2 || bad !== undefined) return refuse("expected path/<peer node>/<provider>");
        return { ok: true, session: { kind: "path", peerNode: rest[0], provider: rest[1] } };
    }
    return refuse(`it starts with '${head.slice(0, 40)}', expected gw/<provider> or path/<peer node>/<provider>`);
}

// --- Agent event identity: the ledger key and the envelope id ------------------------------

/** Who wrote an agent's events: the envelope's `source` and the ledger entry's. */
export function agentSource(node: string): string {
    return `agent/${node}`;
}

/**
 * The identity of one agent event: the ledger's idempotency key when the collector appends it
 * (runtime/ledger/collect.ts), and the envelope id when the outbox publishes it
 * (runtime/agent/outbox.ts), so both paths agree and the ledger keeps it once.
 * `at` is the event's time as written (ms, with its fraction), `seq` its sequence number.
 */
export function agentEventKey(node: string, at: number, seq: number): string {
    return `${agentSource(node)}/${at}/${seq}`;
}

/** The ledger key of a line of an agent's event file that is not an event, by where it sits in the file. */
export function malformedAgentLineKey(node: string, fileOffset: number): string {
    return `${agentSource(node)}/malformed/${fileOffset}`;
}
