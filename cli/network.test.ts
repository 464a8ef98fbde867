import { test } from "node:test";
import * as assert from "node:assert/strict";
import { formatEvent, peerJson } from "./network";
import { DIAGNOSTICS } from "../model/vocabulary";

test("peer JSON keeps FRR's field names and adds ours", () => {
    const p = peerJson({
        id: "gw/a", kind: "gateway", provider: "a", peer: "2001:db8::1", local: "2001:db8::2", interface: "up0", multihop: false,
        bfd: { status: "up", uptime: 5, diagnostic: "ok", "detection-timeout": 30 } as any,
    });
    assert.equal(p.session, "gw/a");
    assert.equal((p as any).status, "up");
    assert.equal((p as any)["detection-timeout"], 30);
    assert.equal(p["peer-node"], null);
    const unknown = peerJson({ id: "x", kind: "path", provider: "a", peer: "p", local: "l", multihop: true } as any);
    assert.equal((unknown as any).status, "unknown");
});

test("events print as one readable line each", () => {
    const line = formatEvent({ at: Date.UTC(2026, 10, 22, 19, 0, 0, 123), seq: 1, node: "gate", type: "bfd", session: "path/vc/a", from: "up", to: "down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: "up" });
    assert.match(line, /2026-11-22 19:00:00\.123 gate bfd\s+path\/vc\/a up -> down \(control detection time expired\)/);
    assert.match(formatEvent({ at: 0, seq: 3, node: "g", type: "bfd", session: "gw/a", from: "up", to: "down", diagnostic: DIAGNOSTICS.neighborSignaledSessionDown, remoteState: "admin-down" }), /\(neighbor signaled session down, peer admin-down\)/);
    assert.match(formatEvent({ at: 0, seq: 2, node: "g", type: "route", event: "route-removed", destination: "::/0", metric: 100, dev: "up0" }), /- default metric 100 dev up0/);
    assert.match(formatEvent({ at: 0, seq: 4, node: "g", type: "route", event: "route-added", destination: "::/0", metric: 100, dev: "up0" }), /\+ default metric 100 dev up0/);
});
