// Latency and state alerts: a pure detector. It is fed the network topic's `bfd-change` and
// `path-latency` events (anything else is ignored) and a periodic tick, and answers with alert
// events (type `alert`, payload `Alert` from model/events/schema.ts) to publish on `nublar.alerts` and
// to hand to the PagerDuty shell (runtime/events/alerts/pagerduty.ts). Nothing here touches a socket,
// a timer or the clock: every method takes `now`, and tests drive it with a virtual clock.
//
// Per (site, node, session) it detects:
// - session-down: the session is out of Up for longer than a grace (a peer restarting
//   gracefully, or a session that never came Up, gets the longer startup grace); resolves when Up.
// - flap-storm: at least `flapCount` transitions out of Up within `flapWindowMs`; resolves after
//   `flapQuietMs` without one. While it is open, session-down does not trigger for that session.
// - rtt-rising: over the last `rttSamples` RTT samples, a sustained rise (least-squares fit that
//   climbs by `rttTrendRise` x baseline and explains the samples, r² >= `rttMinFit`) ending at
//   >= baseline x `rttFactor`; resolves when the latest sample is under that again.
// - near-detection-budget: a sample whose largest BFD gap, or RTT, reaches `budgetRatio` of the
//   detection time; resolves after `budgetCleanSamples` clean samples in a row.
//
// Dedup: a condition that is open does not trigger again, and a resolve only follows a trigger.
// The dedup key is stable: `nublar/<site>/<node>/<session>/<class>`.
//
// Under at-least-once delivery, the one ordering rule the dashboard uses too (`supersedes`,
// model/events/schema.ts): a bfd-change at or before the session's last one (event time, then
// agent seq) is a redelivery or out of order and changes nothing, and so is a path-latency
// sample at or before the last one (event time; it has no seq). Windows are measured in event
// time; grace and quiet periods are checked against `now` (in `tick`, and after every event of
// the session).
import { createHash } from "node:crypto";
import { supersedes, type Alert, type EventOf, type NublarEvent } from "../../../model/events/schema";
import { DIAGNOSTICS, parseSessionId, type BfdStateSymbol, type SessionKind as PlannedSessionKind } from "../../../model/vocabulary";

export type AlertClass = "session-down" | "flap-storm" | "rtt-rising" | "near-detection-budget";
export const ALERT_CLASSES: readonly AlertClass[] = ["session-down", "flap-storm", "rtt-rising", "near-detection-budget"];

/** An alert as it goes on the bus: the envelope gives the site and the time PagerDuty shows. */
export type AlertEvent = EventOf<"alert">;

