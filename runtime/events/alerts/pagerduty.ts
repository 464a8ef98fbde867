// The thin I/O shell between the alert detector (runtime/events/alerts/detector.ts) and on-call: alerts
// become PagerDuty Events API v2 events, POSTed with Node's fetch.
//
// - Dedup: a trigger whose dedup key is already open (sent, not resolved) is not sent again.
// - Rate limit: a token bucket per routing key admits `ratePerMinute` triggers a minute with
//   bursts of `burst`. A trigger over the limit is not sent but counted; `summaryDelayMs` after
//   the first one, ONE trigger "N alerts suppressed by rate limit" says what was held back. A
//   resolve is never limited (it closes an incident, and there are never more of them than
//   triggers), except that the resolve of a suppressed trigger is dropped with it.
// - Retries: 429, 5xx, network errors and timeouts are retried with exponential backoff (a
//   429's Retry-After is honoured), at most `maxAttempts` attempts; then it gives up with a
//   logged error. Other 4xx are not retried; their response body is logged. Nothing throws into
//   the caller: `notify` returns at once.
// - Order: the events of one dedup key are delivered one after the other, so a resolve never
//   overtakes the trigger it closes while that is being retried.
// - The routing key is a secret: it is never logged, and is cut out of any response body or
//   error message before it is.
//
// The clock and timers are injected (backoff, the bucket, the summary timer), so tests are
// deterministic; the per-request timeout uses a real timer, since it bounds real I/O.
import { createHash } from "node:crypto";
import type { Alert, EventOf } from "../../../model/events/schema";

export const PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue";
/** The dedup key of the rate-limit summary: one open incident collects every summary. */
export const RATE_LIMIT_DEDUP_KEY = "nublar/rate-limit";
/** PagerDuty's limits on summary and dedup_key. */
export const SUMMARY_MAX = 1024;
export const DEDUP_KEY_MAX = 255;

export interface PagerDutyPayload {
    summary: string;
    source: string;
    severity: Alert["severity"];
    timestamp: string;
    component?: string;
    group?: string;
    class: string;
    custom_details: Record<string, unknown>;
}

export type PagerDutyEvent =
    | { routing_key: string; event_action: "trigger"; dedup_key: string; payload: PagerDutyPayload; client: "nublar" }
    | { routing_key: string; event_action: "resolve"; dedup_key: string; client: "nublar" };

export interface AlertContext {
    /** The site (PagerDuty's `group`); the alert event's envelope has it. */
    site?: string;
    /** When the condition was detected, ms since the epoch. */
    timeMs: number;
}

/**
 * Alert -> Events v2. source: the node; component: the session; group: the site; class: the
 * alert class; custom_details: the alert's details (a JSON object, or `{ details }` when it is
 * text) plus site, node, session and the detector's dedup key. A resolve carries only what
 * PagerDuty reads from one (routing_key, event_action, dedup_key) and `client`.
 */
export function toPagerDutyEvent(alert: Alert, routingKey: string, ctx: AlertContext): PagerDutyEvent {
    const dedup_key = pagerDutyDedupKey(alert.dedupKey);
    if (alert.action === "resolve") return { routing_key: routingKey, event_action: "resolve", dedup_key, client: "nublar" };
    const payload: PagerDutyPayload = {
        summary: clip(alert.summary, SUMMARY_MAX),
        source: alert.node,
        severity: alert.severity,
        timestamp: new Date(ctx.timeMs).toISOString(),
        ...(alert.session !== null ? { component: alert.session } : {}),
        ...(ctx.site !== undefined ? { group: ctx.site } : {}),
        class: alert.class,
        custom_details: { ...parseDetails(alert.details), ...(ctx.site !== undefined ? { site: ctx.site } : {}), node: alert.node, session: alert.session, dedup_key: alert.dedupKey },
    };
    return { routing_key: routingKey, event_action: "trigger", dedup_key, payload, client: "nublar" };
}

/** Keys over PagerDuty's 255 characters become a stable hash (the trigger and its resolve agree). */
export function pagerDutyDedupKey(key: string): string {
    return key.length <= DEDUP_KEY_MAX ? key : `nublar/sha256/${createHash("sha256").update(key).digest("hex")}`;
}

function clip(s: string, max: number): string {
    if (s.length <= max) return s;
    let cut = max - 1;
    if (/[\uD800-\uDBFF]/.test(s[cut - 1])) cut--; // do not split a surrogate pair
    return `${s.slice(0, cut)}…`;
}

