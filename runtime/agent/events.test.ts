// The agent's boundary with node-bfd: every state and diagnostic node-bfd names maps onto the
// vocabulary (model/vocabulary.ts), and a name it does not give is refused, not passed on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Diag, DIAG_NAMES, State, STATE_NAMES, type StateChange } from "node-bfd";
import { BFD_STATES, DIAGNOSTICS, isBfdState, isDiagnostic } from "../../model/vocabulary";
import { bfdEventOf, bfdStateOfNodeBfd, diagnosticOfNodeBfd, NODE_BFD_DIAGNOSTICS, NODE_BFD_STATES } from "./events";

const numeric = <E extends object>(e: E) => Object.values(e).filter((v): v is number => typeof v === "number");

test("every node-bfd diagnostic maps to a vocabulary diagnostic, one to one, keeping node-bfd's spelling", () => {
    const codes = numeric(Diag) as Diag[];
    assert.equal(codes.length, 9);
    for (const code of codes) {
        const ours = diagnosticOfNodeBfd(DIAG_NAMES[code]);
        assert.ok(ours !== undefined && isDiagnostic(ours), `node-bfd's '${DIAG_NAMES[code]}' (${Diag[code]}) maps`);
        assert.equal(ours, NODE_BFD_DIAGNOSTICS[code]);
        // The agent keeps writing what it wrote before the vocabulary: event logs stay readable.
        assert.equal(ours, DIAG_NAMES[code]);
    }
    assert.equal(new Set(codes.map((c) => NODE_BFD_DIAGNOSTICS[c])).size, codes.length, "no two codes share a name");
    assert.deepEqual([...new Set(Object.values(NODE_BFD_DIAGNOSTICS))].sort(), Object.values(DIAGNOSTICS).sort(), "and every vocabulary diagnostic is one of node-bfd's");
    assert.equal(diagnosticOfNodeBfd(DIAG_NAMES[Diag.ControlDetectionTimeExpired]), DIAGNOSTICS.controlDetectionTimeExpired);
    assert.equal(diagnosticOfNodeBfd(DIAG_NAMES[Diag.None]), DIAGNOSTICS.noDiagnostic);
    assert.equal(diagnosticOfNodeBfd("control-detection-time-expired"), undefined);
});

test("every node-bfd state maps to a vocabulary state, one to one", () => {
    const states = numeric(State) as State[];
    assert.equal(states.length, 4);
    for (const s of states) {
        const ours = bfdStateOfNodeBfd(STATE_NAMES[s]);
        assert.ok(ours !== undefined && isBfdState(ours), `node-bfd's '${STATE_NAMES[s]}' maps`);
        assert.equal(ours, NODE_BFD_STATES[s]);
    }
    assert.deepEqual(states.map((s) => NODE_BFD_STATES[s]).sort(), Object.keys(BFD_STATES).sort());
    assert.equal(bfdStateOfNodeBfd("AdminDown"), undefined);
});

const change = (over: Partial<StateChange> = {}): StateChange => ({
    id: "path/vc/provider-a", peer: "fe80::2%ov0", from: STATE_NAMES[State.Up], to: STATE_NAMES[State.Down],
    diagnostic: DIAG_NAMES[Diag.ControlDetectionTimeExpired], remoteState: STATE_NAMES[State.Up], at: 1_795_400_000_123.5, ...over,
});

test("a node-bfd state change becomes the agent's bfd event in the vocabulary's names", () => {
    assert.deepEqual(bfdEventOf(change()), {
        ok: true,
        fields: { session: "path/vc/provider-a", peer: "fe80::2%ov0", from: "up", to: "down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: "up" },
    });
    const refused = bfdEventOf(change({ diagnostic: "gremlins", to: "sideways" }));
    assert.equal(refused.ok, false);
    assert.match((refused as { reason: string }).reason, /session path\/vc\/provider-a: node-bfd reported state 'sideways', diagnostic 'gremlins'/);
});
