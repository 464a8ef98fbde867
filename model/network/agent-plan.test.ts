import { test } from "node:test";
import * as assert from "node:assert/strict";
import { dcSiteInput, labSiteInput } from "../site/fixtures";
import { parseSite } from "../site/load";
import { planLab } from "./lab-plan";
import { planAgent, planAgents, timersForBudget } from "./agent-plan";
import { parseAgentConfig } from "./agent-config";
import { PlanError } from "./addressing";
import { planSite } from "./site-plan";
import { projectPath } from "../project";
import { parseSessionId } from "../vocabulary";

const paths = (n: string) => ({ socket: `/run/${n}/agent.sock`, events: `/run/${n}/events.jsonl`, nginxControl: `/run/${n}/nginx.sock`, bfdKeyFile: `/run/keys/bfd` });

function site(overrides: Record<string, unknown> = {}) {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" }, ...overrides });
    raw.nodes[0].role = "edge";
    raw.ingress = [{ name: "web", port: 8080, upstreams: ["visitor-center", "control-room"] }];
    return parseSite(raw);
}

test("every planned config passes the agent's own schema and cross-reference checks", () => {
    for (const cfg of planAgents(site(), { paths })) assert.deepEqual(parseAgentConfig(JSON.parse(JSON.stringify(cfg))), JSON.parse(JSON.stringify(cfg)));
});

test("every session id (and session group id) reads back, through the vocabulary's one parser, as what the plan says the session is", () => {
    for (const cfg of planAgents(site(), { paths })) {
        for (const s of cfg.sessions) {
            const id = parseSessionId(s.id);
            assert.ok(id.ok, `${cfg.node} ${s.id}`);
            assert.deepEqual(id.session, s.kind === "gateway" ? { kind: "gateway", provider: s.provider } : { kind: "path", peerNode: s.peerNode, provider: s.provider });
        }
        for (const u of cfg.uplinks) assert.deepEqual(parseSessionId(u.session), { ok: true, session: { kind: "gateway", provider: u.provider } });
    }
});

test("the agent plan agrees with the lab plan on uplink names, addresses and gateways", () => {
    const s = site();
    const lab = planLab(s);
    for (const node of lab.nodes) {
        const cfg = planAgent(s, node.name, { paths });
        assert.deepEqual(cfg.uplinks.map((u) => [u.ifname, u.address, u.gateway, u.prefix]), node.uplinks.map((u) => [u.ifname, u.address, u.routerAddress, u.prefix]));
    }
});

test("one gateway session per uplink and one path session per tunnel peer, inside the tunnel", () => {
    const cfg = planAgent(site(), "gate", { paths });
    assert.deepEqual(cfg.sessions.filter((s) => s.kind === "gateway").map((s) => s.id), ["gw/provider-a", "gw/provider-b"]);
    const pathSessions = cfg.sessions.filter((s) => s.kind === "path");
    // gate is the only hub: it tunnels to both other nodes over both providers.
    assert.equal(pathSessions.length, 4);
    assert.ok(pathSessions.every((s) => !s.multihop && s.local !== s.peer && /^ov\d$/.test(s.interface!)));
    assert.equal(cfg.pathAuth?.type, "meticulous-keyed-sha1");
    assert.ok(cfg.sessions.filter((s) => s.kind === "gateway").every((s) => !s.multihop && s.interface));
});

test("routes to another node's loopback: one per provider, primary and backup by metric", () => {
    const cfg = planAgent(site(), "gate", { paths });
    const vc = cfg.routes.filter((r) => r.id.startsWith("loopback/visitor-center/"));
    assert.equal(vc.length, 2);
    assert.deepEqual(vc.map((r) => r.metric).sort(), [100, 101]);
    assert.equal(new Set(vc.map((r) => r.destination)).size, 1);
    assert.ok(vc.every((r) => r.preferredSource === cfg.loopback));
});

test("primaries spread over both providers, and both ends of a pair pick the same one", () => {
    const raw = labSiteInput(["gate", "visitor-center", "control-room", "aviary", "lagoon", "paddock"], { lab: { tag: "t1" } });
    for (const n of raw.nodes) n.role = "core"; // all hubs: a full mesh
    const s = parseSite(raw);
    const configs = planAgents(s, { paths });
    const primaryProvider = (from: string, to: string) =>
        configs.find((c) => c.node === from)!.routes.find((r) => r.id.startsWith(`loopback/${to}/`) && r.metric === 100)!.id.split("/")[2];
    const used = new Set<string>();
    for (const a of s.nodes) for (const b of s.nodes) {
        if (a.name === b.name) continue;
        assert.equal(primaryProvider(a.name, b.name), primaryProvider(b.name, a.name));
        used.add(primaryProvider(a.name, b.name));
    }
    assert.deepEqual([...used].sort(), ["provider-a", "provider-b"]);
});