function parseDetails(details: string): Record<string, unknown> {
    if (!details) return {};
    try {
        const v: unknown = JSON.parse(details);
        if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
        // plain text
    }
    return { details };
}

export interface Clock {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface PagerDutyOptions {
    /** The Events v2 integration key (a secret: Pulumi config `nublar:pagerDutyRoutingKey`). */
    routingKey: string;
    /** Default https://events.pagerduty.com/v2/enqueue. */
    url?: string;
    /**
     * Triggers per minute per routing key. Default 30: a quarter of PagerDuty's Events API limit
     * per integration key (120 a minute), leaving room for retries and other senders on the key;
     * nobody on call reads more than that anyway.
     */
    ratePerMinute?: number;
    /**
     * Bucket size. Default 20: a node losing an uplink and its path sessions with it gets every
     * alert through; a whole site failing gets the first 20 and one summary.
     */
    burst?: number;
    /**
     * The summary goes this long after the first suppressed alert. Default 60 s, one bucket refill:
     * a sustained storm gives one summary a minute, not one per token.
     */
    summaryDelayMs?: number;
    /**
     * Attempts per event, first included. Default 8: with backoff from 1 s doubling up to 60 s,
     * about two minutes, enough to ride out a PagerDuty or uplink blip, bounded so that a dead
     * endpoint does not build an unbounded backlog.
     */
    maxAttempts?: number;
    backoffMs?: number;
    maxBackoffMs?: number;
    /** Per request. Default 10 s. */
    requestTimeoutMs?: number;
    clock?: Clock;
    fetch?: typeof fetch;
    /** Where errors go (one line each); default stderr. */
    log?: (line: string) => void;
}

export interface PagerDutyCounters {
    /** Events PagerDuty accepted (2xx). */
    sent: number;
    /** Retries made (not counting first attempts). */
    retried: number;
    /** Events given up on: a 4xx other than 429, or out of attempts. */
    failed: number;
    /** Alerts held back by the rate limit (triggers, and resolves of those triggers). */
    suppressed: number;
    /** Triggers not sent because the same dedup key is open. */
    deduplicated: number;
}

interface Episode {
    from: number;
    triggers: number;
    resolves: number;
    severity: Alert["severity"];
    classes: Map<string, number>;
    nodes: Map<string, number>;
    sites: Set<string>;
    timer: unknown;
}

interface RouteState {
    routingKey: string;
    tokens: number;
    refilledAt: number;
    /** Dedup keys whose trigger was sent (or is being sent) and not resolved. */
    open: Set<string>;
    /** Dedup keys whose trigger the rate limit held back. */
    held: Set<string>;
    episode?: Episode;
}

const SEVERITY_RANK: Record<Alert["severity"], number> = { info: 0, warning: 1, error: 2, critical: 3 };

export class PagerDutyNotifier {
    private readonly url: string;
    private readonly rate: number;
    private readonly burst: number;
    private readonly summaryDelayMs: number;
    private readonly maxAttempts: number;
    private readonly backoffMs: number;
    private readonly maxBackoffMs: number;
    private readonly timeoutMs: number;
    private readonly clock: Clock;
    private readonly fetchFn: typeof fetch;
    private readonly logFn: (line: string) => void;
    private readonly defaultKey: string;
    private readonly routes = new Map<string, RouteState>();
    /** The tail of each dedup key's delivery chain. */
    private readonly chains = new Map<string, Promise<void>>();
    private readonly inFlight = new Set<Promise<void>>();
    private readonly count: PagerDutyCounters = { sent: 0, retried: 0, failed: 0, suppressed: 0, deduplicated: 0 };
    private closed = false;

    constructor(opts: PagerDutyOptions) {
        if (!opts.routingKey) throw new Error("PagerDuty: a routing key is required (Pulumi secret nublar:pagerDutyRoutingKey)");
        this.defaultKey = opts.routingKey;
        this.url = opts.url ?? PAGERDUTY_EVENTS_URL;
        this.rate = opts.ratePerMinute ?? 30;
        this.burst = opts.burst ?? 20;
        this.summaryDelayMs = opts.summaryDelayMs ?? 60_000;
        this.maxAttempts = Math.max(1, opts.maxAttempts ?? 8);
        this.backoffMs = opts.backoffMs ?? 1_000;
        this.maxBackoffMs = opts.maxBackoffMs ?? 60_000;
        this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
        this.clock = opts.clock ?? realClock;
        this.fetchFn = opts.fetch ?? fetch;
        this.logFn = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    }

    /** A snapshot, for metrics. */
    get counters(): Readonly<PagerDutyCounters> {
        return { ...this.count };
    }

