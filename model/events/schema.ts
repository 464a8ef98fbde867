// The event envelope: every event on the park's bus (sensor readings, BFD/route/ingress changes,
// path latency, deploys, audit results, alerts) is one versioned envelope, encoded as Avro
// (avsc) behind a two-byte header: a magic byte and the schema version it was written with.
// Readers decode any version they know and resolve it to the current one (Avro schema
// resolution), so writers and readers can be upgraded one at a time.
//
// Validation happens at every boundary: `encodeEvent` refuses to write an invalid event and
// `decodeEvent` refuses to accept one, each with a reason that names the field. Callers send
// what they refuse to the dead-letter topic (events/dead-letter.ts); nothing is dropped silently.
import * as avro from "avsc";
import { BFD_STATES, isDiagnostic, isRouteEvent, ROUTE_EVENTS, type BfdStateSymbol, type Diagnostic, type RouteEvent } from "../vocabulary";

/** The first byte of every encoded event; a JSON `{` or a text line never starts with it. */
export const MAGIC = 0x00;
export const SCHEMA_VERSION = 1;

export interface SensorReading {
    /** The sensor's own id, unique in the site (`fence-07`, `raptor-pen/temp-2`). */
    sensor: string;
    /** What it measures: `temperature`, `humidity`, `fence-voltage`, `gate-count`... */
    kind: string;
    value: number;
    unit: string;
    /** The sensor's sequence number: with `sensor` it is the reading's identity, so a resend is not a new reading. */
    seq: number;
    /** When the gateway received it, µs since the epoch (the envelope's `time` is the sensor's clock). */
    receivedAt: number;
    /** The sender's IPv6 address. */
    address: string;
}

export interface BfdChange {
    node: string;
    session: string;
    peer: string;
    /** States as the envelope's Avro enum names them (model/vocabulary.ts BFD_STATES: the agent's `down` is `Down` here). */
    from: BfdStateSymbol;
    to: BfdStateSymbol;
    /** As the agent reports it (model/vocabulary.ts DIAGNOSTICS): an Avro string, checked against the vocabulary. */
    diagnostic: Diagnostic;
    remoteState: BfdStateSymbol | null;
    /** The agent's event sequence number (per agent process). */
    seq: number;
}

export interface RouteChange {
    node: string;
    /** What the kernel did to the route, as the agent reports it (model/vocabulary.ts ROUTE_EVENTS): an Avro string, checked against the vocabulary. */
    event: RouteEvent;
    route: string;
    prefix: string | null;
    via: string | null;
    metric: number | null;
    reason: string | null;
    seq: number;
}

export interface IngressChange {
    node: string;
    upstream: string;
    event: string;
    members: string[];
    added: string[];
    removed: string[];
    seq: number;
}

export interface PathLatency {
    node: string;
    session: string;
    peer: string;
    /** Round-trip time over the path, when measured. */
    rttMs: number | null;
    /** The longest gap between two BFD packets received in the window. */
    maxGapMs: number | null;
    /** The session's detection time: a gap this long takes the session Down. */
    detectionMs: number;
    windowMs: number;
}

export interface Deploy {
    stack: string;
    node: string;
    generation: number;
    /** `confirmed`, `rolled-back`, `failed`. */
    outcome: string;
    message: string;
    durationMs: number;
}

export interface AuditResult {
    stack: string;
    reportId: string;
    verdict: "pass" | "fail";
    contentSha256: string;
    findings: number;
    mandatory: number;
    estimatedAvailability: number | null;
}

export interface Alert {
    /** The same condition keeps the same key (PagerDuty's dedup_key). */
    dedupKey: string;
    action: "trigger" | "resolve";
    severity: "critical" | "error" | "warning" | "info";
    /** `flap-storm`, `rtt-rising`, `near-detection-budget`, `session-down`. */
    class: string;
    summary: string;
    node: string;
    session: string | null;
    details: string;
}

