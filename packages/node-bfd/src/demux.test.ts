import { test } from "node:test";
import * as assert from "node:assert/strict";
import { allocateDiscriminator, Demux } from "./demux";
import { Diag, State, type ControlPacket } from "./packet";
import { seeded } from "./testing/sim";

const pkt = (your: number, state = State.Up): ControlPacket => ({
    version: 1, diag: Diag.None, state, poll: false, final: false, controlPlaneIndependent: false, demand: false,
    multipoint: false, detectMult: 3, myDiscriminator: 99, yourDiscriminator: your, desiredMinTxUs: 1, requiredMinRxUs: 1, requiredMinEchoRxUs: 0,
});

test("a nonzero Your Discriminator selects the session, whatever the source", () => {
    const d = new Demux<string>();
    d.add(7, { peer: "2001:db8::1", multihop: false, iface: "up0" }, "s1");
    assert.deepEqual(d.lookup(pkt(7), { peer: "2001:db8::99", multihop: true }), { ok: true, id: "s1" });
    assert.deepEqual(d.lookup(pkt(8), { peer: "2001:db8::1", multihop: false, iface: "up0" }), { ok: false, reason: "unknown-discriminator" });
});

test("a zero Your Discriminator is matched by peer address, interface and hop mode", () => {
    const d = new Demux<string>();
    d.add(7, { peer: "2001:DB8::1", multihop: false, iface: "up0" }, "single");
    d.add(8, { peer: "2001:db8::1", multihop: true }, "multi");
    assert.deepEqual(d.lookup(pkt(0, State.Down), { peer: "2001:db8::1", multihop: false, iface: "up0" }), { ok: true, id: "single" });
    assert.deepEqual(d.lookup(pkt(0, State.Down), { peer: "2001:db8::1", multihop: true }), { ok: true, id: "multi" });
    assert.deepEqual(d.lookup(pkt(0, State.Down), { peer: "2001:db8::2", multihop: false }), { ok: false, reason: "no-session" });
    d.remove(7, { peer: "2001:db8::1", multihop: false, iface: "up0" });
    assert.equal(d.lookup(pkt(7), { peer: "x", multihop: false }).ok, false);
});

test("discriminators are nonzero and unique", () => {
    const used = new Set<number>();
    const rnd = seeded(1);
    for (let i = 0; i < 10_000; i++) {
        const x = allocateDiscriminator((v) => used.has(v), rnd);
        assert.ok(x > 0 && x <= 0xffffffff && !used.has(x));
        used.add(x);
    }
});
