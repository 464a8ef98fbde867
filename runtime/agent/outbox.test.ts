// The agent's outbox: every line of its event log becomes an envelope on the bus, in order,
// exactly as far as the bus acknowledged; a broker outage or a restart loses nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EventLog } from "./events";
import type { EventProducer } from "../events/kafka";
import { envelopeOfAgentEvent, latencySamples, Outbox } from "./outbox";
import { decodeEvent } from "../../model/events/schema";
import { DEAD_LETTER_TOPIC } from "../../model/events/topics";
import { agentEventKey, DIAGNOSTICS } from "../../model/vocabulary";

function bus() {
    const sent: { topic: string; key?: string; value?: Buffer; headers?: Record<string, string> }[] = [];
    let down = false;
    const producer: EventProducer = {
        async send(o) {
            if (down) throw new Error("connect ECONNREFUSED [fd6e::1]:19094");
            sent.push(...(o.messages as typeof sent));
            return {};
        },
        async close() {},
    };
    return { sent, producer, setDown: (v: boolean) => (down = v) };
}

test("agent events map onto the envelope: BFD, routes, Nginx, and everything else as notices", () => {
    const at = 1_795_400_000_123.456;
    const bfd = envelopeOfAgentEvent("lab", { at, seq: 4, node: "gate", type: "bfd", session: "gw/provider-a", peer: "2001:db8:a:1::1", from: "up", to: "down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: "up" });
    assert.equal(bfd.id, `agent/gate/${at}/4`, "the ledger collector's key, so both paths agree");
    assert.equal(bfd.id, agentEventKey("gate", at, 4));
    assert.equal(bfd.time, Math.round(at * 1000));
    assert.deepEqual(bfd.payload, { node: "gate", seq: 4, session: "gw/provider-a", peer: "2001:db8:a:1::1", from: "Up", to: "Down", diagnostic: "control detection time expired", remoteState: "Up" });
    const route = envelopeOfAgentEvent("lab", { at, seq: 5, node: "gate", type: "route", event: "route-removed", destination: "::/0", source: "2001:db8:a:1::/64", metric: 100, dev: "up0", protocol: 199 });
    assert.equal(route.type, "route-change");
    assert.equal((route.payload as { route: string }).route, "::/0 from 2001:db8:a:1::/64 metric 100");
    const nginx = envelopeOfAgentEvent("lab", { at, seq: 6, node: "gate", type: "nginx", upstream: "visitor-web", event: "connections-aborted", member: "[fd00::2]:8080", count: 3 });
    assert.deepEqual((nginx.payload as { removed: string[] }).removed, ["[fd00::2]:8080"]);
    const err = envelopeOfAgentEvent("lab", { at, seq: 7, node: "gate", type: "error", step: "routes", message: "EPERM" });
    assert.equal(err.type, "agent-notice");
    assert.deepEqual(JSON.parse((err.payload as { fields: string }).fields), { step: "routes", message: "EPERM" });
    assert.throws(() => envelopeOfAgentEvent("lab", { at, seq: 8, node: "gate", type: "bfd", session: "s", peer: "p", from: "up", to: "sideways" } as never), /to: 'sideways' is not a BFD state/);
    // Names outside the vocabulary are refused (dead-lettered by the outbox), not passed on.
    assert.throws(() => envelopeOfAgentEvent("lab", { at, seq: 9, node: "gate", type: "bfd", session: "s", peer: "p", from: "up", to: "down", diagnostic: "control-detection-time-expired", remoteState: "up" }), /diagnostic: 'control-detection-time-expired' is not a BFD diagnostic/);
    assert.throws(() => envelopeOfAgentEvent("lab", { at, seq: 10, node: "gate", type: "route", event: "installed", destination: "::/0" }), /event: 'installed' is not a route event/);
    // The envelope's spelling is read as well: every state, either way.
    for (const [agent, envelope] of [["admin-down", "AdminDown"], ["down", "Down"], ["init", "Init"], ["up", "Up"]]) {
        for (const given of [agent, envelope]) {
            const e = envelopeOfAgentEvent("lab", { at, seq: 11, node: "gate", type: "bfd", session: "s", peer: "p", from: given, to: given, diagnostic: DIAGNOSTICS.noDiagnostic, remoteState: given });
            assert.equal(e.type, "bfd-change");
            const p = e.payload as { from: string; to: string; remoteState: string | null };
            assert.deepEqual([p.from, p.to, p.remoteState], [envelope, envelope, envelope]);
        }
    }
});

test("the outbox publishes the log in order, keeps its place, waits out an outage, and dead-letters lines that are not events", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-outbox-"));
    try {
        const file = path.join(dir, "events.jsonl");
        const stateFile = path.join(dir, "outbox.json");
        const log = new EventLog("gate", file);
        const { sent, producer, setDown } = bus();
        log.emit("bfd", { session: "gw/provider-a", peer: "p", from: "down", to: "up", diagnostic: DIAGNOSTICS.noDiagnostic, remoteState: "up" });
        log.emit("agent", { event: "start" });
        const box = new Outbox({ site: "lab", node: "gate", file, stateFile, producer });
        await box.flush();
        assert.deepEqual(sent.map((m) => decodeEvent(m.value).ok && (decodeEvent(m.value) as { event: { type: string } }).event.type), ["bfd-change", "agent-notice"]);

        setDown(true);
        log.emit("bfd", { session: "gw/provider-a", peer: "p", from: "up", to: "down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: "up" });
        fs.appendFileSync(file, "this is not json\n");
        await box.flush();
        assert.equal(sent.length, 2, "nothing while the bus is down");
        assert.equal(box.stats.errors, 1);

        // The agent restarts while the bus is still down, then the bus comes back.
        const again = new Outbox({ site: "lab", node: "gate", file, stateFile, producer });
        setDown(false);
        await again.flush();
        const topics = sent.map((m) => m.topic);
        assert.deepEqual(topics, ["nublar.network", "nublar.network", "nublar.network", DEAD_LETTER_TOPIC], "the rest, once: not the first two again");
        assert.match(sent[3].headers!["nublar-reason"], /agent gate: .*JSON/);
        assert.equal(sent[3].value!.toString(), "this is not json");
        await again.flush();
        assert.equal(sent.length, 4, "nothing new: nothing sent");
        log.close();
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("latency samples: one per session that was Up with packets in the window, valid envelopes on the telemetry topic", async () => {
    const { validateEvent } = await import("../../model/events/schema");
    const { topicOf } = await import("../../model/events/topics");
    const samples = latencySamples("lab", "gate", [
        { id: "path/visitor-center/provider-a", peer: "fd00::2", maxGapMs: 21.37, detectionMs: 60, up: true },
        { id: "gw/provider-a", peer: "2001:db8:a:1::1", maxGapMs: null, detectionMs: 60, up: true },
        { id: "gw/provider-b", peer: "2001:db8:b:1::1", maxGapMs: 500, detectionMs: 3000, up: false },
    ], 5000.4, 1_795_400_000_000_000);
    assert.equal(samples.length, 1);
    assert.equal(validateEvent(samples[0]).ok, true);
    assert.equal(topicOf(samples[0].type).name, "nublar.telemetry");
    assert.deepEqual(samples[0].payload, { node: "gate", session: "path/visitor-center/provider-a", peer: "fd00::2", rttMs: null, maxGapMs: 21.37, detectionMs: 60, windowMs: 5000 });
});