    /**
     * Queue one alert: an alert event from the detector (site and time from its envelope), or a
     * bare Alert (detected now, no site). Returns at once and never throws.
     */
    notify(alert: EventOf<"alert"> | Alert, routingKey?: string): void {
        try {
            const isEvent = "payload" in alert;
            const a = isEvent ? alert.payload : alert;
            const ctx: AlertContext = isEvent ? { site: alert.site, timeMs: alert.time / 1000 } : { timeMs: this.clock.now() };
            this.admit(a, ctx, routingKey ?? this.defaultKey);
        } catch (err) {
            this.count.failed++;
            this.log(`pagerduty: could not queue an alert: ${(err as Error).message}`);
        }
    }

    private admit(a: Alert, ctx: AlertContext, routingKey: string): void {
        if (this.closed) {
            this.count.failed++;
            this.log(`pagerduty: closed, dropping ${a.action} ${a.dedupKey}`);
            return;
        }
        const r = this.route(routingKey);
        if (a.action === "resolve") {
            if (r.held.delete(a.dedupKey)) {
                this.count.suppressed++;
                if (r.episode) r.episode.resolves++;
                return;
            }
            r.open.delete(a.dedupKey);
            this.enqueue(r, a.dedupKey, toPagerDutyEvent(a, r.routingKey, ctx));
            return;
        }
        if (r.open.has(a.dedupKey) || r.held.has(a.dedupKey)) {
            this.count.deduplicated++;
            return;
        }
        this.refill(r);
        if (r.tokens >= 1) {
            r.tokens -= 1;
            r.open.add(a.dedupKey);
            this.enqueue(r, a.dedupKey, toPagerDutyEvent(a, r.routingKey, ctx));
            return;
        }
        this.count.suppressed++;
        r.held.add(a.dedupKey);
        const e = (r.episode ??= this.startEpisode(r));
        e.triggers++;
        if (SEVERITY_RANK[a.severity] > SEVERITY_RANK[e.severity]) e.severity = a.severity;
        e.classes.set(a.class, (e.classes.get(a.class) ?? 0) + 1);
        e.nodes.set(a.node, (e.nodes.get(a.node) ?? 0) + 1);
        if (ctx.site !== undefined) e.sites.add(ctx.site);
    }

    private route(routingKey: string): RouteState {
        let r = this.routes.get(routingKey);
        if (!r) {
            r = { routingKey, tokens: this.burst, refilledAt: this.clock.now(), open: new Set(), held: new Set() };
            this.routes.set(routingKey, r);
        }
        return r;
    }

    private refill(r: RouteState): void {
        const now = this.clock.now();
        const elapsed = Math.max(0, now - r.refilledAt);
        r.tokens = Math.min(this.burst, r.tokens + (elapsed * this.rate) / 60_000);
        r.refilledAt = now;
    }

    private startEpisode(r: RouteState): Episode {
        const e: Episode = { from: this.clock.now(), triggers: 0, resolves: 0, severity: "info", classes: new Map(), nodes: new Map(), sites: new Set(), timer: undefined };
        e.timer = this.clock.setTimeout(() => this.summarize(r), this.summaryDelayMs);
        // A pending summary does not keep the process alive (close() sends it); a backoff does.
        (e.timer as { unref?: () => void } | undefined)?.unref?.();
        return e;
    }

    /** Sends the pending rate-limit summaries now (close() does). */
    flushSuppressed(): void {
        for (const r of this.routes.values()) {
            if (r.episode) {
                this.clock.clearTimeout(r.episode.timer);
                this.summarize(r);
            }
        }
    }

