// The agent's decisions under a virtual clock: BFD states in, routes and members out.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { dcSiteInput, labSiteInput } from "../../model/site/fixtures";
import { parseSite } from "../../model/site/load";
import { planAgent } from "../../model/network/agent-plan";
import * as fc from "fast-check";
import { desiredState, diffRoutes, initialHealth, judge, memberSet, onStateChange, upstreamPush, type SessionHealth } from "./reconcile";

const paths = (n: string) => ({ socket: `/run/${n}.sock`, events: `/run/${n}.jsonl`, nginxControl: `/run/${n}-nginx.sock` });
function config() {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.ingress = [{ name: "web", port: 8080, upstreams: ["visitor-center", "control-room"] }];
    return planAgent(parseSite(raw), "gate", { paths, holdDownMs: 1000, startupGraceMs: 5000 });
}
const cfg = config();
const T0 = 1_000_000;

function allUp(at: number): Map<string, SessionHealth> {
    return new Map(cfg.sessions.map((s) => [s.id, onStateChange(initialHealth(), "up", "up", at)]));
}

test("everything Up: every route is used, every member is live, nothing deprecated", () => {
    const d = desiredState(cfg, allUp(T0 + 10), { now: T0 + 20, startedAt: T0 });
    assert.ok(d.routes.every((r) => r.decision === "use"));
    assert.ok(d.members.every((m) => m.decision === "use"));
    assert.deepEqual(d.deprecatedUplinks, []);
});

test("a path going Down withdraws exactly the routes it gates, and the member stays live over the other path", () => {
    const h = allUp(T0);
    const dead = "path/visitor-center/provider-a";
    h.set(dead, onStateChange(h.get(dead)!, "down", "up", T0 + 100));
    const d = desiredState(cfg, h, { now: T0 + 101, startedAt: T0 });
    const withdrawn = d.routes.filter((r) => r.decision === "withdraw").map((r) => r.route.id);
    assert.deepEqual(withdrawn, ["loopback/visitor-center/provider-a"]);
    assert.equal(d.members.find((m) => m.node === "visitor-center")!.decision, "use");
});

test("every path to a member Down removes the member; an upstream can become empty", () => {
    const h = allUp(T0);
    for (const s of cfg.sessions.filter((s) => s.peerNode)) h.set(s.id, onStateChange(h.get(s.id)!, "down", "up", T0 + 100));
    const d = desiredState(cfg, h, { now: T0 + 101, startedAt: T0 });
    assert.deepEqual(memberSet(d.members, "web", []), []);
    assert.ok(d.members.every((m) => m.decision === "withdraw" && /every path is down/.test(m.why)));
});

test("a dead gateway withdraws its defaults and deprecates its uplink's addresses", () => {
    const h = allUp(T0);
    h.set("gw/provider-b", onStateChange(h.get("gw/provider-b")!, "down", "up", T0 + 50));
    const d = desiredState(cfg, h, { now: T0 + 60, startedAt: T0 });
    assert.deepEqual(d.deprecatedUplinks, ["provider-b"]);
    assert.deepEqual(d.routes.filter((r) => r.decision === "withdraw").map((r) => r.route.id).sort(), ["default-from/provider-b", "default/provider-b"]);
});

test("a session that comes back is used only after the hold-down, and wakeAt says when", () => {
    const id = "path/control-room/provider-b";
    let h = onStateChange(onStateChange(initialHealth(), "up", "up", T0), "down", "up", T0 + 100);
    h = onStateChange(onStateChange(h, "init", "down", T0 + 1100), "up", "up", T0 + 1200);
    const clock = (now: number) => ({ now, startedAt: T0 });
    assert.equal(judge(h, cfg, clock(T0 + 1200)).decision, "withdraw");
    assert.equal(judge(h, cfg, clock(T0 + 2199)).decision, "withdraw");
    assert.equal(judge(h, cfg, clock(T0 + 2200)).decision, "use");
    const all = allUp(T0);
    all.set(id, h);
    assert.equal(desiredState(cfg, all, clock(T0 + 1500)).wakeAt, T0 + 2200);
});

test("flapping restarts the hold-down each time", () => {
    let h = onStateChange(initialHealth(), "up", "up", T0);
    for (let k = 1; k <= 5; k++) {
        h = onStateChange(h, "down", "up", T0 + k * 500);
        h = onStateChange(h, "up", "up", T0 + k * 500 + 100);
    }
    assert.equal(judge(h, cfg, { now: T0 + 2600 + 999, startedAt: T0 }).decision, "withdraw");
    assert.equal(judge(h, cfg, { now: T0 + 2600 + 1000, startedAt: T0 }).decision, "use");
});

