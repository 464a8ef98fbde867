// The dashboard's view model: the lab site laid out from its plan, then events folded in.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { planAgents } from "../../../model/network/agent-plan";
import { loadSiteFromStackFile } from "../../../model/site/load";
import type { EventOf, EventType, NublarEvent, PayloadTypes } from "../../../model/events/schema";
import { DIAGNOSTICS, type BfdStateSymbol, type Diagnostic, type RouteEvent } from "../../../model/vocabulary";
import { projectPath } from "../../../model/project";
import {
    applyDelta, applyEvent, derivedAlertKey, ID_WINDOW, initialView, mergeDelta, RECENT_ROUTES, sessionKey, STREAM_LIMIT,
    type DashboardDelta, type DashboardView,
} from "./model";

const site = loadSiteFromStackFile(projectPath("stacks", "Pulumi.lab.yaml"));
const T0 = 1_760_000_000_000_000; // µs

function events() {
    let n = 0;
    const make = <T extends EventType>(type: T, payload: PayloadTypes[T], over: Partial<EventOf<T>> = {}): NublarEvent =>
        ({ id: `e${++n}`, site: "lab", source: "test", time: T0 + n * 1000, type, payload, ...over }) as NublarEvent;
    return {
        make,
        bfd: (node: string, session: string, to: BfdStateSymbol, over: Partial<EventOf<"bfd-change">> = {}, from: BfdStateSymbol = "Up", diagnostic: Diagnostic = to === "Down" ? DIAGNOSTICS.controlDetectionTimeExpired : DIAGNOSTICS.noDiagnostic) =>
            make("bfd-change", { node, session, peer: "2001:db8::1", from, to, diagnostic, remoteState: null, seq: n }, over),
        route: (node: string, event: RouteEvent, route: string) =>
            make("route-change", { node, event, route, prefix: "::/0", via: "2001:db8:a:1::1", metric: 100, reason: "test", seq: n }),
        ingress: (node: string, upstream: string, members: string[], added: string[] = [], removed: string[] = []) =>
            make("ingress-change", { node, upstream, event: "members", members, added, removed, seq: n }),
        alert: (dedupKey: string, action: "trigger" | "resolve", over: Partial<PayloadTypes["alert"]> = {}) =>
            make("alert", { dedupKey, action, severity: "error", class: "flap-storm", summary: "flapping", node: "gate", session: null, details: "", ...over }),
    };
}

const json = <T>(v: T): T => JSON.parse(JSON.stringify(v));

test("the initial view is the site plan: nodes, domains, providers, uplinks and every BFD session Unknown", () => {
    const v = initialView(site);
    assert.equal(v.site, "lab");
    assert.deepEqual(v.nodeOrder, ["gate", "visitor-center", "control-room"]);
    assert.deepEqual(v.failureDomains, [{ name: "east", nodes: ["gate"] }, { name: "west", nodes: ["visitor-center"] }, { name: "north", nodes: ["control-room"] }]);
    assert.deepEqual(v.providers.map((p) => p.name), ["provider-a", "provider-b"]);
    assert.deepEqual([v.nodes.gate.role, v.nodes.gate.hub, v.nodes["visitor-center"].hub], ["edge", true, false]);
    // Exactly the agent plan's sessions, node by node.
    const planned = planAgents(site, { paths: () => ({ socket: "-", events: "-" }) }).flatMap((a) => a.sessions.map((s) => sessionKey(a.node, s.id)));
    assert.deepEqual(Object.keys(v.sessions).sort(), planned.sort());
    assert.equal(planned.length, 18);
    assert.ok(Object.values(v.sessions).every((s) => s.state === "Unknown" && s.planned));
    assert.deepEqual(v.counts, { Up: 0, Down: 0, Init: 0, AdminDown: 0, Unknown: 18 });
    assert.deepEqual(v.nodes.gate.gateways, ["gw/provider-a", "gw/provider-b"]);
    assert.equal(v.sessions[sessionKey("gate", "gw/provider-b")].peer, "provider-b");
    assert.equal(v.sessions[sessionKey("gate", "path/visitor-center/provider-a")].peer, "visitor-center");
    // Nginx runs on the edge node only, with the site's upstreams, not reported yet.
    assert.deepEqual(v.nodes.gate.ingress.map((u) => [u.upstream, u.port, u.configured.map((m) => m.node), u.members]), [["visitor-web", 80, ["visitor-center", "control-room"], null]]);
    assert.deepEqual(v.nodes["control-room"].ingress, []);
    assert.deepEqual(v.events, []);
    assert.deepEqual(v.alerts, {});
    assert.deepEqual(json(v), v, "the view is plain JSON");
});