/** Everything else an agent reports (start and stop, address lifetimes, errors), so nothing it logs is lost on the way to the ledger. */
export interface AgentNotice {
    node: string;
    /** The agent's event type: `agent`, `address`, `error`. */
    kind: string;
    /** The agent event's other fields, as JSON. */
    fields: string;
    seq: number;
}

export interface PayloadTypes {
    "sensor-reading": SensorReading;
    "bfd-change": BfdChange;
    "route-change": RouteChange;
    "ingress-change": IngressChange;
    "path-latency": PathLatency;
    deploy: Deploy;
    "audit-result": AuditResult;
    alert: Alert;
    "agent-notice": AgentNotice;
}
export type EventType = keyof PayloadTypes;

interface EnvelopeOf<T extends EventType> {
    /** The event's identity: the ledger's idempotency key, so a redelivered event is written once. At most 200 bytes. */
    id: string;
    site: string;
    /** Who emitted it: `agent/gate`, `sensor-gateway`, `nublar-audit`... */
    source: string;
    /** When it happened, µs since the epoch (the ledger entry's time, so a replay re-derives the same chain). */
    time: number;
    type: T;
    payload: PayloadTypes[T];
}
export type NublarEvent = { [T in EventType]: EnvelopeOf<T> }[EventType];
export type EventOf<T extends EventType> = EnvelopeOf<T>;

const nullable = (type: string | object) => ({ type: ["null", type], default: null });
const strings = { type: "array", items: "string" };
// The symbols are the values of the vocabulary's BFD_STATES, in wire order (AdminDown, Down, Init, Up):
// an Avro enum is written as the symbol's index, so this order is part of the wire format.
const bfdState = { type: "enum", name: "BfdState", symbols: Object.values(BFD_STATES) satisfies BfdStateSymbol[] };

// Record names double as the type tag on the wire (Avro union branches are named).
const RECORDS: Record<EventType, { name: string; fields: object[] }> = {
    "sensor-reading": {
        name: "SensorReading",
        fields: [
            { name: "sensor", type: "string" }, { name: "kind", type: "string" }, { name: "value", type: "double" },
            { name: "unit", type: "string" }, { name: "seq", type: "long" }, { name: "receivedAt", type: "long" }, { name: "address", type: "string" },
        ],
    },
    "bfd-change": {
        name: "BfdChange",
        fields: [
            { name: "node", type: "string" }, { name: "session", type: "string" }, { name: "peer", type: "string" },
            { name: "from", type: bfdState }, { name: "to", type: "BfdState" }, { name: "diagnostic", type: "string" },
            { name: "remoteState", ...nullable("BfdState") }, { name: "seq", type: "long" },
        ],
    },
    "route-change": {
        name: "RouteChange",
        fields: [
            { name: "node", type: "string" }, { name: "event", type: "string" }, { name: "route", type: "string" },
            { name: "prefix", ...nullable("string") }, { name: "via", ...nullable("string") }, { name: "metric", ...nullable("int") },
            { name: "reason", ...nullable("string") }, { name: "seq", type: "long" },
        ],
    },
    "ingress-change": {
        name: "IngressChange",
        fields: [
            { name: "node", type: "string" }, { name: "upstream", type: "string" }, { name: "event", type: "string" },
            { name: "members", type: strings }, { name: "added", type: strings }, { name: "removed", type: strings }, { name: "seq", type: "long" },
        ],
    },
    "path-latency": {
        name: "PathLatency",
        fields: [
            { name: "node", type: "string" }, { name: "session", type: "string" }, { name: "peer", type: "string" },
            { name: "rttMs", ...nullable("double") }, { name: "maxGapMs", ...nullable("double") }, { name: "detectionMs", type: "double" }, { name: "windowMs", type: "double" },
        ],
    },
    deploy: {
        name: "Deploy",
        fields: [
            { name: "stack", type: "string" }, { name: "node", type: "string" }, { name: "generation", type: "int" },
            { name: "outcome", type: "string" }, { name: "message", type: "string" }, { name: "durationMs", type: "double" },
        ],
    },
    "audit-result": {
        name: "AuditResult",
        fields: [
            { name: "stack", type: "string" }, { name: "reportId", type: "string" }, { name: "verdict", type: { type: "enum", name: "Verdict", symbols: ["pass", "fail"] } },
            { name: "contentSha256", type: "string" }, { name: "findings", type: "int" }, { name: "mandatory", type: "int" },
            { name: "estimatedAvailability", ...nullable("double") },
        ],
    },
    alert: {
        name: "Alert",
        fields: [
            { name: "dedupKey", type: "string" }, { name: "action", type: { type: "enum", name: "AlertAction", symbols: ["trigger", "resolve"] } },
            { name: "severity", type: { type: "enum", name: "Severity", symbols: ["critical", "error", "warning", "info"] } },
            { name: "class", type: "string" }, { name: "summary", type: "string" }, { name: "node", type: "string" },
            { name: "session", ...nullable("string") }, { name: "details", type: "string" },
        ],
    },
    "agent-notice": {
        name: "AgentNotice",
        fields: [{ name: "node", type: "string" }, { name: "kind", type: "string" }, { name: "fields", type: "string" }, { name: "seq", type: "long" }],
    },
};

