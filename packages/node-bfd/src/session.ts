// The BFD session state machine (RFC 5880 §6.2, §6.5, §6.8), free of I/O.
//
//   step(session, event, now, random) -> { session, actions }
//
// `now` is a monotonic time in microseconds; `random` returns [0, 1) and is only
// used for transmit jitter, so tests drive everything with a virtual clock and a
// fixed random source. Timers are deadlines kept in the session (nextTxAt,
// detectAt); the caller arms one real timer for nextDeadline(session) and feeds
// a "timer" event when it fires.
import { encodeSigned, initialAuthRx, verifyAuth, type AuthConfig, type AuthRxState } from "./auth";
import { Diag, encode, State, type ControlPacket, type DropReason } from "./packet";

export interface SessionConfig {
    /** bfd.DesiredMinTxInterval while Up, in microseconds. */
    desiredMinTxUs: number;
    /** bfd.RequiredMinRxInterval, in microseconds. */
    requiredMinRxUs: number;
    detectMult: number;
    /** Passive role: stay silent until the peer has spoken (§6.1). */
    passive?: boolean;
    adminDown?: boolean;
    auth?: AuthConfig;
}

/** Everything FRR's `show bfd peers counters` shows, and drops by reason. */
export interface SessionCounters {
    rxPackets: number;
    txPackets: number;
    upTransitions: number;
    downTransitions: number;
    drops: Partial<Record<DropReason, number>>;
}

export interface Session {
    config: SessionConfig;
    localDiscr: number;
    state: State;
    localDiag: Diag;
    remoteDiscr: number;
    remoteState: State;
    remoteDiag: Diag;
    remoteDemand: boolean;
    remoteMinRxUs: number;
    remoteDesiredMinTxUs: number;
    remoteDetectMult: number;
    /** The intervals this system advertises now (bfd.DesiredMinTxInterval, bfd.RequiredMinRxInterval). */
    desiredMinTxUs: number;
    requiredMinRxUs: number;
    /** The values in force for our own transmit rate and the peer's detection time: during a
     * Poll Sequence an increased TX or a reduced RX only takes effect on Final (§6.8.3). */
    txDesiredInForceUs: number;
    rxRequiredInForceUs: number;
    pollActive: boolean;
    /** A P packet carrying the latest values has gone out: only a Final after it ends the Poll. */
    pollSentLatest: boolean;
    nextTxAt?: number;
    lastTxAt?: number;
    detectAt?: number;
    lastRxAt?: number;
    /**
     * The longest gap between two received packets while Up, since the caller last took it
     * (takeRxGaps): how close the session came to its detection time. Telemetry, not protocol.
     */
    rxGapMaxUs?: number;
    /** The detection time in force when that gap ended: timers change while a session settles (slow start, Poll). */
    rxGapDetectionUs?: number;
    lastStateChangeAt: number;
    xmitAuthSeq: number;
    authRx: AuthRxState;
    authSeqResetAt?: number;
    counters: SessionCounters;
}

export type SessionEvent =
    | { type: "rx"; packet: ControlPacket; raw: Buffer }
    /** holdDetection: run due transmissions but not the receive-side deadlines (detection,
     * authentication reset), while the caller still reads packets that arrived in time. */
    | { type: "timer"; holdDetection?: boolean }
    | { type: "admin"; down: boolean }
    | { type: "configure"; config: SessionConfig };

export type SessionAction =
    | { type: "send"; bytes: Buffer; packet: ControlPacket }
    | { type: "state"; from: State; to: State; diag: Diag };

export interface StepResult {
    session: Session;
    actions: SessionAction[];
}

/** While not Up, a system transmits no faster than once a second (§6.8.3). */
export const SLOW_TX_US = 1_000_000;

export function createSession(config: SessionConfig, localDiscr: number, now: number, random = Math.random): Session {
    if (localDiscr === 0) throw new RangeError("the local discriminator must be nonzero");
    const state = config.adminDown ? State.AdminDown : State.Down;
    const desired = Math.max(config.desiredMinTxUs, SLOW_TX_US);
    const s: Session = {
        config,
        localDiscr,
        state,
        localDiag: config.adminDown ? Diag.AdministrativelyDown : Diag.None,
        remoteDiscr: 0,
        remoteState: State.Down,
        remoteDiag: Diag.None,
        remoteDemand: false,
        remoteMinRxUs: 1, // §6.8.1: initialised to 1
        remoteDesiredMinTxUs: 0,
        remoteDetectMult: 0,
        desiredMinTxUs: desired,
        requiredMinRxUs: config.requiredMinRxUs,
        txDesiredInForceUs: desired,
        rxRequiredInForceUs: config.requiredMinRxUs,
        pollActive: false,
        pollSentLatest: false,
        lastStateChangeAt: now,
        xmitAuthSeq: Math.floor(random() * 0x1_0000_0000) >>> 0,
        authRx: initialAuthRx,
        counters: { rxPackets: 0, txPackets: 0, upTransitions: 0, downTransitions: 0, drops: {} },
    };
    scheduleTx(s, now, random, true);
    return s;
}

