// The dashboard under a flood of events naming new keys every time (sessions, routes, upstreams
// and alerts the site plan does not have, nodes it does not have): the view, and what the server
// batches for browsers, stay bounded; what the plan has is never pushed out.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { WebSocket } from "ws";
import { loadSiteFromStackFile } from "../../../model/site/load";
import type { EventOf, EventType, NublarEvent, PayloadTypes } from "../../../model/events/schema";
import { DIAGNOSTICS } from "../../../model/vocabulary";
import { projectPath } from "../../../model/project";
import {
    applyDelta, applyEvent, initialView, mergeDelta, OPEN_ALERTS, sessionKey, UNPLANNED_ROUTES, UNPLANNED_SESSIONS, UNPLANNED_UPSTREAMS,
    type DashboardDelta, type DashboardView,
} from "./model";
import { startDashboard } from "./server";
import { prng } from "../../../model/testing/prng";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const heap = () => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
};
const MiB = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
const json = <T>(v: T): T => JSON.parse(JSON.stringify(v));

const site = loadSiteFromStackFile(projectPath("stacks", "Pulumi.lab.yaml"));
const T0 = 1_760_000_000_000_000;


/** Events with a new random key each: unplanned sessions (some Down), routes, upstreams, alerts, unknown nodes, latency. */
function flood(n: number, seed: number, idPrefix = "f"): NublarEvent[] {
    const rnd = prng(seed);
    const rand = () => Math.floor(rnd() * 2 ** 32).toString(36);
    const nodes = ["gate", "visitor-center", "control-room"];
    const out: NublarEvent[] = [];
    const make = <T extends EventType>(i: number, type: T, payload: PayloadTypes[T]): NublarEvent =>
        ({ id: `${idPrefix}${i}`, site: "lab", source: "test", time: T0 + i, type, payload }) as EventOf<T> as NublarEvent;
    for (let i = 0; i < n; i++) {
        const node = rnd() < 0.1 ? `ghost-${rand()}` : nodes[i % 3];
        const k = i % 6;
        if (k === 0 || k === 1) {
            const session = rnd() < 0.5 ? `gw/provider-${rand()}` : `path/${rand()}/provider-a`;
            const to = rnd() < 0.5 ? "Down" : "Up";
            out.push(make(i, "bfd-change", { node, session, peer: "2001:db8::1", from: "Up", to, diagnostic: to === "Down" ? DIAGNOSTICS.controlDetectionTimeExpired : DIAGNOSTICS.noDiagnostic, remoteState: null, seq: i }));
        } else if (k === 2) {
            out.push(make(i, "route-change", { node, event: rnd() < 0.5 ? "route-added" : "route-removed", route: `2001:db8:${rand()}::/48 metric 100`, prefix: "::/0", via: "up0", metric: 100, reason: "flood", seq: i }));
        } else if (k === 3) {
            out.push(make(i, "ingress-change", { node, upstream: `up-${rand()}`, event: "members", members: [rand()], added: [], removed: [], seq: i }));
        } else if (k === 4) {
            const action = rnd() < 0.1 ? "resolve" : "trigger";
            out.push(make(i, "alert", { dedupKey: `alert/${rand()}`, action, severity: "warning", class: rnd() < 0.2 ? "session-down" : "flood", summary: "s", node, session: `gw/provider-${rand()}`, details: "" }));
        } else {
            out.push(make(i, "path-latency", { node, session: `gw/provider-${rand()}`, peer: "x", rttMs: 1, maxGapMs: 2, detectionMs: 30, windowMs: 1000 }));
        }
    }
    return out;
}

interface Sizes {
    sessions: number;
    unplannedSessions: number;
    routesPerNode: number;
    upstreamsPerNode: number;
    alerts: number;
    busAlerts: number;
    bytes: number;
}
function sizes(v: DashboardView): Sizes {
    const nodes = Object.values(v.nodes);
    const alerts = Object.values(v.alerts);
    return {
        sessions: Object.keys(v.sessions).length,
        unplannedSessions: Object.values(v.sessions).filter((s) => !s.planned).length,
        routesPerNode: Math.max(...nodes.map((n) => Object.keys(n.routes.state).length)),
        upstreamsPerNode: Math.max(...nodes.map((n) => n.ingress.length)),
        alerts: alerts.length,
        busAlerts: alerts.filter((a) => !a.derived).length,
        bytes: JSON.stringify(v).length,
    };
}