const NAMESPACE = "park.nublar.events";
const TYPE_OF_RECORD = new Map(Object.entries(RECORDS).map(([t, r]) => [`${NAMESPACE}.${r.name}`, t as EventType]));

/** The envelope's Avro schema, version 1 (exported for docs and for other-language consumers: `nublar bus schema`). */
export const ENVELOPE_SCHEMA_V1 = {
    type: "record",
    name: "Envelope",
    namespace: NAMESPACE,
    doc: "A nublar event, version 1. time is µs since the epoch; id is the idempotency key.",
    fields: [
        { name: "id", type: "string" },
        { name: "site", type: "string" },
        { name: "source", type: "string" },
        { name: "time", type: "long" },
        { name: "payload", type: Object.values(RECORDS).map((r) => ({ type: "record", ...r })) },
    ],
};

const CURRENT = avro.Type.forSchema(ENVELOPE_SCHEMA_V1 as avro.Schema);

/**
 * The most bytes an event may take on the wire, header included. A valid event is well under it:
 * its payload is at most 60,000 bytes as JSON (MAX_PAYLOAD_BYTES), which is never smaller than
 * its Avro form, and the envelope's other fields take at most about 500 bytes.
 */
export const MAX_EVENT_BYTES = 64 * 1024;

// Decoding is bounded before avsc allocates anything. avsc trusts the counts it reads: an
// array's block count becomes `new Array(n)` and n reads, so 41 bytes claiming 2e8 members
// exhaust the heap (avsc has no option or hook that bounds it). So every message is first
// walked against its writer's schema without building a value: every string and bytes length,
// every array and map block count and block size, every union branch and enum index is checked
// against what is left of the message before it is used. Each item of a list takes at least one
// byte, so a list cannot claim more items than bytes are left; and the whole message holds no
// more items than it has bytes. What passes decodes into at most a few objects per byte.

/** Why the bytes were refused; thrown inside the scan only, and caught by decodeEvent. */
class Refusal {
    constructor(readonly reason: string) {}
}
const refuse = (reason: string): never => {
    throw new Refusal(reason);
};

interface Cursor {
    readonly buf: Buffer;
    pos: number;
    /** Items of lists and maps so far, in the whole message. */
    items: number;
}
type Scan = (c: Cursor) => void;

/** An Avro long (zigzag varint): at most 10 bytes, all of them inside the message. */
function varint(c: Cursor, where: string): number {
    const buf = c.buf;
    const start = c.pos;
    let n = 0;
    let mul = 1;
    let b: number;
    do {
        if (c.pos >= buf.length) refuse(`${where}: the message ends inside a number`);
        if (c.pos - start >= 10) refuse(`${where}: a number longer than 10 bytes`);
        b = buf[c.pos++];
        n += (b & 0x7f) * mul;
        mul *= 128;
    } while (b & 0x80);
    // The sign is the lowest bit, read from the first byte (n may be past 2^53).
    return buf[start] & 1 ? -(n + 1) / 2 : n / 2;
}

