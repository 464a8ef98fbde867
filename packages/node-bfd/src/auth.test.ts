// Authentication (RFC 5880 §6.7): each type signs and verifies, and each receive
// rule drops what it must: wrong type, unknown key, bad digest, replays.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { encodeSigned, initialAuthRx, validateAuthConfig, verifyAuth, type AuthConfig } from "./auth";
import { AuthType, decode, Diag, State, type ControlPacket } from "./packet";
import { createSession, step } from "./session";
import { Sim } from "./testing/sim";

const packet: ControlPacket = {
    version: 1, diag: Diag.None, state: State.Up, poll: false, final: false, controlPlaneIndependent: false,
    demand: false, multipoint: false, detectMult: 3, myDiscriminator: 1, yourDiscriminator: 2,
    desiredMinTxUs: 10_000, requiredMinRxUs: 10_000, requiredMinEchoRxUs: 0,
};

const types = [AuthType.SimplePassword, AuthType.KeyedMD5, AuthType.MeticulousKeyedMD5, AuthType.KeyedSHA1, AuthType.MeticulousKeyedSHA1] as const;
const cfg = (type: AuthConfig["type"], secret = "nublar", id = 1): AuthConfig => ({ type, keys: [{ id, secret: Buffer.from(secret) }], sendKeyId: id });

function received(bytes: Buffer) {
    const r = decode(bytes);
    assert.ok(r.ok);
    return r.packet;
}

test("every type signs and verifies with the right key", () => {
    for (const type of types) {
        const bytes = encodeSigned(packet, cfg(type), 100);
        const v = verifyAuth(bytes, received(bytes), cfg(type), initialAuthRx);
        assert.ok(v.ok, `type ${type}`);
    }
});

test("SHA1 digests are computed over the packet with the key in the digest field", async () => {
    const { createHash } = await import("node:crypto");
    const bytes = encodeSigned(packet, cfg(AuthType.KeyedSHA1, "k"), 5);
    const copy = Buffer.from(bytes);
    Buffer.concat([Buffer.from("k"), Buffer.alloc(19)]).copy(copy, 32);
    assert.deepEqual(createHash("sha1").update(copy).digest(), bytes.subarray(32, 52));
    assert.equal(bytes.readUInt32BE(28), 5);
});

test("a wrong key, an unknown key id or another type is dropped, each with its reason", () => {
    for (const type of types) {
        const bytes = encodeSigned(packet, cfg(type, "right"), 1);
        const p = received(bytes);
        const wrong = verifyAuth(bytes, p, cfg(type, "wrong"), initialAuthRx);
        assert.equal(wrong.ok, false);
        if (!wrong.ok) assert.equal(wrong.reason, type === AuthType.SimplePassword ? "auth-password" : "auth-digest");
        const otherId = verifyAuth(bytes, p, cfg(type, "right", 2), initialAuthRx);
        assert.ok(!otherId.ok && otherId.reason === "auth-key-id");
        const otherType = verifyAuth(bytes, p, cfg(type === AuthType.KeyedSHA1 ? AuthType.KeyedMD5 : AuthType.KeyedSHA1, "right"), initialAuthRx);
        assert.ok(!otherType.ok && otherType.reason === "auth-type");
    }
});

test("auth present exactly when configured", () => {
    const signed = encodeSigned(packet, cfg(AuthType.KeyedSHA1), 1);
    const v1 = verifyAuth(signed, received(signed), undefined, initialAuthRx);
    assert.ok(!v1.ok && v1.reason === "auth-unexpected");
    const plain = Buffer.from(signed.subarray(0, 24));
    plain[1] &= ~0x04;
    plain[3] = 24;
    const v2 = verifyAuth(plain, received(plain), cfg(AuthType.KeyedSHA1), initialAuthRx);
    assert.ok(!v2.ok && v2.reason === "auth-missing");
});

test("a flipped bit anywhere in a signed packet fails the digest", () => {
    for (const type of [AuthType.KeyedMD5, AuthType.MeticulousKeyedSHA1] as const) {
        const bytes = encodeSigned(packet, cfg(type), 9);
        for (const offset of [4, 12, 20]) {
            const tampered = Buffer.from(bytes);
            tampered[offset] ^= 0x01;
            const v = verifyAuth(tampered, received(tampered), cfg(type), initialAuthRx);
            assert.ok(!v.ok && v.reason === "auth-digest", `offset ${offset}`);
        }
    }
});

test("replay: meticulous types need a strictly greater sequence, keyed types accept equal", () => {
    for (const [type, equalOk] of [[AuthType.MeticulousKeyedSHA1, false], [AuthType.KeyedSHA1, true], [AuthType.MeticulousKeyedMD5, false], [AuthType.KeyedMD5, true]] as const) {
        const first = encodeSigned(packet, cfg(type), 1000);
        const v1 = verifyAuth(first, received(first), cfg(type), initialAuthRx);
        assert.ok(v1.ok);
        const again = verifyAuth(first, received(first), cfg(type), v1.rx);
        assert.equal(again.ok, equalOk, `type ${type} replay`);
        const next = encodeSigned(packet, cfg(type), 1001);
        assert.ok(verifyAuth(next, received(next), cfg(type), v1.rx).ok);
        // Beyond the window of 3 x Detect Mult.
        const far = encodeSigned(packet, cfg(type), 1000 + 3 * 3 + 1);
        const vf = verifyAuth(far, received(far), cfg(type), v1.rx);
        assert.ok(!vf.ok && vf.reason === "auth-sequence");
        // An old packet from before.
        const old = encodeSigned(packet, cfg(type), 999);
        assert.ok(!verifyAuth(old, received(old), cfg(type), v1.rx).ok);
    }
});