/** What must hold whatever was evicted: counts match, nodes list only sessions that exist, derived alerts only for Down sessions. */
function consistent(v: DashboardView): void {
    const counts = { Up: 0, Down: 0, Init: 0, AdminDown: 0, Unknown: 0 };
    for (const s of Object.values(v.sessions)) counts[s.state]++;
    assert.deepEqual(v.counts, counts);
    for (const n of Object.values(v.nodes)) for (const id of [...n.gateways, ...n.paths]) assert.ok(v.sessions[sessionKey(n.name, id)], `${n.name} lists ${id}`);
    for (const a of Object.values(v.alerts)) if (a.derived) assert.equal(v.sessions[sessionKey(a.node, a.session!)]?.state, "Down");
}

test("a flood of events with random new keys: every map of the view stays under its bound, and the plan's entries stay", (t) => {
    const v = initialView(site);
    const planned = json(v);
    const plannedSessions = Object.keys(planned.sessions).length;
    const plannedUpstreams = Math.max(...Object.values(planned.nodes).map((n) => n.ingress.length));
    const before = heap();
    const N = 100_000;
    let peak = sizes(v);
    let i = 0;
    for (const e of flood(N, 42)) {
        applyEvent(v, e);
        if (++i % 5000 === 0) {
            const s = sizes(v);
            peak = Object.fromEntries(Object.entries(s).map(([k, x]) => [k, Math.max(x, peak[k as keyof Sizes])])) as unknown as Sizes;
        }
    }
    const grown = heap() - before;
    const after = sizes(v);
    t.diagnostic(`${N} events with new keys: peak sessions ${peak.sessions} (plan ${plannedSessions} + at most ${UNPLANNED_SESSIONS}), route names per node ${peak.routesPerNode} (plan's + at most ${UNPLANNED_ROUTES}), ` +
        `upstreams per node ${peak.upstreamsPerNode} (plan's + at most ${UNPLANNED_UPSTREAMS}), alerts ${peak.alerts} (${peak.busAlerts} from the bus, at most ${OPEN_ALERTS}); ` +
        `view ${MiB(after.bytes)} as JSON (${MiB(JSON.stringify(planned).length)} at the start); heap ${MiB(grown)} over the start after the flood`);
    assert.equal(after.unplannedSessions, UNPLANNED_SESSIONS);
    assert.ok(peak.sessions <= plannedSessions + UNPLANNED_SESSIONS);
    const plannedRoutes = 0; // the lab plan's route names differ from the flood's random ones
    assert.ok(peak.routesPerNode <= plannedRoutes + UNPLANNED_ROUTES, `${peak.routesPerNode} route names on a node`);
    assert.ok(peak.upstreamsPerNode <= plannedUpstreams + UNPLANNED_UPSTREAMS, `${peak.upstreamsPerNode} upstreams on a node`);
    assert.ok(peak.busAlerts <= OPEN_ALERTS, `${peak.busAlerts} bus alerts`);
    assert.ok(peak.alerts <= OPEN_ALERTS + plannedSessions + UNPLANNED_SESSIONS, `${peak.alerts} alerts`);
    assert.ok(after.bytes < 1 << 20, `the view is ${after.bytes} bytes of JSON`);
    assert.ok(grown < 4 << 20, `heap grew ${MiB(grown)}`);
    // The plan's sessions and upstreams were never pushed out; unknown nodes never added.
    for (const k of Object.keys(planned.sessions)) assert.equal(v.sessions[k].planned, true);
    for (const n of Object.values(planned.nodes)) for (const u of n.ingress) assert.ok(v.nodes[n.name].ingress.some((x) => x.upstream === u.upstream));
    assert.deepEqual(Object.keys(v.nodes).sort(), Object.keys(planned.nodes).sort());
    for (const n of Object.values(planned.nodes)) {
        for (const id of n.gateways) assert.ok(v.nodes[n.name].gateways.includes(id));
        for (const id of n.paths) assert.ok(v.nodes[n.name].paths.includes(id));
    }
    consistent(v);
});