    private summarize(r: RouteState): void {
        const e = r.episode;
        if (!e) return;
        r.episode = undefined;
        const now = this.clock.now();
        const top = (m: Map<string, number>, n: number) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n));
        const classes = [...e.classes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} x${n}`).join(", ");
        const sites = [...e.sites].sort();
        const summary: Alert = {
            dedupKey: RATE_LIMIT_DEDUP_KEY,
            action: "trigger",
            severity: e.severity,
            class: "rate-limit",
            summary: `${e.triggers} alerts suppressed by rate limit in ${Math.round((now - e.from) / 1000)} s (${classes}; limit ${this.rate}/min, burst ${this.burst})`,
            node: e.nodes.size === 1 ? [...e.nodes.keys()][0] : "nublar-alerts",
            session: null,
            details: JSON.stringify({
                suppressedTriggers: e.triggers,
                suppressedResolves: e.resolves,
                from: new Date(e.from).toISOString(),
                to: new Date(now).toISOString(),
                byClass: top(e.classes, 20),
                byNode: top(e.nodes, 20),
                nodes: e.nodes.size,
                sites,
                ratePerMinute: this.rate,
                burst: this.burst,
            }),
        };
        // The summary is not limited (at most one per summaryDelayMs) and not deduplicated: a
        // later summary lands on the same open incident as a new log entry.
        this.enqueue(r, RATE_LIMIT_DEDUP_KEY, toPagerDutyEvent(summary, r.routingKey, { site: sites.length === 1 ? sites[0] : undefined, timeMs: now }));
    }

    private enqueue(r: RouteState, key: string, event: PagerDutyEvent): void {
        const chainKey = `${r.routingKey}\u0000${key}`;
        const prev = this.chains.get(chainKey) ?? Promise.resolve();
        const p: Promise<void> = prev.then(() => this.deliver(r, key, event)).catch((err: unknown) => {
            this.count.failed++;
            this.log(`pagerduty: ${event.event_action} ${event.dedup_key}: ${this.describe(err)}`);
        });
        this.chains.set(chainKey, p);
        this.inFlight.add(p);
        void p.finally(() => {
            this.inFlight.delete(p);
            if (this.chains.get(chainKey) === p) this.chains.delete(chainKey);
        });
    }

    private async deliver(r: RouteState, key: string, event: PagerDutyEvent): Promise<void> {
        const body = JSON.stringify(event);
        const what = `${event.event_action} ${event.dedup_key}`;
        for (let attempt = 1; ; attempt++) {
            let retryAfterMs: number | undefined;
            let why: string;
            try {
                const res = await this.fetchFn(this.url, {
                    method: "POST",
                    headers: { "content-type": "application/json", accept: "application/json" },
                    body,
                    signal: AbortSignal.timeout(this.timeoutMs),
                });
                const text = await res.text().catch(() => "");
                if (res.ok) {
                    this.count.sent++;
                    return;
                }
                if (res.status !== 429 && res.status < 500) {
                    this.count.failed++;
                    if (event.event_action === "trigger") r.open.delete(key);
                    this.log(`pagerduty: ${what} refused, HTTP ${res.status}, not retried: ${clip(text.replace(/\s+/g, " ").trim(), 2000) || "(empty body)"}`);
                    return;
                }
                why = `HTTP ${res.status}${text ? `: ${clip(text.replace(/\s+/g, " ").trim(), 500)}` : ""}`;
                if (res.status === 429) retryAfterMs = retryAfter(res.headers.get("retry-after"), this.clock.now());
            } catch (err) {
                why = this.describe(err);
            }
            if (attempt >= this.maxAttempts) {
                this.count.failed++;
                if (event.event_action === "trigger") r.open.delete(key);
                this.log(`pagerduty: ${what} failed after ${attempt} attempts, giving up: ${why}`);
                return;
            }
            const backoff = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
            const delay = retryAfterMs !== undefined ? Math.min(this.maxBackoffMs, Math.max(backoff, retryAfterMs)) : backoff;
            this.count.retried++;
            this.log(`pagerduty: ${what} attempt ${attempt} failed (${why}), retrying in ${delay} ms`);
            await new Promise<void>((resolve) => this.clock.setTimeout(resolve, delay));
        }
    }

    private describe(err: unknown): string {
        const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
        if (e?.name === "TimeoutError") return `no answer in ${this.timeoutMs} ms`;
        const cause = e?.cause?.code ?? e?.cause?.message;
        return `${e?.message ?? String(err)}${cause ? ` (${cause})` : ""}`;
    }

    /** Every line goes out with every routing key cut out, whatever put it there. */
    private log(line: string): void {
        let safe = line;
        for (const key of [this.defaultKey, ...this.routes.keys()]) if (key) safe = safe.split(key).join("[routing key]");
        try {
            this.logFn(safe);
        } catch {
            // a broken logger must not break alerting
        }
    }

    /** Resolves when nothing is queued, in flight or waiting to be retried. */
    async idle(): Promise<void> {
        while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
    }

    /** Sends pending summaries, waits for every delivery, and refuses further alerts. */
    async close(): Promise<void> {
        this.flushSuppressed();
        this.closed = true;
        await this.idle();
    }
}

/** Retry-After: seconds, or an HTTP date. */
function retryAfter(h: string | null, now: number): number | undefined {
    if (!h) return undefined;
    const s = Number(h);
    if (Number.isFinite(s) && s >= 0) return s * 1000;
    const t = Date.parse(h);
    return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
