// The public shapes of node-bfd's service API, shared by the main thread and the worker.
import type { AuthType } from "./packet";

/** Authentication as configured by a user: secrets as text or hex ("0x..."). */
export interface AuthSpec {
    type: "simple-password" | "keyed-md5" | "meticulous-keyed-md5" | "keyed-sha1" | "meticulous-keyed-sha1";
    keys: { id: number; secret: string }[];
    sendKeyId: number;
}

export interface TimerSpec {
    /** Desired minimum transmit interval while Up, milliseconds (default 300, as FRR). */
    transmitIntervalMs?: number;
    /** Required minimum receive interval, milliseconds (default 300). */
    receiveIntervalMs?: number;
    /** Detect multiplier (default 3). */
    detectMultiplier?: number;
    passive?: boolean;
    auth?: AuthSpec;
}

/** A named set of timers and authentication, as FRR's `profile`. */
export type Profile = TimerSpec;

export interface SessionSpec extends TimerSpec {
    /** Peer address. IPv6 link-local peers carry their interface: "fe80::1%up0". */
    peer: string;
    /** Local address to send from (required for multihop). */
    local?: string;
    /** Interface of a single-hop session (for demultiplexing and link-local scope). */
    interface?: string;
    multihop?: boolean;
    /** Multihop sessions need authentication unless this is set (e.g. for peers without it). */
    allowUnauthenticated?: boolean;
    adminDown?: boolean;
    /** Profile whose values apply where this spec sets none. */
    profile?: string;
}

export interface StateChange {
    id: string;
    peer: string;
    from: string;
    to: string;
    diagnostic: string;
    /** The peer's state as last heard: "admin-down" when the peer is shutting the session down on purpose. */
    remoteState: string;
    /** Milliseconds since the epoch, with a sub-millisecond fraction. */
    at: number;
}

/** One session, with the fields and names FRR's `show bfd peers json` uses, plus counters. */
export interface SessionSnapshot {
    id: string;
    multihop: boolean;
    peer: string;
    local?: string;
    interface?: string;
    "local-id": number;
    "remote-id": number;
    "passive-mode": boolean;
    status: "admin-down" | "down" | "init" | "up";
    /** Seconds in the current state when Up ("uptime") or not ("downtime"). */
    uptime?: number;
    downtime?: number;
    diagnostic: string;
    "remote-diagnostic": string;
    "receive-interval": number;
    "transmit-interval": number;
    "detect-multiplier": number;
    "remote-receive-interval": number;
    "remote-transmit-interval": number;
    "remote-detect-multiplier": number;
    /** Milliseconds: the detection time for the peer's packets. */
    "detection-timeout": number;
    "echo-receive-interval": 0;
    "echo-transmit-interval": 0;
    "poll-active": boolean;
    authentication: AuthSpec["type"] | "none";
    counters: {
        "control-packet-input": number;
        "control-packet-output": number;
        "session-up": number;
        "session-down": number;
        drops: Record<string, number>;
    };
}

export const AUTH_TYPES: Record<AuthSpec["type"], AuthType> = {
    "simple-password": 1,
    "keyed-md5": 2,
    "meticulous-keyed-md5": 3,
    "keyed-sha1": 4,
    "meticulous-keyed-sha1": 5,
};

export const AUTH_NAMES = Object.fromEntries(Object.entries(AUTH_TYPES).map(([k, v]) => [v, k])) as Record<AuthType, AuthSpec["type"]>;

/** One session's receive gaps over a window (Transport.takeRxGaps): telemetry for alerts. */
export interface RxGap {
    id: string;
    peer: string;
    /** The longest gap between two packets received while Up, ms; null when none was (two packets while Up). */
    maxGapMs: number | null;
    /** The detection time in force when that gap ended, ms: a gap this long takes the session Down. */
    detectionMs: number;
    up: boolean;
}
