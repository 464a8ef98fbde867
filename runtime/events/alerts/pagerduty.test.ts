// The PagerDuty shell against a real HTTP server on ::1 that records what it is sent. The clock
// is virtual: backoff and the rate-limit summary wait on it, so nothing here sleeps.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Alert } from "../../../model/events/schema";
import { AlertDetector, type AlertEvent } from "./detector";
import { DIAGNOSTICS } from "../../../model/vocabulary";
import { PagerDutyNotifier, RATE_LIMIT_DEDUP_KEY, toPagerDutyEvent, type Clock, type PagerDutyOptions } from "./pagerduty";

const KEY = "R0UT1NGkey0123456789abcdefSECRET"; // 32 characters, like a real integration key
const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
/** Every line any notifier in this file logged: the last test checks the key is in none. */
const LOGS: string[] = [];

class FakeClock implements Clock {
    t = T0;
    timers: { at: number; fn: () => void; ms: number }[] = [];
    /** Every delay asked for, in order. */
    delays: number[] = [];
    now(): number {
        return this.t;
    }
    setTimeout(fn: () => void, ms: number): unknown {
        const h = { at: this.t + ms, fn, ms };
        this.timers.push(h);
        this.delays.push(ms);
        return h;
    }
    clearTimeout(h: unknown): void {
        this.timers = this.timers.filter((x) => x !== h);
    }
    /** Moves time on, firing what falls due, in order. */
    advance(ms: number): void {
        const end = this.t + ms;
        for (;;) {
            const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
            if (!due) break;
            this.timers = this.timers.filter((x) => x !== due);
            this.t = due.at;
            due.fn();
        }
        this.t = end;
    }
}

interface Recorded {
    method: string;
    url: string;
    contentType: string | undefined;
    body: Record<string, unknown>;
    raw: string;
}

type Reply = { status: number; body?: string; headers?: Record<string, string> };

/** A PagerDuty stand-in on ::1: records every request and answers with `reply` (202 by default). */
async function pagerDuty(reply: (req: Recorded, n: number) => Reply = () => ({ status: 202 })) {
    const requests: Recorded[] = [];
    const srv = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
            const raw = Buffer.concat(chunks).toString();
            const rec: Recorded = { method: req.method!, url: req.url!, contentType: req.headers["content-type"], body: JSON.parse(raw) as Record<string, unknown>, raw };
            requests.push(rec);
            const r = reply(rec, requests.length);
            const body = r.body ?? JSON.stringify({ status: "success", message: "Event processed", dedup_key: rec.body.dedup_key });
            res.writeHead(r.status, { "content-type": "application/json", ...r.headers });
            res.end(body);
        });
    });
    await new Promise<void>((resolve) => srv.listen(0, "::1", resolve));
    const port = (srv.address() as AddressInfo).port;
    return {
        url: `http://[::1]:${port}/v2/enqueue`,
        requests,
        close: () => new Promise<void>((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
        }),
    };
}

