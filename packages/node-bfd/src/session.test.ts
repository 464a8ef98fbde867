// The session state machine on a virtual clock: RFC 5880 §6.2 transitions, §6.8
// timers, Poll/Final, detection, admin down, passive mode.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { decode, Diag, encode, State } from "./packet";
import { controlPacket, createSession, detectionTimeUs, SLOW_TX_US, step, type SessionConfig } from "./session";
import { Sim } from "./testing/sim";

const MS = 1000;
const fast: SessionConfig = { desiredMinTxUs: 10 * MS, requiredMinRxUs: 10 * MS, detectMult: 3 };

function pair(a: SessionConfig = fast, b: SessionConfig = fast, seed = 7): Sim {
    const sim = new Sim(seed);
    sim.add("a", a, 0x1111);
    sim.add("b", b, 0x2222);
    sim.connect("a", "b");
    return sim;
}

function sentBy(sim: Sim, node: string, after = 0) {
    return sim.sent.filter((s) => s.node === node && s.at >= after).map((s) => ({ at: s.at, p: (decode(s.bytes) as any).packet }));
}

test("two sessions come Up through Down -> Init -> Up (three-way handshake)", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    assert.equal(sim.get("a").state, State.Up);
    assert.equal(sim.get("b").state, State.Up);
    const path = (n: string) => sim.transitions.filter((t) => t.node === n).map((t) => t.to);
    for (const n of ["a", "b"]) {
        const p = path(n);
        assert.equal(p[p.length - 1], State.Up);
        assert.ok(p.every((s) => s === State.Init || s === State.Up), `${n}: ${p}`);
    }
    assert.equal(sim.get("a").remoteDiscr, 0x2222);
    assert.equal(sim.get("b").remoteDiscr, 0x1111);
});

test("while not Up the session transmits no faster than once a second, with jitter", () => {
    const sim = new Sim(3);
    sim.add("a", fast, 1);
    sim.run(10_000 * MS);
    const times = sentBy(sim, "a").map((s) => s.at);
    assert.ok(times.length >= 9 && times.length <= 14, `${times.length} packets in 10 s`);
    for (let i = 1; i < times.length; i++) {
        const gap = times[i] - times[i - 1];
        assert.ok(gap >= 0.75 * SLOW_TX_US && gap <= SLOW_TX_US, `gap ${gap}`);
    }
    for (const s of sentBy(sim, "a")) assert.ok(s.p.desiredMinTxUs >= SLOW_TX_US);
});

test("once Up, a Poll Sequence moves to the configured 10 ms and jitter stays in 75-100%", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    const upAt = sim.now;
    sim.run(500 * MS);
    const pkts = sentBy(sim, "a", upAt + 100 * MS);
    for (let i = 1; i < pkts.length; i++) {
        const gap = pkts[i].at - pkts[i - 1].at;
        if (pkts[i].p.final) continue; // Finals are sent at once, outside the schedule
        assert.ok(gap >= 7.5 * MS - 1 && gap <= 10 * MS + 1, `gap ${gap}`);
    }
    assert.ok(pkts.every((s) => s.p.desiredMinTxUs === 10 * MS && !s.p.poll), "poll finished, fast timers advertised");
    assert.equal(detectionTimeUs(sim.get("a")), 30 * MS);
});

test("detect multiplier 1 keeps jitter within 75-90% of the interval", () => {
    const one = { ...fast, detectMult: 1 };
    const sim = pair(one, one);
    sim.run(3_000 * MS);
    const start = sim.now;
    sim.run(1_000 * MS);
    const pkts = sentBy(sim, "a", start).filter((s) => !s.p.final);
    for (let i = 1; i < pkts.length; i++) {
        const gap = pkts[i].at - pkts[i - 1].at;
        assert.ok(gap >= 7.5 * MS - 1 && gap <= 9 * MS + 1, `gap ${gap}`);
    }
});

test("a cut link brings the session Down with diag 1 within the detection time", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    const cutAt = sim.now;
    const lastFromB = Math.max(...sim.sent.filter((s) => s.node === "b").map((s) => s.at));
    sim.cut.add("b");
    sim.run(100 * MS);
    const down = sim.transitions.find((t) => t.node === "a" && t.at > cutAt);
    assert.ok(down, "a went down");
    assert.equal(down.to, State.Down);
    assert.equal(down.diag, Diag.ControlDetectionTimeExpired);
    // Detection time is 3 x 10 ms after the last packet that arrived (plus link latency).
    assert.ok(down.at - lastFromB <= 30 * MS + sim.latencyUs + 1, `${down.at - lastFromB} us after the last packet`);
    assert.ok(down.at - cutAt <= 30 * MS + 1, `detected ${(down.at - cutAt) / MS} ms after the cut`);
    assert.equal(sim.get("a").remoteDiscr, 0, "the peer is forgotten");
    // b, hearing "Down" from a, also goes Down with diag 3 (and then to Init, still hearing a).
    const bDown = sim.transitions.find((t) => t.node === "b" && t.at > cutAt);
    assert.ok(bDown && bDown.from === State.Up && bDown.to === State.Down && bDown.diag === Diag.NeighborSignaledSessionDown);
});