test("bfd-change sets the session's state and counts; a Down session raises the dashboard's own alert until it is Up again", () => {
    const v = initialView(site);
    const e = events();
    const key = sessionKey("gate", "gw/provider-a");
    let d = applyEvent(v, e.bfd("gate", "gw/provider-a", "Up", {}, "Down"));
    assert.equal(v.sessions[key].state, "Up");
    assert.deepEqual(Object.keys(d.sessions!), [key]);
    assert.deepEqual([v.counts.Up, v.counts.Unknown], [1, 17]);
    assert.equal(d.events!.length, 1);
    assert.equal(d.events![0].text, "gw/provider-a Down → Up");
    assert.equal(d.alerts, undefined);

    d = applyEvent(v, e.bfd("gate", "gw/provider-a", "Down"));
    const s = v.sessions[key];
    assert.deepEqual([s.state, s.diagnostic, s.transitions, s.since], ["Down", DIAGNOSTICS.controlDetectionTimeExpired, 2, T0 + 2000]);
    assert.deepEqual([v.counts.Up, v.counts.Down], [0, 1]);
    assert.equal(d.events![0].tone, "bad");
    assert.equal(d.events![0].text, `gw/provider-a Up → Down (${DIAGNOSTICS.controlDetectionTimeExpired})`);
    const akey = derivedAlertKey("gate", "gw/provider-a");
    assert.equal(d.alerts![akey]!.derived, true);
    assert.equal(v.alerts[akey].severity, "error");
    assert.match(v.alerts[akey].summary, /gw\/provider-a is Down \(uplink to provider-a\)/);

    // AdminDown is a graceful restart, not an outage: no alert.
    d = applyEvent(v, e.bfd("gate", "gw/provider-a", "AdminDown", {}, "Down"));
    assert.deepEqual(d.alerts, { [akey]: null });
    assert.deepEqual(v.alerts, {});
    assert.equal(v.counts.AdminDown, 1);
});

test("redeliveries, stale changes, other sites and unknown nodes do not corrupt the view", () => {
    const v = initialView(site);
    const e = events();
    const key = sessionKey("visitor-center", "gw/provider-b");
    const up = e.bfd("visitor-center", "gw/provider-b", "Up");
    applyEvent(v, up);
    const down = e.bfd("visitor-center", "gw/provider-b", "Down");
    applyEvent(v, down);
    // The same event again (at-least-once delivery): nothing changes.
    const before = json(v);
    const d = applyEvent(v, down);
    assert.deepEqual(Object.keys(d), ["stats"]);
    assert.equal(v.stats.duplicates, 1);
    assert.deepEqual({ ...json(v), stats: before.stats }, before);
    // A new event older than the session's last change does not roll it back, but is shown.
    applyEvent(v, e.bfd("visitor-center", "gw/provider-b", "Up", { time: up.time - 1 }));
    assert.equal(v.sessions[key].state, "Down");
    assert.equal(v.stats.stale, 1);
    assert.equal(v.events.length, 3);
    // Another site's event is ignored entirely.
    applyEvent(v, e.bfd("gate", "gw/provider-a", "Up", { site: "isla-nublar" }));
    assert.equal(v.sessions[sessionKey("gate", "gw/provider-a")].state, "Unknown");
    assert.equal(v.stats.foreign, 1);
    assert.equal(v.events.length, 3);
    // A node the site does not have: the stream shows it, the topology does not grow.
    applyEvent(v, e.bfd("raptor-pen", "gw/provider-a", "Down"));
    assert.equal(v.stats.unknownNode, 1);
    assert.equal(v.events.length, 4);
    assert.equal(Object.keys(v.sessions).length, 18);
    // The id window forgets old ids, bounded.
    for (let i = 0; i < ID_WINDOW; i++) applyEvent(v, e.make("deploy", { stack: "lab", node: "gate", generation: i, outcome: "confirmed", message: "", durationMs: 1 }));
    applyEvent(v, up);
    assert.equal(v.stats.duplicates, 1, "an id older than the window is no longer recognised");
    assert.equal(v.stats.stale, 2, "but its time still keeps it from rolling the session back");
});

