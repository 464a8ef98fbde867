// Codec round trips, random packets, and every receive check of RFC 5880 §6.8.6
// that needs no session, each in its own test.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { AuthType, decode, Diag, encode, State, type ControlPacket } from "./packet";
import { seeded } from "./testing/sim";

function base(overrides: Partial<ControlPacket> = {}): ControlPacket {
    return {
        version: 1, diag: Diag.None, state: State.Up, poll: false, final: false, controlPlaneIndependent: false,
        demand: false, multipoint: false, detectMult: 3, myDiscriminator: 0x01020304, yourDiscriminator: 0x0a0b0c0d,
        desiredMinTxUs: 10_000, requiredMinRxUs: 10_000, requiredMinEchoRxUs: 0, ...overrides,
    };
}

function rejects(bytes: Buffer, reason: string) {
    const r = decode(bytes);
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.reason, reason);
}

test("the mandatory section encodes to the RFC layout", () => {
    const b = encode(base({ diag: Diag.PathDown, state: State.Init, poll: true }));
    assert.equal(b.length, 24);
    assert.equal(b[0], (1 << 5) | 5); // version 1, diag 5
    assert.equal(b[1], (2 << 6) | 0x20); // state Init, P bit
    assert.equal(b[2], 3);
    assert.equal(b[3], 24);
    assert.equal(b.readUInt32BE(4), 0x01020304);
    assert.equal(b.readUInt32BE(8), 0x0a0b0c0d);
    assert.equal(b.readUInt32BE(12), 10_000);
});

test("round trips: every flag, state, diag and auth type", () => {
    for (const state of [State.AdminDown, State.Down, State.Init, State.Up]) {
        for (const flags of [{}, { poll: true }, { final: true }, { controlPlaneIndependent: true }, { demand: true }]) {
            const p = base({ state, diag: Diag.ReverseConcatenatedPathDown, ...flags });
            assert.deepEqual((decode(encode(p)) as any).packet, p);
        }
    }
    const auths = [
        { type: AuthType.SimplePassword, keyId: 7, password: Buffer.from("secret") },
        { type: AuthType.KeyedMD5, keyId: 1, sequence: 42, digest: Buffer.alloc(16, 0xab) },
        { type: AuthType.MeticulousKeyedMD5, keyId: 2, sequence: 0xffffffff, digest: Buffer.alloc(16, 1) },
        { type: AuthType.KeyedSHA1, keyId: 3, sequence: 0, digest: Buffer.alloc(20, 2) },
        { type: AuthType.MeticulousKeyedSHA1, keyId: 255, sequence: 7, digest: Buffer.alloc(20, 3) },
    ];
    for (const auth of auths) {
        const p = base({ auth });
        const bytes = encode(p);
        assert.equal(bytes[3], bytes.length);
        assert.ok(bytes[1] & 0x04, "A bit");
        assert.deepEqual((decode(bytes) as any).packet, p);
    }
});

test("property: random valid packets survive encode/decode unchanged", () => {
    const rnd = seeded(42);
    const u32 = () => Math.floor(rnd() * 0x1_0000_0000) >>> 0;
    for (let i = 0; i < 5_000; i++) {
        const state = Math.floor(rnd() * 4) as State;
        const p = base({
            state,
            diag: Math.floor(rnd() * 32),
            poll: rnd() < 0.5, final: rnd() < 0.5, controlPlaneIndependent: rnd() < 0.5, demand: rnd() < 0.5,
            detectMult: 1 + Math.floor(rnd() * 255),
            myDiscriminator: 1 + (u32() % 0xfffffffe),
            yourDiscriminator: state === State.Up || state === State.Init ? 1 + (u32() % 0xfffffffe) : u32(),
            desiredMinTxUs: u32(), requiredMinRxUs: u32(), requiredMinEchoRxUs: u32(),
        });
        assert.deepEqual((decode(encode(p)) as any).packet, p);
    }
});