export interface DetectorConfig {
    /**
     * Flap storm: this many transitions out of Up within `flapWindowMs`. Default 4 in 60 s: a
     * maintenance bounce or a single provider hiccup gives one or two; four in a minute means the
     * agent's hold-down (3 s, restarted by every flap) kept the path out of use much of the time.
     */
    flapCount: number;
    flapWindowMs: number;
    /**
     * A storm resolves after this long without a transition out of Up. Default 120 s, two
     * windows: a storm that only pauses should not resolve and page again a minute later.
     */
    flapQuietMs: number;
    /**
     * session-down triggers when an Up session has been Down this long. Default 3 s: the agent
     * has already failed over (it withdraws at once), a blip that heals within seconds costs
     * nothing more and is counted by flap-storm; a real outage still pages within seconds.
     * 0 pages on every Up -> Down at once.
     */
    downGraceMs: number;
    /**
     * The grace for a session Down because its peer went AdminDown (a graceful restart, RFC 5882
     * §3.2) or that has not been seen Up since it was first seen. Default 15 s, the agent's own
     * `startupGraceMs`: it keeps routes through exactly that, so nothing is broken before it ends,
     * and a restarted agent with meticulous keyed SHA1 needs about 6 s to come Up again.
     */
    startupGraceMs: number;
    /**
     * RTT trend: the window of samples fitted. Default 30: agents report once a second, so half
     * a minute, long enough that queueing noise averages out, short enough to page before an
     * overloaded tunnel starts losing BFD packets.
     */
    rttSamples: number;
    /**
     * The least-squares line must climb, across the window, by at least this fraction of the
     * baseline. Default 0.25: a relative slope, so it means the same on a 0.3 ms tunnel inside a
     * park and a 40 ms one between sites.
     */
    rttTrendRise: number;
    /**
     * ...and explain the samples: r² of the fit at least this. Default 0.5: one outlier at the
     * end of a flat window fits with r² ≈ 0.1 over 30 samples (0.27 over 10) whatever its height;
     * a steady rise with some noise fits above 0.8.
     */
    rttMinFit: number;
    /** ...and the latest sample must be at least baseline x this. Default 1.5: half as slow again. */
    rttFactor: number;
    /**
     * ...and at least this many ms above the baseline. Default 1 ms: sub-millisecond RTTs double
     * from scheduling noise alone, and a millisecond inside a park is not worth waking anyone for.
     */
    rttMinExcessMs: number;
    /**
     * The baseline is the lowest RTT of the last `rttBaselineBuckets` buckets of
     * `rttBaselineBucketMs` (event time), LEDBAT's base delay (RFC 6817 §4.1). Default 10 x 60 s:
     * the minimum is the propagation delay without queueing, ten minutes of it forget a reroute
     * soon enough, and ten numbers per session stay small for a 5,000-node park.
     */
    rttBaselineBucketMs: number;
    rttBaselineBuckets: number;
    /**
     * Near the detection budget: a sample's maxGapMs / detectionMs, or rttMs / detectionMs, at
     * least this. Default 0.66: with the detect multiplier at 3, a gap of two intervals is one
     * lost (or very late) packet with no slack left; one more and the session goes Down.
     */
    budgetRatio: number;
    /**
     * Resolves after this many clean samples in a row. Default 30: at one report a second, half a
     * minute without a late packet; fewer would resolve between two bursts of the same trouble.
     */
    budgetCleanSamples: number;
    /**
     * A session with no open alert, nothing pending and no event for this long is forgotten (its
     * RTT history too). Default 1 h: sessions that left the plan do not pile up.
     */
    forgetAfterMs: number;
    /** The envelope's `source` of alert events. */
    source: string;
}

export const DEFAULT_DETECTOR_CONFIG: Readonly<DetectorConfig> = Object.freeze({
    flapCount: 4,
    flapWindowMs: 60_000,
    flapQuietMs: 120_000,
    downGraceMs: 3_000,
    startupGraceMs: 15_000,
    rttSamples: 30,
    rttTrendRise: 0.25,
    rttMinFit: 0.5,
    rttFactor: 1.5,
    rttMinExcessMs: 1,
    rttBaselineBucketMs: 60_000,
    rttBaselineBuckets: 10,
    budgetRatio: 0.66,
    budgetCleanSamples: 30,
    forgetAfterMs: 3_600_000,
    source: "nublar-alerts",
});

export type SessionKind = PlannedSessionKind | "unknown";

/** From the agent's session id (model/vocabulary.ts parseSessionId): `gw/<provider>`, `path/<peer>/<provider>`; "unknown" for anything else. */
export function sessionKind(session: string): SessionKind {
    const id = parseSessionId(session);
    return id.ok ? id.session.kind : "unknown";
}

export function dedupKey(site: string, node: string, session: string, cls: AlertClass): string {
    return `nublar/${site}/${node}/${session}/${cls}`;
}

/** What the detector remembers about one session. Immutable: `stepSession` returns a new one. */
export interface SessionAlertState {
    readonly site: string;
    readonly node: string;
    readonly session: string;
    readonly peer: string;
    /** The last BFD state seen, and the (event time µs, agent seq) of that change. */
    readonly bfd?: BfdStateSymbol;
    readonly bfdAt?: { time: number; seq: number };
    /** Out of Up since (ms, event time), and which grace applies; unset while Up or AdminDown here. */
    readonly downSince?: number;
    readonly downGrace?: "down" | "startup";
    readonly downWhy?: string;
    /** Event times (ms) of transitions out of Up within the flap window of the newest. */
    readonly flaps: readonly number[];
    /** The last RTT samples (ms), oldest first, at most `rttSamples`. */
    readonly rtt: readonly number[];
    /** Lowest RTT per baseline bucket: completed buckets oldest first, then the current one. */
    readonly baseBuckets: readonly { bucket: number; min: number }[];
    /** Event time (µs) of the last path-latency sample applied. */
    readonly latencyAt?: number;
    readonly cleanStreak: number;
    /** Open conditions: when each triggered (ms). */
    readonly open: Readonly<Partial<Record<AlertClass, number>>>;
    /** Last event of this session applied (ms, `now` of that step). */
    readonly seenAt: number;
}