test("the session comes back Up when the link is restored", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.cut.add("b");
    sim.run(100 * MS);
    sim.cut.delete("b");
    sim.run(5_000 * MS);
    assert.equal(sim.get("a").state, State.Up);
    assert.equal(sim.get("a").counters.upTransitions, 2);
    assert.equal(sim.get("a").counters.downTransitions, 1);
});

test("administrative down: AdminDown with diag 7 here, Down with diag 3 at the peer, and back", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.apply("a", { type: "admin", down: true });
    assert.equal(sim.get("a").state, State.AdminDown);
    assert.equal(sim.get("a").localDiag, Diag.AdministrativelyDown);
    sim.run(50 * MS);
    assert.equal(sim.get("b").state, State.Down);
    assert.equal(sim.get("b").localDiag, Diag.NeighborSignaledSessionDown);
    // While AdminDown, received packets are discarded and the state holds.
    sim.run(3_000 * MS);
    assert.equal(sim.get("a").state, State.AdminDown);
    assert.ok((sim.get("a").counters.drops["admin-down"] ?? 0) > 0);
    sim.apply("a", { type: "admin", down: false });
    sim.run(5_000 * MS);
    assert.equal(sim.get("a").state, State.Up);
    assert.equal(sim.get("b").state, State.Up);
});

test("a session created administratively down stays silent about Up", () => {
    const sim = pair({ ...fast, adminDown: true });
    sim.run(5_000 * MS);
    assert.equal(sim.get("a").state, State.AdminDown);
    assert.notEqual(sim.get("b").state, State.Up);
});

test("passive mode: no packet until the peer speaks; two passive sessions never meet", () => {
    const both = pair({ ...fast, passive: true }, { ...fast, passive: true });
    both.run(5_000 * MS);
    assert.equal(both.sent.length, 0);
    const one = pair({ ...fast, passive: true }, fast);
    one.run(2_000 * MS);
    const firstA = sentBy(one, "a")[0]?.at ?? Infinity;
    const firstB = sentBy(one, "b")[0]?.at ?? Infinity;
    assert.ok(firstB < firstA, "the active side speaks first");
    one.run(5_000 * MS);
    assert.equal(one.get("a").state, State.Up);
});

test("a received Poll is answered at once with Final", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    const b = sim.get("b");
    const poll = { ...controlPacket(b), poll: true };
    const actions = sim.apply("a", { type: "rx", packet: poll, raw: encode(poll) });
    const reply = actions.find((a) => a.type === "send");
    assert.ok(reply && reply.type === "send");
    assert.equal(reply.packet.final, true);
    assert.equal(reply.packet.poll, false);
});

test("raising TX while Up: Poll set, old rate kept until Final, then the new rate", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    let finalSeen = false;
    // Hold b's Finals back for a while to see the rate hold during the Poll Sequence.
    sim.tap = (from, bytes) => {
        const p = (decode(bytes) as any).packet;
        if (from === "b" && p.final && !finalSeen) return undefined;
        return bytes;
    };
    const start = sim.now;
    sim.apply("a", { type: "configure", config: { ...fast, desiredMinTxUs: 50 * MS } });
    sim.run(100 * MS);
    const during = sentBy(sim, "a", start).filter((s) => !s.p.final);
    assert.ok(during.every((s) => s.p.poll && s.p.desiredMinTxUs === 50 * MS), "P bit and the new value advertised");
    assert.ok(during.length >= 9, `still sending at the old 10 ms rate during the poll: ${during.length}`);
    finalSeen = true;
    sim.tap = undefined;
    sim.run(100 * MS);
    const afterFinal = sim.now;
    sim.run(1_000 * MS);
    const after = sentBy(sim, "a", afterFinal).filter((s) => !s.p.final);
    assert.ok(after.every((s) => !s.p.poll));
    assert.ok(after.length >= 18 && after.length <= 28, `about 20 packets a second at 50 ms: ${after.length}`);
    assert.equal(sim.get("a").state, State.Up);
    assert.equal(sim.get("b").state, State.Up);
    // b's detection time for a follows a's new TX interval: 3 x 50 ms.
    assert.equal(detectionTimeUs(sim.get("b")), 150 * MS);
});