test("with evictions, the deltas still rebuild the view, step by step or merged; the newest unplanned session is kept, the oldest gone", () => {
    const v = initialView(site);
    let mirror: DashboardView = json(v);
    let merged: DashboardDelta = {};
    const start = json(v);
    for (const e of flood(6000, 7)) {
        const d = json(applyEvent(v, e));
        mirror = applyDelta(mirror, d);
        merged = mergeDelta(merged, d);
    }
    assert.deepEqual(mirror, json(v));
    assert.deepEqual(applyDelta(start, merged), json(v));
    consistent(v);
    // The oldest unplanned session went, the last one changed is there.
    const keys = Object.values(v.sessions).filter((s) => !s.planned);
    assert.equal(keys.length, UNPLANNED_SESSIONS);
});

test("the server under the flood: a batch naming more than maxPendingKeys is sent as a snapshot, so what waits for a browser stays bounded", async (t) => {
    const d = await startDashboard({ site });
    t.after(() => d.close());
    const ws = new WebSocket(`${d.url.replace(/^http/, "ws")}ws`, { origin: d.url.replace(/\/$/, "") });
    const messages: { type: string; size: number }[] = [];
    ws.on("message", (data) => {
        const text = String(data);
        messages.push({ type: JSON.parse(text).type, size: text.length });
    });
    await new Promise((r) => ws.once("open", r));
    while (messages.length < 1) await new Promise((r) => setTimeout(r, 10));
    const events = flood(50_000, 11, "s");
    const before = heap();
    for (const e of events) d.publish(e); // in one go: one batch
    const grown = heap() - before; // what waits to be sent, and the view, before the batch goes
    assert.equal(events.length, 50_000); // (the events themselves stay alive through the measure)
    const until = Date.now() + 5000;
    while (d.stats().resyncs + d.stats().deltas < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    const after = messages.slice(1);
    t.diagnostic(`50000 events in one batch: ${after.length} message(s) sent (${after.map((m) => `${m.type} ${m.size} bytes`).join(", ")}); heap ${MiB(grown)} over the start with the batch pending; server stats ${JSON.stringify(d.stats())}`);
    assert.ok(d.stats().resyncs >= 1);
    assert.ok(after.length >= 1 && after.every((m) => m.size < 1 << 20), "no message larger than a bounded view");
    assert.equal(after[after.length - 1].type, "snapshot");
    assert.ok(grown < 8 << 20, `heap grew ${MiB(grown)}`);
    ws.close();
});

test("keys named like Object's own properties (\"__proto__\", \"toString\") name nothing: no throw, no prototype changed", () => {
    const v = initialView(site);
    let n = 0;
    const make = <T extends EventType>(type: T, payload: PayloadTypes[T]): NublarEvent => ({ id: `p${++n}`, site: "lab", source: "test", time: T0 + n, type, payload }) as EventOf<T> as NublarEvent;
    const alert = (dedupKey: string, node = "gate") => make("alert", { dedupKey, action: "trigger", severity: "error", class: "x", summary: "s", node, session: null, details: "" });
    for (const node of ["toString", "__proto__", "constructor"]) {
        assert.doesNotThrow(() => applyEvent(v, make("route-change", { node, event: "route-added", route: "r", prefix: null, via: null, metric: null, reason: null, seq: n })));
        assert.doesNotThrow(() => applyEvent(v, make("bfd-change", { node, session: "gw/provider-a", peer: "p", from: "Up", to: "Down", diagnostic: DIAGNOSTICS.noDiagnostic, remoteState: null, seq: n })));
    }
    applyEvent(v, alert("__proto__"));
    applyEvent(v, alert("toString"));
    applyEvent(v, make("route-change", { node: "gate", event: "route-added", route: "__proto__", prefix: null, via: null, metric: null, reason: null, seq: n }));
    assert.equal(Object.getPrototypeOf(v.alerts), Object.prototype);
    assert.equal(Object.getPrototypeOf(v.nodes.gate.routes.state), Object.prototype);
    assert.deepEqual(Object.keys(v.alerts), ["toString"]);
    assert.equal(v.stats.unknownNode, 6);
    consistent(v);
});