test("the tunnels' own packets take an ungated route per provider, so a gateway flap cannot take the tunnels down", () => {
    const s = site();
    const cfg = planAgent(s, "gate", { paths });
    const underlay = cfg.routes.filter((r) => r.id.startsWith("underlay/"));
    assert.deepEqual(underlay.map((r) => r.destination), s.providers.map((p) => p.prefix));
    assert.ok(underlay.every((r) => r.session === undefined));
    const { IPv6CidrRange } = require("ip-num");
    const plan = planSite(s);
    for (const o of plan.nodes.find((n) => n.name === "gate")!.overlays) for (const p of o.peers) {
        assert.ok(underlay.some((r) => r.dev === o.underlay.ifname && IPv6CidrRange.fromCidr(r.destination).contains(IPv6CidrRange.fromCidr(`${p.endpoint}/128`))), `${p.node} over ${o.provider}`);
    }
});

test("spokes reach other loopbacks through the hubs, over every provider, primary first", () => {
    const s = site();
    const plan = planSite(s);
    const vc = planAgent(s, "visitor-center", { paths });
    const viaHubs = vc.routes.filter((r) => r.id.startsWith("loopbacks/"));
    assert.equal(viaHubs.length, 2); // one hub (gate) x two providers
    assert.ok(viaHubs.every((r) => r.destination === plan.loopbackPrefix && r.session?.startsWith("path/gate/")));
    assert.deepEqual(viaHubs.map((r) => r.metric).sort(), [200, 201]);
    // The hub itself has no aggregate: it has a /128 to every node.
    assert.equal(planAgent(s, "gate", { paths }).routes.filter((r) => r.id.startsWith("loopbacks/")).length, 0);
    // Spokes have no tunnel to each other.
    assert.ok(!vc.sessions.some((x) => x.peerNode === "control-room"));
});

test("per-uplink source-specific defaults", () => {
    const cfg = planAgent(site(), "control-room", { paths });
    const defaults = cfg.routes.filter((r) => r.source && r.destination === "::/0");
    assert.deepEqual(defaults.map((r) => [r.source, r.dev]), cfg.uplinks.map((u) => [u.prefix, u.ifname]));
});

test("only edge nodes serve ingress; members are the upstreams' loopbacks gated by their path sessions", () => {
    const s = site();
    assert.deepEqual(planAgent(s, "visitor-center", { paths }).ingress, []);
    const gate = planAgent(s, "gate", { paths });
    assert.equal(gate.ingress.length, 1);
    const vc = planAgent(s, "visitor-center", { paths });
    const member = gate.ingress[0].members.find((m) => m.node === "visitor-center")!;
    assert.equal(member.address, `[${vc.loopback}]:8080`);
    assert.deepEqual(member.sessions.sort(), ["path/visitor-center/provider-a", "path/visitor-center/provider-b"]);
    assert.equal(gate.paths.nginxControl, "/run/gate/nginx.sock");
    assert.equal(vc.paths.nginxControl, undefined);
});

