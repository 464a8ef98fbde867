// The thin I/O shell around the session core: UDP sockets (RFC 5881 single-hop on
// 3784, RFC 5883 multihop on 4784), one real timer per session, and the session
// table. It runs inside a worker thread (see service.ts) so that a busy main
// thread cannot delay transmissions or detection.
import * as dgram from "node:dgram";
import { isIPv4 } from "node:net";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { encodeSigned } from "./auth";
import { allocateDiscriminator, Demux, type PeerKey } from "./demux";
import type { Gtsm } from "./gtsm";
import { decode, DIAG_NAMES, encode, State, STATE_NAMES, type DropReason } from "./packet";
import { resolveSessionConfig } from "./profile";
import { controlPacket, createSession, detectionTimeUs, nextDeadline, receiveDeadlineDue, step, stepInPlace, type Session, type SessionAction, type SessionConfig } from "./session";
import { AUTH_NAMES, type Profile, type RxGap, type SessionSnapshot, type SessionSpec, type StateChange } from "./types";

export const SINGLE_HOP_PORT = 3784;
export const MULTIHOP_PORT = 4784;
const SOURCE_PORT_MIN = 49152;
const SOURCE_PORT_MAX = 65535;
const RECV_BUFFER_BYTES = 4 * 1024 * 1024;
/** libuv reads at most this many datagrams from a socket per loop turn (uv__udp_recvmsg). */
const RECV_BATCH = 32;
/** A detection expiry waits at most this many loop turns for its socket to drain. */
const MAX_DRAIN_ROUNDS = 64;

export class BfdConfigError extends Error {
    override name = "BfdConfigError";
}

interface Entry {
    id: string;
    spec: SessionSpec;
    key: PeerKey;
    session: Session;
    tx: dgram.Socket;
    /** Whether `tx` is connected to the peer; if not, each send names the peer. */
    connected: boolean;
    timer?: NodeJS.Timeout;
    timerAt?: number;
    /** Loop turns a due detection has been held for while the receiving socket drains. */
    drainRounds?: number;
    /** The receiving socket's packet count (shared by the sessions it serves). */
    inbox: { received: number };
    /** Wall-clock ms of the last state change, for uptime/downtime. */
    changedAtMs: number;
}

const nowUs = () => performance.now() * 1000;

export interface TransportOptions {
    onStateChange: (change: StateChange) => void;
    /** Override the listening ports (tests run unprivileged peers side by side). */
    singleHopPort?: number;
    multihopPort?: number;
    /**
     * GTSM for single-hop sessions (RFC 5881 §5), for the single-hop port: made sure of before
     * a single-hop session is added; the session is refused if it cannot be enforced.
     */
    gtsm: Pick<Gtsm, "ensure">;
}

export class Transport {
    private readonly sessions = new Map<string, Entry>();
    private readonly demux = new Demux<string>();
    private readonly listeners = new Map<string, dgram.Socket>();
    private readonly inboxes = new Map<string, { received: number }>();
    private readonly profiles = new Map<string, Profile>();
    /** Drops before a session was found (malformed, unknown discriminator, no session). */
    readonly unmatchedDrops: Partial<Record<DropReason, number>> = {};

    /** How late this thread's event loop runs: the first thing to check when sessions flap. */
    private readonly loopDelay = monitorEventLoopDelay({ resolution: 5 });

    constructor(private readonly opts: TransportOptions) {
        this.loopDelay.enable();
    }

    /** Event-loop delay of the worker since the last call, in milliseconds. */
    loopDelayMs(): { p50: number; p99: number; max: number } {
        const ms = (ns: number) => Math.round(ns / 1e4) / 100;
        const r = { p50: ms(this.loopDelay.percentile(50)), p99: ms(this.loopDelay.percentile(99)), max: ms(this.loopDelay.max) };
        this.loopDelay.reset();
        return r;
    }

    setProfile(name: string, profile: Profile): void {
        this.profiles.set(name, profile);
        for (const e of this.sessions.values()) if (e.spec.profile === name) this.reconfigure(e, e.spec);
    }