test("diagnostic \"ok\" (code 0) is not shown: not in the stream, not on the session, not in the alert", () => {
    const v = initialView(site);
    const e = events();
    let d = applyEvent(v, e.bfd("gate", "gw/provider-a", "Up", {}, "Init", DIAGNOSTICS.noDiagnostic));
    assert.equal(d.events![0].text, "gw/provider-a Init → Up");
    assert.equal(v.sessions[sessionKey("gate", "gw/provider-a")].diagnostic, null);
    d = applyEvent(v, e.bfd("gate", "gw/provider-a", "Down", {}, "Up", DIAGNOSTICS.noDiagnostic));
    assert.equal(d.events![0].text, "gw/provider-a Up → Down");
    assert.equal(v.alerts[derivedAlertKey("gate", "gw/provider-a")].details, "");
    d = applyEvent(v, e.bfd("gate", "gw/provider-a", "Down", {}, "Down", DIAGNOSTICS.neighborSignaledSessionDown));
    assert.equal(d.events![0].text, "gw/provider-a Down → Down (neighbor signaled session down)");
});

test("at the same event time the agent's seq orders a session's changes, as in the alert detector (supersedes)", () => {
    const v = initialView(site);
    const e = events();
    const key = sessionKey("gate", "gw/provider-b");
    applyEvent(v, e.bfd("gate", "gw/provider-b", "Down", { time: T0 + 500_000, payload: { node: "gate", session: "gw/provider-b", peer: "p", from: "Up", to: "Down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: null, seq: 12 } }));
    applyEvent(v, e.bfd("gate", "gw/provider-b", "Up", { time: T0 + 500_000, payload: { node: "gate", session: "gw/provider-b", peer: "p", from: "Down", to: "Up", diagnostic: DIAGNOSTICS.noDiagnostic, remoteState: null, seq: 11 } }));
    assert.equal(v.sessions[key].state, "Down", "a lower seq at the same time is older");
    assert.equal(v.stats.stale, 1);
    applyEvent(v, e.bfd("gate", "gw/provider-b", "Up", { time: T0 + 500_000, payload: { node: "gate", session: "gw/provider-b", peer: "p", from: "Down", to: "Up", diagnostic: DIAGNOSTICS.noDiagnostic, remoteState: null, seq: 13 } }));
    assert.equal(v.sessions[key].state, "Up", "a higher seq at the same time is newer");
    assert.equal(v.sessions[key].seq, 13);
});

test("a session id that names no session (model/vocabulary.ts) is shown in the stream, never added to a node", () => {
    const v = initialView(site);
    const e = events();
    for (const id of ["gateway/provider-a", "bfd-7", "path/only-a-node"]) {
        const d = applyEvent(v, e.bfd("gate", id, "Down"));
        assert.equal(d.events!.length, 1);
        assert.equal(d.sessions, undefined);
        assert.equal(v.sessions[sessionKey("gate", id)], undefined);
    }
    assert.equal(Object.keys(v.sessions).length, 18);
    assert.deepEqual(v.nodes.gate.gateways, ["gw/provider-a", "gw/provider-b"]);
});

test("a session the plan does not have is added to its node, marked unplanned", () => {
    const v = initialView(site);
    const e = events();
    const d = applyEvent(v, e.bfd("gate", "path/new-node/provider-a", "Init", {}, "Down"));
    const s = v.sessions[sessionKey("gate", "path/new-node/provider-a")];
    assert.deepEqual([s.planned, s.kind, s.peer, s.provider, s.state], [false, "path", "new-node", "provider-a", "Init"]);
    assert.ok(v.nodes.gate.paths.includes("path/new-node/provider-a"));
    assert.ok(d.nodes?.gate);
    assert.deepEqual([v.counts.Init, v.counts.Unknown], [1, 18]);
    applyEvent(v, e.bfd("gate", "gw/provider-c", "Up", {}, "Down"));
    const g = v.sessions[sessionKey("gate", "gw/provider-c")];
    assert.deepEqual([g.planned, g.kind, g.peer, g.provider], [false, "gateway", "provider-c", "provider-c"]);
    assert.ok(v.nodes.gate.gateways.includes("gw/provider-c"));
});

test("route-change: per node, the routes currently installed and withdrawn, and the last few changes", () => {
    const v = initialView(site);
    const e = events();
    applyEvent(v, e.route("gate", "route-added", "default/provider-a"));
    applyEvent(v, e.route("gate", "route-added", "default/provider-b"));
    const d = applyEvent(v, e.route("gate", "route-removed", "default/provider-a"));
    const r = v.nodes.gate.routes;
    assert.deepEqual([r.installed, r.withdrawn, r.changes], [1, 1, 3]);
    assert.deepEqual(r.state, { "default/provider-a": "withdrawn", "default/provider-b": "installed" });
    assert.equal(r.planned, planAgents(site, { paths: () => ({ socket: "-", events: "-" }) })[0].routes.length);
    assert.equal(d.nodes!.gate, v.nodes.gate);
    assert.equal(d.events![0].tone, "warn");
    for (let i = 0; i < 15; i++) applyEvent(v, e.route("gate", i % 2 ? "route-added" : "route-removed", `loopback/x${i}`));
    assert.equal(r.recent.length, RECENT_ROUTES);
    assert.equal(r.recent[RECENT_ROUTES - 1].route, "loopback/x14");
    assert.equal(r.recent[RECENT_ROUTES - 1].outcome, "withdrawn");
    assert.equal(v.nodes["visitor-center"].routes.changes, 0);
});

test("ingress-change: current members per upstream, matched to configured members by node name or address", () => {
    const v = initialView(site);
    const e = events();
    const [vc, cr] = v.nodes.gate.ingress[0].configured;
    applyEvent(v, e.ingress("gate", "visitor-web", [vc.address, cr.address], [vc.address, cr.address]));
    let u = v.nodes.gate.ingress[0];
    assert.deepEqual([u.members, u.live, u.changes], [[vc.address, cr.address], ["visitor-center", "control-room"], 1]);
    const d = applyEvent(v, e.ingress("gate", "visitor-web", ["control-room"], [], ["visitor-center"]));
    u = v.nodes.gate.ingress[0];
    assert.deepEqual(u.live, ["control-room"]);
    assert.match(d.events![0].text, /visitor-web members: 1 live \(−visitor-center\)/);
    // An upstream the plan does not know is added as reported.
    applyEvent(v, e.ingress("gate", "admin", []));
    assert.deepEqual(v.nodes.gate.ingress.map((i) => [i.upstream, i.members]), [["visitor-web", ["control-room"]], ["admin", []]]);
    assert.equal(v.events[v.events.length - 1].tone, "bad");
});

test("alerts open and close by dedupKey; a bus session-down alert stands in for the dashboard's own", () => {
    const v = initialView(site);
    const e = events();
    applyEvent(v, e.alert("flap/gate", "trigger"));
    applyEvent(v, e.alert("flap/gate", "trigger", { severity: "critical" }));
    assert.deepEqual([v.alerts["flap/gate"].triggers, v.alerts["flap/gate"].severity, v.alerts["flap/gate"].since], [2, "critical", T0 + 1000]);
    let d = applyEvent(v, e.alert("flap/gate", "resolve"));
    assert.deepEqual(d.alerts, { "flap/gate": null });
    assert.deepEqual(v.alerts, {});
    assert.equal(d.events![0].tone, "good");
    // Resolving what is not open changes nothing but the stream.
    d = applyEvent(v, e.alert("never-opened", "resolve"));
    assert.deepEqual(d.alerts, {});

    applyEvent(v, e.bfd("gate", "path/control-room/provider-b", "Down"));
    const own = derivedAlertKey("gate", "path/control-room/provider-b");
    assert.equal(v.alerts[own].severity, "warning");
    d = applyEvent(v, e.alert("sd/1", "trigger", { class: "session-down", session: "path/control-room/provider-b" }));
    assert.deepEqual(Object.keys(v.alerts), ["sd/1"]);
    assert.equal(d.alerts![own], null);
    d = applyEvent(v, e.alert("sd/1", "resolve", { class: "session-down", session: "path/control-room/provider-b" }));
    assert.deepEqual(Object.keys(v.alerts), [own], "the session is still Down: the dashboard's own alert is back");
    applyEvent(v, e.bfd("gate", "path/control-room/provider-b", "Up", {}, "Down"));
    assert.deepEqual(v.alerts, {});
});

test("path-latency updates the session's numbers and stays out of the stream", () => {
    const v = initialView(site);
    const e = events();
    const d = applyEvent(v, e.make("path-latency", { node: "gate", session: "path/visitor-center/provider-a", peer: "x", rttMs: 0.42, maxGapMs: 11, detectionMs: 30, windowMs: 1000 }));
    const s = v.sessions[sessionKey("gate", "path/visitor-center/provider-a")];
    assert.deepEqual([s.rttMs, s.maxGapMs, s.detectionMs], [0.42, 11, 30]);
    assert.ok(d.sessions);
    assert.equal(d.events, undefined);
    assert.equal(v.events.length, 0);
    applyEvent(v, e.make("sensor-reading", { sensor: "fence-07", kind: "fence-voltage", value: 9000, unit: "V", seq: 1, receivedAt: T0, address: "2001:db8::7" }));
    assert.equal(v.events.length, 0);
});

test("the stream keeps the last STREAM_LIMIT events, oldest first; long text is cut", () => {
    const v = initialView(site);
    const e = events();
    for (let i = 0; i < STREAM_LIMIT + 50; i++) applyEvent(v, e.make("audit-result", { stack: "lab", reportId: `r${i}`, verdict: "pass", contentSha256: "0", findings: 0, mandatory: 0, estimatedAvailability: null }));
    assert.equal(v.events.length, STREAM_LIMIT);
    assert.equal(v.events[0].id, "e51");
    assert.equal(v.events[STREAM_LIMIT - 1].id, `e${STREAM_LIMIT + 50}`);
    applyEvent(v, e.alert("big", "trigger", { summary: "x".repeat(10_000), details: "y".repeat(10_000) }));
    assert.ok(v.alerts.big.summary.length <= 2000 && v.alerts.big.details.length <= 2000);
});

test("deterministic, and the deltas rebuild the view: step by step, or merged into one (what the server batches)", () => {
    const run = () => {
        const v = initialView(site);
        const start: DashboardView = json(v);
        const e = events();
        const steps: DashboardDelta[] = [];
        let merged: DashboardDelta = {};
        const feed: NublarEvent[] = [];
        for (const n of v.nodeOrder) for (const id of [...v.nodes[n].gateways, ...v.nodes[n].paths]) feed.push(e.bfd(n, id, "Up", {}, "Down"));
        feed.push(e.bfd("gate", "gw/provider-a", "Down"), e.route("gate", "route-removed", "default/provider-a"));
        feed.push(e.ingress("gate", "visitor-web", ["control-room"]), e.alert("a1", "trigger"), e.alert("a2", "trigger"), e.alert("a1", "resolve"));
        for (let i = 0; i < 300; i++) feed.push(e.bfd("control-room", "path/gate/provider-a", i % 2 ? "Up" : "Down"));
        for (const ev of feed) {
            const d = applyEvent(v, ev);
            steps.push(json(d));
            merged = mergeDelta(merged, d);
        }
        return { v, start, steps, merged: json(merged) };
    };
    const a = run();
    const b = run();
    assert.deepEqual(json(a.v), json(b.v));
    assert.deepEqual(a.steps, b.steps);
    const final = json(a.v);
    assert.deepEqual(a.steps.reduce(applyDelta, a.start), final);
    assert.deepEqual(applyDelta(a.start, a.merged), final);
    assert.equal(a.v.counts.Down, 1);
    assert.equal(a.v.counts.Up, 17);
    assert.deepEqual(Object.keys(a.v.alerts).sort(), ["a2", derivedAlertKey("gate", "gw/provider-a")]);
});