const left = (c: Cursor) => c.buf.length - c.pos;

function take(c: Cursor, n: number, where: string, what: string): void {
    if (n > left(c)) refuse(`${where}: ${what} needs ${n} bytes, only ${left(c)} are left`);
    c.pos += n;
}

/** The fewest bytes a value of this type takes. */
function minBytes(type: avro.Type): number {
    const t = type as avro.Type & { fields?: { type: avro.Type }[]; types?: avro.Type[]; size?: number; underlyingType?: avro.Type };
    switch (type.typeName) {
        case "null": return 0;
        case "float": return 4;
        case "double": return 8;
        case "fixed": return t.size!;
        case "record": case "error": return t.fields!.reduce((s, f) => s + minBytes(f.type), 0);
        case "union:wrapped": case "union:unwrapped": return 1 + Math.min(...t.types!.map(minBytes));
        default: return type.typeName.startsWith("logical:") ? minBytes(t.underlyingType!) : 1;
    }
}

/** A scan of `type`'s binary encoding; `at` names the field in refusals, `within` the union branch it is in. */
function scanner(type: avro.Type, at: string, within: string | undefined, compiling: Set<avro.Type>): Scan {
    const where = within ? `${at} (${within})` : at;
    const t = type as avro.Type & {
        fields?: { name: string; type: avro.Type }[]; types?: avro.Type[]; itemsType?: avro.Type; valuesType?: avro.Type;
        symbols?: string[]; size?: number; underlyingType?: avro.Type;
    };
    switch (type.typeName) {
        case "null":
            return () => undefined;
        case "boolean":
            return (c) => take(c, 1, where, "a boolean");
        case "int":
            return (c) => {
                const n = varint(c, where);
                if (n < -0x80000000 || n > 0x7fffffff) refuse(`${where}: ${n} is out of range for an int`);
            };
        case "long":
            return (c) => void varint(c, where);
        case "float":
            return (c) => take(c, 4, where, "a float");
        case "double":
            return (c) => take(c, 8, where, "a double");
        case "fixed":
            return (c) => take(c, t.size!, where, `a fixed of ${t.size}`);
        case "string":
        case "bytes": {
            const what = type.typeName === "string" ? "a string" : "bytes";
            return (c) => {
                const n = varint(c, where);
                if (n < 0) refuse(`${where}: ${what} of negative length ${n}`);
                if (n > left(c)) refuse(`${where}: ${what} of ${n} bytes, but only ${left(c)} are left`);
                c.pos += n;
            };
        }
        case "enum": {
            const count = t.symbols!.length;
            return (c) => {
                const i = varint(c, where);
                if (!(i >= 0 && i < count)) refuse(`${where}: symbol ${i} of an enum of ${count}`);
            };
        }
        case "record":
        case "error": {
            if (compiling.has(type)) throw new Error(`${type.name}: recursive types are not supported by the bounded decoder`);
            compiling.add(type);
            const fields = t.fields!.map((f) => scanner(f.type, at ? `${at}.${f.name}` : f.name, within, compiling));
            compiling.delete(type);
            return (c) => {
                for (const f of fields) f(c);
            };
        }
        case "union:wrapped":
        case "union:unwrapped": {
            const branches = t.types!.map((b) => scanner(b, at, b.typeName === "record" ? b.name?.split(".").pop() : within, compiling));
            return (c) => {
                const i = varint(c, where);
                if (!(i >= 0 && i < branches.length)) refuse(`${where}: union branch ${i} of ${branches.length}`);
                branches[i](c);
            };
        }
        case "array":
        case "map": {
            const isMap = type.typeName === "map";
            const itemType = isMap ? t.valuesType! : t.itemsType!;
            const value = scanner(itemType, `${at}[]`, within, compiling);
            const key = isMap ? scanner(avro.Type.forSchema("string"), `${at} key`, within, compiling) : undefined;
            // Every item takes at least one byte (a zero-byte item, such as null, is counted as one).
            const perItem = Math.max(1, minBytes(itemType) + (isMap ? 1 : 0));
            const noun = isMap ? "a map" : "a list";
            return (c) => {
                for (;;) {
                    let n = varint(c, where);
                    if (n === 0) return;
                    if (n < 0) {
                        n = -n;
                        const size = varint(c, where);
                        if (size < 0 || size > left(c)) refuse(`${where}: ${noun} block of ${size} bytes, but only ${left(c)} are left`);
                    }
                    if (n * perItem > left(c)) refuse(`${where}: ${noun} of ${n} items, but only ${left(c)} bytes are left`);
                    c.items += n;
                    if (c.items > c.buf.length) refuse(`${where}: more items than the message has bytes`);
                    for (let i = 0; i < n; i++) {
                        key?.(c);
                        value(c);
                    }
                }
            };
        }
        default:
            if (type.typeName.startsWith("logical:")) return scanner(t.underlyingType!, at, within, compiling);
            throw new Error(`${at}: the bounded decoder does not know Avro type ${type.typeName}`);
    }
}