test("property: random bytes never throw, and anything accepted re-encodes to the same bytes", () => {
    const rnd = seeded(7);
    for (let i = 0; i < 20_000; i++) {
        const len = Math.floor(rnd() * 64);
        const b = Buffer.alloc(len);
        for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
        if (len > 3 && rnd() < 0.7) { b[0] = (b[0] & 0x1f) | 0x20; b[3] = Math.min(len, b[3]); b[2] |= 1; }
        const r = decode(b);
        if (!r.ok) continue;
        const expected = Buffer.from(b.subarray(0, r.packet.auth ? b[3] : 24));
        if (!r.packet.auth) expected[3] = 24; // bytes past the mandatory section are not re-encoded
        if (r.packet.auth && r.packet.auth.type !== AuthType.SimplePassword) expected[27] = 0; // reserved byte
        assert.deepEqual(encode(r.packet), expected);
    }
});

// ---- §6.8.6: "If ... the received packet MUST be discarded" ----

test("discard: version is not 1", () => {
    const b = encode(base());
    b[0] = (2 << 5) | (b[0] & 0x1f);
    rejects(b, "bad-version");
});

test("discard: shorter than the mandatory section", () => {
    rejects(encode(base()).subarray(0, 23), "short");
});

test("discard: Length less than 24", () => {
    const b = encode(base());
    b[3] = 20;
    rejects(b, "bad-length");
});

test("discard: A bit set and Length less than 26", () => {
    const b = encode(base({ auth: { type: AuthType.SimplePassword, keyId: 1, password: Buffer.from("x") } }));
    b[3] = 25;
    rejects(b, "bad-length");
});

test("discard: Length greater than the payload", () => {
    const b = encode(base());
    b[3] = 40;
    rejects(b, "bad-length");
});

test("discard: Detect Mult is zero", () => {
    const b = encode(base());
    b[2] = 0;
    rejects(b, "zero-detect-mult");
});

test("discard: Multipoint bit set", () => {
    rejects(encode(base({ multipoint: true })), "multipoint");
});

test("discard: My Discriminator is zero", () => {
    rejects(encode(base({ myDiscriminator: 0 })), "zero-my-discriminator");
});

test("discard: Your Discriminator zero while State is Init or Up; allowed in Down and AdminDown", () => {
    rejects(encode(base({ yourDiscriminator: 0, state: State.Up })), "zero-your-discriminator");
    rejects(encode(base({ yourDiscriminator: 0, state: State.Init })), "zero-your-discriminator");
    assert.ok(decode(encode(base({ yourDiscriminator: 0, state: State.Down }))).ok);
    assert.ok(decode(encode(base({ yourDiscriminator: 0, state: State.AdminDown }))).ok);
});

test("discard: malformed authentication sections", () => {
    // Auth Len disagreeing with the packet length.
    const sha = encode(base({ auth: { type: AuthType.KeyedSHA1, keyId: 1, sequence: 1, digest: Buffer.alloc(20) } }));
    const bad = Buffer.from(sha);
    bad[25] = 24;
    rejects(bad, "bad-auth-section");
    // SHA1 section cut to MD5 size.
    const cut = Buffer.from(sha.subarray(0, 48));
    cut[3] = 48;
    cut[25] = 24;
    rejects(cut, "bad-auth-section");
    // Unknown auth type.
    const unknown = Buffer.from(sha);
    unknown[24] = 9;
    rejects(unknown, "bad-auth-section");
});

test("without the A bit, a Length above 24 (within the payload) is accepted, extra bytes ignored", () => {
    const extra = Buffer.concat([encode(base()), Buffer.alloc(4)]);
    extra[3] = 28;
    const r = decode(extra);
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.packet.auth, undefined);
});

test("trailing bytes beyond Length (e.g. padding) are ignored", () => {
    const b = Buffer.concat([encode(base()), Buffer.alloc(8)]);
    assert.ok(decode(b).ok);
});