function notifier(url: string, clock: FakeClock, o: Partial<PagerDutyOptions> = {}) {
    const logs: string[] = [];
    const n = new PagerDutyNotifier({ routingKey: KEY, url, clock, log: (l) => (logs.push(l), LOGS.push(l)), ...o });
    return { n, logs };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Runs deliveries to the end, moving the virtual clock to each backoff timer as it is set. */
async function drive(n: PagerDutyNotifier, clock: FakeClock): Promise<void> {
    let done = false;
    void n.idle().then(() => (done = true));
    const deadline = Date.now() + 5000;
    while (!done) {
        if (Date.now() > deadline) throw new Error("deliveries did not finish");
        const next = clock.timers.sort((a, b) => a.at - b.at)[0];
        if (next) clock.advance(next.at - clock.t);
        await tick();
    }
}

function alert(o: Partial<Alert> = {}): Alert {
    return {
        dedupKey: "nublar/isla-nublar/gate/gw/provider-a/session-down", action: "trigger", severity: "critical", class: "session-down",
        summary: "BFD gateway session gw/provider-a on gate is Down for 3 s", node: "gate", session: "gw/provider-a",
        details: JSON.stringify({ state: "Down", peer: "2001:db8:a::1" }), ...o,
    };
}

function event(a: Alert, timeMs = T0): AlertEvent {
    return { id: `${a.dedupKey}#${a.action}`, site: "isla-nublar", source: "nublar-alerts", time: timeMs * 1000, type: "alert", payload: a };
}

test("Events v2 mapping: the exact trigger and resolve bodies; summary clipped to 1024; long dedup keys hashed, stably", () => {
    const d = new AlertDetector({ downGraceMs: 0 });
    const at = T0 + 1234;
    const bfd = (t: number, from: "Up" | "Down", to: "Up" | "Down", seq: number) => d.observe({
        id: `e${seq}`, site: "isla-nublar", source: "agent/gate", time: t * 1000, type: "bfd-change",
        payload: { node: "gate", session: "gw/provider-a", peer: "2001:db8:a::1", from, to, diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: null, seq },
    }, t);
    const [trigger] = bfd(at, "Up", "Down", 1);
    const p = trigger.payload;
    assert.deepEqual(toPagerDutyEvent(p, KEY, { site: trigger.site, timeMs: trigger.time / 1000 }), {
        routing_key: KEY,
        event_action: "trigger",
        dedup_key: "nublar/isla-nublar/gate/gw/provider-a/session-down",
        payload: {
            summary: p.summary,
            source: "gate",
            severity: "critical",
            timestamp: "2026-01-01T00:00:01.234Z",
            component: "gw/provider-a",
            group: "isla-nublar",
            class: "session-down",
            custom_details: {
                ...JSON.parse(p.details), site: "isla-nublar", node: "gate", session: "gw/provider-a", dedup_key: "nublar/isla-nublar/gate/gw/provider-a/session-down",
            },
        },
        client: "nublar",
    });
    const [resolve] = bfd(at + 5000, "Down", "Up", 2);
    assert.deepEqual(toPagerDutyEvent(resolve.payload, KEY, { timeMs: at + 5000 }), {
        routing_key: KEY, event_action: "resolve", dedup_key: "nublar/isla-nublar/gate/gw/provider-a/session-down", client: "nublar",
    });

    const long = toPagerDutyEvent(alert({ summary: "x".repeat(5000), session: null, details: "plain text" }), KEY, { timeMs: T0 });
    assert.ok(long.event_action === "trigger");
    assert.equal(long.payload.summary.length, 1024);
    assert.ok(long.payload.summary.endsWith("…"));
    assert.equal("component" in long.payload, false, "no session, no component");
    assert.equal("group" in long.payload, false, "no site, no group");
    assert.equal(long.payload.custom_details.details, "plain text");
    const bigKey = `nublar/isla-nublar/${"n".repeat(128)}/path/${"p".repeat(128)}/provider-a/rtt-rising`;
    const k1 = toPagerDutyEvent(alert({ dedupKey: bigKey }), KEY, { timeMs: T0 }).dedup_key;
    const k2 = toPagerDutyEvent(alert({ dedupKey: bigKey, action: "resolve" }), KEY, { timeMs: T0 }).dedup_key;
    assert.ok(k1.length <= 255);
    assert.equal(k1, k2, "a trigger and its resolve agree on the hashed key");
});

test("delivery: POST JSON to the configured URL, exactly the Events v2 body; counters", async () => {
    const pd = await pagerDuty();
    try {
        const clock = new FakeClock();
        const { n, logs } = notifier(pd.url, clock);
        const a = alert();
        n.notify(event(a, T0 + 500));
        n.notify(event({ ...a, action: "resolve" }, T0 + 9000));
        await n.idle();
        assert.equal(pd.requests.length, 2);
        for (const r of pd.requests) {
            assert.equal(r.method, "POST");
            assert.equal(r.url, "/v2/enqueue");
            assert.equal(r.contentType, "application/json");
        }
        assert.equal((pd.requests[0].body.payload as { timestamp: string }).timestamp, "2026-01-01T00:00:00.500Z");
        assert.deepEqual(pd.requests[0].body, toPagerDutyEvent(a, KEY, { site: "isla-nublar", timeMs: T0 + 500 }));
        assert.deepEqual(pd.requests[1].body, { routing_key: KEY, event_action: "resolve", dedup_key: a.dedupKey, client: "nublar" });
        assert.deepEqual(n.counters, { sent: 2, retried: 0, failed: 0, suppressed: 0, deduplicated: 0 });
        assert.deepEqual(logs, []);
    } finally {
        await pd.close();
    }
});

test("dedup: a trigger for an open key is not sent again; after its resolve, a new trigger is", async () => {
    const pd = await pagerDuty();
    try {
        const { n } = notifier(pd.url, new FakeClock());
        const a = alert();
        n.notify(a);
        n.notify(a);
        n.notify({ ...a, summary: "again, worded differently" });
        n.notify({ ...a, action: "resolve" });
        n.notify(a);
        n.notify(alert({ dedupKey: "nublar/isla-nublar/gate/gw/provider-b/session-down" }));
        await n.idle();
        // Keys are delivered concurrently; each key's events in order.
        assert.deepEqual(pd.requests.filter((r) => r.body.dedup_key === a.dedupKey).map((r) => r.body.event_action), ["trigger", "resolve", "trigger"]);
        assert.deepEqual(pd.requests.filter((r) => r.body.dedup_key !== a.dedupKey).map((r) => r.body.dedup_key), ["nublar/isla-nublar/gate/gw/provider-b/session-down"]);
        assert.equal(n.counters.deduplicated, 2);
        assert.equal(n.counters.sent, 4);
    } finally {
        await pd.close();
    }
});

test("rate limit: a burst of 3 at 60/min; what exceeds it is counted and summarized in ONE later trigger; tokens come back", async () => {
    const pd = await pagerDuty();
    try {
        const clock = new FakeClock();
        const { n } = notifier(pd.url, clock, { ratePerMinute: 60, burst: 3, summaryDelayMs: 60_000 });
        const key = (i: number) => `nublar/isla-nublar/node-${i}/gw/provider-a/session-down`;
        for (let i = 0; i < 7; i++) n.notify(event(alert({ dedupKey: key(i), node: `node-${i}`, severity: i === 5 ? "critical" : "warning", class: i < 5 ? "session-down" : "flap-storm" })));
        n.notify(event(alert({ dedupKey: key(6), action: "resolve" }))); // the resolve of a suppressed trigger goes with it
        n.notify(event(alert({ dedupKey: key(0), action: "resolve" }))); // resolves are not limited
        await n.idle();
        assert.deepEqual(pd.requests.map((r) => `${r.body.event_action} ${r.body.dedup_key}`).sort(), [
            `resolve ${key(0)}`, `trigger ${key(0)}`, `trigger ${key(1)}`, `trigger ${key(2)}`,
        ]);
        assert.equal(n.counters.suppressed, 5, "4 triggers and the resolve of one of them");
        assert.equal(clock.timers.length, 1, "one summary pending");

        // 999 ms later not even one token is back; at 1 s one is.
        clock.advance(999);
        n.notify(event(alert({ dedupKey: key(7), node: "node-7" })));
        clock.advance(1);
        n.notify(event(alert({ dedupKey: key(8) })));
        await n.idle();
        assert.deepEqual(pd.requests.slice(4).map((r) => r.body.dedup_key), [key(8)]);
        assert.equal(n.counters.suppressed, 6);

        assert.equal(pd.requests.filter((r) => r.body.dedup_key === RATE_LIMIT_DEDUP_KEY).length, 0, "the summary waits");
        clock.advance(60_000 - 1000);
        await n.idle();
        const summaries = pd.requests.filter((r) => r.body.dedup_key === RATE_LIMIT_DEDUP_KEY);
        assert.equal(summaries.length, 1);
        const s = summaries[0].body as { event_action: string; payload: { summary: string; severity: string; class: string; group: string; custom_details: Record<string, unknown> } };
        assert.equal(s.event_action, "trigger");
        assert.match(s.payload.summary, /^5 alerts suppressed by rate limit in 60 s \(session-down x3, flap-storm x2; limit 60\/min, burst 3\)$/);
        assert.equal(s.payload.severity, "critical", "the worst severity held back");
        assert.equal(s.payload.class, "rate-limit");
        assert.equal(s.payload.group, "isla-nublar");
        assert.equal(s.payload.custom_details.suppressedTriggers, 5);
        assert.equal(s.payload.custom_details.suppressedResolves, 1);
        assert.deepEqual(s.payload.custom_details.byNode, { "node-3": 1, "node-4": 1, "node-5": 1, "node-6": 1, "node-7": 1 });
        assert.equal(clock.timers.length, 0);
        clock.advance(600_000);
        await n.idle();
        assert.equal(pd.requests.filter((r) => r.body.dedup_key === RATE_LIMIT_DEDUP_KEY).length, 1, "ONE summary, not one per token");
        assert.equal(n.counters.sent, pd.requests.length);
    } finally {
        await pd.close();
    }
});

test("close() sends a pending summary at once and then refuses alerts", async () => {
    const pd = await pagerDuty();
    try {
        const clock = new FakeClock();
        const { n } = notifier(pd.url, clock, { burst: 1 });
        n.notify(alert({ dedupKey: "a" }));
        n.notify(alert({ dedupKey: "b" }));
        await n.close();
        assert.deepEqual(pd.requests.map((r) => r.body.dedup_key), ["a", RATE_LIMIT_DEDUP_KEY]);
        assert.equal(clock.timers.length, 0, "the summary timer was cleared");
        n.notify(alert({ dedupKey: "c" }));
        await n.idle();
        assert.equal(pd.requests.length, 2);
        assert.equal(n.counters.failed, 1);
    } finally {
        await pd.close();
    }
});

test("retries: 503 twice then 202: the same body three times, backing off 1 s then 2 s", async () => {
    const pd = await pagerDuty((_, i) => (i <= 2 ? { status: 503, body: "upstream unavailable" } : { status: 202 }));
    try {
        const clock = new FakeClock();
        const { n, logs } = notifier(pd.url, clock);
        n.notify(alert());
        await drive(n, clock);
        assert.equal(pd.requests.length, 3);
        assert.equal(new Set(pd.requests.map((r) => r.raw)).size, 1, "the same event each time");
        assert.deepEqual(clock.delays, [1000, 2000]);
        assert.deepEqual(n.counters, { sent: 1, retried: 2, failed: 0, suppressed: 0, deduplicated: 0 });
        assert.equal(logs.length, 2);
        assert.match(logs[0], /attempt 1 failed \(HTTP 503: upstream unavailable\), retrying in 1000 ms/);
    } finally {
        await pd.close();
    }
});

test("retries: a 429 waits as long as its Retry-After says", async () => {
    const pd = await pagerDuty((_, i) => (i === 1 ? { status: 429, headers: { "retry-after": "7" }, body: '{"status":"throttle exceeded"}' } : { status: 202 }));
    try {
        const clock = new FakeClock();
        const { n } = notifier(pd.url, clock);
        n.notify(alert());
        await drive(n, clock);
        assert.equal(pd.requests.length, 2);
        assert.deepEqual(clock.delays, [7000]);
        assert.equal(n.counters.retried, 1);
        assert.equal(n.counters.sent, 1);
    } finally {
        await pd.close();
    }
});

test("no retry on 400: one request, counted failed, the response body logged (with the routing key cut out)", async () => {
    const body = JSON.stringify({ status: "invalid event", message: "Event object is invalid", errors: [`routing_key ${KEY} is not a valid integration`] });
    const pd = await pagerDuty(() => ({ status: 400, body }));
    try {
        const clock = new FakeClock();
        const { n, logs } = notifier(pd.url, clock);
        n.notify(alert());
        await drive(n, clock);
        assert.equal(pd.requests.length, 1);
        assert.deepEqual(clock.delays, []);
        assert.deepEqual(n.counters, { sent: 0, retried: 0, failed: 1, suppressed: 0, deduplicated: 0 });
        assert.equal(logs.length, 1);
        assert.match(logs[0], /trigger nublar\/isla-nublar\/gate\/gw\/provider-a\/session-down refused, HTTP 400, not retried: .*Event object is invalid/);
        assert.match(logs[0], /routing_key \[routing key\] is not a valid integration/);
        assert.ok(!logs[0].includes(KEY));
        // A refused trigger is not open: the next trigger for the key is sent, not deduplicated.
        n.notify(alert());
        await drive(n, clock);
        assert.equal(pd.requests.length, 2);
    } finally {
        await pd.close();
    }
});

test("network errors are retried a bounded number of times, then given up with a log line; notify never throws", async () => {
    const pd = await pagerDuty();
    const url = pd.url;
    await pd.close(); // nothing listens there now: connection refused
    const clock = new FakeClock();
    const { n, logs } = notifier(url, clock, { maxAttempts: 3 });
    assert.doesNotThrow(() => n.notify(alert()));
    await drive(n, clock);
    assert.deepEqual(clock.delays, [1000, 2000]);
    assert.deepEqual(n.counters, { sent: 0, retried: 2, failed: 1, suppressed: 0, deduplicated: 0 });
    assert.match(logs[logs.length - 1], /failed after 3 attempts, giving up: fetch failed \(ECONNREFUSED\)/);
    // A notifier whose fetch throws synchronously does not throw either.
    const broken = new PagerDutyNotifier({ routingKey: KEY, url, clock, maxAttempts: 1, log: (l) => LOGS.push(l), fetch: (() => { throw new Error("boom"); }) as typeof fetch });
    assert.doesNotThrow(() => broken.notify(alert()));
    await broken.idle();
    assert.equal(broken.counters.failed, 1);
});

test("order: a resolve waits for its trigger while that is being retried", async () => {
    const pd = await pagerDuty((_, i) => (i === 1 ? { status: 502 } : { status: 202 }));
    try {
        const clock = new FakeClock();
        const { n } = notifier(pd.url, clock);
        const a = alert();
        n.notify(a);
        n.notify({ ...a, action: "resolve" });
        n.notify(alert({ dedupKey: "other" }));
        await drive(n, clock);
        const order = pd.requests.map((r) => `${r.body.event_action} ${r.body.dedup_key}`);
        assert.equal(order.length, 4);
        assert.ok(order.indexOf(`resolve ${a.dedupKey}`) > order.lastIndexOf(`trigger ${a.dedupKey}`), order.join(" | "));
        assert.equal(order.filter((o) => o === `trigger ${a.dedupKey}`).length, 2);
    } finally {
        await pd.close();
    }
});

test("the routing key is in every request and in no log line", async () => {
    const pd = await pagerDuty((_, i) => (i === 1 ? { status: 500, body: `internal error for ${KEY}` } : { status: 403, body: `forbidden: ${KEY}` }));
    try {
        const clock = new FakeClock();
        const { n } = notifier(pd.url, clock);
        n.notify(alert());
        await drive(n, clock);
        assert.equal(pd.requests.length, 2);
        for (const r of pd.requests) assert.equal(r.body.routing_key, KEY);
    } finally {
        await pd.close();
    }
    assert.ok(LOGS.length >= 8, `logs collected from every test (${LOGS.length})`);
    assert.ok(LOGS.some((l) => l.includes("[routing key]")), "a body carrying the key was logged, redacted");
    for (const line of LOGS) assert.ok(!line.includes(KEY), `the routing key leaked: ${line}`);
    assert.throws(() => new PagerDutyNotifier({ routingKey: "" }), /routing key is required/);
});
