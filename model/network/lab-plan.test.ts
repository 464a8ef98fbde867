import { test } from "node:test";
import * as assert from "node:assert/strict";
import { IPv6CidrRange } from "ip-num";
import { labSiteInput } from "../site/fixtures";
import { parseSite } from "../site/load";
import { PlanError } from "./addressing";
import { planLab, type LabNodePlan } from "./lab-plan";

function site(nodes: string[]) {
    return parseSite(raw(nodes));
}

function raw(nodes: string[]) {
    return labSiteInput(nodes, { lab: { tag: "t1" } });
}

const inside = (addr: string, prefix: string) => IPv6CidrRange.fromCidr(prefix).contains(IPv6CidrRange.fromCidr(`${addr}/128`));

test("the same site always gives the same plan", () => {
    assert.deepEqual(planLab(site(["gate", "visitor-center", "control-room"])), planLab(site(["gate", "visitor-center", "control-room"])));
});

test("adding or removing a node never renumbers the others", () => {
    const before = planLab(site(["gate", "control-room"]));
    const after = planLab(site(["aviary", "gate", "control-room"]));
    // Addresses, names and links stay; only the peer lists grow (and roles follow the fixture's order).
    const stable = (n: LabNodePlan) => ({ ...n, role: undefined, hub: undefined, overlays: n.overlays.map(({ peers: _, ...o }) => o) });
    for (const node of before.nodes) assert.deepEqual(stable(after.nodes.find((n) => n.name === node.name)!), stable(node));
});

test("each node gets one uplink per provider, with addresses inside that provider's /48", () => {
    const plan = planLab(site(["gate", "visitor-center", "control-room"]));
    const seen = new Set<string>();
    for (const node of plan.nodes) {
        assert.equal(node.uplinks.length, 2);
        for (const up of node.uplinks) {
            const provider = up.provider === "provider-a" ? "2001:db8:a::/48" : "2001:db8:b::/48";
            assert.ok(inside(up.address, up.prefix) && inside(up.routerAddress, up.prefix));
            assert.ok(IPv6CidrRange.fromCidr(up.prefix).inside(IPv6CidrRange.fromCidr(provider)));
            assert.ok(!seen.has(up.prefix), `${up.prefix} is used once`);
            seen.add(up.prefix);
            assert.equal(up.routerNetns, plan.routers.find((r) => r.provider === up.provider)!.netns);
        }
        assert.ok(inside(node.mgmt.address, plan.mgmt.prefix));
        assert.notEqual(node.mgmt.address, plan.mgmt.hostAddress);
    }
});

test("interface names fit the kernel's 15-byte limit, namespaces carry the tag", () => {
    const plan = planLab(site(["a-node-with-a-rather-long-name-x"]));
    for (const node of plan.nodes) {
        for (const name of [node.mgmt.ifname, node.mgmt.hostIfname, ...node.uplinks.flatMap((u) => [u.ifname, u.routerIfname])]) {
            assert.ok(Buffer.byteLength(name) <= 15, `${name} fits`);
        }
        assert.ok(node.netns.startsWith("nbl-t1-"));
    }
    assert.ok(Buffer.byteLength(plan.mgmt.bridge) <= 15);
});

test("only lab sites can be planned as a lab, and number clashes are errors", () => {
    assert.throws(() => planLab({ ...site(["gate"]), kind: "park" }), PlanError);
    const clash = parseSite({
        ...raw([]),
        nodes: [
            { name: "a", id: 3, role: "app", failureDomain: "x", uplinks: [{ provider: "provider-a" }] },
            { name: "b", id: 3, role: "app", failureDomain: "x", uplinks: [{ provider: "provider-a" }] },
        ],
    });
    assert.throws(() => planLab(clash), /'a' and 'b' both get number 3/);
});