test("after a restart, routes already installed are kept until sessions come Up or the grace ends (fail-static)", () => {
    const h = new Map(cfg.sessions.map((s) => [s.id, initialHealth()]));
    const early = desiredState(cfg, h, { now: T0 + 100, startedAt: T0 });
    assert.ok(early.routes.every((r) => r.decision === (r.route.session ? "keep" : "use")));
    assert.equal(early.wakeAt, T0 + 5000);
    const installed = cfg.routes.map((r) => ({ destination: r.destination, source: r.source, metric: r.metric, via: r.via, dev: r.dev }));
    assert.deepEqual(diffRoutes(early.routes, installed), { add: [], remove: [] });
    // keep members only if they were pushed before
    assert.deepEqual(memberSet(early.members, "web", ["[2001:db8:a::1]:8080"]), []);
    const late = desiredState(cfg, h, { now: T0 + 5000, startedAt: T0 });
    assert.ok(late.routes.every((r) => r.decision === (r.route.session ? "withdraw" : "use")));
    assert.equal(diffRoutes(late.routes, installed).remove.length, cfg.routes.filter((r) => r.session).length);
});

test("a peer's AdminDown (graceful restart) keeps its routes for the grace period; a detection timeout does not", () => {
    const graceful = onStateChange(onStateChange(initialHealth(), "up", "up", T0), "down", "admin-down", T0 + 10_000);
    assert.equal(judge(graceful, cfg, { now: T0 + 10_100, startedAt: T0 }).decision, "keep");
    assert.equal(judge(graceful, cfg, { now: T0 + 15_000, startedAt: T0 }).decision, "withdraw");
    const dead = onStateChange(onStateChange(initialHealth(), "up", "up", T0), "down", "up", T0 + 10_000);
    assert.equal(judge(dead, cfg, { now: T0 + 10_001, startedAt: T0 }).decision, "withdraw");
});

test("a peer back Up within the grace of its graceful restart is used at once (no hold-down); after a real failure it waits", () => {
    const restarted = onStateChange(onStateChange(onStateChange(initialHealth(), "up", "up", T0), "down", "admin-down", T0 + 10_000), "up", "up", T0 + 14_000);
    assert.equal(judge(restarted, cfg, { now: T0 + 14_001, startedAt: T0 }).decision, "use");
    // Its next Down is judged afresh.
    const failed = onStateChange(restarted, "down", "up", T0 + 20_000);
    assert.equal(judge(failed, cfg, { now: T0 + 20_001, startedAt: T0 }).decision, "withdraw");
    const back = onStateChange(failed, "up", "up", T0 + 21_000);
    assert.equal(judge(back, cfg, { now: T0 + 21_001, startedAt: T0 }).decision, "withdraw");
    assert.equal(judge(back, cfg, { now: T0 + 22_000, startedAt: T0 }).decision, "use");
    // Back too late: the grace ran out and the routes went; the hold-down applies as after any failure.
    const late = onStateChange(onStateChange(onStateChange(initialHealth(), "up", "up", T0), "down", "admin-down", T0 + 10_000), "up", "up", T0 + 40_000);
    assert.equal(judge(late, cfg, { now: T0 + 40_001, startedAt: T0 }).decision, "withdraw");
});

test("diffRoutes adds missing and changed routes, removes unwanted ones, and leaves the rest", () => {
    const d = desiredState(cfg, allUp(T0), { now: T0 + 1, startedAt: T0 });
    const r0 = cfg.routes[0];
    const installed = [
        { destination: r0.destination, source: r0.source, metric: r0.metric, via: r0.via, dev: r0.dev },
        { destination: "2001:db8:ff::/64", metric: 5, via: "fe80::1", dev: "up0" },
        { ...{ destination: cfg.routes[1].destination, source: cfg.routes[1].source, metric: cfg.routes[1].metric, dev: cfg.routes[1].dev }, via: "2001:db8::dead" },
    ];
    const diff = diffRoutes(d.routes, installed);
    assert.deepEqual(diff.remove.map((r) => r.destination), ["2001:db8:ff::/64"]);
    assert.equal(diff.add.length, cfg.routes.length - 1);
    assert.ok(diff.add.includes(cfg.routes[1]));
});

