// The agent's metrics for one BFD change, fed what node-bfd really reports (through the agent's
// own mapping): a detection timeout is counted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Diag, DIAG_NAMES, State, STATE_NAMES } from "node-bfd";
import { bfdEventOf } from "./events";
import { AgentMetrics } from "./metrics";

async function value(m: AgentMetrics, name: string, labels: Record<string, string>): Promise<number> {
    const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
    const v = metric?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
    return v?.value ?? 0;
}

function feed(m: AgentMetrics, from: State, to: State, diag: Diag): void {
    const b = bfdEventOf({ id: "path/vc/provider-a", peer: "fe80::2", from: STATE_NAMES[from], to: STATE_NAMES[to], diagnostic: DIAG_NAMES[diag], remoteState: STATE_NAMES[State.Up], at: 1 });
    assert.ok(b.ok);
    m.bfdChange({ session: b.fields.session, peer: b.fields.peer, kind: "path", to: b.fields.to, diagnostic: b.fields.diagnostic });
}

test("a Down with node-bfd's 'control detection time expired' counts a detection timeout; other Downs do not", async () => {
    const m = new AgentMetrics();
    const session = { session: "path/vc/provider-a" };
    feed(m, State.Down, State.Up, Diag.None);
    assert.equal(await value(m, "nublar_bfd_session_up", session), 1);
    feed(m, State.Up, State.Down, Diag.ControlDetectionTimeExpired);
    assert.equal(await value(m, "nublar_bfd_detection_timeouts_total", session), 1);
    assert.equal(await value(m, "nublar_bfd_session_up", session), 0);
    feed(m, State.Down, State.Up, Diag.None);
    feed(m, State.Up, State.Down, Diag.NeighborSignaledSessionDown);
    feed(m, State.Down, State.AdminDown, Diag.AdministrativelyDown);
    assert.equal(await value(m, "nublar_bfd_detection_timeouts_total", session), 1, "only detection timeouts");
    feed(m, State.Init, State.Down, Diag.ControlDetectionTimeExpired);
    assert.equal(await value(m, "nublar_bfd_detection_timeouts_total", session), 2);
    assert.equal(await value(m, "nublar_bfd_transitions_total", { ...session, to: "down" }), 3);
    assert.match(await m.registry.metrics(), /nublar_bfd_detection_timeouts_total\{session="path\/vc\/provider-a"\} 2/);
});
