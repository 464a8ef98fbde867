// A session's options: defaults < profile < session, and every refusal names its option.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import fc from "fast-check";
import { validateAuthConfig } from "./auth";
import { AuthType } from "./packet";
import { DEFAULT_TIMERS, mergeOptions, resolveSessionConfig, type OptionName } from "./profile";
import type { AuthSpec, Profile, SessionSpec, TimerSpec } from "./types";

const sha1 = (secret = "s3cret"): AuthSpec => ({ type: "keyed-sha1", keys: [{ id: 1, secret }], sendKeyId: 1 });
const profiles = (entries: Record<string, Profile> = {}) => new Map(Object.entries(entries));

function resolved(spec: SessionSpec, known = profiles()) {
    const r = resolveSessionConfig(spec, known);
    if (!r.ok) assert.fail(`refused: ${r.error.message}`);
    return r.config;
}

function refused(spec: SessionSpec, option: OptionName, message: RegExp, known = profiles()) {
    const r = resolveSessionConfig(spec, known);
    assert.equal(r.ok, false, `accepted ${JSON.stringify(spec)}`);
    if (r.ok) return;
    assert.equal(r.error.option, option);
    assert.match(r.error.message, message);
}

test("defaults are FRR's: 300 ms transmit and receive, multiplier 3, active, no authentication", () => {
    assert.deepEqual(mergeOptions(undefined, {}), { transmitIntervalMs: 300, receiveIntervalMs: 300, detectMultiplier: 3, passive: false });
    assert.deepEqual(resolved({ peer: "2001:db8::1" }), {
        desiredMinTxUs: 300_000, requiredMinRxUs: 300_000, detectMult: 3, passive: false, adminDown: false, auth: undefined,
    });
});

test("the session's values win over its profile's, and the profile's over the defaults", () => {
    const fast: Profile = { transmitIntervalMs: 10, receiveIntervalMs: 20, detectMultiplier: 5, passive: true, auth: sha1("profile") };
    const known = profiles({ fast });
    // Profile only.
    const p = resolved({ peer: "2001:db8::1", profile: "fast" }, known);
    assert.deepEqual([p.desiredMinTxUs, p.requiredMinRxUs, p.detectMult, p.passive], [10_000, 20_000, 5, true]);
    assert.deepEqual(p.auth?.keys[0].secret, Buffer.from("profile"));
    // The session overrides some; the rest still come from the profile.
    const s = resolved({ peer: "2001:db8::1", profile: "fast", transmitIntervalMs: 50, passive: false, auth: sha1("session") }, known);
    assert.deepEqual([s.desiredMinTxUs, s.requiredMinRxUs, s.detectMult, s.passive], [50_000, 20_000, 5, false]);
    assert.deepEqual(s.auth?.keys[0].secret, Buffer.from("session"));
    // A profile that sets only some values leaves the rest at the defaults.
    const partial = resolved({ peer: "2001:db8::1", profile: "slow" }, profiles({ slow: { transmitIntervalMs: 1000 } }));
    assert.deepEqual([partial.desiredMinTxUs, partial.requiredMinRxUs, partial.detectMult], [1_000_000, 300_000, 3]);
});

test("adminDown comes from the session alone; a profile name that is unset means no profile", () => {
    assert.equal(resolved({ peer: "2001:db8::1", adminDown: true }).adminDown, true);
    assert.equal(resolved({ peer: "2001:db8::1", profile: "" }).desiredMinTxUs, 300_000);
});

test("authentication: type by name, secrets as text or whole hex bytes", () => {
    const a = resolved({ peer: "2001:db8::1", auth: { type: "meticulous-keyed-md5", keys: [{ id: 7, secret: "0x0a0b" }, { id: 8, secret: "0xabc" }], sendKeyId: 7 } }).auth!;
    assert.equal(a.type, AuthType.MeticulousKeyedMD5);
    assert.equal(a.sendKeyId, 7);
    assert.deepEqual(a.keys[0].secret, Buffer.from([0x0a, 0x0b]));
    assert.deepEqual(a.keys[1].secret, Buffer.from("0xabc")); // odd length: text
});

