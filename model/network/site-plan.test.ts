import { test } from "node:test";
import * as assert from "node:assert/strict";
import { IPv6CidrRange } from "ip-num";
import { labSiteInput } from "../site/fixtures";
import { parseSite, SiteConfigError } from "../site/load";
import type { Site } from "../site/model";
import { PlanError } from "./addressing";
import { planSite, type NodePlan } from "./site-plan";

const inside = (address: string, prefix: string) => IPv6CidrRange.fromCidr(prefix).contains(IPv6CidrRange.fromCidr(`${address.split("/")[0]}/128`));
const site = (names: string[], patch: (raw: any) => void = () => {}): Site => {
    const raw = labSiteInput(names, { lab: { tag: "t1" } });
    patch(raw);
    return parseSite(raw);
};
const addresses = (n: NodePlan) => ({
    loopback: n.loopback,
    uplinks: n.uplinks,
    overlays: n.overlays.map((o) => [o.ifname, o.address, o.prefix, o.underlay]),
    sensors: n.sensors,
});

test("the same inventory always gives the same plan", () => {
    const names = ["gate", "visitor-center", "control-room", "aviary"];
    assert.deepEqual(planSite(site(names)), planSite(site(names)));
});

test("adding, removing or reordering nodes never renumbers the others", () => {
    const before = planSite(site(["gate", "visitor-center", "control-room"]));
    const after = planSite(site(["gate", "aviary", "control-room", "lagoon"]));
    for (const name of ["gate", "control-room"]) {
        assert.deepEqual(addresses(after.nodes.find((n) => n.name === name)!), addresses(before.nodes.find((n) => n.name === name)!));
    }
});

test("loopback /128, uplink /64s, overlay addresses and sensor /64s come from the right blocks and never collide", () => {
    const s = site(["gate", "visitor-center", "control-room", "aviary", "lagoon"], (raw) => { raw.nodes[1].role = "core"; });
    const plan = planSite(s);
    const used = new Set<string>();
    const once = (x: string) => { assert.ok(!used.has(x), `${x} is allocated twice`); used.add(x); };
    assert.ok(inside(plan.loopbackPrefix, "2001:db8:a::/48"));
    for (const n of plan.nodes) {
        once(n.loopback);
        assert.ok(inside(n.loopback, plan.loopbackPrefix));
        for (const u of n.uplinks) {
            const provider = s.providers.find((p) => p.name === u.provider)!;
            once(u.prefix);
            assert.ok(IPv6CidrRange.fromCidr(u.prefix).inside(IPv6CidrRange.fromCidr(provider.prefix)));
            assert.ok(inside(u.address, u.prefix) && inside(u.gateway, u.prefix));
            assert.ok(!inside(n.loopback, u.prefix));
        }
        for (const o of n.overlays) {
            once(o.address);
            assert.ok(inside(o.address, o.prefix));
            assert.ok(!n.uplinks.some((u) => u.prefix === o.prefix));
            assert.equal(o.underlay.local, n.uplinks.find((u) => u.provider === o.provider)!.address);
            assert.ok(o.mtu < 1500);
        }
        for (const x of n.sensors) {
            once(x.prefix);
            assert.ok(!n.uplinks.some((u) => IPv6CidrRange.fromCidr(u.prefix).contains(IPv6CidrRange.fromCidr(x.prefix))));
        }
    }
});

test("hubs (edge, core) tunnel to every node; spokes tunnel to the hubs only", () => {
    const plan = planSite(site(["gate", "visitor-center", "control-room", "aviary"], (raw) => { raw.nodes[2].role = "core"; }));
    assert.deepEqual(plan.hubs, ["gate", "control-room"]);
    const peers = (name: string) => plan.nodes.find((n) => n.name === name)!.overlays[0].peers.map((p) => p.node).sort();
    assert.deepEqual(peers("gate"), ["aviary", "control-room", "visitor-center"]);
    assert.deepEqual(peers("visitor-center"), ["control-room", "gate"]);
    assert.deepEqual(peers("aviary"), ["control-room", "gate"]);
    // Tunnels are symmetric: if a lists b, b lists a, with each other's endpoints.
    for (const n of plan.nodes) for (const o of n.overlays) for (const p of o.peers) {
        const back = plan.nodes.find((x) => x.name === p.node)!.overlays.find((x) => x.provider === o.provider)!.peers.find((x) => x.node === n.name);
        assert.ok(back, `${p.node} lists ${n.name} on ${o.provider}`);
        assert.equal(back.endpoint, o.underlay.local);
        assert.equal(back.address, o.address);
    }
});

