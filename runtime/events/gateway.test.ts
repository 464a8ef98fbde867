// The sensor gateway over real HTTP on ::1, with an in-memory stand-in for the bus (the real
// broker is in test/events/pipeline.test.ts): what a sensor gets back, what is published, what
// goes to the dead-letter topic, and who may send.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { DEAD_LETTER_TOPIC } from "../../model/events/topics";
import { decodeEvent } from "../../model/events/schema";
import { readingEnvelope, startGateway } from "./gateway";
import type { EventProducer } from "./kafka";

const sent: { topic: string; key?: string; value?: Buffer; headers?: Record<string, string> }[] = [];
let busDown = false;
const producer: EventProducer = {
    async send(o) {
        if (busDown) throw new Error("broker unreachable");
        sent.push(...(o.messages as typeof sent));
        return {};
    },
    async close() {},
};
let gw: Awaited<ReturnType<typeof startGateway>>;
let url: string;

before(async () => {
    gw = await startGateway({ site: "lab", producer, listen: [{ host: "::1", port: 0 }], allow: ["::1/128"] });
    url = `http://${gw.addresses[0]}/v1/readings`;
});
after(() => gw.close());

const post = async (body: string, target = url) => {
    const res = await fetch(target, { method: "POST", body, headers: { "content-type": "application/json" } });
    return { status: res.status, body: await res.json() as any };
};

test("a reading is answered 202 with its id only after the bus took it; the sensor's own clock is the event's time", async () => {
    sent.length = 0;
    const r = await post(JSON.stringify({ sensor: "paddock-9/co2", kind: "co2", value: 412, unit: "ppm", seq: 7, boot: 3, time: "2026-11-20T09:00:00.250Z" }));
    assert.equal(r.status, 202);
    assert.deepEqual(r.body.ids, ["sensor/paddock-9/co2#3/7"]);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].topic, "nublar.sensors");
    assert.equal(sent[0].key, "paddock-9/co2");
    const v = decodeEvent(sent[0].value);
    assert.ok(v.ok && v.event.type === "sensor-reading");
    assert.equal(v.event.time, Date.parse("2026-11-20T09:00:00.250Z") * 1000);
    assert.equal(v.event.payload.address, "::1");
    assert.ok(v.event.payload.receivedAt > v.event.time);
});

test("many readings in one request, or in many requests at once, go out in few sends", async () => {
    sent.length = 0;
    const many = Array.from({ length: 500 }, (_, i) => ({ sensor: `gate-${i % 4}`, kind: "gate-count", value: i, seq: i }));
    const r = await post(JSON.stringify({ readings: many }));
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted, 500);
    assert.equal(new Set(sent.map((m) => m.topic)).size, 1);
});

test("invalid readings get their reasons and go to the dead-letter topic; the valid ones of the request are accepted", async () => {
    sent.length = 0;
    const r = await post(JSON.stringify([{ sensor: "fence-1", kind: "fence-voltage", value: 9.9, seq: 1 }, { sensor: "fence-1", kind: "fence-voltage", value: 9.9 }, { sensor: "fence 1", kind: "x", value: 1, seq: 2 }, { sensor: "f", kind: "x", value: 1, seq: 3, colour: "red" }]));
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted, 1);
    assert.deepEqual(r.body.rejected.map((x: { index: number }) => x.index), [1, 2, 3]);
    assert.match(r.body.rejected[0].reason, /seq is missing/);
    assert.match(r.body.rejected[1].reason, /payload\.sensor: 'fence 1'/);
    assert.match(r.body.rejected[2].reason, /unknown field\(s\) colour/);
    const dead = sent.filter((m) => m.topic === DEAD_LETTER_TOPIC);
    assert.equal(dead.length, 3);
    assert.match(dead[0].headers!["nublar-reason"], /seq is missing/);
    assert.equal(dead[0].headers!["nublar-origin"], "sensor-gateway [::1]");
    const all = await post(JSON.stringify({ sensor: "x" }));
    assert.equal(all.status, 422, "nothing valid: 422");
    const notJson = await post("temperature=21");
    assert.equal(notJson.status, 400);
    assert.equal(sent.filter((m) => m.topic === DEAD_LETTER_TOPIC).at(-1)!.value!.toString(), "temperature=21");
});

test("when the bus is down the sensor gets 503 (and sends again), never a 202", async () => {
    busDown = true;
    try {
        const r = await post(JSON.stringify({ sensor: "s", kind: "k", value: 1, seq: 1 }));
        assert.equal(r.status, 503);
        assert.match(r.body.error, /broker unreachable/);
        assert.equal(gw.stats.busErrors >= 1, true);
    } finally {
        busDown = false;
    }
});

test("other paths, methods, oversized bodies and senders outside the allowed prefixes are refused", async () => {
    assert.equal((await fetch(url.replace("/v1/readings", "/v2"))).status, 404);
    assert.equal((await fetch(url)).status, 405);
    assert.equal((await post("x".repeat(1_100_000))).status, 413);
    const strict = await startGateway({ site: "lab", producer, listen: [{ host: "::1", port: 0 }], allow: ["2001:db8::/32"] });
    try {
        const r = await post("{}", `http://${strict.addresses[0]}/v1/readings`);
        assert.equal(r.status, 403);
        assert.match(r.body.error, /::1 may not send readings here/);
    } finally {
        await strict.close();
    }
});

test("readingEnvelope: the reading's identity makes a resend the same event", () => {
    const a = readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5 }, "::1", 1_795_400_000_000_000);
    const b = readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5 }, "::1", 1_795_400_000_900_000);
    assert.ok(a.ok && b.ok);
    assert.equal(a.event.id, b.event.id);
    assert.deepEqual(readingEnvelope("lab", { sensor: "s", kind: "k", value: 1, seq: 5, time: "yesterday" }, "::1", 1), { ok: false, reason: 'time: "yesterday" is neither ms since the epoch nor ISO 8601' });
});
