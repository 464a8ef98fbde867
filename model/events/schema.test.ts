// The envelope: round trips for every event type, and refusals that name the field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as avro from "avsc";
import { decodeEvent, encodeEvent, ENVELOPE_SCHEMA_V1, EventError, supersedes, validateEvent, type NublarEvent } from "./schema";
import { DIAGNOSTICS } from "../vocabulary";

const T = 1_795_400_000_000_000;
const base = { site: "isla-nublar", time: T };

export const SAMPLES: NublarEvent[] = [
    { ...base, id: "sensor/fence-07/3", source: "sensor-gateway", type: "sensor-reading", payload: { sensor: "fence-07", kind: "fence-voltage", value: 9.81, unit: "kV", seq: 3, receivedAt: T + 5, address: "2001:db8:a:8001::7" } },
    { ...base, id: "agent/gate/1.5/2", source: "agent/gate", type: "bfd-change", payload: { node: "gate", session: "gw/provider-a", peer: "2001:db8:a:1::1", from: "Up", to: "Down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: null, seq: 2 } },
    { ...base, id: "agent/gate/1.5/3", source: "agent/gate", type: "route-change", payload: { node: "gate", event: "route-removed", route: "::/0 metric 100", prefix: "::/0", via: "up0", metric: 100, reason: null, seq: 3 } },
    { ...base, id: "agent/gate/1.5/4", source: "agent/gate", type: "ingress-change", payload: { node: "gate", upstream: "visitor-web", event: "members", members: ["[2001:db8:a::2]:8080"], added: [], removed: ["[2001:db8:a::3]:8080"], seq: 4 } },
    { ...base, id: "agent/gate/lat/1", source: "agent/gate", type: "path-latency", payload: { node: "gate", session: "path/visitor-center/provider-a", peer: "fd00::2", rttMs: 0.42, maxGapMs: 21.5, detectionMs: 60, windowMs: 5000 } },
    { ...base, id: "deploy/isla-nublar/gate/7", source: "nublar-deploy", type: "deploy", payload: { stack: "isla-nublar", node: "gate", generation: 7, outcome: "confirmed", message: "6 of 6 sessions Up", durationMs: 6264 } },
    { ...base, id: "audit-report/abc", source: "nublar-audit", type: "audit-result", payload: { stack: "isla-nublar", reportId: "abc", verdict: "pass", contentSha256: "00".repeat(32), findings: 2, mandatory: 0, estimatedAvailability: 0.99995 } },
    { ...base, id: "alert/1", source: "nublar-alerts", type: "alert", payload: { dedupKey: "nublar/isla-nublar/gate/gw/provider-a/session-down", action: "trigger", severity: "critical", class: "session-down", summary: "gate gw/provider-a Down", node: "gate", session: "gw/provider-a", details: "{}" } },
    { ...base, id: "agent/gate/1.5/9", source: "agent/gate", type: "agent-notice", payload: { node: "gate", kind: "error", fields: "{\"step\":\"nginx\"}", seq: 9 } },
];

test("every event type survives encode and decode unchanged, in a compact form", () => {
    for (const e of SAMPLES) {
        const wire = encodeEvent(e);
        assert.equal(wire[0], 0x00, "magic");
        assert.equal(wire[1], 1, "schema version");
        assert.ok(wire.length < JSON.stringify(e).length * 0.8, `${e.type}: ${wire.length} bytes is compact`);
        const back = decodeEvent(wire);
        assert.ok(back.ok, back.ok ? "" : back.reason);
        assert.deepEqual(back.event, e);
    }
});

test("the schema is valid Avro that other tools can parse", () => {
    const type = avro.Type.forSchema(JSON.parse(JSON.stringify(ENVELOPE_SCHEMA_V1)));
    assert.equal(type.name, "park.nublar.events.Envelope");
});

test("invalid events are refused, naming the field, at encode and at decode", () => {
    const cases: [Partial<NublarEvent> & Record<string, unknown>, RegExp][] = [
        [{ ...SAMPLES[0], payload: { ...SAMPLES[0].payload, value: "high" } } as never, /payload\.value = "high"/],
        [{ ...SAMPLES[0], payload: { ...SAMPLES[0].payload, value: Number.NaN } } as never, /payload\.value: NaN is not a finite number/],
        [{ ...SAMPLES[0], payload: { ...SAMPLES[0].payload, kind: "Fence Voltage" } } as never, /payload\.kind/],
        [{ ...SAMPLES[0], time: 1_000 }, /time: 1000 is not µs since the epoch/],
        [{ ...SAMPLES[0], id: "x".repeat(201) }, /id: must be 1 to 200 bytes/],
        [{ ...SAMPLES[0], id: "a\nb" }, /control characters/],
        [{ ...SAMPLES[0], site: "Isla Nublar" }, /site: 'Isla Nublar'/],
        [{ ...SAMPLES[1], payload: { ...SAMPLES[1].payload, to: "Sideways" } } as never, /payload\.to = "Sideways"/],
        [{ ...SAMPLES[1], type: "weather" } as never, /unknown event type 'weather'/],
        // The spelling the agent never sent: a contract, not free text.
        [{ ...SAMPLES[1], payload: { ...SAMPLES[1].payload, diagnostic: "control-detection-time-expired" } } as never, /payload\.diagnostic: 'control-detection-time-expired' is not a BFD diagnostic/],
        [{ ...SAMPLES[1], payload: { ...SAMPLES[1].payload, from: "down" } } as never, /payload\.from = "down"/],
        [{ ...SAMPLES[2], payload: { ...SAMPLES[2].payload, event: "installed" } } as never, /payload\.event: 'installed' is not a route event \(route-added, route-removed\)/],
        [{ ...SAMPLES[4], payload: { ...SAMPLES[4].payload, detectionMs: 0 } } as never, /detectionMs: must be positive/],
        // Valid Avro doubles the ledger cannot hold (JSON has no NaN): before, a deploy with a NaN
        // duration passed here and was refused by the ledger on every retry, holding its consumer.
        [{ ...SAMPLES[5], payload: { ...SAMPLES[5].payload, durationMs: Number.NaN } } as never, /payload\.durationMs: NaN is not a finite number/],
        [{ ...SAMPLES[4], payload: { ...SAMPLES[4].payload, rttMs: Number.POSITIVE_INFINITY } } as never, /payload\.rttMs: Infinity is not a finite number/],
    ];
    for (const [e, reason] of cases) {
        const v = validateEvent(e);
        assert.equal(v.ok, false, `accepted: ${JSON.stringify(e).slice(0, 120)}`);
        assert.match((v as { reason: string }).reason, reason);
        assert.throws(() => encodeEvent(e as NublarEvent), (err: Error) => err instanceof EventError && reason.test(err.message));
    }
});

test("garbage on the wire is refused with a reason, never a crash", () => {
    const good = encodeEvent(SAMPLES[0]);
    const cases: [Buffer | undefined, RegExp][] = [
        [undefined, /too short/],
        [Buffer.from([0]), /too short/],
        [Buffer.from('{"sensor":"x"}'), /not a nublar event: first byte 0x7b.*looks like JSON/],
        [Buffer.from([0, 9, 1, 2]), /schema version 9 is unknown/],
        [good.subarray(0, good.length - 3), /not valid Avro/],
        [Buffer.concat([good, Buffer.from([1, 2, 3])]), /not valid Avro/],
    ];
    for (const [buf, reason] of cases) {
        const v = decodeEvent(buf);
        assert.equal(v.ok, false);
        assert.match((v as { reason: string }).reason, reason);
    }
    // Every single-byte corruption of a valid event: refused or decoded as a valid event, never a throw.
    for (let i = 0; i < good.length; i++) {
        for (const flip of [0x01, 0x80, 0xff]) {
            const bad = Buffer.from(good);
            bad[i] ^= flip;
            const v = decodeEvent(bad);
            if (v.ok) assert.equal(validateEvent(v.event).ok, true);
        }
    }
});

test("the vocabulary changed no byte: the schema and the encoding of a bfd-change and a route-change are as before", () => {
    // The schema as written before the vocabulary (model/vocabulary.ts) existed: the BfdState symbols and their order.
    assert.equal(createHash("sha256").update(JSON.stringify(ENVELOPE_SCHEMA_V1)).digest("hex"), "59e924f9b1ecae6a8578cb5c1854a04488fc90a9b78d5d8964537e7c35b7f371");
    const bfd = { ...SAMPLES[1], payload: { ...SAMPLES[1].payload, remoteState: "AdminDown" } } as NublarEvent;
    assert.equal(encodeEvent(bfd).toString("hex"),
        "0001206167656e742f676174652f312e352f321669736c612d6e75626c6172146167656e742f6761746580c0d6b384bab0060208676174651a67772f70726f76696465722d611e323030313a6462383a613a313a3a3106023c636f6e74726f6c20646574656374696f6e2074696d652065787069726564020004");
    assert.equal(encodeEvent(SAMPLES[2]).toString("hex"),
        "0001206167656e742f676174652f312e352f331669736c612d6e75626c6172146167656e742f6761746580c0d6b384bab0060408676174651a726f7574652d72656d6f7665641e3a3a2f30206d65747269632031303002083a3a2f30020675703002c8010006");
});

test("supersedes: later event time wins; at the same time, a higher agent seq; a redelivery or an older event never", () => {
    assert.equal(supersedes({ time: 5, seq: 1 }, undefined), true);
    assert.equal(supersedes({ time: 5, seq: 1 }, null), true);
    assert.equal(supersedes({ time: 6, seq: 1 }, { time: 5, seq: 9 }), true, "time first: a restarted agent's seq starts again");
    assert.equal(supersedes({ time: 4, seq: 9 }, { time: 5, seq: 1 }), false);
    assert.equal(supersedes({ time: 5, seq: 2 }, { time: 5, seq: 1 }), true);
    assert.equal(supersedes({ time: 5, seq: 1 }, { time: 5, seq: 1 }), false, "the same change again");
    assert.equal(supersedes({ time: 5, seq: 0 }, { time: 5, seq: 1 }), false);
    assert.equal(supersedes({ time: 5 }, { time: 5 }), false, "without a seq, the same time is not later");
});