test("lowering RX while Up: detection keeps the old value until the Poll Sequence ends", () => {
    const slow = { ...fast, requiredMinRxUs: 50 * MS, desiredMinTxUs: 50 * MS };
    const sim = pair(slow, slow);
    sim.run(3_000 * MS);
    assert.equal(detectionTimeUs(sim.get("a")), 150 * MS);
    sim.tap = (from, bytes) => ((decode(bytes) as any).packet.final && from === "b" ? undefined : bytes);
    sim.apply("a", { type: "configure", config: { ...slow, requiredMinRxUs: 10 * MS } });
    assert.equal(sim.get("a").pollActive, true);
    assert.equal(detectionTimeUs(sim.get("a")), 150 * MS, "held during the poll");
    sim.tap = undefined;
    sim.run(500 * MS);
    assert.equal(sim.get("a").pollActive, false);
    // Now b may send every 50 ms still (its own TX), so detection = 3 x max(10, 50) ms.
    assert.equal(detectionTimeUs(sim.get("a")), 150 * MS);
    assert.equal(sim.get("a").rxRequiredInForceUs, 10 * MS);
});

test("detection time is the peer's multiplier times the larger of our RX and its TX", () => {
    const sim = pair({ ...fast, requiredMinRxUs: 20 * MS }, { ...fast, detectMult: 5, desiredMinTxUs: 15 * MS });
    sim.run(3_000 * MS);
    assert.equal(detectionTimeUs(sim.get("a")), 5 * 20 * MS);
    // a's multiplier (3) times the larger of b's RX and a's TX (both 10 ms); b's own TX does not count.
    assert.equal(detectionTimeUs(sim.get("b")), 3 * 10 * MS);
});

test("a peer asking for no packets (Required Min RX 0) gets no periodic packets", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    const a = sim.get("a");
    const quiet = { ...controlPacket(sim.get("b")), requiredMinRxUs: 0 };
    let { session } = step(a, { type: "rx", packet: quiet, raw: encode(quiet) }, sim.now);
    let sends = 0;
    for (let t = sim.now; t < sim.now + 25 * MS; t += 1 * MS) {
        const r = step(session, { type: "timer" }, t);
        session = r.session;
        sends += r.actions.filter((x) => x.type === "send").length;
    }
    assert.equal(sends, 0);
    assert.equal(session.state, State.Up);
});

test("the session never moves on a packet from an unauthenticated stranger", () => {
    const s0 = createSession({ ...fast, auth: { type: 4, keys: [{ id: 1, secret: Buffer.from("k") }], sendKeyId: 1 } }, 5, 0);
    const stranger = { ...controlPacket(s0), myDiscriminator: 9, yourDiscriminator: 0, state: State.Down };
    const { session, actions } = step(s0, { type: "rx", packet: stranger, raw: encode(stranger) }, 10);
    assert.equal(session.state, State.Down);
    assert.equal(session.remoteDiscr, 0);
    assert.equal(session.counters.drops["auth-missing"], 1);
    assert.deepEqual(actions, []);
});

test("a second change during a Poll keeps the value in force until the Final (§6.8.3)", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.tap = (from, bytes) => ((decode(bytes) as any).packet.final && from === "b" ? undefined : bytes);
    const a = () => sim.get("a");
    sim.apply("a", { type: "configure", config: { ...fast, desiredMinTxUs: 100 * MS } });
    assert.equal(a().txDesiredInForceUs, 10 * MS, "increase waits");
    sim.apply("a", { type: "configure", config: { ...fast, desiredMinTxUs: 50 * MS } });
    assert.equal(a().txDesiredInForceUs, 10 * MS, "still the old value: 50 ms is also an increase over 10 ms");
    sim.apply("a", { type: "configure", config: { ...fast, requiredMinRxUs: 100 * MS } });
    sim.apply("a", { type: "configure", config: { ...fast, requiredMinRxUs: 30 * MS } });
    assert.equal(a().rxRequiredInForceUs, 100 * MS, "a decrease after an increase waits for the Final");
    sim.tap = undefined;
    sim.run(200 * MS);
    assert.equal(a().pollActive, false);
    assert.equal(a().rxRequiredInForceUs, 30 * MS);
});

test("a Final that answers an older Poll does not end a Poll restarted with new values", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.apply("a", { type: "configure", config: { ...fast, desiredMinTxUs: 50 * MS } });
    // The configure above sends nothing by itself; a P packet goes out at the next transmission.
    const a0 = sim.get("a");
    assert.equal(a0.pollActive, true);
    assert.equal(a0.pollSentLatest, false);
    const final = { ...controlPacket(sim.get("b"), true) };
    sim.apply("a", { type: "rx", packet: final, raw: encode(final) });
    assert.equal(sim.get("a").pollActive, true, "no P with the new values had been sent yet");
    sim.run(100 * MS);
    assert.equal(sim.get("a").pollActive, false, "the real exchange ends it");
});

