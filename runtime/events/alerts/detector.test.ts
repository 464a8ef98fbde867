// The alert detector under a virtual clock: BFD changes and path-latency samples in, alert
// events out. Every threshold is checked at its boundary: at it fires, one step below does not.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { validateEvent, type EventOf, type NublarEvent } from "../../../model/events/schema";
import { DIAGNOSTICS, type BfdStateSymbol, type Diagnostic } from "../../../model/vocabulary";
import { AlertDetector, DEFAULT_DETECTOR_CONFIG, dedupKey, leastSquares, sessionKind, type AlertEvent, type DetectorConfig } from "./detector";

const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, ms
const SITE = "isla-nublar";
const NODE = "gate";
const PATH = "path/visitor-center/provider-a";
const GW = "gw/provider-a";

let seq = 0;
function bfd(atMs: number, from: BfdStateSymbol, to: BfdStateSymbol, o: { session?: string; remote?: BfdStateSymbol | null; diag?: Diagnostic; seq?: number; node?: string } = {}): EventOf<"bfd-change"> {
    const s = o.seq ?? ++seq;
    return {
        id: `agent/${o.node ?? NODE}/${s}`, site: SITE, source: `agent/${o.node ?? NODE}`, time: atMs * 1000, type: "bfd-change",
        payload: { node: o.node ?? NODE, session: o.session ?? PATH, peer: "2001:db8:0:4000::2", from, to, diagnostic: o.diag ?? (to === "Down" ? DIAGNOSTICS.controlDetectionTimeExpired : DIAGNOSTICS.noDiagnostic), remoteState: o.remote === undefined ? null : o.remote, seq: s },
    };
}

function lat(atMs: number, o: { rtt?: number | null; gap?: number | null; detection?: number; session?: string }): EventOf<"path-latency"> {
    return {
        id: `latency/${NODE}/${o.session ?? PATH}/${atMs}`, site: SITE, source: `agent/${NODE}`, time: atMs * 1000, type: "path-latency",
        payload: { node: NODE, session: o.session ?? PATH, peer: "2001:db8:0:4000::2", rttMs: o.rtt ?? null, maxGapMs: o.gap ?? null, detectionMs: o.detection ?? 100, windowMs: 1000 },
    };
}

/** `trigger flap-storm` etc., for compact assertions. */
const what = (alerts: AlertEvent[]) => alerts.map((a) => `${a.payload.action} ${a.payload.class}`);

/** Feeds events at their own time; returns every alert. */
function feed(d: AlertDetector, events: NublarEvent[]): AlertEvent[] {
    return events.flatMap((e) => d.observe(e, e.time / 1000));
}

/** A flap: Up -> Down at t, Down -> Up 100 ms later. */
function flap(t: number, session = PATH): EventOf<"bfd-change">[] {
    return [bfd(t, "Up", "Down", { session }), bfd(t + 100, "Down", "Up", { session })];
}

// Flap storms keep session-down out of these tests: a flap's Down lasts 100 ms, under the grace.
test("flap storm: the 4th transition out of Up within 60 s triggers, the 3rd does not, the 5th does not trigger again", () => {
    const d = new AlertDetector();
    feed(d, [bfd(T0, "Down", "Up")]);
    assert.deepEqual(what(feed(d, [...flap(T0 + 1000), ...flap(T0 + 11_000), ...flap(T0 + 21_000)])), []);
    const fourth = feed(d, flap(T0 + 31_000));
    assert.deepEqual(what(fourth), ["trigger flap-storm"]);
    const a = fourth[0];
    assert.equal(a.payload.dedupKey, `nublar/${SITE}/${NODE}/${PATH}/flap-storm`);
    assert.equal(a.payload.severity, "error");
    assert.equal(a.payload.node, NODE);
    assert.equal(a.payload.session, PATH);
    assert.equal(a.time, (T0 + 31_000) * 1000, "an event-driven alert carries the event's time");
    assert.match(a.payload.summary, /flapping: 4 transitions out of Up in 30 s/);
    assert.equal(JSON.parse(a.payload.details).transitions, 4);
    assert.deepEqual(what(feed(d, flap(T0 + 41_000))), [], "already open: no second trigger");
    assert.equal(d.openAlerts().length, 1);
});