export type SessionInput =
    | { kind: "bfd"; event: EventOf<"bfd-change"> }
    | { kind: "latency"; event: EventOf<"path-latency"> }
    | { kind: "tick" };

export interface SessionStep {
    state: SessionAlertState;
    alerts: AlertEvent[];
    /** False when the event was a redelivery or out of order and changed nothing (time still did). */
    applied: boolean;
}

export function initialSession(site: string, node: string, session: string, peer: string, now: number): SessionAlertState {
    return { site, node, session, peer, flaps: [], rtt: [], baseBuckets: [], cleanStreak: 0, open: {}, seenAt: now };
}

/**
 * The pure core: one session, one input, the time now (ms). Event-driven alerts carry the
 * event's time (a replay re-derives them with the same ids); time-driven ones carry `now`.
 */
export function stepSession(s: SessionAlertState, input: SessionInput, now: number, cfg: DetectorConfig): SessionStep {
    const out: AlertEvent[] = [];
    let next = s;
    if (input.kind === "bfd") next = onBfd(s, input.event, now, cfg, out);
    else if (input.kind === "latency") next = onLatency(s, input.event, now, cfg, out);
    const applied = input.kind === "tick" || next !== s;
    next = expire(next, now, cfg, out);
    return { state: next, alerts: out, applied };
}

function onBfd(s: SessionAlertState, ev: EventOf<"bfd-change">, now: number, cfg: DetectorConfig, out: AlertEvent[]): SessionAlertState {
    const p = ev.payload;
    if (!supersedes({ time: ev.time, seq: p.seq }, s.bfdAt)) return s;
    const at = ev.time / 1000;
    let n: SessionAlertState = { ...s, peer: p.peer, bfd: p.to, bfdAt: { time: ev.time, seq: p.seq }, seenAt: now };
    if (p.from === "Up" && p.to !== "Up") {
        const flaps = [...s.flaps.filter((t) => t >= at - cfg.flapWindowMs), at];
        n = { ...n, flaps };
        if (flaps.length >= cfg.flapCount && n.open["flap-storm"] === undefined && now - at < cfg.flapQuietMs) {
            n = opened(n, "flap-storm", at);
            out.push(alert(n, "flap-storm", "trigger", ev.time, cfg, flapText(n, cfg, at)));
        }
    }
    if (p.to === "Up") {
        n = { ...n, downSince: undefined, downGrace: undefined, downWhy: undefined };
        if (n.open["session-down"] !== undefined) {
            n = closed(n, "session-down");
            out.push(alert(n, "session-down", "resolve", ev.time, cfg, {
                summary: `BFD session ${n.session} on ${n.node} is Up again (peer ${n.peer})`,
                details: { state: p.to, peer: n.peer, kind: sessionKind(n.session) },
            }));
        }
    } else if (p.to === "AdminDown") {
        // Taken down here, on purpose (the agent stopping): not a failure, nothing pending.
        n = { ...n, downSince: undefined, downGrace: undefined, downWhy: undefined };
    } else {
        const failure = p.from === "Up" && p.to === "Down" && p.remoteState !== "AdminDown";
        const why = failure ? (p.diagnostic === DIAGNOSTICS.noDiagnostic ? "went Down" : p.diagnostic)
            : p.remoteState === "AdminDown" ? "peer is AdminDown (restarting)" : `${p.to}, not Up since first seen`;
        if (failure) n = { ...n, downSince: at, downGrace: "down", downWhy: why };
        else if (n.downSince === undefined) n = { ...n, downSince: at, downGrace: "startup", downWhy: why };
    }
    return n;
}