    async add(id: string, spec: SessionSpec): Promise<void> {
        if (this.sessions.has(id)) throw new BfdConfigError(`session '${id}' already exists`);
        const config = this.sessionConfig(spec);
        const key = peerKey(spec);
        for (const e of this.sessions.values()) {
            // Packets to a global address carry no interface: two sessions that differ only by
            // interface could not be told apart before their discriminators are known.
            if (e.key.peer === key.peer && e.key.multihop === key.multihop && (e.key.local ?? "") === (key.local ?? "") &&
                (e.key.iface ?? "") !== (key.iface ?? "") && !key.peer.toLowerCase().startsWith("fe80:")) {
                throw new BfdConfigError(`sessions '${e.id}' and '${id}' to ${spec.peer} differ only by interface; give each its own local address`);
            }
            if (sameKey(e.key, key)) throw new BfdConfigError(`a session to ${spec.peer}${spec.local ? ` from ${spec.local}` : ""} (${key.multihop ? "multihop" : "single-hop"}) already exists: '${e.id}'`);
        }
        // Before any socket listens for it: a single-hop packet from off the link is dropped.
        if (!key.multihop) await this.opts.gtsm.ensure(id);
        await this.listen(spec);
        const tx = await bindSourceSocket(this.listenerOf(spec).family, spec.local);
        // Connected once: each send then skips the per-packet address handling. A peer with no
        // route yet (e.g. a multihop peer behind a default route that BFD itself gates) cannot
        // be connected to; such a session sends unconnected, to the same address and port.
        const connected = await new Promise<boolean>((resolve) => {
            tx.connect(this.port(key.multihop), spec.peer, (err?: Error) => resolve(!err));
        });
        const discr = allocateDiscriminator((d) => this.demux.hasDiscriminator(d));
        const session = createSession(config, discr, nowUs());
        const entry: Entry = { id, spec, key, session, tx, connected, changedAtMs: Date.now(), inbox: this.inboxes.get(this.listenerOf(spec).key)! };
        this.sessions.set(id, entry);
        this.demux.add(discr, key, id);
        this.arm(entry);
    }

    update(id: string, spec: SessionSpec): void {
        const e = this.get(id);
        if (spec.peer !== e.spec.peer || !!spec.multihop !== !!e.spec.multihop || spec.local !== e.spec.local) {
            throw new BfdConfigError(`session '${id}': peer, local address and hop mode cannot change; remove and add it instead`);
        }
        this.reconfigure(e, spec);
    }

    remove(id: string): void {
        const e = this.get(id);
        if (e.timer) clearTimeout(e.timer);
        this.sessions.delete(id);
        this.demux.remove(e.session.localDiscr, e.key);
        // Tell the peer we are going away administratively, as FRR does on "no peer": AdminDown
        // for a Detection Time (§6.8.16), one packet per transmit interval, then close.
        const session = step(e.session, { type: "admin", down: true }, nowUs()).session;
        const rounds = Math.max(1, session.config.detectMult);
        const intervalMs = Math.max(1, Math.max(session.config.desiredMinTxUs, session.remoteMinRxUs) / 1000);
        const sendOne = (round: number) => {
            const bytes = encodeAdminDown(session);
            if (round + 1 >= rounds) return void this.send(e, bytes, () => e.tx.close());
            this.send(e, bytes);
            setTimeout(() => sendOne(round + 1), intervalMs).unref();
        };
        sendOne(0);
        this.releaseListener(e);
    }

    /** Close a receiving socket once no session uses it. */
    private releaseListener(gone: Entry): void {
        const { key } = this.listenerOf(gone.spec);
        if ([...this.sessions.values()].some((e) => this.listenerOf(e.spec).key === key)) return;
        this.listeners.get(key)?.close();
        this.listeners.delete(key);
        this.inboxes.delete(key);
    }

    snapshot(): SessionSnapshot[] {
        return [...this.sessions.values()].map((e) => snapshotOf(e));
    }

