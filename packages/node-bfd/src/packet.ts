// BFD Control packet codec (RFC 5880 §4). Pure: bytes in, a typed packet or a
// drop reason out; never throws on received data.
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
// |                       My Discriminator                        |
// |                      Your Discriminator                       |
// |                    Desired Min TX Interval                    |
// |                   Required Min RX Interval                    |
// |                 Required Min Echo RX Interval                 |
// |   Auth Type   |   Auth Len    |    (authentication data)...   |

export enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

export enum Diag {
    None = 0,
    ControlDetectionTimeExpired = 1,
    EchoFunctionFailed = 2,
    NeighborSignaledSessionDown = 3,
    ForwardingPlaneReset = 4,
    PathDown = 5,
    ConcatenatedPathDown = 6,
    AdministrativelyDown = 7,
    ReverseConcatenatedPathDown = 8,
}

export enum AuthType {
    None = 0,
    SimplePassword = 1,
    KeyedMD5 = 2,
    MeticulousKeyedMD5 = 3,
    KeyedSHA1 = 4,
    MeticulousKeyedSHA1 = 5,
}

export const STATE_NAMES: Record<State, string> = { 0: "admin-down", 1: "down", 2: "init", 3: "up" };
export const DIAG_NAMES: Record<Diag, string> = {
    0: "ok",
    1: "control detection time expired",
    2: "echo function failed",
    3: "neighbor signaled session down",
    4: "forwarding plane reset",
    5: "path down",
    6: "concatenated path down",
    7: "administratively down",
    8: "reverse concatenated path down",
};

export interface AuthSection {
    type: AuthType;
    keyId: number;
    /** Simple password: the password itself (1-16 bytes). */
    password?: Buffer;
    /** MD5 and SHA1 variants. */
    sequence?: number;
    /** MD5 (16 bytes) or SHA1 (20 bytes) digest as carried on the wire. */
    digest?: Buffer;
}

export interface ControlPacket {
    version: number;
    diag: Diag;
    state: State;
    poll: boolean;
    final: boolean;
    controlPlaneIndependent: boolean;
    demand: boolean;
    multipoint: boolean;
    detectMult: number;
    myDiscriminator: number;
    yourDiscriminator: number;
    /** Microseconds, as on the wire. */
    desiredMinTxUs: number;
    requiredMinRxUs: number;
    requiredMinEchoRxUs: number;
    auth?: AuthSection;
}

/** Why a received packet was dropped; counted per session and globally. */
export type DropReason =
    | "short"
    | "bad-version"
    | "bad-length"
    | "zero-detect-mult"
    | "multipoint"
    | "zero-my-discriminator"
    | "zero-your-discriminator"
    | "bad-auth-section"
    | "unknown-discriminator"
    | "no-session"
    | "admin-down"
    | "auth-missing"
    | "auth-unexpected"
    | "auth-type"
    | "auth-key-id"
    | "auth-password"
    | "auth-digest"
    | "auth-sequence";

export const HEADER_LENGTH = 24;
const AUTH_LENGTHS: Record<AuthType, number | undefined> = {
    [AuthType.None]: undefined,
    [AuthType.SimplePassword]: undefined, // 3 + password length (1-16)
    [AuthType.KeyedMD5]: 24,
    [AuthType.MeticulousKeyedMD5]: 24,
    [AuthType.KeyedSHA1]: 28,
    [AuthType.MeticulousKeyedSHA1]: 28,
};

export type DecodeResult = { ok: true; packet: ControlPacket } | { ok: false; reason: DropReason };

/**
 * Decode and apply the checks of §6.8.6 that need no session: version, lengths,
 * detect multiplier, multipoint, discriminators, and a well-formed auth section.
 */