test("an uplink judged by its paths (EC2): not judged until a path comes Up, used while any is, withdrawn and deprecated when all are down", () => {
    const dc = planAgent(parseSite(dcSiteInput()), "ledger-1", { paths, holdDownMs: 1000, startupGraceMs: 5000 });
    const over = (p: string) => dc.sessions.filter((s) => s.kind === "path" && s.provider === p).map((s) => s.id);
    const defaults = (d: ReturnType<typeof desiredState>, p: string) => d.routes.find((r) => r.route.id === `default/${p}`)!;
    // A new site's first node: no peer is deployed, no path has come Up. Its defaults stay,
    // or its operators lose it (the grace would end and withdraw them otherwise).
    const fresh = desiredState(dc, new Map(), { now: T0 + 60_000, startedAt: T0 });
    assert.equal(defaults(fresh, "aws-transit").decision, "use");
    assert.match(defaults(fresh, "aws-transit").why, /not judged/);
    assert.deepEqual(fresh.deprecatedUplinks, []);
    // Everything Up, then one of the two paths over aws-transit dies: still used.
    const h = new Map(dc.sessions.map((s) => [s.id, onStateChange(initialHealth(), "up", "up", T0)]));
    const [first, second] = over("aws-transit");
    h.set(first, onStateChange(h.get(first)!, "down", "up", T0 + 100));
    assert.equal(defaults(desiredState(dc, h, { now: T0 + 101, startedAt: T0 }), "aws-transit").decision, "use");
    // Both down: the uplink is dead, its defaults withdrawn and its addresses deprecated; equinix's stay.
    h.set(second, onStateChange(h.get(second)!, "down", "up", T0 + 200));
    const d = desiredState(dc, h, { now: T0 + 201, startedAt: T0 });
    assert.equal(defaults(d, "aws-transit").decision, "withdraw");
    assert.match(defaults(d, "aws-transit").why, /every path is down/);
    assert.equal(defaults(d, "equinix").decision, "use");
    assert.deepEqual(d.deprecatedUplinks, ["aws-transit"]);
});

test("once any path of the node is Up, an uplink none of whose paths came Up is judged: kept through the grace, then withdrawn; the ungated last-resort default stays", () => {
    const dc = planAgent(parseSite(dcSiteInput()), "ledger-1", { paths, holdDownMs: 1000, startupGraceMs: 5000 });
    const h = new Map(dc.sessions.map((s) => [s.id, initialHealth()]));
    for (const s of dc.sessions) if (s.provider === "aws-transit") h.set(s.id, onStateChange(initialHealth(), "up", "up", T0 + 100));
    const at = (now: number) => desiredState(dc, h, { now, startedAt: T0 });
    const route = (d: ReturnType<typeof desiredState>, id: string) => d.routes.find((r) => r.route.id === id)!;
    assert.equal(route(at(T0 + 1000), "default/equinix").decision, "keep", "within the grace: not known yet");
    const later = at(T0 + 6000);
    assert.equal(route(later, "default/equinix").decision, "withdraw");
    assert.match(route(later, "default/equinix").why, /every path is down|BFD down/);
    assert.deepEqual(later.deprecatedUplinks, ["equinix"]);
    assert.equal(route(later, "default/aws-transit").decision, "use");
    for (const id of ["last-resort/default/equinix", "last-resort/default-from/equinix"]) {
        assert.equal(route(later, id).decision, "use");
        assert.equal(route(later, id).route.session, undefined);
    }
    // No two routes the kernel would see as one (destination, source, metric).
    const keys = dc.routes.map((r) => `${r.destination}|${r.source ?? ""}|${r.metric}`);
    assert.equal(new Set(keys).size, keys.length);
});

// Panic routing (the site's ingress[].panic): with no member live, every member is pushed.
function panicConfig(panic: boolean | undefined) {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.ingress = [{ name: "web", port: 8080, upstreams: ["visitor-center", "control-room"], ...(panic === undefined ? {} : { panic }) }];
    return planAgent(parseSite(raw), "gate", { paths, holdDownMs: 1000, startupGraceMs: 5000 });
}
const panicCfg = panicConfig(true);

test("panic is planned into the upstream only when asked for: without it the agent config is as before", () => {
    assert.equal(panicCfg.ingress[0].panic, true);
    assert.ok(!("panic" in cfg.ingress[0]), "no key at all by default (agent.json unchanged)");
    assert.ok(!("panic" in panicConfig(false).ingress[0]));
    assert.deepEqual(JSON.stringify(panicConfig(false)), JSON.stringify(cfg));
    const { panic: _, ...rest } = panicCfg.ingress[0];
    assert.deepEqual(rest, cfg.ingress[0]);
});