/** The earliest time the session needs a "timer" event, if any. */
export function nextDeadline(s: Session): number | undefined {
    // Called for every packet: no temporary arrays.
    let at = s.nextTxAt;
    if (s.detectAt !== undefined && (at === undefined || s.detectAt < at)) at = s.detectAt;
    if (s.authSeqResetAt !== undefined && (at === undefined || s.authSeqResetAt < at)) at = s.authSeqResetAt;
    return at;
}

/** A receive-side deadline (detection, authentication reset) is due at `now`. */
export function receiveDeadlineDue(s: Session, now: number): boolean {
    return (s.detectAt !== undefined && now >= s.detectAt) || (s.authSeqResetAt !== undefined && now >= s.authSeqResetAt);
}

/** Detection time for the peer's packets (§6.8.4, asynchronous mode). */
export function detectionTimeUs(s: Session): number {
    return s.remoteDetectMult * Math.max(s.rxRequiredInForceUs, s.remoteDesiredMinTxUs);
}

/** The interval between our periodic packets, before jitter (§6.8.7). */
export function txIntervalUs(s: Session): number {
    return Math.max(s.txDesiredInForceUs, s.remoteMinRxUs);
}

export function step(session: Session, event: SessionEvent, now: number, random: () => number = Math.random): StepResult {
    // Sessions are values here: copy, then apply the event to the copy.
    const s: Session = { ...session, counters: { ...session.counters, drops: { ...session.counters.drops } } };
    return { session: s, actions: stepInPlace(s, event, now, random) };
}

/**
 * The same transition applied to `s` itself: what the transport uses for every packet, to
 * spare the copies. Tests and tools that keep old states use `step`.
 */
export function stepInPlace(s: Session, event: SessionEvent, now: number, random: () => number = Math.random): SessionAction[] {
    const actions: SessionAction[] = [];
    switch (event.type) {
        case "rx":
            receive(s, event.packet, event.raw, now, random, actions);
            break;
        case "timer":
            timers(s, now, random, actions, !!event.holdDetection);
            break;
        case "admin":
            admin(s, event.down, now, random, actions);
            break;
        case "configure":
            configure(s, event.config, now, random, actions);
            break;
    }
    return actions;
}

function drop(s: Session, reason: DropReason): void {
    s.counters.drops[reason] = (s.counters.drops[reason] ?? 0) + 1;
}

// ---- Reception (§6.8.6) ----

function receive(s: Session, p: ControlPacket, raw: Buffer, now: number, random: () => number, actions: SessionAction[]): void {
    const verdict = verifyAuth(raw, p, s.config.auth, s.authRx);
    if (!verdict.ok) return drop(s, verdict.reason);
    s.authRx = verdict.rx;

    s.remoteDiscr = p.myDiscriminator;
    s.remoteState = p.state;
    s.remoteDiag = p.diag;
    s.remoteDemand = p.demand;
    s.remoteDetectMult = p.detectMult;
    s.remoteDesiredMinTxUs = p.desiredMinTxUs;
    const previousTx = txIntervalUs(s);
    s.remoteMinRxUs = p.requiredMinRxUs;

    if (s.pollActive && p.final && s.pollSentLatest) endPoll(s);

    if (s.lastRxAt !== undefined && s.state === State.Up) {
        // Kept by its share of the detection time then in force, not by its length alone.
        const gap = now - s.lastRxAt;
        const detection = detectionTimeUs(s);
        if (s.rxGapMaxUs === undefined || gap / detection > s.rxGapMaxUs / (s.rxGapDetectionUs ?? detection)) {
            s.rxGapMaxUs = gap;
            s.rxGapDetectionUs = detection;
        }
    }
    s.lastRxAt = now;
    s.detectAt = now + detectionTimeUs(s);
    if (s.config.auth) s.authSeqResetAt = now + 2 * detectionTimeUs(s);

    // §6.8.6 records the peer's values first, then discards the packet in AdminDown.
    if (s.state === State.AdminDown) {
        s.detectAt = undefined;
        return drop(s, "admin-down");
    }
    s.counters.rxPackets++;

    // §6.8.6 state transitions.
    const before = s.state;
    if (p.state === State.AdminDown) {
        if (s.state !== State.Down) changeState(s, State.Down, Diag.NeighborSignaledSessionDown, now, actions);
    } else if (s.state === State.Down) {
        if (p.state === State.Down) changeState(s, State.Init, Diag.None, now, actions);
        else if (p.state === State.Init) changeState(s, State.Up, Diag.None, now, actions);
    } else if (s.state === State.Init) {
        if (p.state === State.Init || p.state === State.Up) changeState(s, State.Up, Diag.None, now, actions);
    } else if (s.state === State.Up) {
        if (p.state === State.Down) changeState(s, State.Down, Diag.NeighborSignaledSessionDown, now, actions);
    }

    if (p.poll) {
        // Answer a Poll at once with Final, outside the periodic schedule (§6.5).
        send(s, now, actions, { final: true });
    } else if (s.state !== before) {
        // Tell the peer about our new state now rather than at the next periodic packet.
        send(s, now, actions, {});
    }
    // A shorter interval applies from now: the next packet goes out within it (§6.8.7).
    const interval = txIntervalUs(s);
    if (s.nextTxAt === undefined || interval < previousTx || s.state !== before) scheduleTx(s, now, random, s.nextTxAt === undefined || s.state !== before);
}