function onLatency(s: SessionAlertState, ev: EventOf<"path-latency">, now: number, cfg: DetectorConfig, out: AlertEvent[]): SessionAlertState {
    const p = ev.payload;
    if (s.latencyAt !== undefined && !supersedes({ time: ev.time }, { time: s.latencyAt })) return s;
    const at = ev.time / 1000;
    let n: SessionAlertState = { ...s, peer: p.peer, latencyAt: ev.time, seenAt: now };

    // Near the detection budget.
    const gapRatio = p.maxGapMs === null ? null : p.maxGapMs / p.detectionMs;
    const rttRatio = p.rttMs === null ? null : p.rttMs / p.detectionMs;
    const bad = (gapRatio !== null && gapRatio >= cfg.budgetRatio) || (rttRatio !== null && rttRatio >= cfg.budgetRatio);
    const measured = gapRatio !== null || rttRatio !== null;
    if (bad) {
        n = { ...n, cleanStreak: 0 };
        // A session that is not Up is not "near" its budget, it is past it: session-down speaks.
        const up = n.bfd === undefined || n.bfd === "Up";
        if (up && n.open["near-detection-budget"] === undefined) {
            n = opened(n, "near-detection-budget", at);
            const worst = Math.max(gapRatio ?? 0, rttRatio ?? 0);
            const what = (gapRatio ?? 0) >= (rttRatio ?? 0) ? `a ${fmt(p.maxGapMs!)} ms gap between BFD packets` : `an RTT of ${fmt(p.rttMs!)} ms`;
            out.push(alert(n, "near-detection-budget", "trigger", ev.time, cfg, {
                summary: `BFD session ${n.session} on ${n.node} near its detection budget: ${what} of ${fmt(p.detectionMs)} ms (${Math.round(worst * 100)}%)`,
                details: { maxGapMs: p.maxGapMs, rttMs: p.rttMs, detectionMs: p.detectionMs, windowMs: p.windowMs, ratio: round(worst), threshold: cfg.budgetRatio, peer: n.peer },
            }));
        }
    } else if (measured) {
        n = { ...n, cleanStreak: n.cleanStreak + 1 };
        if (n.open["near-detection-budget"] !== undefined && n.cleanStreak >= cfg.budgetCleanSamples) {
            n = closed(n, "near-detection-budget");
            out.push(alert(n, "near-detection-budget", "resolve", ev.time, cfg, {
                summary: `BFD session ${n.session} on ${n.node} back within its detection budget (${n.cleanStreak} clean samples)`,
                details: { maxGapMs: p.maxGapMs, rttMs: p.rttMs, detectionMs: p.detectionMs, cleanSamples: n.cleanStreak },
            }));
        }
    }

    // RTT trend.
    if (p.rttMs !== null && Number.isFinite(p.rttMs)) {
        const rtt = [...n.rtt, p.rttMs].slice(-cfg.rttSamples);
        const bucket = Math.floor(at / cfg.rttBaselineBucketMs);
        const last = n.baseBuckets[n.baseBuckets.length - 1];
        const baseBuckets = last && last.bucket === bucket
            ? [...n.baseBuckets.slice(0, -1), { bucket, min: Math.min(last.min, p.rttMs) }]
            : [...n.baseBuckets, { bucket, min: p.rttMs }].filter((b) => b.bucket > bucket - cfg.rttBaselineBuckets);
        n = { ...n, rtt, baseBuckets };
        const t = rttTrend(n, cfg);
        if (t && n.open["rtt-rising"] === undefined && t.high && t.rising) {
            n = opened(n, "rtt-rising", at);
            out.push(alert(n, "rtt-rising", "trigger", ev.time, cfg, {
                summary: `RTT on ${n.session} from ${n.node} rising: ${fmt(t.latest)} ms against a baseline of ${fmt(t.baseline)} ms (+${fmt(t.slope)} ms per sample over ${rtt.length} samples)`,
                details: { latestMs: t.latest, baselineMs: t.baseline, slopeMsPerSample: round(t.slope), r2: round(t.r2), samples: rtt.length, factor: cfg.rttFactor, peer: n.peer },
            }));
        } else if (t && n.open["rtt-rising"] !== undefined && !t.high) {
            n = closed(n, "rtt-rising");
            out.push(alert(n, "rtt-rising", "resolve", ev.time, cfg, {
                summary: `RTT on ${n.session} from ${n.node} back to ${fmt(t.latest)} ms (baseline ${fmt(t.baseline)} ms)`,
                details: { latestMs: t.latest, baselineMs: t.baseline },
            }));
        }
    }
    return n;
}

export interface RttTrend {
    baseline: number;
    latest: number;
    /** Least-squares slope, ms per sample, and the fit's r². */
    slope: number;
    r2: number;
    /** latest >= baseline x factor and at least rttMinExcessMs above it. */
    high: boolean;
    /** The fit climbs by rttTrendRise x baseline across the window and r² >= rttMinFit. */
    rising: boolean;
}