/** Checks that `buf` (the Avro part of a message) is exactly one value of `type`, within bounds; the reason when not. */
function boundsChecker(type: avro.Type): (buf: Buffer) => string | undefined {
    const scan = scanner(type, "", undefined, new Set());
    return (buf) => {
        const c: Cursor = { buf, pos: 0, items: 0 };
        try {
            scan(c);
        } catch (err) {
            if (err instanceof Refusal) return err.reason;
            throw err;
        }
        return c.pos === buf.length ? undefined : `${buf.length - c.pos} bytes of trailing data after the event`;
    };
}

interface Reader {
    /** Walks the bytes against the writer's schema: undefined when they are within bounds, else why not. */
    check(avroBytes: Buffer): string | undefined;
    /** Decodes (only after `check` passed) and resolves to the current version. */
    read(avroBytes: Buffer): unknown;
}
/** Every version this build can read, resolved to the current one. Add v2 here when it comes (its writer type, and CURRENT.createResolver(writer)). */
const READERS = new Map<number, Reader>([[1, { check: boundsChecker(CURRENT), read: (b) => CURRENT.fromBuffer(b) }]]);

export class EventError extends Error {}

/** Why an event is not acceptable: the first problem found, naming the field. */
export type Verdict = { ok: true; event: NublarEvent } | { ok: false; reason: string };

// Bounds that catch garbage which is well-formed Avro: a clock in 1970, a NaN reading.
const MIN_TIME_US = 946_684_800_000_000; // 2000-01-01
const MAX_TIME_US = 4_102_444_800_000_000; // 2100-01-01
const ID_MAX_BYTES = 200; // the ledger's idempotency key limit (runtime/ledger/writer.ts)
const MAX_PAYLOAD_BYTES = 60_000; // under the ledger's 64 KiB entry limit
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$/;

