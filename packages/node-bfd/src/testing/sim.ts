// A virtual-clock harness for the session core: two (or more) sessions joined by
// links that can delay, drop or be cut. Deterministic: no real time, seeded random.
import { decode, type State, type Diag } from "../packet";
import { createSession, nextDeadline, step, type Session, type SessionAction, type SessionConfig, type SessionEvent } from "../session";

/** Small deterministic PRNG (mulberry32). */
export function seeded(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

export interface Transition {
    at: number;
    node: string;
    from: State;
    to: State;
    diag: Diag;
}

export interface Sent {
    at: number;
    node: string;
    bytes: Buffer;
}

interface InFlight {
    at: number;
    to: string;
    bytes: Buffer;
}

export class Sim {
    now = 0;
    readonly sessions = new Map<string, Session>();
    readonly transitions: Transition[] = [];
    readonly sent: Sent[] = [];
    private readonly peers = new Map<string, string>();
    private readonly flight: InFlight[] = [];
    /** Links that drop everything from this node. */
    readonly cut = new Set<string>();
    /** Optional tap: rewrite or drop (return undefined) a packet in flight. */
    tap?: (from: string, bytes: Buffer) => Buffer | undefined;
    latencyUs = 100;
    readonly random: () => number;

    constructor(seed = 1) {
        this.random = seeded(seed);
    }

    add(name: string, config: SessionConfig, discr: number): void {
        this.sessions.set(name, createSession(config, discr, this.now, this.random));
    }

    connect(a: string, b: string): void {
        this.peers.set(a, b);
        this.peers.set(b, a);
    }

    get(name: string): Session {
        return this.sessions.get(name)!;
    }

    /** Feed an event to a session now and carry out its actions. */
    apply(name: string, event: SessionEvent): SessionAction[] {
        const { session, actions } = step(this.get(name), event, this.now, this.random);
        this.sessions.set(name, session);
        for (const a of actions) {
            if (a.type === "state") this.transitions.push({ at: this.now, node: name, from: a.from, to: a.to, diag: a.diag });
            if (a.type === "send") {
                this.sent.push({ at: this.now, node: name, bytes: a.bytes });
                const to = this.peers.get(name);
                if (!to || this.cut.has(name)) continue;
                const bytes = this.tap ? this.tap(name, a.bytes) : a.bytes;
                if (bytes) this.flight.push({ at: this.now + this.latencyUs, to, bytes });
            }
        }
        return actions;
    }

    /** Run until `until` (µs), processing deliveries and timers in time order. */
    runUntil(until: number): void {
        for (;;) {
            let nextAt = Infinity;
            let next: { kind: "timer"; name: string } | { kind: "deliver"; i: number } | undefined;
            for (const [name, s] of this.sessions) {
                const d = nextDeadline(s);
                if (d !== undefined && d < nextAt) { nextAt = d; next = { kind: "timer", name }; }
            }
            this.flight.forEach((f, i) => {
                if (f.at < nextAt) { nextAt = f.at; next = { kind: "deliver", i }; }
            });
            if (!next || nextAt > until) break;
            this.now = Math.max(this.now, nextAt);
            if (next.kind === "timer") {
                this.apply(next.name, { type: "timer" });
            } else {
                const [f] = this.flight.splice(next.i, 1);
                const decoded = decode(f.bytes);
                if (decoded.ok) this.apply(f.to, { type: "rx", packet: decoded.packet, raw: f.bytes });
            }
        }
        this.now = until;
    }

    run(forUs: number): void {
        this.runUntil(this.now + forUs);
    }
}