// ---- Timers ----

function timers(s: Session, now: number, random: () => number, actions: SessionAction[], holdDetection: boolean): void {
    if (!holdDetection && s.detectAt !== undefined && now >= s.detectAt) {
        s.detectAt = undefined;
        // §6.8.1: without packets for a Detection Time the peer is forgotten.
        s.remoteDiscr = 0;
        s.remoteState = State.Down;
        s.remoteMinRxUs = 1;
        s.remoteDemand = false;
        if (s.state === State.Init || s.state === State.Up) {
            changeState(s, State.Down, Diag.ControlDetectionTimeExpired, now, actions);
            send(s, now, actions, {});
        }
        if (s.pollActive) endPoll(s);
    }
    if (!holdDetection && s.authSeqResetAt !== undefined && now >= s.authSeqResetAt) {
        s.authSeqResetAt = undefined;
        s.authRx = initialAuthRx;
    }
    if (s.nextTxAt !== undefined && now >= s.nextTxAt) {
        s.nextTxAt = undefined;
        if (mayTransmit(s) && periodic(s)) send(s, now, actions, {});
        scheduleTx(s, now, random, false);
    }
}

/** Passive systems stay silent until the peer has spoken (§6.8.7). */
function mayTransmit(s: Session): boolean {
    return !(s.config.passive && s.remoteDiscr === 0);
}

/** Periodic transmission stops when the peer asks for none, or runs Demand mode while both are Up. */
function periodic(s: Session): boolean {
    if (s.remoteMinRxUs === 0) return false;
    // Demand mode silences periodic packets, but not a Poll Sequence (§6.8.7).
    if (s.pollActive) return true;
    return !(s.remoteDemand && s.state === State.Up && s.remoteState === State.Up);
}

function scheduleTx(s: Session, now: number, random: () => number, fromNow: boolean): void {
    const interval = txIntervalUs(s);
    // Jitter (§6.8.7): 75-100% of the interval, or 75-90% with a detect multiplier of 1.
    const factor = 0.75 + random() * (s.config.detectMult === 1 ? 0.15 : 0.25);
    if (fromNow || s.nextTxAt === undefined) {
        s.nextTxAt = now + interval * factor;
        return;
    }
    // A shorter interval counts from the previous transmission, and if that is already
    // past, the next packet goes out as soon as practicable (§6.8.3).
    const at = Math.max(now, (s.lastTxAt ?? now) + interval * factor);
    s.nextTxAt = Math.min(s.nextTxAt, at);
}

// ---- Administrative control and configuration ----

function admin(s: Session, down: boolean, now: number, random: () => number, actions: SessionAction[]): void {
    s.config = { ...s.config, adminDown: down };
    if (down && s.state !== State.AdminDown) {
        changeState(s, State.AdminDown, Diag.AdministrativelyDown, now, actions);
        s.detectAt = undefined;
        send(s, now, actions, {});
    } else if (!down && s.state === State.AdminDown) {
        changeState(s, State.Down, Diag.None, now, actions);
        send(s, now, actions, {});
    }
    scheduleTx(s, now, random, true);
}