function check(e: NublarEvent): string | undefined {
    if (typeof e.id !== "string" || !e.id.length || Buffer.byteLength(e.id) > ID_MAX_BYTES) return `id: must be 1 to ${ID_MAX_BYTES} bytes`;
    if (/[\u0000-\u001f\u007f]/.test(e.id)) return "id: must not contain control characters";
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(e.site)) return `site: '${e.site}' is not a site name (lowercase letters, digits, '-')`;
    if (!e.source || Buffer.byteLength(e.source) > 200 || /[\u0000-\u001f\u007f]/.test(e.source)) return "source: must be 1 to 200 bytes, without control characters";
    // The ledger refuses a payload over 64 KiB (canonical JSON): refuse it here, where it can be dead-lettered.
    if (Buffer.byteLength(JSON.stringify(e.payload ?? null)) > MAX_PAYLOAD_BYTES) return `payload: over ${MAX_PAYLOAD_BYTES} bytes as JSON`;
    if (!Number.isSafeInteger(e.time) || e.time < MIN_TIME_US || e.time > MAX_TIME_US) return `time: ${e.time} is not µs since the epoch between 2000 and 2100`;
    if (!(e.type in RECORDS)) return `type: unknown event type '${String(e.type)}'`;
    // The ledger holds JSON, which has no NaN or Infinity: a deploy's NaN duration would pass
    // Avro (a double) and then be refused by the ledger, again and again.
    for (const [k, v] of Object.entries(e.payload)) if (typeof v === "number" && !Number.isFinite(v)) return `payload.${k}: ${v} is not a finite number`;
    switch (e.type) {
        case "sensor-reading": {
            const p = e.payload;
            if (!NAME.test(p.sensor)) return `payload.sensor: '${p.sensor}' is not a sensor id (letters, digits, . _ : / @ -; at most 128)`;
            if (!/^[a-z][a-z0-9-]{0,31}$/.test(p.kind)) return `payload.kind: '${p.kind}' is not a reading kind (lowercase, digits, '-')`;
            if (!Number.isFinite(p.value)) return `payload.value: ${p.value} is not a finite number`;
            if (p.unit.length > 16) return "payload.unit: at most 16 characters";
            if (!Number.isSafeInteger(p.seq) || p.seq < 0) return `payload.seq: ${p.seq} is not a non-negative integer`;
            break;
        }
        case "bfd-change":
            if (!NAME.test(e.payload.node)) return `payload.node: '${e.payload.node}' is not a node name`;
            if (!isDiagnostic(e.payload.diagnostic)) return `payload.diagnostic: '${String(e.payload.diagnostic).slice(0, 80)}' is not a BFD diagnostic (model/vocabulary.ts DIAGNOSTICS)`;
            break;
        case "path-latency":
            if (!NAME.test(e.payload.node)) return `payload.node: '${e.payload.node}' is not a node name`;
            if (!(e.payload.detectionMs > 0)) return "payload.detectionMs: must be positive";
            break;
        case "route-change":
            if (!isRouteEvent(e.payload.event)) return `payload.event: '${String(e.payload.event).slice(0, 80)}' is not a route event (${Object.keys(ROUTE_EVENTS).join(", ")})`;
            break;
        default:
            break;
    }
    return undefined;
}

/** The envelope's Avro type (the lake writes container files of it). */
export const ENVELOPE_TYPE = CURRENT;

type AvroEnvelope = { id: string; site: string; source: string; time: number; payload: Record<string, unknown> };

/** An event as the Avro envelope holds it: the payload under its record's name (a named union branch). */
export function toAvro(e: NublarEvent): Record<string, unknown> {
    return { id: e.id, site: e.site, source: e.source, time: e.time, payload: { [`${NAMESPACE}.${RECORDS[e.type].name}`]: e.payload } };
}

/** Back from the Avro envelope; undefined for an unknown record. Plain objects: avsc hands back class instances. */
export function fromAvro(raw: AvroEnvelope): NublarEvent | undefined {
    const [branch, payload] = Object.entries(raw.payload)[0];
    const type = TYPE_OF_RECORD.get(branch);
    return type && ({ id: raw.id, site: raw.site, source: raw.source, time: raw.time, type, payload: { ...(payload as object) } } as NublarEvent);
}

/** Checks an event against the schema and the envelope's rules, without encoding it. */
export function validateEvent(e: unknown): Verdict {
    if (typeof e !== "object" || e === null) return { ok: false, reason: "not an object" };
    const ev = e as NublarEvent;
    if (!(ev.type in RECORDS)) return { ok: false, reason: `type: unknown event type '${String(ev.type)}' (known: ${Object.keys(RECORDS).join(", ")})` };
    let firstPath: string | undefined;
    const valid = CURRENT.isValid(toAvro(ev), {
        errorHook: (path, value) => {
            firstPath ??= `${path.filter((p) => !p.startsWith(NAMESPACE)).join(".")} = ${JSON.stringify(value)?.slice(0, 80)}`;
        },
    });
    if (!valid) return { ok: false, reason: `does not match the schema: ${firstPath?.replace(/^payload\./, "payload.") ?? "?"} has the wrong type or is missing` };
    const why = check(ev);
    return why ? { ok: false, reason: why } : { ok: true, event: ev };
}