test("flap storm: the window is inclusive: 4 transitions spanning exactly 60 s trigger, 60.001 s do not", () => {
    const at = (span: number) => {
        const d = new AlertDetector();
        feed(d, [bfd(T0 - 1000, "Down", "Up")]);
        return what(feed(d, [...flap(T0), ...flap(T0 + 20_000), ...flap(T0 + 40_000), ...flap(T0 + span)]));
    };
    assert.deepEqual(at(60_000), ["trigger flap-storm"]);
    assert.deepEqual(at(60_001), []);
    // and configurable: 3 in 60 s
    const d = new AlertDetector({ flapCount: 3 });
    assert.deepEqual(what(feed(d, [...flap(T0), ...flap(T0 + 20_000), ...flap(T0 + 40_000)])), ["trigger flap-storm"]);
});

test("flap storm resolves after 120 s without a transition out of Up, once", () => {
    const d = new AlertDetector();
    const last = T0 + 30_000;
    feed(d, [...flap(T0), ...flap(T0 + 10_000), ...flap(T0 + 20_000), ...flap(last)]);
    assert.deepEqual(what(d.tick(last + 119_999)), []);
    const r = d.tick(last + 120_000);
    assert.deepEqual(what(r), ["resolve flap-storm"]);
    assert.equal(r[0].payload.dedupKey, `nublar/${SITE}/${NODE}/${PATH}/flap-storm`);
    assert.equal(r[0].time, (last + 120_000) * 1000, "a time-driven alert carries now");
    assert.deepEqual(what(d.tick(last + 200_000)), [], "a resolve only follows a trigger");
    // A new flap after the resolve does not re-trigger on its own: the old ones left the window.
    assert.deepEqual(what(feed(d, flap(last + 130_000))), []);
});