    /** Each session's longest receive gap while Up since the last call (null: none seen), relative to the detection time then in force; restarts the window. */
    takeRxGaps(): RxGap[] {
        return [...this.sessions.values()].map((e) => {
            const s = e.session;
            const gap = s.rxGapMaxUs;
            const detection = s.rxGapDetectionUs ?? detectionTimeUs(s);
            s.rxGapMaxUs = undefined;
            s.rxGapDetectionUs = undefined;
            return { id: e.id, peer: e.spec.peer, maxGapMs: gap === undefined ? null : gap / 1000, detectionMs: detection / 1000, up: s.state === State.Up };
        });
    }

    close(): void {
        for (const id of [...this.sessions.keys()]) this.remove(id);
        for (const s of this.listeners.values()) s.close();
        this.listeners.clear();
        this.inboxes.clear();
        this.loopDelay.disable();
    }

    // ---- internals ----

    private get(id: string): Entry {
        const e = this.sessions.get(id);
        if (!e) throw new BfdConfigError(`no session '${id}'`);
        return e;
    }

    private reconfigure(e: Entry, spec: SessionSpec): void {
        const config = this.sessionConfig(spec);
        e.spec = spec;
        this.handle(e, stepInPlace(e.session, { type: "configure", config }, nowUs()));
    }

    private sessionConfig(spec: SessionSpec): SessionConfig {
        const r = resolveSessionConfig(spec, this.profiles);
        if (!r.ok) throw new BfdConfigError(r.error.message);
        return r.config;
    }

    /**
     * Receiving sockets. A session with a pinned local address gets a socket bound to that
     * address, so that the receive path knows which local address a packet was sent to (Node's
     * dgram offers no IP_PKTINFO); sessions without one share a wildcard socket.
     */
    private async listen(spec: SessionSpec): Promise<void> {
        const { family, address, port, key } = this.listenerOf(spec);
        const multihop = !!spec.multihop;
        const local = spec.local;
        if (this.listeners.has(key)) return;
        // A large receive buffer: a wildcard socket serves every session, and a pause of the
        // worker (GC, a busy host) must not overflow it (the kernel caps it at rmem_max).
        const sock = dgram.createSocket({ type: family, ipv6Only: family === "udp6", reuseAddr: true, recvBufferSize: RECV_BUFFER_BYTES });
        const inbox = { received: 0 };
        sock.on("message", (msg, rinfo) => {
            inbox.received++;
            this.receive(msg, rinfo.address, multihop, local);
        });
        await new Promise<void>((resolve, reject) => {
            sock.once("error", reject);
            sock.bind({ port, address }, () => {
                sock.off("error", reject);
                resolve();
            });
        }).catch((err: Error) => {
            sock.close();
            throw new BfdConfigError(`cannot listen on ${family === "udp6" ? `[${address}]` : address}:${port}: ${err.message}`);
        });
        sock.on("error", () => undefined);
        this.listeners.set(key, sock);
        this.inboxes.set(key, inbox);
    }

    /** The receive path: never throws; every rejected packet is counted by reason. */
    private receive(msg: Buffer, from: string, multihop: boolean, local: string | undefined): void {
        const decoded = decode(msg);
        if (!decoded.ok) return this.countUnmatched(decoded.reason);
        const found = this.demux.lookup(decoded.packet, { peer: stripZone(from), iface: zoneOf(from), local: local && stripZone(local), multihop });
        if (!found.ok) return this.countUnmatched(found.reason);
        const e = this.sessions.get(found.id)!;
        if (e.key.multihop !== multihop) return this.countUnmatched("no-session");
        this.handle(e, stepInPlace(e.session, { type: "rx", packet: decoded.packet, raw: msg }, nowUs()));
    }

    /** Which receiving socket serves a session: family, bound address and port. */
    private listenerOf(spec: SessionSpec): { family: "udp4" | "udp6"; address: string; port: number; key: string } {
        const family = isIPv4(stripZone(spec.peer)) ? "udp4" : "udp6";
        const address = spec.local ?? (family === "udp6" ? "::" : "0.0.0.0");
        const port = this.port(!!spec.multihop);
        return { family, address, port, key: `${family}/${address}/${port}` };
    }