test("each refusal names the option at fault", () => {
    const p = { peer: "2001:db8::1" };
    refused({ ...p, profile: "nope" }, "profile", /profile 'nope' is not defined/);
    refused({ ...p, transmitIntervalMs: 0 }, "transmitIntervalMs", /transmitIntervalMs 0 must be 1-60000/);
    refused({ ...p, transmitIntervalMs: 60_001 }, "transmitIntervalMs", /transmitIntervalMs 60001 must be 1-60000/);
    refused({ ...p, transmitIntervalMs: NaN }, "transmitIntervalMs", /transmitIntervalMs NaN/);
    refused({ ...p, receiveIntervalMs: -1 }, "receiveIntervalMs", /receiveIntervalMs -1 must be 0-60000/);
    refused({ ...p, receiveIntervalMs: 60_001 }, "receiveIntervalMs", /receiveIntervalMs 60001 must be 0-60000/);
    refused({ ...p, detectMultiplier: 0 }, "detectMultiplier", /detectMultiplier 0 must be 1-255/);
    refused({ ...p, detectMultiplier: 256 }, "detectMultiplier", /detectMultiplier 256 must be 1-255/);
    refused({ ...p, detectMultiplier: 2.5 }, "detectMultiplier", /detectMultiplier 2.5 must be 1-255/);
    refused({ ...p, auth: { ...sha1(), type: "rot13" as AuthSpec["type"] } }, "auth", /unknown authentication type 'rot13'/);
    refused({ ...p, auth: sha1("x".repeat(21)) }, "auth", /^authentication: key 1: secret must be 1-20 bytes/);
    refused({ ...p, auth: { ...sha1(), keys: [] } }, "auth", /^authentication: at least one key is required/);
    refused({ ...p, auth: { ...sha1(), sendKeyId: 2 } }, "auth", /^authentication: send key 2 is not among the configured keys/);
    refused({ ...p, multihop: true, auth: sha1() }, "local", /a multihop session needs a local address/);
    refused({ ...p, multihop: true, local: "2001:db8::2" }, "auth", /multihop session needs authentication \(RFC 5883 §6\); set allowUnauthenticated/);
});

test("a bad value from the profile is refused as well, under the same option", () => {
    refused({ peer: "2001:db8::1", profile: "bad" }, "detectMultiplier", /detectMultiplier 0 must be 1-255/, profiles({ bad: { detectMultiplier: 0 } }));
    // ...unless the session overrides it.
    assert.equal(resolved({ peer: "2001:db8::1", profile: "bad", detectMultiplier: 4 }, profiles({ bad: { detectMultiplier: 0 } })).detectMult, 4);
});

test("multihop runs without authentication only when allowed; a profile's authentication counts", () => {
    const mh = { peer: "2001:db8::1", local: "2001:db8::2", multihop: true };
    assert.equal(resolved({ ...mh, allowUnauthenticated: true }).auth, undefined);
    assert.equal(resolved({ ...mh, profile: "signed" }, profiles({ signed: { auth: sha1() } })).auth?.type, AuthType.KeyedSHA1);
});

test("refusals come in order: profile, timers, authentication, multihop", () => {
    const bad: SessionSpec = { peer: "2001:db8::1", multihop: true, transmitIntervalMs: 0, receiveIntervalMs: -1, detectMultiplier: 0, auth: sha1("") };
    refused({ ...bad, profile: "nope" }, "profile", /profile/);
    refused(bad, "transmitIntervalMs", /transmitIntervalMs/);
    refused({ ...bad, transmitIntervalMs: 1 }, "receiveIntervalMs", /receiveIntervalMs/);
    refused({ ...bad, transmitIntervalMs: 1, receiveIntervalMs: 0 }, "detectMultiplier", /detectMultiplier/);
    refused({ ...bad, transmitIntervalMs: 1, receiveIntervalMs: 0, detectMultiplier: 1 }, "auth", /authentication: key 1/);
    refused({ ...bad, transmitIntervalMs: 1, receiveIntervalMs: 0, detectMultiplier: 1, auth: sha1() }, "local", /local address/);
});

// ---- properties ----

