import { test } from "node:test";
import * as assert from "node:assert/strict";
import { formatIpv6, hostAddress, nodeId, nodeIds, PlanError, subnet } from "./addressing";

test("subnets are carved by index and printed canonically (RFC 5952)", () => {
    assert.equal(subnet("2001:db8:a::/48", 64, 0), "2001:db8:a::/64");
    assert.equal(subnet("2001:db8:a::/48", 64, 0xfd73), "2001:db8:a:fd73::/64");
    assert.equal(subnet("2001:db8:a::/48", 64, 0xffff), "2001:db8:a:ffff::/64");
    assert.throws(() => subnet("2001:db8:a::/48", 64, 0x10000), PlanError);
    assert.throws(() => subnet("2001:db8:a::/48", 40, 0), PlanError);
});

test("host addresses are offsets into a prefix", () => {
    assert.equal(hostAddress("2001:db8:a:5::/64", 1), "2001:db8:a:5::1");
    assert.equal(hostAddress("fd6e:626c:6172::/64", 0x10000 + 0x2a), "fd6e:626c:6172::1:2a");
    assert.equal(formatIpv6(0n), "::");
});

test("node numbers come from names, not list order", () => {
    const a = nodeIds({ nodes: [{ name: "gate" }, { name: "lab" }] as never });
    const b = nodeIds({ nodes: [{ name: "lab" }, { name: "new-node" }, { name: "gate" }] as never });
    assert.equal(a.get("gate"), b.get("gate"));
    assert.equal(a.get("lab"), b.get("lab"));
    for (const id of b.values()) assert.ok(id >= 1 && id <= 0x3fff);
    assert.equal(nodeId({ name: "gate", id: 7 }), 7);
});

test("two nodes with the same number are an error naming both", () => {
    assert.throws(
        () => nodeIds({ nodes: [{ name: "a", id: 9 }, { name: "b", id: 9 }] as never }),
        (err: Error) => err instanceof PlanError && /'a' and 'b'/.test(err.message) && /distinct 'id'/.test(err.message) && /free numbers include 1\b/.test(err.message),
    );
});