function configure(s: Session, config: SessionConfig, now: number, random: () => number, actions: SessionAction[]): void {
    const adminChange = !!config.adminDown !== !!s.config.adminDown;
    s.config = { ...config, adminDown: s.config.adminDown };
    if (config.auth === undefined) s.authRx = initialAuthRx;
    const previousTx = txIntervalUs(s);
    applyTimers(s);
    if (txIntervalUs(s) < previousTx) scheduleTx(s, now, random, false);
    if (adminChange) admin(s, !!config.adminDown, now, random, actions);
}

function changeState(s: Session, to: State, diag: Diag, now: number, actions: SessionAction[]): void {
    const from = s.state;
    s.state = to;
    s.localDiag = diag;
    s.lastStateChangeAt = now;
    if (to === State.Up) s.counters.upTransitions++;
    if (from === State.Up) s.counters.downTransitions++;
    actions.push({ type: "state", from, to, diag });
    if (to === State.Up || from === State.Up) applyTimers(s);
}

/**
 * Recompute the advertised intervals from the configuration and state. A change while Up
 * starts a Poll Sequence, and an increased TX or a reduced RX only takes effect on the
 * Final (§6.8.3). Outside Up, changes apply at once, and a Poll Sequence tells the peer.
 */
function applyTimers(s: Session): void {
    const up = s.state === State.Up;
    const desired = up ? s.config.desiredMinTxUs : Math.max(s.config.desiredMinTxUs, SLOW_TX_US);
    const required = s.config.requiredMinRxUs;
    if (desired === s.desiredMinTxUs && required === s.requiredMinRxUs) return;
    s.desiredMinTxUs = desired;
    s.requiredMinRxUs = required;
    if (up) {
        // A change during a Poll restarts it: only a Final to a P packet with these values ends it.
        s.pollActive = true;
        s.pollSentLatest = false;
        // Decreases of TX and increases of RX apply now; the others wait for the Final, and the
        // value in force is never replaced by one that would also have to wait (§6.8.3).
        s.txDesiredInForceUs = Math.min(s.txDesiredInForceUs, desired);
        s.rxRequiredInForceUs = Math.max(s.rxRequiredInForceUs, required);
        if (s.lastRxAt !== undefined && s.detectAt !== undefined) s.detectAt = s.lastRxAt + detectionTimeUs(s);
    } else {
        // Outside Up the new values apply at once; the Poll still tells the peer (§6.8.3: a
        // change of either interval MUST start a Poll Sequence).
        s.txDesiredInForceUs = desired;
        s.rxRequiredInForceUs = required;
        s.pollActive = true;
        s.pollSentLatest = false;
        if (s.lastRxAt !== undefined && s.detectAt !== undefined) s.detectAt = s.lastRxAt + detectionTimeUs(s);
    }
}

function endPoll(s: Session): void {
    s.pollActive = false;
    s.pollSentLatest = false;
    s.txDesiredInForceUs = s.desiredMinTxUs;
    s.rxRequiredInForceUs = s.requiredMinRxUs;
    if (s.lastRxAt !== undefined && s.detectAt !== undefined) s.detectAt = s.lastRxAt + detectionTimeUs(s);
}

// ---- Transmission ----

export function controlPacket(s: Session, final = false): ControlPacket {
    return {
        version: 1,
        diag: s.localDiag,
        state: s.state,
        poll: s.pollActive && !final,
        final,
        controlPlaneIndependent: false,
        demand: false,
        multipoint: false,
        detectMult: s.config.detectMult,
        myDiscriminator: s.localDiscr,
        yourDiscriminator: s.remoteDiscr,
        desiredMinTxUs: s.desiredMinTxUs,
        requiredMinRxUs: s.requiredMinRxUs,
        requiredMinEchoRxUs: 0,
    };
}

function send(s: Session, now: number, actions: SessionAction[], opts: { final?: boolean }): void {
    if (!mayTransmit(s)) return;
    const packet = controlPacket(s, !!opts.final);
    if (packet.poll) s.pollSentLatest = true;
    s.lastTxAt = now;
    let bytes: Buffer;
    if (s.config.auth) {
        // Both keyed and meticulous variants advance the sequence on every packet: always valid.
        s.xmitAuthSeq = (s.xmitAuthSeq + 1) >>> 0;
        bytes = encodeSigned(packet, s.config.auth, s.xmitAuthSeq);
    } else {
        bytes = encode(packet);
    }
    s.counters.txPackets++;
    actions.push({ type: "send", bytes, packet });
}