/** The RTT judgement for a session, once it has a full window; undefined before. */
export function rttTrend(s: SessionAlertState, cfg: DetectorConfig): RttTrend | undefined {
    const y = s.rtt;
    if (y.length < cfg.rttSamples || y.length < 2 || !s.baseBuckets.length) return undefined;
    const baseline = Math.min(...s.baseBuckets.map((b) => b.min));
    const latest = y[y.length - 1];
    const { slope, r2 } = leastSquares(y);
    const high = latest >= baseline * cfg.rttFactor && latest - baseline >= cfg.rttMinExcessMs;
    const rising = slope * (y.length - 1) >= cfg.rttTrendRise * baseline && r2 >= cfg.rttMinFit;
    return { baseline, latest, slope, r2, high, rising };
}

/** Least squares of y against its index: slope, and r² (0 when y is flat). */
export function leastSquares(y: readonly number[]): { slope: number; r2: number } {
    const n = y.length;
    const mx = (n - 1) / 2;
    const my = y.reduce((a, b) => a + b, 0) / n;
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let i = 0; i < n; i++) {
        const dx = i - mx;
        const dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (sxx === 0) return { slope: 0, r2: 0 };
    const slope = sxy / sxx;
    return { slope, r2: syy === 0 ? 0 : (sxy * sxy) / (sxx * syy) };
}

/** Time-driven changes: a Down past its grace triggers, a storm quiet long enough resolves. */
function expire(s: SessionAlertState, now: number, cfg: DetectorConfig, out: AlertEvent[]): SessionAlertState {
    let n = s;
    const lastFlap = n.flaps[n.flaps.length - 1];
    if (n.open["flap-storm"] !== undefined && lastFlap !== undefined && now - lastFlap >= cfg.flapQuietMs) {
        n = closed(n, "flap-storm");
        out.push(alert(n, "flap-storm", "resolve", toUs(now), cfg, {
            summary: `BFD session ${n.session} on ${n.node} stopped flapping (no transition out of Up for ${secs(now - lastFlap)})`,
            details: { quietMs: now - lastFlap, state: n.bfd ?? null },
        }));
    }
    const since = n.downSince;
    if (since !== undefined && n.open["session-down"] === undefined && n.open["flap-storm"] === undefined) {
        const grace = n.downGrace === "startup" ? cfg.startupGraceMs : cfg.downGraceMs;
        if (now - since >= grace) {
            n = opened(n, "session-down", now);
            const kind = sessionKind(n.session);
            out.push(alert(n, "session-down", "trigger", toUs(now), cfg, {
                severity: kind === "gateway" ? "critical" : "error",
                summary: `BFD ${kind === "unknown" ? "" : `${kind} `}session ${n.session} on ${n.node} is ${n.bfd ?? "Down"} for ${secs(now - since)} (${n.downWhy ?? "down"}; peer ${n.peer})`,
                details: { state: n.bfd ?? null, since: new Date(since).toISOString(), why: n.downWhy ?? null, peer: n.peer, kind },
            }));
        }
    }
    return n;
}

function flapText(s: SessionAlertState, cfg: DetectorConfig, at: number): AlertText {
    return {
        severity: "error",
        summary: `BFD session ${s.session} on ${s.node} is flapping: ${s.flaps.length} transitions out of Up in ${secs(at - s.flaps[0])} (threshold ${cfg.flapCount} in ${secs(cfg.flapWindowMs)})`,
        details: { transitions: s.flaps.length, windowMs: cfg.flapWindowMs, first: new Date(s.flaps[0]).toISOString(), state: s.bfd ?? null, peer: s.peer, kind: sessionKind(s.session) },
    };
}

const SEVERITY: Record<AlertClass, Alert["severity"]> = {
    "session-down": "error",
    "flap-storm": "error",
    "rtt-rising": "warning",
    "near-detection-budget": "warning",
};

interface AlertText {
    summary: string;
    details: Record<string, unknown>;
    severity?: Alert["severity"];
}