    private port(multihop: boolean): number {
        return multihop ? this.opts.multihopPort ?? MULTIHOP_PORT : this.opts.singleHopPort ?? SINGLE_HOP_PORT;
    }

    private countUnmatched(reason: DropReason): void {
        this.unmatchedDrops[reason] = (this.unmatchedDrops[reason] ?? 0) + 1;
    }

    private handle(e: Entry, actions: SessionAction[]): void {
        for (const a of actions) {
            if (a.type === "send") {
                this.send(e, a.bytes);
            } else {
                e.changedAtMs = Date.now();
                this.opts.onStateChange({
                    id: e.id, peer: e.spec.peer, from: STATE_NAMES[a.from], to: STATE_NAMES[a.to], diagnostic: DIAG_NAMES[a.diag],
                    remoteState: STATE_NAMES[e.session.remoteState],
                    // Sub-millisecond wall-clock time, comparable across processes (benchmarks use it).
                    at: performance.timeOrigin + performance.now(),
                });
            }
        }
        if (this.sessions.has(e.id)) this.arm(e);
    }

    /** Send one packet; a failure to send is the peer's timers' business, never an exception here. */
    private send(e: Entry, bytes: Buffer, done?: () => void): void {
        try {
            if (e.connected) e.tx.send(bytes, done);
            else e.tx.send(bytes, this.port(e.key.multihop), e.spec.peer, done);
        } catch {
            done?.();
        }
    }

    /** One real timer per session, for its earliest deadline (while a detection is held for a
     * drain, only for its transmissions: the drain decides about the detection). */
    private arm(e: Entry): void {
        const at = e.drainRounds === undefined ? nextDeadline(e.session) : e.session.nextTxAt;
        if (at === e.timerAt && e.timer) return;
        if (e.timer) clearTimeout(e.timer);
        e.timer = undefined;
        e.timerAt = at;
        if (at === undefined) return;
        const delayMs = Math.max(0, (at - nowUs()) / 1000);
        e.timer = setTimeout(() => {
            e.timer = undefined;
            e.timerAt = undefined;
            this.onTimer(e);
        }, delayMs);
    }

    /**
     * Transmissions always go out when due. A detection expiry, though, is only declared once
     * the session's receiving socket is drained: Node runs timers before it polls for I/O, and
     * libuv reads at most a batch of datagrams per socket per loop turn, so packets that
     * arrived in time may still wait in the socket buffer (after a pause of this thread, or
     * when one socket serves many sessions). Declaring the peer dead then would be our fault,
     * not its. So the expiry is held, loop turn by loop turn, while the socket still yields
     * full batches; a packet for the session read meanwhile restarts its detection time.
     */
    private onTimer(e: Entry): void {
        if (this.sessions.get(e.id) !== e || e.timer) return;
        const now = nowUs();
        if (e.drainRounds === undefined && receiveDeadlineDue(e.session, now)) {
            e.drainRounds = 0;
            this.handle(e, stepInPlace(e.session, { type: "timer", holdDetection: true }, now));
            const seen = e.inbox.received;
            setImmediate(() => this.drainCheck(e, seen));
            return;
        }
        this.handle(e, stepInPlace(e.session, { type: "timer", holdDetection: e.drainRounds !== undefined }, now));
    }

    /** Runs after each poll phase while a detection expiry is held (see onTimer). */
    private drainCheck(e: Entry, seen: number): void {
        if (this.sessions.get(e.id) !== e || e.drainRounds === undefined) return;
        const now = nowUs();
        const more = e.inbox.received - seen >= RECV_BATCH;
        if (receiveDeadlineDue(e.session, now) && more && e.drainRounds < MAX_DRAIN_ROUNDS) {
            e.drainRounds++;
            const next = e.inbox.received;
            setImmediate(() => this.drainCheck(e, next));
            return;
        }
        e.drainRounds = undefined;
        // A packet read meanwhile moved the detection time: the step only does what is due.
        this.handle(e, stepInPlace(e.session, { type: "timer" }, now));
    }
}