test("the sequence window wraps around 2^32", () => {
    const type = AuthType.MeticulousKeyedSHA1;
    const last = encodeSigned(packet, cfg(type), 0xffffffff);
    const v = verifyAuth(last, received(last), cfg(type), initialAuthRx);
    assert.ok(v.ok);
    const wrapped = encodeSigned(packet, cfg(type), 1);
    assert.ok(verifyAuth(wrapped, received(wrapped), cfg(type), v.rx).ok);
});

test("a failed digest does not move the replay window", () => {
    const type = AuthType.MeticulousKeyedSHA1;
    const good = encodeSigned(packet, cfg(type), 10);
    const v = verifyAuth(good, received(good), cfg(type), initialAuthRx);
    assert.ok(v.ok);
    const forged = encodeSigned(packet, cfg(type, "attacker"), 15);
    const vf = verifyAuth(forged, received(forged), cfg(type), v.rx);
    assert.ok(!vf.ok);
    const next = encodeSigned(packet, cfg(type), 11);
    assert.ok(verifyAuth(next, received(next), cfg(type), v.rx).ok, "the real peer's next packet still passes");
});

test("sessions with meticulous keyed SHA1 come Up and survive a key rotation", () => {
    const MS = 1000;
    const k1 = { id: 1, secret: Buffer.from("first-key") };
    const k2 = { id: 2, secret: Buffer.from("second-key") };
    const base = { desiredMinTxUs: 10 * MS, requiredMinRxUs: 10 * MS, detectMult: 3 };
    const auth = (keys: typeof k1[], send: number): AuthConfig => ({ type: AuthType.MeticulousKeyedSHA1, keys, sendKeyId: send });
    const sim = new Sim(5);
    sim.add("a", { ...base, auth: auth([k1], 1) }, 10);
    sim.add("b", { ...base, auth: auth([k1], 1) }, 20);
    sim.connect("a", "b");
    sim.run(3_000 * MS);
    assert.equal(sim.get("a").state, State.Up);
    // Rotation: both accept k1 and k2, then each switches to sending k2, then k1 is removed.
    sim.apply("a", { type: "configure", config: { ...base, auth: auth([k1, k2], 1) } });
    sim.apply("b", { type: "configure", config: { ...base, auth: auth([k1, k2], 1) } });
    sim.run(100 * MS);
    sim.apply("a", { type: "configure", config: { ...base, auth: auth([k1, k2], 2) } });
    sim.run(100 * MS);
    sim.apply("b", { type: "configure", config: { ...base, auth: auth([k1, k2], 2) } });
    sim.run(100 * MS);
    sim.apply("a", { type: "configure", config: { ...base, auth: auth([k2], 2) } });
    sim.apply("b", { type: "configure", config: { ...base, auth: auth([k2], 2) } });
    sim.run(1_000 * MS);
    assert.equal(sim.transitions.filter((t) => t.to === State.Down).length, 0, "never went down");
    assert.equal(sim.get("a").counters.drops["auth-digest"] ?? 0, 0);
    assert.equal(sim.get("a").state, State.Up);
});

test("a session with a mismatched key never comes Up, and counts the drops", () => {
    const MS = 1000;
    const base = { desiredMinTxUs: 10 * MS, requiredMinRxUs: 10 * MS, detectMult: 3 };
    const sim = new Sim(6);
    sim.add("a", { ...base, auth: cfg(AuthType.KeyedSHA1, "one") }, 10);
    sim.add("b", { ...base, auth: cfg(AuthType.KeyedSHA1, "two") }, 20);
    sim.connect("a", "b");
    sim.run(5_000 * MS);
    assert.equal(sim.get("a").state, State.Down);
    assert.equal(sim.get("a").remoteDiscr, 0);
    assert.ok((sim.get("a").counters.drops["auth-digest"] ?? 0) >= 4);
});

test("auth configuration is checked: secret sizes, ids, the send key", () => {
    assert.match(validateAuthConfig({ type: AuthType.KeyedMD5, keys: [{ id: 1, secret: Buffer.alloc(17) }], sendKeyId: 1 })!, /1-16 bytes/);
    assert.equal(validateAuthConfig({ type: AuthType.KeyedSHA1, keys: [{ id: 1, secret: Buffer.alloc(20) }], sendKeyId: 1 }), undefined);
    assert.match(validateAuthConfig({ type: AuthType.KeyedSHA1, keys: [{ id: 1, secret: Buffer.from("x") }], sendKeyId: 2 })!, /send key 2/);
    assert.match(validateAuthConfig({ type: AuthType.KeyedSHA1, keys: [], sendKeyId: 1 })!, /at least one key/);
    assert.match(validateAuthConfig({ type: AuthType.KeyedSHA1, keys: [{ id: 300, secret: Buffer.from("x") }], sendKeyId: 300 })!, /0-255/);
});

test("transmitted sequence numbers advance on every packet", () => {
    let session = createSession({ desiredMinTxUs: 10_000, requiredMinRxUs: 10_000, detectMult: 3, auth: cfg(AuthType.KeyedSHA1) }, 1, 0);
    const seqs: number[] = [];
    for (let t = 0; t < 5_000_000; t += 100_000) {
        const r = step(session, { type: "timer" }, t);
        session = r.session;
        for (const a of r.actions) if (a.type === "send") seqs.push(a.bytes.readUInt32BE(28));
    }
    assert.ok(seqs.length >= 3);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], (seqs[i - 1] + 1) >>> 0);
});