test("the overlay transport follows the site kind, and can be set", () => {
    assert.equal(planSite(site(["gate", "b"])).nodes[0].overlays[0].transport, "vxlan");
    const wg = planSite(site(["gate", "b"], (raw) => { raw.overlay = { transport: "wireguard" }; }));
    assert.deepEqual([wg.nodes[0].overlays[0].transport, wg.nodes[0].overlays[0].port, wg.nodes[0].overlays[1].port], ["wireguard", 51820, 51821]);
});

// ---- errors name the offending entries ----

test("overlapping provider prefixes are refused, naming both providers", () => {
    assert.throws(() => site(["gate", "b"], (raw) => { raw.providers[1].prefix = "2001:db8:a::/48"; }),
        (e: Error) => e instanceof SiteConfigError && /providers\[1\]\.prefix/.test(e.message) && /provider-a/.test(e.message));
    // Planners called with a hand-built site check it too.
    const s = site(["gate", "b"]);
    const bad = { ...s, providers: [s.providers[0], { ...s.providers[1], prefix: s.providers[0].prefix }] };
    assert.throws(() => planSite(bad), (e: Error) => e instanceof PlanError && /'provider-a'.*'provider-b'.*overlap/.test(e.message));
});

test("an IPv4 prefix or address in the site is refused", () => {
    assert.throws(() => site(["gate", "b"], (raw) => { raw.providers[0].prefix = "10.0.0.0/8"; }), /IPv6-only/);
    const s = site(["gate", "b"]);
    assert.throws(() => planSite({ ...s, providers: [{ ...s.providers[0], prefix: "10.0.0.0/8" }, s.providers[1]] }), /provider-a.*IPv4/);
});

test("duplicate node names are refused, naming the name", () => {
    assert.throws(() => site(["gate", "b", "b"]), (e: Error) => /nodes\[2\]\.name/.test(e.message) && /duplicate node name/.test(e.message));
    const s = site(["gate", "b"]);
    assert.throws(() => planSite({ ...s, nodes: [...s.nodes, s.nodes[1]] }), /node name 'b' is used twice/);
});

test("an exhausted pool is refused: too many nodes, or an id outside the pool", () => {
    const s = site(["gate", "b"]);
    const many = Array.from({ length: 0x3fff + 1 }, (_, i) => ({ ...s.nodes[1], name: `n${i}`, id: (i % 0x3fff) + 1 }));
    assert.throws(() => planSite({ ...s, nodes: many }), /16384 nodes.*room for 16383/);
    assert.throws(() => site(["gate", "b"], (raw) => { raw.nodes[1].id = 0x4000; }), /nodes\[1\]\.id/);
    assert.throws(() => planSite({ ...s, nodes: [s.nodes[0], { ...s.nodes[1], id: 0x4000 }] }), /node 'b': id 16384 is outside the pool/);
});

test("two nodes on the same number are refused with both names and a free number", () => {
    assert.throws(() => site(["gate", "b", "c"], (raw) => { raw.nodes[1].id = 5; raw.nodes[2].id = 5; }) && planSite(site(["gate", "b", "c"], (raw) => { raw.nodes[1].id = 5; raw.nodes[2].id = 5; })),
        (e: Error) => e instanceof PlanError && /'b' and 'c' both get number 5/.test(e.message) && /free numbers include/.test(e.message));
});

test("a site without hubs, or a spoke cut off from every hub, is a plan error naming them", () => {
    assert.throws(() => planSite(site(["a", "b"], (raw) => { raw.nodes[0].role = "app"; })), /no edge or core node.*a \(app\), b \(app\)/);
    assert.throws(() => planSite(site(["gate", "b"], (raw) => { raw.nodes[0].uplinks = [{ provider: "provider-a" }]; raw.nodes[1].uplinks = [{ provider: "provider-b" }]; })),
        /node 'b' shares no provider with any hub \(gate\)/);
});

test("a 5,000-node site plans in linear size: hubs carry every node, spokes only the hubs", () => {
    const raw = labSiteInput(["gate"], { lab: { tag: "t1" } });
    raw.nodes.push({ name: "core-1", role: "core", failureDomain: "north", uplinks: raw.nodes[0].uplinks });
    for (let i = 0; i < 5000; i++) raw.nodes.push({ name: `sensor-${i}`, id: i + 3, role: "app", failureDomain: "east", uplinks: raw.nodes[0].uplinks });
    raw.nodes[0].id = 1;
    raw.nodes[1].id = 2;
    const plan = planSite(parseSite(raw));
    const peers = plan.nodes.reduce((sum, n) => sum + n.overlays.reduce((s, o) => s + o.peers.length, 0), 0);
    // Hubs: 5,001 peers x 2 providers each; spokes: 2 hubs x 2 providers.
    assert.equal(peers, 2 * 5001 * 2 + 5000 * 2 * 2);
});