test("a Demand-mode peer still receives our Poll Sequence (§6.8.7)", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    const demand = { ...controlPacket(sim.get("b")), demand: true };
    let { session } = step(sim.get("a"), { type: "rx", packet: demand, raw: encode(demand) }, sim.now);
    session = step(session, { type: "configure", config: { ...fast, desiredMinTxUs: 20 * MS } }, sim.now).session;
    const sent: boolean[] = [];
    for (let t = sim.now; t < sim.now + 25 * MS; t += 1 * MS) {
        const r = step(session, { type: "timer" }, t);
        session = r.session;
        for (const x of r.actions) if (x.type === "send") sent.push(x.packet.poll);
    }
    assert.ok(sent.length >= 2 && sent.every((p) => p), `P packets sent: ${sent}`);
});

test("a shorter interval from the peer counts from our previous transmission (§6.8.3)", () => {
    const slow = { ...fast, desiredMinTxUs: 100 * MS, requiredMinRxUs: 100 * MS };
    const sim = pair(slow, slow);
    sim.run(3_000 * MS);
    const a = sim.get("a");
    assert.ok(a.lastTxAt !== undefined);
    // The peer now asks for packets every 10 ms, 60 ms after our last one: send at once.
    const now = a.lastTxAt! + 60 * MS;
    const faster = { ...controlPacket(sim.get("b")), requiredMinRxUs: 10 * MS };
    const { session } = step({ ...a, config: { ...a.config, desiredMinTxUs: 10 * MS }, txDesiredInForceUs: 10 * MS }, { type: "rx", packet: faster, raw: encode(faster) }, now);
    assert.equal(session.nextTxAt, now);
});

test("in AdminDown a received packet still updates the peer's values, then is discarded", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.apply("a", { type: "admin", down: true });
    const p = { ...controlPacket(sim.get("b")), myDiscriminator: 0x3333, requiredMinRxUs: 77 * MS };
    sim.apply("a", { type: "rx", packet: p, raw: encode(p) });
    const a = sim.get("a");
    assert.equal(a.state, State.AdminDown);
    assert.equal(a.remoteDiscr, 0x3333);
    assert.equal(a.remoteMinRxUs, 77 * MS);
    assert.equal(a.counters.drops["admin-down"], 1);
});

test("a timer change outside Up applies at once and still starts a Poll Sequence (§6.8.3)", () => {
    let session = createSession(fast, 9, 0);
    session = step(session, { type: "configure", config: { ...fast, requiredMinRxUs: 40 * MS } }, 10).session;
    assert.equal(session.rxRequiredInForceUs, 40 * MS, "applied at once");
    assert.equal(session.pollActive, true);
    const r = step(session, { type: "timer" }, 2_000_000);
    const sent = r.actions.find((a) => a.type === "send");
    assert.ok(sent && sent.type === "send" && sent.packet.poll && sent.packet.requiredMinRxUs === 40 * MS);
});

test("a timer with holdDetection sends what is due but leaves an expired detection to the caller", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    let session = sim.get("a");
    assert.equal(session.state, State.Up);
    const at = session.detectAt! + 1;
    assert.ok(session.nextTxAt! < at);
    const held = step(session, { type: "timer", holdDetection: true }, at);
    assert.equal(held.session.state, State.Up, "not declared while held");
    assert.deepEqual(held.actions.map((x) => x.type), ["send"], "the periodic packet still goes out");
    assert.equal(held.session.detectAt, session.detectAt);
    session = held.session;
    const declared = step(session, { type: "timer" }, at + 1);
    assert.equal(declared.session.state, State.Down);
    assert.equal(declared.session.localDiag, Diag.ControlDetectionTimeExpired);
});

test("the longest receive gap while Up is recorded (telemetry for near-detection alerts), and a lost packet shows in it", () => {
    const sim = pair();
    sim.run(3_000 * MS);
    sim.get("a").rxGapMaxUs = undefined; // the window starts now
    sim.run(500 * MS);
    assert.equal(sim.get("a").rxGapDetectionUs, 30 * MS, "the detection time the gap is measured against");
    const clean = sim.get("a").rxGapMaxUs!;
    assert.ok(clean > 0 && clean <= 10 * MS + 1, `at most one interval between packets: ${clean} µs`);
    // Drop b's next packets for ~15 ms: the gap grows past one interval but stays under detection (30 ms).
    sim.get("a").rxGapMaxUs = undefined;
    sim.cut.add("b");
    sim.run(15 * MS);
    sim.cut.delete("b");
    sim.run(100 * MS);
    const lossy = sim.get("a").rxGapMaxUs!;
    assert.equal(sim.get("a").state, State.Up);
    assert.ok(lossy > 10 * MS && lossy < 30 * MS, `a gap of more than one interval, under detection: ${lossy} µs`);
});
