// The vocabulary: each name table read both ways, session ids built and parsed back, refusals
// that say why, and the agent event key both ledger paths use.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
    agentEventKey, agentSource, BFD_STATE_OF_SYMBOL, BFD_STATES, DIAGNOSTICS, isBfdState, isBfdStateSymbol, isDiagnostic, isRouteEvent,
    malformedAgentLineKey, parseSessionId, ROUTE_EVENTS, sessionId, SessionIdError, SHARD_NAME, type SessionRef,
} from "./vocabulary";

test("BFD states: the agent's spelling and the envelope's, one table, read both ways", () => {
    assert.deepEqual(Object.keys(BFD_STATES), ["admin-down", "down", "init", "up"], "RFC 5880 wire order");
    assert.deepEqual(Object.values(BFD_STATES), ["AdminDown", "Down", "Init", "Up"], "the Avro enum's symbols, in its order");
    for (const [agent, symbol] of Object.entries(BFD_STATES)) assert.equal(BFD_STATE_OF_SYMBOL[symbol], agent);
    assert.ok(isBfdState("admin-down") && !isBfdState("AdminDown") && !isBfdState("toString") && !isBfdState(undefined));
    assert.ok(isBfdStateSymbol("AdminDown") && !isBfdStateSymbol("admin-down") && !isBfdStateSymbol("constructor"));
});

test("diagnostics: the nine of RFC 5880 in code order, as the agent spells them; code 0 is \"ok\"", () => {
    assert.equal(Object.keys(DIAGNOSTICS).length, 9);
    assert.equal(Object.values(DIAGNOSTICS)[0], "ok");
    assert.equal(Object.values(DIAGNOSTICS)[1], "control detection time expired");
    assert.equal(DIAGNOSTICS.controlDetectionTimeExpired, "control detection time expired");
    for (const d of Object.values(DIAGNOSTICS)) assert.ok(isDiagnostic(d), d);
    for (const not of ["control-detection-time-expired", "Control Detection Time Expired", "none", "", 1, null]) assert.equal(isDiagnostic(not), false, String(not));
});

test("route events: a closed set, each with what it means for the route", () => {
    assert.deepEqual(ROUTE_EVENTS, { "route-added": "installed", "route-removed": "withdrawn" });
    assert.ok(isRouteEvent("route-added") && isRouteEvent("route-removed"));
    for (const not of ["installed", "withdrawn", "replaced", "link-up", "hasOwnProperty", 3]) assert.equal(isRouteEvent(not), false, String(not));
});

test("session ids: built by one function and parsed back to the same thing", () => {
    const refs: [SessionRef, string][] = [
        [{ kind: "gateway", provider: "provider-a" }, "gw/provider-a"],
        [{ kind: "path", peerNode: "visitor-center", provider: "provider-b" }, "path/visitor-center/provider-b"],
        [{ kind: "path", peerNode: "vc", provider: "aws-transit" }, "path/vc/aws-transit"],
    ];
    for (const [ref, id] of refs) {
        assert.equal(sessionId(ref), id);
        assert.deepEqual(parseSessionId(id), { ok: true, session: ref });
        const back = parseSessionId(sessionId(ref));
        assert.ok(back.ok);
        assert.equal(sessionId(back.session), id);
    }
});

test("session ids: anything else is refused with a reason, never guessed", () => {
    const refused: [unknown, RegExp][] = [
        ["gateway/provider-a", /'gateway\/provider-a' is not a session id: it starts with 'gateway', expected gw\/<provider> or path\/<peer node>\/<provider>/],
        ["gw/", /expected gw\/<provider>/],
        ["gw/a/b", /expected gw\/<provider>/],
        ["path/vc", /expected path\/<peer node>\/<provider>/],
        ["path/vc/a/b", /expected path\/<peer node>\/<provider>/],
        ["path//a", /expected path\/<peer node>\/<provider>/],
        ["path/v c/a", /expected path\/<peer node>\/<provider>/],
        ["bfd-7", /starts with 'bfd-7'/],
        ["", /is not a session id/],
        ["GW/provider-a", /starts with 'GW'/],
        [42, /a session id is a string, not number/],
    ];
    for (const [id, reason] of refused) {
        const v = parseSessionId(id);
        assert.equal(v.ok, false, `accepted ${JSON.stringify(id)}`);
        assert.match((v as { reason: string }).reason, reason);
    }
    assert.throws(() => sessionId({ kind: "gateway", provider: "a/b" }), (e: Error) => e instanceof SessionIdError && /'a\/b'/.test(e.message));
    assert.throws(() => sessionId({ kind: "path", peerNode: "", provider: "a" }), SessionIdError);
});

test("agent event keys: the ledger collector's key is the outbox's envelope id, to the character", () => {
    assert.equal(agentSource("gate"), "agent/gate");
    assert.equal(agentEventKey("gate", 1_795_400_000_123.456, 4), "agent/gate/1795400000123.456/4");
    assert.equal(agentEventKey("gate", 1_795_400_000_123, 5), "agent/gate/1795400000123/5");
    assert.equal(malformedAgentLineKey("gate", 4096), "agent/gate/malformed/4096");
});

test("shard names stay as they were", () => {
    assert.ok(SHARD_NAME.test("network") && !SHARD_NAME.test("Network"));
});
