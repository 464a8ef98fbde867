// A session's options, as BIRD's bfd_merge_options (proto/bfd/bfd.c): defaults, then the
// named profile, then the session's own values, merged and validated into the
// SessionConfig the state machine runs on. Pure: the transport only calls it.
import { validateAuthConfig, type AuthConfig } from "./auth";
import type { SessionConfig } from "./session";
import { AUTH_TYPES, type AuthSpec, type Profile, type SessionSpec, type TimerSpec } from "./types";

/** FRR's defaults: 300 ms transmit, 300 ms receive, multiplier 3, active. */
export const DEFAULT_TIMERS: Readonly<MergedOptions> = Object.freeze({
    transmitIntervalMs: 300,
    receiveIntervalMs: 300,
    detectMultiplier: 3,
    passive: false,
});

/** Timers and authentication with every default filled in. */
export interface MergedOptions {
    transmitIntervalMs: number;
    receiveIntervalMs: number;
    detectMultiplier: number;
    passive: boolean;
    auth?: AuthSpec;
}

/** The option a refusal is about (a SessionSpec field, or "auth" for its authentication). */
export type OptionName = "profile" | "transmitIntervalMs" | "receiveIntervalMs" | "detectMultiplier" | "auth" | "local";

/** A refused configuration: the option at fault, and a message naming it. */
export interface OptionError {
    option: OptionName;
    message: string;
}

export type ResolveResult = { ok: true; config: SessionConfig } | { ok: false; error: OptionError };

/** Merge: each value from the session if it sets one, else from the profile, else the default. */
export function mergeOptions(profile: Profile | undefined, spec: TimerSpec): MergedOptions {
    const pick = <K extends keyof TimerSpec>(k: K) => spec[k] ?? profile?.[k];
    const auth = pick("auth");
    return {
        transmitIntervalMs: pick("transmitIntervalMs") ?? DEFAULT_TIMERS.transmitIntervalMs,
        receiveIntervalMs: pick("receiveIntervalMs") ?? DEFAULT_TIMERS.receiveIntervalMs,
        detectMultiplier: pick("detectMultiplier") ?? DEFAULT_TIMERS.detectMultiplier,
        passive: pick("passive") ?? DEFAULT_TIMERS.passive,
        ...(auth ? { auth } : {}),
    };
}

/**
 * A session's configuration: its profile (looked up in `profiles`) merged under its own
 * values and over the defaults, then validated. Refusals come in this order: an unknown
 * profile, the timers, the authentication, then the multihop rules (a local address, and
 * authentication unless `allowUnauthenticated`).
 */
export function resolveSessionConfig(spec: SessionSpec, profiles: ReadonlyMap<string, Profile>): ResolveResult {
    const refuse = (option: OptionName, message: string): ResolveResult => ({ ok: false, error: { option, message } });
    const profile = spec.profile ? profiles.get(spec.profile) : undefined;
    if (spec.profile && !profile) return refuse("profile", `profile '${spec.profile}' is not defined`);
    const o = mergeOptions(profile, spec);
    const tx = o.transmitIntervalMs;
    const rx = o.receiveIntervalMs;
    const mult = o.detectMultiplier;
    if (!(tx >= 1 && tx <= 60_000)) return refuse("transmitIntervalMs", `transmitIntervalMs ${tx} must be 1-60000`);
    if (!(rx >= 0 && rx <= 60_000)) return refuse("receiveIntervalMs", `receiveIntervalMs ${rx} must be 0-60000`);
    if (!(Number.isInteger(mult) && mult >= 1 && mult <= 255)) return refuse("detectMultiplier", `detectMultiplier ${mult} must be 1-255`);
    let auth: AuthConfig | undefined;
    if (o.auth) {
        auth = {
            type: AUTH_TYPES[o.auth.type] as AuthConfig["type"],
            keys: o.auth.keys.map((k) => ({ id: k.id, secret: secretBytes(k.secret) })),
            sendKeyId: o.auth.sendKeyId,
        };
        if (auth.type === undefined) return refuse("auth", `unknown authentication type '${o.auth.type}'`);
        const problem = validateAuthConfig(auth);
        if (problem) return refuse("auth", `authentication: ${problem}`);
    }
    if (spec.multihop && !spec.local) return refuse("local", "a multihop session needs a local address");
    // RFC 5883 §6: multihop packets can come from anywhere, so authentication is expected.
    if (spec.multihop && !auth && !spec.allowUnauthenticated) {
        return refuse("auth", "a multihop session needs authentication (RFC 5883 §6); set allowUnauthenticated to run without it");
    }
    return {
        ok: true,
        config: {
            desiredMinTxUs: Math.round(tx * 1000),
            requiredMinRxUs: Math.round(rx * 1000),
            detectMult: mult,
            passive: o.passive,
            adminDown: spec.adminDown ?? false,
            auth,
        },
    };
}

/** A secret as configured: hex when written "0x..." with whole bytes, else its UTF-8 text. */
function secretBytes(secret: string): Buffer {
    return /^0x[0-9a-fA-F]+$/.test(secret) && secret.length % 2 === 0 ? Buffer.from(secret.slice(2), "hex") : Buffer.from(secret, "utf8");
}