test("session down: Up -> Down on a path session triggers after the 3 s grace (error), not before; Up resolves it", () => {
    const d = new AlertDetector();
    feed(d, [bfd(T0, "Init", "Up")]);
    assert.deepEqual(what(feed(d, [bfd(T0 + 1000, "Up", "Down")])), []);
    assert.deepEqual(what(d.tick(T0 + 3999)), []);
    const t = d.tick(T0 + 4000);
    assert.deepEqual(what(t), ["trigger session-down"]);
    assert.equal(t[0].payload.severity, "error");
    assert.equal(t[0].payload.dedupKey, `nublar/${SITE}/${NODE}/${PATH}/session-down`);
    assert.match(t[0].payload.summary, /path session path\/visitor-center\/provider-a on gate is Down for 3 s \(control detection time expired/);
    assert.deepEqual(what(d.tick(T0 + 60_000)), [], "no duplicate trigger");
    assert.deepEqual(what(feed(d, [bfd(T0 + 70_000, "Down", "Init")])), [], "Init is not Up");
    const up = feed(d, [bfd(T0 + 70_500, "Init", "Up")]);
    assert.deepEqual(what(up), ["resolve session-down"]);
    assert.equal(up[0].payload.dedupKey, t[0].payload.dedupKey);
    assert.deepEqual(what(feed(d, [bfd(T0 + 80_000, "Up", "Up")])), [], "no second resolve");
});

test("session down: a gateway session is critical; a Down that heals within the grace never pages; grace 0 pages at once", () => {
    assert.equal(sessionKind(GW), "gateway");
    assert.equal(sessionKind(PATH), "path");
    assert.equal(sessionKind("bfd-7"), "unknown");
    // One reading of session ids (model/vocabulary.ts): no second spelling, no malformed ones.
    assert.equal(sessionKind("gateway/provider-a"), "unknown");
    assert.equal(sessionKind("path/visitor-center"), "unknown");
    const d = new AlertDetector();
    feed(d, [bfd(T0, "Init", "Up", { session: GW }), bfd(T0 + 1000, "Up", "Down", { session: GW })]);
    const t = d.tick(T0 + 4000);
    assert.deepEqual(what(t), ["trigger session-down"]);
    assert.equal(t[0].payload.severity, "critical");

    const blip = new AlertDetector();
    const alerts = feed(blip, [bfd(T0, "Init", "Up"), bfd(T0 + 1000, "Up", "Down"), bfd(T0 + 3999, "Down", "Up")]);
    assert.deepEqual(what([...alerts, ...blip.tick(T0 + 10_000), ...blip.tick(T0 + 1_000_000)]), []);

    const eager = new AlertDetector({ downGraceMs: 0 });
    assert.deepEqual(what(feed(eager, [bfd(T0, "Init", "Up"), bfd(T0 + 1000, "Up", "Down")])), ["trigger session-down"]);
});

test("session down: never Up since first seen, or a peer restarting (AdminDown), gets the 15 s startup grace; AdminDown here never pages", () => {
    const fresh = new AlertDetector();
    feed(fresh, [bfd(T0, "Down", "Init")]);
    assert.deepEqual(what(fresh.tick(T0 + 14_999)), []);
    assert.deepEqual(what(fresh.tick(T0 + 15_000)), ["trigger session-down"]);

    const restart = new AlertDetector();
    feed(restart, [bfd(T0 - 1000, "Init", "Up"), bfd(T0, "Up", "Down", { remote: "AdminDown", diag: DIAGNOSTICS.neighborSignaledSessionDown })]);
    assert.deepEqual(what(restart.tick(T0 + 14_999)), [], "the agent keeps the routes through a graceful restart");
    assert.match(restart.tick(T0 + 15_000)[0].payload.summary, /peer is AdminDown \(restarting\)/);

    const back = new AlertDetector();
    feed(back, [bfd(T0 - 1000, "Init", "Up"), bfd(T0, "Up", "Down", { remote: "AdminDown" }), bfd(T0 + 10_000, "Down", "Up")]);
    assert.deepEqual(what(back.tick(T0 + 60_000)), [], "a restart back within the grace pages nobody");

    const admin = new AlertDetector();
    feed(admin, [bfd(T0 - 1000, "Init", "Up"), bfd(T0, "Up", "AdminDown", { diag: DIAGNOSTICS.administrativelyDown })]);
    assert.deepEqual(what(admin.tick(T0 + 3_600_000 - 1)), []);
});

test("session down does not trigger while a flap storm is open for the session; once the storm resolves, a session still Down pages", () => {
    const d = new AlertDetector();
    const storm = feed(d, [...flap(T0), ...flap(T0 + 10_000), ...flap(T0 + 20_000), bfd(T0 + 30_000, "Up", "Down")]);
    assert.deepEqual(what(storm), ["trigger flap-storm"]);
    assert.deepEqual(what(d.tick(T0 + 40_000)), [], "down for 10 s, but the storm covers it");
    assert.deepEqual(what(d.tick(T0 + 150_000)), ["resolve flap-storm", "trigger session-down"]);
});

/** A detector with a 10-sample window fed `rtts`, one a second; returns its alerts. */
function rttRun(rtts: number[], cfg: Partial<DetectorConfig> = {}, d = new AlertDetector({ rttSamples: 10, ...cfg }), from = T0): AlertEvent[] {
    return feed(d, rtts.map((rtt, i) => lat(from + i * 1000, { rtt, gap: 10 })));
}

test("rtt rising: a sustained rise ending at baseline x 1.5 triggers; ending just under does not; no trigger before the window is full", () => {
    const rise = [8, 8, 8.5, 9, 9.5, 10, 10.5, 11, 11.5];
    assert.deepEqual(what(rttRun([...rise, 12])), ["trigger rtt-rising"], "12 = 8 x 1.5");
    assert.deepEqual(what(rttRun([...rise, 11.75])), []);
    assert.deepEqual(what(rttRun([8, 9, 10, 11, 12, 13, 14, 15, 16])), [], "9 samples: no window yet");
    const [a] = rttRun([...rise, 12]);
    assert.equal(a.payload.severity, "warning");
    assert.equal(a.payload.dedupKey, `nublar/${SITE}/${NODE}/${PATH}/rtt-rising`);
    const details = JSON.parse(a.payload.details);
    assert.equal(details.baselineMs, 8);
    assert.equal(details.latestMs, 12);
});

test("rtt rising: the slope threshold is a boundary (fitted rise across the window vs rttTrendRise x baseline)", () => {
    const linear = Array.from({ length: 10 }, (_, i) => 8 + 0.5 * i); // slope 0.5/sample: rises 4.5 = 0.5625 x 8
    assert.deepEqual(leastSquares(linear), { slope: 0.5, r2: 1 });
    assert.deepEqual(what(rttRun(linear, { rttTrendRise: 0.5625 })), ["trigger rtt-rising"]);
    assert.deepEqual(what(rttRun(linear, { rttTrendRise: 0.5626 })), []);
});

test("rtt rising: one outlier is not a trend (r² too low), and sub-millisecond rises are under the floor", () => {
    const spike = [8, 8, 8, 8, 8, 8, 8, 8, 8, 16];
    assert.ok(leastSquares(spike).r2 < 0.5);
    assert.deepEqual(what(rttRun(spike)), []);
    assert.deepEqual(what(rttRun(spike, { rttMinFit: 0.2 })), ["trigger rtt-rising"], "the fit requirement is what held it back");
    const lan = Array.from({ length: 10 }, (_, i) => 0.4 + 0.05 * i); // 0.4 -> 0.85 ms: x2, but 0.45 ms
    assert.deepEqual(what(rttRun(lan)), []);
    assert.deepEqual(what(rttRun(lan, { rttMinExcessMs: 0.4 })), ["trigger rtt-rising"]);
});

test("rtt rising: no duplicate while high, resolves when the latest sample is back under baseline x 1.5, once", () => {
    const d = new AlertDetector({ rttSamples: 10 });
    assert.deepEqual(what(rttRun([8, 8, 8.5, 9, 9.5, 10, 10.5, 11, 11.5, 12], {}, d)), ["trigger rtt-rising"]);
    assert.deepEqual(what(rttRun([13, 14, 12], {}, d, T0 + 10_000)), [], "still high: no second trigger");
    const r = rttRun([11.99], {}, d, T0 + 13_000);
    assert.deepEqual(what(r), ["resolve rtt-rising"]);
    assert.deepEqual(what(rttRun([11, 10, 9, 8], {}, d, T0 + 14_000)), []);
    // Samples without an RTT neither count nor resolve.
    assert.deepEqual(what(feed(d, [lat(T0 + 20_000, { rtt: null, gap: 10 })])), []);
});

test("near detection budget: a gap of 0.66 x detection triggers, 65.99 ms of 100 does not; an RTT of 0.66 x detection triggers too", () => {
    const one = (o: { rtt?: number; gap?: number }) => what(feed(new AlertDetector(), [lat(T0, o)]));
    assert.deepEqual(one({ gap: 66, rtt: 1 }), ["trigger near-detection-budget"]);
    assert.deepEqual(one({ gap: 65.99, rtt: 1 }), []);
    assert.deepEqual(one({ gap: 10, rtt: 66 }), ["trigger near-detection-budget"]);
    assert.deepEqual(one({ gap: 10, rtt: 65.99 }), []);
    const [a] = feed(new AlertDetector(), [lat(T0, { gap: 70, rtt: 1 })]);
    assert.equal(a.payload.severity, "warning");
    assert.match(a.payload.summary, /a 70 ms gap between BFD packets of 100 ms \(70%\)/);
    assert.deepEqual(what(feed(new AlertDetector({ budgetRatio: 0.5 }), [lat(T0, { gap: 50 })])), ["trigger near-detection-budget"]);
});

test("near detection budget: no duplicate trigger; resolves after M clean samples in a row (M-1 is not enough; a bad one restarts the count)", () => {
    const d = new AlertDetector({ budgetCleanSamples: 3 });
    let t = T0;
    const at = (o: { rtt?: number | null; gap?: number | null }) => what(feed(d, [lat((t += 1000), o)]));
    assert.deepEqual(at({ gap: 80 }), ["trigger near-detection-budget"]);
    assert.deepEqual(at({ gap: 90 }), [], "already open");
    assert.deepEqual(at({ gap: 10 }), []);
    assert.deepEqual(at({ gap: 10 }), []);
    assert.deepEqual(at({ gap: 70 }), [], "bad again: the clean count restarts");
    assert.deepEqual(at({ gap: 10 }), []);
    assert.deepEqual(at({ gap: 10 }), []);
    assert.deepEqual(at({ gap: null, rtt: null }), [], "no measurement is not a clean sample");
    assert.deepEqual(at({ gap: 10 }), ["resolve near-detection-budget"]);
    assert.deepEqual(at({ gap: 10 }), [], "a resolve only follows a trigger");
    assert.equal(DEFAULT_DETECTOR_CONFIG.budgetCleanSamples, 30);
});

test("near detection budget: a session that is not Up is past its budget, not near it: no trigger", () => {
    const d = new AlertDetector();
    feed(d, [bfd(T0, "Init", "Up"), bfd(T0 + 1000, "Up", "Down")]);
    assert.deepEqual(what(feed(d, [lat(T0 + 1500, { gap: 99 })])), []);
    feed(d, [bfd(T0 + 2000, "Down", "Up")]);
    assert.deepEqual(what(feed(d, [lat(T0 + 2500, { gap: 99 })])), ["trigger near-detection-budget"]);
});

test("other event types are ignored; redelivered and out-of-order events change nothing", () => {
    const d = new AlertDetector();
    const deploy: NublarEvent = { id: "d1", site: SITE, source: "nublar", time: T0 * 1000, type: "deploy", payload: { stack: "isla-nublar", node: NODE, generation: 1, outcome: "failed", message: "x", durationMs: 1 } };
    assert.deepEqual(d.observe(deploy, T0), []);
    // The same transition delivered four times is one flap, not a storm.
    const once = bfd(T0, "Up", "Down");
    const back = bfd(T0 + 100, "Down", "Up");
    assert.deepEqual(what(feed(d, [once, once, once, back, once, back])), []);
    assert.equal(d.session(SITE, NODE, PATH)!.flaps.length, 1);
    assert.equal(d.session(SITE, NODE, PATH)!.bfd, "Up", "the older Down did not roll the state back");
    // An older event (by time) arriving late is ignored too.
    feed(d, [bfd(T0 + 5000, "Up", "Down")]);
    feed(d, [bfd(T0 + 4000, "Down", "Up")]);
    assert.equal(d.session(SITE, NODE, PATH)!.bfd, "Down");
    // A repeated latency sample is not a second sample.
    feed(d, [lat(T0 + 6000, { rtt: 5 }), lat(T0 + 6000, { rtt: 5 })]);
    assert.equal(d.session(SITE, NODE, PATH)!.rtt.length, 1);
    assert.deepEqual(d.stats(), { events: 10, stale: 6, ignored: 1, sessions: 1, open: 0 });
});

test("at the same event time, the agent's seq orders a session's changes (supersedes, the dashboard's rule too)", () => {
    const d = new AlertDetector();
    feed(d, [bfd(T0, "Init", "Up", { seq: 10 })]);
    feed(d, [bfd(T0 + 500, "Up", "Down", { seq: 12 })]);
    feed(d, [bfd(T0 + 500, "Down", "Up", { seq: 11 })]);
    assert.equal(d.session(SITE, NODE, PATH)!.bfd, "Down", "a lower seq at the same time is older");
    feed(d, [bfd(T0 + 500, "Down", "Up", { seq: 13 })]);
    assert.equal(d.session(SITE, NODE, PATH)!.bfd, "Up", "a higher seq at the same time is newer");
    assert.equal(d.stats().stale, 1);
});

test("sessions are independent, per site and node; alert events are valid bus events with deterministic ids", () => {
    const d = new AlertDetector({ downGraceMs: 0 });
    const a = feed(d, [bfd(T0, "Up", "Down", { session: GW }), bfd(T0, "Up", "Down", { session: PATH }), bfd(T0, "Up", "Down", { session: GW, node: "control-room" })]);
    assert.deepEqual(a.map((x) => x.payload.dedupKey), [
        dedupKey(SITE, NODE, GW, "session-down"), dedupKey(SITE, NODE, PATH, "session-down"), dedupKey(SITE, "control-room", GW, "session-down"),
    ]);
    assert.equal(dedupKey(SITE, NODE, GW, "session-down"), "nublar/isla-nublar/gate/gw/provider-a/session-down");
    for (const e of a) {
        const v = validateEvent(e);
        assert.ok(v.ok, v.ok ? "" : v.reason);
        assert.equal(e.type, "alert");
        assert.equal(e.site, SITE);
        assert.equal(e.source, "nublar-alerts");
    }
    // A replay of the same events into a fresh detector derives the same alerts, ids included.
    seq = 1000;
    const events = [bfd(T0, "Init", "Up"), ...flap(T0 + 1000), ...flap(T0 + 2000), ...flap(T0 + 3000), ...flap(T0 + 4000), lat(T0 + 5000, { gap: 90 })];
    const first = feed(new AlertDetector(), events);
    assert.deepEqual(what(first), ["trigger flap-storm", "trigger near-detection-budget"]);
    assert.deepEqual(feed(new AlertDetector(), events), first);
    assert.equal(new Set(first.map((e) => e.id)).size, first.length);
});

test("a session idle for an hour with nothing open is forgotten; one with an open alert is kept", () => {
    const d = new AlertDetector({ downGraceMs: 0 });
    feed(d, [lat(T0, { rtt: 5, gap: 10 }), bfd(T0, "Up", "Down", { session: GW })]);
    assert.equal(d.stats().sessions, 2);
    d.tick(T0 + 3_599_999);
    assert.equal(d.stats().sessions, 2);
    d.tick(T0 + 3_600_000);
    assert.equal(d.stats().sessions, 1);
    assert.ok(d.session(SITE, NODE, GW), "the Down gateway session, still alerting, stays");
});