const authTypes: AuthSpec["type"][] = ["simple-password", "keyed-md5", "meticulous-keyed-md5", "keyed-sha1", "meticulous-keyed-sha1"];
/** Mostly valid (one key of 1-16 bytes, sent with), sometimes anything. */
const arbAuth: fc.Arbitrary<AuthSpec> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ type: fc.constantFrom(...authTypes), id: fc.integer({ min: 0, max: 255 }), secret: fc.string({ minLength: 1, maxLength: 16, unit: "binary-ascii" }) })
        .map(({ type, id, secret }) => ({ type, keys: [{ id, secret }], sendKeyId: id })) },
    { weight: 1, arbitrary: fc.record({
        type: fc.constantFrom(...authTypes, "none" as AuthSpec["type"]),
        keys: fc.array(fc.record({ id: fc.integer({ min: -1, max: 256 }), secret: fc.oneof(fc.string({ maxLength: 22 }), fc.constant("0x0102"), fc.constant("")) }), { maxLength: 3 }),
        sendKeyId: fc.integer({ min: -1, max: 3 }),
    }) },
);
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
/** Mostly in range, sometimes anything (fractions, negatives, NaN, too large). */
const mostly = <T>(valid: fc.Arbitrary<T>, any: fc.Arbitrary<T>) => maybe(fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: any }));
const arbTimers: fc.Arbitrary<TimerSpec> = fc.record({
    transmitIntervalMs: mostly(fc.integer({ min: 1, max: 60_000 }), fc.double({ min: -5, max: 70_000 })),
    receiveIntervalMs: mostly(fc.integer({ min: 0, max: 60_000 }), fc.double({ min: -5, max: 70_000 })),
    detectMultiplier: mostly(fc.integer({ min: 1, max: 255 }), fc.oneof(fc.integer({ min: -2, max: 300 }), fc.double({ min: 0, max: 300 }))),
    passive: maybe(fc.boolean()),
    auth: maybe(arbAuth),
}, { requiredKeys: [] });
const arbSpec: fc.Arbitrary<SessionSpec> = fc.tuple(arbTimers, fc.record({
    peer: fc.constant("2001:db8::1"),
    local: maybe(fc.constant("2001:db8::2")),
    multihop: maybe(fc.boolean()),
    allowUnauthenticated: maybe(fc.boolean()),
    adminDown: maybe(fc.boolean()),
    profile: fc.option(fc.oneof({ weight: 5, arbitrary: fc.constant("p") }, { weight: 1, arbitrary: fc.constant("missing") }), { nil: undefined, freq: 3 }),
}, { requiredKeys: ["peer"] })).map(([timers, rest]) => ({ ...timers, ...rest }));
const arbProfile = fc.option(arbTimers, { nil: undefined, freq: 5 });

test("property: each merged value is the session's, else the profile's, else the default", () => {
    fc.assert(fc.property(arbProfile, arbTimers, (profile, spec) => {
        const m = mergeOptions(profile, spec);
        for (const k of ["transmitIntervalMs", "receiveIntervalMs", "detectMultiplier", "passive"] as const) {
            assert.equal(m[k], spec[k] ?? profile?.[k] ?? DEFAULT_TIMERS[k]);
        }
        assert.equal(m.auth, spec.auth ?? profile?.auth);
    }));
});

test("property: merging is idempotent, and a merged result's timers are complete (no profile changes them)", () => {
    fc.assert(fc.property(arbProfile, arbProfile, arbTimers, (profile, other, spec) => {
        const m = mergeOptions(profile, spec);
        assert.deepEqual(mergeOptions(profile, m), m);
        const again = mergeOptions(other, m);
        assert.deepEqual({ ...again, auth: undefined }, { ...m, auth: undefined });
        assert.equal(again.auth, m.auth ?? other?.auth);
    }));
});

test("property: an accepted configuration satisfies every rule; a refusal names an option that breaks one", () => {
    fc.assert(fc.property(arbProfile, arbSpec, (profile, spec) => {
        const known = profiles(profile ? { p: profile } : {});
        const r = resolveSessionConfig(spec, known);
        const m = mergeOptions(spec.profile ? known.get(spec.profile) : undefined, spec);
        if (r.ok) {
            const c = r.config;
            assert.ok(!spec.profile || known.has(spec.profile));
            assert.ok(c.desiredMinTxUs >= 1000 && c.desiredMinTxUs <= 60_000_000);
            assert.ok(c.requiredMinRxUs >= 0 && c.requiredMinRxUs <= 60_000_000);
            assert.ok(Number.isInteger(c.detectMult) && c.detectMult >= 1 && c.detectMult <= 255);
            assert.equal(c.passive, m.passive);
            assert.equal(c.adminDown, spec.adminDown ?? false);
            if (c.auth) assert.equal(validateAuthConfig(c.auth), undefined);
            assert.equal(!!c.auth, !!m.auth);
            if (spec.multihop) assert.ok(spec.local && (c.auth || spec.allowUnauthenticated));
            return;
        }
        const { option, message } = r.error;
        assert.ok(message.length > 0);
        switch (option) {
            case "profile": assert.ok(spec.profile && !known.has(spec.profile)); break;
            case "transmitIntervalMs": assert.ok(!(m.transmitIntervalMs >= 1 && m.transmitIntervalMs <= 60_000)); break;
            case "receiveIntervalMs": assert.ok(!(m.receiveIntervalMs >= 0 && m.receiveIntervalMs <= 60_000)); break;
            case "detectMultiplier": assert.ok(!(Number.isInteger(m.detectMultiplier) && m.detectMultiplier >= 1 && m.detectMultiplier <= 255)); break;
            case "local": assert.ok(spec.multihop && !spec.local); break;
            case "auth": assert.ok(m.auth ? /authentication/.test(message) : spec.multihop && !spec.allowUnauthenticated); break;
            default: assert.fail(`unexpected option ${option satisfies never}`);
        }
        assert.ok(message.includes(option) || /profile|local address|authentication/.test(message), message);
    }), { numRuns: 2000 });
});