function alert(s: SessionAlertState, cls: AlertClass, action: Alert["action"], timeUs: number, cfg: DetectorConfig, text: AlertText): AlertEvent {
    const key = dedupKey(s.site, s.node, s.session, cls);
    const payload: Alert = {
        dedupKey: key,
        action,
        severity: text.severity ?? (cls === "session-down" && sessionKind(s.session) === "gateway" ? "critical" : SEVERITY[cls]),
        class: cls,
        summary: text.summary,
        node: s.node,
        session: s.session,
        details: JSON.stringify(text.details),
    };
    return { id: alertId(key, action, timeUs), site: s.site, source: cfg.source, time: timeUs, type: "alert", payload };
}

/** Deterministic, so a replay of the network topic re-derives the same ids (the ledger's idempotency key, at most 200 bytes). */
function alertId(key: string, action: string, timeUs: number): string {
    const id = `${key}#${action}@${timeUs}`;
    return Buffer.byteLength(id) <= 200 ? id : `alert-${createHash("sha256").update(id).digest("hex")}`;
}

function opened(s: SessionAlertState, cls: AlertClass, at: number): SessionAlertState {
    return { ...s, open: { ...s.open, [cls]: at } };
}

function closed(s: SessionAlertState, cls: AlertClass): SessionAlertState {
    const open = { ...s.open };
    delete open[cls];
    return { ...s, open };
}

const toUs = (ms: number) => Math.round(ms * 1000);
const round = (x: number) => Math.round(x * 1000) / 1000;
const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));
const secs = (ms: number) => `${fmt(Math.round(ms) / 1000)} s`;

export interface DetectorStats {
    events: number;
    /** bfd-change and path-latency events that changed nothing: redelivered or out of order. */
    stale: number;
    ignored: number;
    sessions: number;
    open: number;
}

/**
 * The detector over every session: a map of `stepSession`, with no I/O and no timers. Feed it
 * events with `observe(event, now)` and call `tick(now)` periodically (every second is plenty:
 * grace and quiet periods are seconds long); publish what either returns.
 */
export class AlertDetector {
    readonly config: Readonly<DetectorConfig>;
    private readonly sessions = new Map<string, SessionAlertState>();
    private counts = { events: 0, stale: 0, ignored: 0 };

    constructor(config: Partial<DetectorConfig> = {}) {
        this.config = Object.freeze({ ...DEFAULT_DETECTOR_CONFIG, ...config });
    }

    observe(event: NublarEvent, now: number): AlertEvent[] {
        let input: SessionInput;
        if (event.type === "bfd-change") input = { kind: "bfd", event };
        else if (event.type === "path-latency") input = { kind: "latency", event };
        else {
            this.counts.ignored++;
            return [];
        }
        this.counts.events++;
        const p = event.payload;
        const key = `${event.site}\u0000${p.node}\u0000${p.session}`;
        const before = this.sessions.get(key) ?? initialSession(event.site, p.node, p.session, p.peer, now);
        const { state, alerts, applied } = stepSession(before, input, now, this.config);
        if (!applied) this.counts.stale++;
        this.sessions.set(key, state);
        return alerts;
    }

    /** Time-driven alerts for every session; forgets sessions idle for `forgetAfterMs`. */
    tick(now: number): AlertEvent[] {
        const out: AlertEvent[] = [];
        for (const [key, s] of this.sessions) {
            const { state, alerts } = stepSession(s, { kind: "tick" }, now, this.config);
            out.push(...alerts);
            const idle = !Object.keys(state.open).length && state.downSince === undefined && now - state.seenAt >= this.config.forgetAfterMs;
            if (idle) this.sessions.delete(key);
            else if (state !== s) this.sessions.set(key, state);
        }
        return out;
    }

    /** One session's state, for `nublar alerts` and tests. */
    session(site: string, node: string, session: string): SessionAlertState | undefined {
        return this.sessions.get(`${site}\u0000${node}\u0000${session}`);
    }

    /** Every open condition. */
    openAlerts(): { dedupKey: string; class: AlertClass; since: number }[] {
        const out: { dedupKey: string; class: AlertClass; since: number }[] = [];
        for (const s of this.sessions.values()) {
            for (const cls of ALERT_CLASSES) {
                const since = s.open[cls];
                if (since !== undefined) out.push({ dedupKey: dedupKey(s.site, s.node, s.session, cls), class: cls, since });
            }
        }
        return out;
    }

    stats(): DetectorStats {
        return { ...this.counts, sessions: this.sessions.size, open: this.openAlerts().length };
    }
}