/** The AdminDown packet a removed session keeps sending (signed when it has authentication). */
function encodeAdminDown(s: Session): Buffer {
    const packet = controlPacket(s);
    if (!s.config.auth) return encode(packet);
    s.xmitAuthSeq = (s.xmitAuthSeq + 1) >>> 0;
    return encodeSigned(packet, s.config.auth, s.xmitAuthSeq);
}

function peerKey(spec: SessionSpec): PeerKey {
    return { peer: stripZone(spec.peer), iface: spec.interface ?? zoneOf(spec.peer), local: spec.local && stripZone(spec.local), multihop: !!spec.multihop };
}

function sameKey(a: PeerKey, b: PeerKey): boolean {
    return a.peer === b.peer && a.multihop === b.multihop && (a.iface ?? "") === (b.iface ?? "") && (a.local ?? "") === (b.local ?? "");
}

function stripZone(addr: string): string {
    return addr.split("%")[0];
}

function zoneOf(addr: string): string | undefined {
    return addr.includes("%") ? addr.split("%")[1] : undefined;
}

/**
 * The session's sending socket: a source port in 49152-65535 that stays the same for the
 * life of the session (RFC 5881 §4), and a hop limit of 255 on every packet (GTSM).
 */
async function bindSourceSocket(family: "udp4" | "udp6", local?: string): Promise<dgram.Socket> {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < 64; attempt++) {
        const port = SOURCE_PORT_MIN + Math.floor(Math.random() * (SOURCE_PORT_MAX - SOURCE_PORT_MIN + 1));
        const sock = dgram.createSocket({ type: family, ipv6Only: family === "udp6" });
        try {
            await new Promise<void>((resolve, reject) => {
                sock.once("error", reject);
                sock.bind({ port, address: local ?? (family === "udp6" ? "::" : "0.0.0.0"), exclusive: true }, () => {
                    sock.off("error", reject);
                    resolve();
                });
            });
            sock.setTTL(255);
            sock.on("error", () => undefined); // e.g. EHOSTUNREACH on a dead link: the session timers handle it
            return sock;
        } catch (err) {
            lastError = err as Error;
            sock.close();
            if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") break;
        }
    }
    throw new BfdConfigError(`cannot bind a BFD source socket${local ? ` on ${local}` : ""}: ${lastError?.message}`);
}

function snapshotOf(e: Entry): SessionSnapshot {
    const s = e.session;
    const seconds = Math.floor((Date.now() - e.changedAtMs) / 1000);
    const status = STATE_NAMES[s.state] as SessionSnapshot["status"];
    return {
        id: e.id,
        multihop: e.key.multihop,
        peer: e.spec.peer,
        local: e.spec.local,
        interface: e.key.iface,
        "local-id": s.localDiscr,
        "remote-id": s.remoteDiscr,
        "passive-mode": !!s.config.passive,
        status,
        ...(status === "up" ? { uptime: seconds } : { downtime: seconds }),
        diagnostic: DIAG_NAMES[s.localDiag],
        "remote-diagnostic": DIAG_NAMES[s.remoteDiag],
        "receive-interval": s.requiredMinRxUs / 1000,
        "transmit-interval": s.desiredMinTxUs / 1000,
        "detect-multiplier": s.config.detectMult,
        "remote-receive-interval": s.remoteMinRxUs / 1000,
        "remote-transmit-interval": s.remoteDesiredMinTxUs / 1000,
        "remote-detect-multiplier": s.remoteDetectMult,
        "detection-timeout": detectionTimeUs(s) / 1000,
        "echo-receive-interval": 0,
        "echo-transmit-interval": 0,
        "poll-active": s.pollActive,
        authentication: s.config.auth ? AUTH_NAMES[s.config.auth.type] : "none",
        counters: {
            "control-packet-input": s.counters.rxPackets,
            "control-packet-output": s.counters.txPackets,
            "session-up": s.counters.upTransitions,
            "session-down": s.counters.downTransitions,
            drops: { ...s.counters.drops } as Record<string, number>,
        },
    };
}