/** The wire form: magic, version, Avro. Throws EventError naming the field when the event is invalid. */
export function encodeEvent(e: NublarEvent): Buffer {
    const v = validateEvent(e);
    if (!v.ok) throw new EventError(`invalid ${String((e as { type?: unknown }).type)} event '${String((e as { id?: unknown }).id)}': ${v.reason}`);
    const wire = Buffer.concat([Buffer.from([MAGIC, SCHEMA_VERSION]), CURRENT.toBuffer(toAvro(e))]);
    // Unreachable for a valid event (see MAX_EVENT_BYTES); checked so that no writer sends what readers refuse.
    if (wire.length > MAX_EVENT_BYTES) throw new EventError(`invalid ${e.type} event '${e.id}': ${wire.length} bytes on the wire, at most ${MAX_EVENT_BYTES}`);
    return wire;
}

/**
 * Decodes and validates; never throws. Bounded: a message over MAX_EVENT_BYTES, or one whose
 * lengths or counts claim more than it holds, is refused before anything is allocated for it.
 */
export function decodeEvent(buf: Buffer | null | undefined): Verdict {
    if (!buf || buf.length < 2) return { ok: false, reason: `too short to be an event (${buf?.length ?? 0} bytes)` };
    if (buf[0] !== MAGIC) return { ok: false, reason: `not a nublar event: first byte 0x${buf[0].toString(16).padStart(2, "0")}, expected 0x00${buf[0] === 0x7b ? " (this looks like JSON)" : ""}` };
    if (buf.length > MAX_EVENT_BYTES) return { ok: false, reason: `too large: ${buf.length} bytes, an event takes at most ${MAX_EVENT_BYTES}` };
    const reader = READERS.get(buf[1]);
    if (!reader) return { ok: false, reason: `schema version ${buf[1]} is unknown to this build (it reads ${[...READERS.keys()].join(", ")})` };
    try {
        const body = buf.subarray(2);
        const bounds = reader.check(body);
        if (bounds) return { ok: false, reason: `not valid Avro for schema version ${buf[1]}: ${bounds}` };
        let raw: AvroEnvelope;
        try {
            raw = reader.read(body) as AvroEnvelope;
        } catch (err) {
            return { ok: false, reason: `not valid Avro for schema version ${buf[1]}: ${(err as Error).message}` };
        }
        const ev = fromAvro(raw);
        if (!ev) return { ok: false, reason: `unknown payload record ${Object.keys(raw.payload)[0]}` };
        const why = check(ev);
        return why ? { ok: false, reason: why } : { ok: true, event: ev };
    } catch (err) {
        // A bug here must not take a consumer down: the message is refused, with what went wrong.
        return { ok: false, reason: `could not be decoded: ${String((err as Error)?.message ?? err).slice(0, 300)}` };
    }
}

/** Where a change sits in one session's history: its event time (µs) and, for an agent's events, the agent's sequence number. */
export interface ChangeOrder {
    time: number;
    seq?: number;
}

/**
 * The one ordering rule for a session's events, shared by the alert detector and the dashboard
 * (runtime/events/alerts/detector.ts, runtime/events/dashboard/model.ts): an event supersedes the
 * last one applied when its event time is later, or, at the same time, when both carry an agent
 * sequence number and its number is higher. Anything else (a redelivery, an event out of order)
 * changes nothing. Nothing applied yet: everything supersedes.
 */
export function supersedes(next: ChangeOrder, last: ChangeOrder | null | undefined): boolean {
    if (!last) return true;
    if (next.time !== last.time) return next.time > last.time;
    return next.seq !== undefined && last.seq !== undefined && next.seq > last.seq;
}

/** µs since the epoch, now, from the monotonic clock anchored at process start (sub-ms precision). */
export function nowUs(): number {
    return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