export function decode(buf: Uint8Array): DecodeResult {
    if (buf.length < HEADER_LENGTH) return { ok: false, reason: "short" };
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const version = b[0] >> 5;
    if (version !== 1) return { ok: false, reason: "bad-version" };
    const flags = b[1];
    const authPresent = (flags & 0x04) !== 0;
    const length = b[3];
    if (length < (authPresent ? HEADER_LENGTH + 2 : HEADER_LENGTH) || length > b.length) return { ok: false, reason: "bad-length" };
    const detectMult = b[2];
    if (detectMult === 0) return { ok: false, reason: "zero-detect-mult" };
    if (flags & 0x01) return { ok: false, reason: "multipoint" };
    const myDiscriminator = b.readUInt32BE(4);
    const yourDiscriminator = b.readUInt32BE(8);
    if (myDiscriminator === 0) return { ok: false, reason: "zero-my-discriminator" };
    const state = (flags >> 6) as State;
    if (yourDiscriminator === 0 && state !== State.Down && state !== State.AdminDown) {
        return { ok: false, reason: "zero-your-discriminator" };
    }
    const packet: ControlPacket = {
        version,
        diag: (b[0] & 0x1f) as Diag,
        state,
        poll: (flags & 0x20) !== 0,
        final: (flags & 0x10) !== 0,
        controlPlaneIndependent: (flags & 0x08) !== 0,
        demand: (flags & 0x02) !== 0,
        multipoint: false,
        detectMult,
        myDiscriminator,
        yourDiscriminator,
        desiredMinTxUs: b.readUInt32BE(12),
        requiredMinRxUs: b.readUInt32BE(16),
        requiredMinEchoRxUs: b.readUInt32BE(20),
    };
    if (authPresent) {
        const auth = decodeAuth(b.subarray(HEADER_LENGTH, length));
        if (!auth) return { ok: false, reason: "bad-auth-section" };
        packet.auth = auth;
    }
    // Without an auth section, bytes beyond the mandatory section (up to Length) are ignored:
    // §6.8.6 only bounds Length by the minimum and by the payload.
    return { ok: true, packet };
}

function decodeAuth(a: Buffer): AuthSection | undefined {
    if (a.length < 2) return undefined;
    const type = a[0] as AuthType;
    const len = a[1];
    if (len !== a.length) return undefined;
    switch (type) {
        case AuthType.SimplePassword:
            if (len < 4 || len > 19) return undefined;
            return { type, keyId: a[2], password: Buffer.from(a.subarray(3, len)) };
        case AuthType.KeyedMD5:
        case AuthType.MeticulousKeyedMD5:
        case AuthType.KeyedSHA1:
        case AuthType.MeticulousKeyedSHA1:
            if (len !== AUTH_LENGTHS[type]) return undefined;
            // a[3] is reserved: "MUST be set to zero on transmit, and ignored on receipt".
            return { type, keyId: a[2], sequence: a.readUInt32BE(4), digest: Buffer.from(a.subarray(8, len)) };
        default:
            return undefined;
    }
}

/** Encode a packet. The auth section is written as given (see auth.ts for signing). */
export function encode(p: ControlPacket): Buffer {
    const authLen = p.auth ? authSectionLength(p.auth) : 0;
    const b = Buffer.alloc(HEADER_LENGTH + authLen);
    b[0] = ((p.version & 0x07) << 5) | (p.diag & 0x1f);
    b[1] = ((p.state & 0x03) << 6) | (p.poll ? 0x20 : 0) | (p.final ? 0x10 : 0) | (p.controlPlaneIndependent ? 0x08 : 0) |
        (p.auth ? 0x04 : 0) | (p.demand ? 0x02 : 0) | (p.multipoint ? 0x01 : 0);
    b[2] = p.detectMult & 0xff;
    b[3] = b.length;
    b.writeUInt32BE(p.myDiscriminator >>> 0, 4);
    b.writeUInt32BE(p.yourDiscriminator >>> 0, 8);
    b.writeUInt32BE(p.desiredMinTxUs >>> 0, 12);
    b.writeUInt32BE(p.requiredMinRxUs >>> 0, 16);
    b.writeUInt32BE(p.requiredMinEchoRxUs >>> 0, 20);
    if (p.auth) {
        const a = b.subarray(HEADER_LENGTH);
        a[0] = p.auth.type;
        a[1] = authLen;
        a[2] = p.auth.keyId & 0xff;
        if (p.auth.type === AuthType.SimplePassword) {
            p.auth.password!.copy(a, 3);
        } else {
            a.writeUInt32BE((p.auth.sequence ?? 0) >>> 0, 4);
            (p.auth.digest ?? Buffer.alloc(authLen - 8)).copy(a, 8);
        }
    }
    return b;
}

export function authSectionLength(auth: AuthSection): number {
    if (auth.type === AuthType.SimplePassword) return 3 + (auth.password?.length ?? 0);
    const len = AUTH_LENGTHS[auth.type];
    if (len === undefined) throw new RangeError(`unknown auth type ${auth.type}`);
    return len;
}