test("panic on: no member live pushes every member; a member back live (after its hold-down) ends the panic with the live set", () => {
    const up = panicCfg.ingress[0];
    const all = up.members.map((m) => m.address);
    const vc = up.members.find((m) => m.node === "visitor-center")!;
    const clock = (now: number) => ({ now, startedAt: T0 });
    // The edge's BFD thread stalls: its peers declare it down, every path session goes Down at once.
    const h = allUp(T0);
    for (const s of panicCfg.sessions.filter((s) => s.peerNode)) h.set(s.id, onStateChange(h.get(s.id)!, "down", "up", T0 + 100));
    const during = desiredState(panicCfg, h, clock(T0 + 101));
    assert.deepEqual(memberSet(during.members, "web", all), [], "no member is live");
    const p = upstreamPush(up, during.members, all);
    assert.equal(p.panic, true);
    assert.deepEqual(p.live, []);
    assert.deepEqual(p.members.sort(), [...all].sort());
    // Sessions come back Up at +300; until the hold-down ends (+1300) nothing is live: still panic.
    for (const s of panicCfg.sessions.filter((s) => s.peerNode?.startsWith("visitor-center"))) h.set(s.id, onStateChange(h.get(s.id)!, "up", "up", T0 + 300));
    const holding = desiredState(panicCfg, h, clock(T0 + 1299));
    assert.equal(upstreamPush(up, holding.members, p.members).panic, true);
    assert.equal(holding.wakeAt, T0 + 1300);
    // Hold-down over: visitor-center is live; the panic ends and only it is pushed.
    const back = desiredState(panicCfg, h, clock(T0 + 1300));
    assert.deepEqual(upstreamPush(up, back.members, p.members), { members: [vc.address], live: [vc.address], panic: false });
});

test("panic off (the default): no member live pushes none, as before (Nginx answers 503)", () => {
    for (const c of [cfg, panicConfig(false)]) {
        const h = allUp(T0);
        for (const s of c.sessions.filter((s) => s.peerNode)) h.set(s.id, onStateChange(h.get(s.id)!, "down", "up", T0 + 100));
        const d = desiredState(c, h, { now: T0 + 101, startedAt: T0 });
        const all = c.ingress[0].members.map((m) => m.address);
        assert.deepEqual(upstreamPush(c.ingress[0], d.members, all), { members: [], live: [], panic: false });
    }
});

test("panic on: an upstream with no members stays empty (nothing to panic over)", () => {
    assert.deepEqual(upstreamPush({ name: "web", members: [], panic: true }, [], []), { members: [], live: [], panic: false });
});

test("property: with panic on, the pushed set is never empty for a non-empty upstream, and is the live set whenever that is non-empty; with it off, always the live set", () => {
    const sessions = panicCfg.sessions.map((s) => s.id);
    const states = ["down", "init", "up", "admin-down"] as const;
    // A session's history: state changes at increasing times, with the peer's state (AdminDown or not).
    const history = fc.array(fc.record({ to: fc.constantFrom(...states), remote: fc.constantFrom<(typeof states)[number] | undefined>("up", "down", "admin-down", undefined), dt: fc.integer({ min: 0, max: 3000 }) }), { maxLength: 6 });
    const addresses = panicCfg.ingress[0].members.map((m) => m.address);
    fc.assert(fc.property(
        fc.array(history, { minLength: sessions.length, maxLength: sessions.length }),
        fc.integer({ min: 0, max: 20_000 }),
        fc.subarray(addresses),
        (histories, elapsed, current) => {
            const health = new Map<string, SessionHealth>();
            sessions.forEach((id, i) => {
                let h = initialHealth();
                let t = T0;
                for (const step of histories[i]) h = onStateChange(h, step.to, step.remote, (t += step.dt));
                health.set(id, h);
            });
            const d = desiredState(panicCfg, health, { now: T0 + elapsed, startedAt: T0 });
            const live = memberSet(d.members, "web", current);
            const on = upstreamPush(panicCfg.ingress[0], d.members, current);
            assert.ok(on.members.length > 0, "never empty with panic on");
            assert.deepEqual(on.live, live);
            if (live.length > 0) assert.deepEqual(on, { members: live, live, panic: false });
            else assert.deepEqual({ ...on, members: [...on.members].sort() }, { members: [...addresses].sort(), live: [], panic: true });
            const off = upstreamPush(cfg.ingress[0], d.members, current);
            assert.deepEqual(off, { members: live, live, panic: false });
        },
    ), { numRuns: 500 });
});
