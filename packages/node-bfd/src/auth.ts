// BFD authentication (RFC 5880 §6.7): simple password, keyed and meticulous keyed
// MD5 and SHA1. Pure functions over bytes and a small receive state; hashing by node:crypto.
import { createHash, timingSafeEqual } from "node:crypto";
import { AuthType, encode, HEADER_LENGTH, type ControlPacket, type DropReason } from "./packet";

export interface AuthKey {
    id: number;
    /** ASCII or binary; up to 16 bytes (password, MD5) or 20 bytes (SHA1). */
    secret: Buffer;
}

export interface AuthConfig {
    type: Exclude<AuthType, AuthType.None>;
    /** Every key accepted on receipt. Several during a key rotation. */
    keys: AuthKey[];
    /** The key used to send. Rotate by adding the new key everywhere, then switching this. */
    sendKeyId: number;
}

/** Receive-side replay state (bfd.AuthSeqKnown, bfd.RcvAuthSeq). */
export interface AuthRxState {
    seqKnown: boolean;
    rcvSeq: number;
}

export const initialAuthRx: AuthRxState = { seqKnown: false, rcvSeq: 0 };

const MAX_SECRET: Record<Exclude<AuthType, AuthType.None>, number> = {
    [AuthType.SimplePassword]: 16,
    [AuthType.KeyedMD5]: 16,
    [AuthType.MeticulousKeyedMD5]: 16,
    [AuthType.KeyedSHA1]: 20,
    [AuthType.MeticulousKeyedSHA1]: 20,
};

/** Check a configuration before use; returns a message naming what is wrong, or undefined. */
export function validateAuthConfig(cfg: AuthConfig): string | undefined {
    if (!(cfg.type in MAX_SECRET)) return `unknown authentication type ${cfg.type}`;
    if (cfg.keys.length === 0) return "at least one key is required";
    for (const k of cfg.keys) {
        if (!Number.isInteger(k.id) || k.id < 0 || k.id > 255) return `key id ${k.id} must be 0-255`;
        if (k.secret.length < 1 || k.secret.length > MAX_SECRET[cfg.type]) {
            return `key ${k.id}: secret must be 1-${MAX_SECRET[cfg.type]} bytes for this authentication type`;
        }
    }
    if (new Set(cfg.keys.map((k) => k.id)).size !== cfg.keys.length) return "key ids must be unique";
    if (!cfg.keys.some((k) => k.id === cfg.sendKeyId)) return `send key ${cfg.sendKeyId} is not among the configured keys`;
    return undefined;
}

function isMeticulous(t: AuthType): boolean {
    return t === AuthType.MeticulousKeyedMD5 || t === AuthType.MeticulousKeyedSHA1;
}

function digestAlgorithm(t: AuthType): { name: "md5" | "sha1"; size: number } {
    return t === AuthType.KeyedMD5 || t === AuthType.MeticulousKeyedMD5 ? { name: "md5", size: 16 } : { name: "sha1", size: 20 };
}

/** Encode `packet` with an authentication section signed by the send key, at sequence `seq`. */
export function encodeSigned(packet: ControlPacket, cfg: AuthConfig, seq: number): Buffer {
    const key = cfg.keys.find((k) => k.id === cfg.sendKeyId)!;
    if (cfg.type === AuthType.SimplePassword) {
        return encode({ ...packet, auth: { type: cfg.type, keyId: key.id, password: key.secret } });
    }
    const { name, size } = digestAlgorithm(cfg.type);
    const keyField = Buffer.alloc(size);
    key.secret.copy(keyField);
    // The digest is computed with the key in the digest field, then replaces it.
    const buf = encode({ ...packet, auth: { type: cfg.type, keyId: key.id, sequence: seq >>> 0, digest: keyField } });
    createHash(name).update(buf).digest().copy(buf, HEADER_LENGTH + 8);
    return buf;
}

/** Is `seq` within [from, from + span] in 32-bit circular space? */
function inWindow(seq: number, from: number, span: number): boolean {
    return ((seq - from) >>> 0) <= span;
}

export type AuthVerdict = { ok: true; rx: AuthRxState } | { ok: false; reason: DropReason };

/**
 * Check a received packet's authentication against the session's configuration.
 * `raw` is the packet as received (the digest is recomputed over it).
 */
export function verifyAuth(raw: Buffer, packet: ControlPacket, cfg: AuthConfig | undefined, rx: AuthRxState): AuthVerdict {
    if (!cfg) return packet.auth ? { ok: false, reason: "auth-unexpected" } : { ok: true, rx };
    const auth = packet.auth;
    if (!auth) return { ok: false, reason: "auth-missing" };
    if (auth.type !== cfg.type) return { ok: false, reason: "auth-type" };
    const key = cfg.keys.find((k) => k.id === auth.keyId);
    if (!key) return { ok: false, reason: "auth-key-id" };

    if (cfg.type === AuthType.SimplePassword) {
        const ok = auth.password!.length === key.secret.length && timingSafeEqual(auth.password!, key.secret);
        return ok ? { ok: true, rx } : { ok: false, reason: "auth-password" };
    }

    const seq = auth.sequence!;
    if (rx.seqKnown) {
        const span = 3 * packet.detectMult;
        const ok = isMeticulous(cfg.type) ? inWindow(seq, (rx.rcvSeq + 1) >>> 0, span - 1) : inWindow(seq, rx.rcvSeq, span);
        if (!ok) return { ok: false, reason: "auth-sequence" };
    }
    const { name, size } = digestAlgorithm(cfg.type);
    const copy = Buffer.from(raw.subarray(0, HEADER_LENGTH + (cfg.type === AuthType.KeyedMD5 || cfg.type === AuthType.MeticulousKeyedMD5 ? 24 : 28)));
    const keyField = Buffer.alloc(size);
    key.secret.copy(keyField);
    keyField.copy(copy, HEADER_LENGTH + 8);
    const expected = createHash(name).update(copy).digest();
    if (!timingSafeEqual(expected, auth.digest!)) return { ok: false, reason: "auth-digest" };
    // Only an authentic packet moves the replay window. (§6.7.4 reads as if the first packet
    // were accepted before its hash is checked; it never is here.)
    return { ok: true, rx: { seqKnown: true, rcvSeq: seq } };
}