test("an upstream that shares no provider with the edge is a plan error naming both", () => {
    const raw = labSiteInput(["gate", "visitor-center"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.nodes[0].uplinks = [{ provider: "provider-a" }];
    raw.nodes[1].uplinks = [{ provider: "provider-b" }];
    raw.ingress = [{ name: "web", port: 80, upstreams: ["visitor-center"] }];
    assert.throws(() => planAgent(parseSite(raw), "gate", { paths }), (e: Error) => e instanceof PlanError && /visitor-center/.test(e.message) && /gate/.test(e.message));
});

test("BFD timers follow the failover budget: detection takes at most a third of it", () => {
    assert.deepEqual(timersForBudget(100), { transmitIntervalMs: 10, receiveIntervalMs: 10, detectMultiplier: 3 });
    assert.equal(timersForBudget(1000).transmitIntervalMs, 100);
    assert.equal(timersForBudget(60_000).transmitIntervalMs, 1000);
    for (const b of [30, 100, 450, 1000, 5000]) {
        const t = timersForBudget(b);
        assert.ok(t.transmitIntervalMs * t.detectMultiplier <= Math.max(b / 3, 30));
    }
});

test("the same site gives the same configs, and adding a node changes no other node's uplinks", () => {
    assert.deepEqual(planAgents(site(), { paths }), planAgents(site(), { paths }));
    const raw = labSiteInput(["gate", "visitor-center", "control-room", "aviary"], { lab: { tag: "t1" } });
    const bigger = parseSite(raw);
    for (const n of ["gate", "visitor-center", "control-room"]) {
        assert.deepEqual(planAgent(bigger, n, { paths }).uplinks, planAgent(site(), n, { paths }).uplinks);
        assert.equal(planAgent(bigger, n, { paths }).loopback, planAgent(site(), n, { paths }).loopback);
    }
});

test("every committed stack plans an agent config for every node", () => {
    const fs = require("node:fs") as typeof import("node:fs");
    const path = require("node:path") as typeof import("node:path");
    const { loadSiteFromStackFile } = require("../site/load") as typeof import("../site/load");
    const dir = projectPath("stacks");
    const files = fs.readdirSync(dir).filter((f) => /^Pulumi\..+\.yaml$/.test(f));
    assert.ok(files.length >= 4);
    for (const f of files) {
        const s = loadSiteFromStackFile(path.join(dir, f));
        const configs = planAgents(s, { paths });
        assert.equal(configs.length, s.nodes.length, f);
        for (const c of configs) parseAgentConfig(JSON.parse(JSON.stringify(c)), `${f}: ${c.node}`);
    }
});

test("an edge node cannot also be an upstream of its own Nginx on the same port", () => {
    const raw = labSiteInput(["gate", "visitor-center"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.ingress = [{ name: "web", port: 80, upstreams: ["gate", "visitor-center"] }];
    assert.throws(() => planAgent(parseSite(raw), "gate", { paths }), /edge node 'gate' runs Nginx on port 80/);
});

test("with WireGuard, a spoke sends other loopbacks only through the hub that WireGuard gives the /64 to", () => {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" }, overlay: { transport: "wireguard" } });
    raw.nodes[2].role = "core"; // two hubs: gate, then control-room
    const wg = planAgent(parseSite(raw), "visitor-center", { paths });
    const viaHubs = wg.routes.filter((r) => r.id.startsWith("loopbacks/"));
    assert.deepEqual(viaHubs.map((r) => r.id).sort(), ["loopbacks/gate/provider-a", "loopbacks/gate/provider-b"]);
    // VXLAN: every hub, over every provider.
    const vx = planAgent(parseSite({ ...raw, overlay: { transport: "vxlan" } }), "visitor-center", { paths });
    assert.equal(vx.routes.filter((r) => r.id.startsWith("loopbacks/")).length, 4);
});

test("EC2 nodes: uplinks at ::10, no gateway sessions (the VPC router answers no BFD); each uplink is judged by the paths over it", () => {
    const dc = parseSite(dcSiteInput());
    const plan = planSite(dc);
    for (const cfg of planAgents(dc, { paths }, plan)) {
        assert.deepEqual(parseAgentConfig(JSON.parse(JSON.stringify(cfg))), JSON.parse(JSON.stringify(cfg)));
        assert.ok(cfg.uplinks.every((u) => u.address.endsWith("::10") && u.gateway.endsWith("::1")), cfg.node);
        assert.deepEqual(cfg.sessions.filter((s) => s.kind === "gateway"), [], cfg.node);
        for (const u of cfg.uplinks) {
            const group = cfg.sessionGroups!.find((g) => g.id === u.session)!;
            const paths = cfg.sessions.filter((s) => s.kind === "path" && s.provider === u.provider).map((s) => s.id);
            assert.deepEqual(group.anyOf, paths, `${cfg.node} ${u.session}`);
            assert.ok(paths.length >= 1);
            // The defaults via the uplink are gated by the group.
            assert.equal(cfg.routes.find((r) => r.id === `default/${u.provider}`)?.session, group.id);
        }
    }
    // An uplink judged by its paths keeps an ungated default below every gated route.
    for (const cfg of planAgents(dc, { paths }, plan)) {
        assert.deepEqual(cfg.routes.filter((r) => r.id.startsWith("last-resort/default")).map((r) => [r.id, r.destination, r.source, r.metric, r.session]),
            cfg.uplinks.flatMap((u, k) => [[`last-resort/default-from/${u.provider}`, "::/0", u.prefix, 4096, undefined], [`last-resort/default/${u.provider}`, "::/0", undefined, 4096 + k, undefined]]));
    }
    // A park's plan has no groups at all (its agent.json is unchanged).
    assert.ok(planAgents(site(), { paths }).every((c) => c.sessionGroups === undefined));
    // An EC2 node alone on a provider has nothing to judge that uplink by.
    const lone = dcSiteInput();
    lone.nodes[2].uplinks = [{ provider: "aws-transit" }, { provider: "equinix" }];
    lone.nodes[0].uplinks = [{ provider: "aws-transit" }];
    lone.nodes[1].uplinks = [{ provider: "aws-transit" }];
    assert.throws(() => planAgents(parseSite(lone), { paths }), (e: Error) => e instanceof PlanError && /ledger-1.*equinix.*answers no BFD|ledger-1.*router without BFD.*equinix/.test(e.message));
});

test("the agent refuses a config whose session group names an unknown session, or shares a session's id", () => {
    const cfg = JSON.parse(JSON.stringify(planAgents(parseSite(dcSiteInput()), { paths })[0]));
    cfg.sessionGroups[0].anyOf.push("path/nowhere/aws-transit");
    assert.throws(() => parseAgentConfig(cfg), /sessionGroups.gw\/aws-transit: session 'path\/nowhere\/aws-transit' is not defined/);
    cfg.sessionGroups[0].anyOf.pop();
    cfg.sessionGroups[0].id = cfg.sessions[0].id;
    assert.throws(() => parseAgentConfig(cfg), /the id is also a session's/);
});
