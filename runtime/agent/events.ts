// Structured events: every state change the agent sees or makes, as one JSON object per line.
// They go to a file (the event bus picks them up later), to a ring kept for `nublar events`,
// and to anyone following the stream.
import * as fs from "node:fs";
import * as path from "node:path";

export interface AgentEvent {
    /** Milliseconds since the epoch, with a sub-millisecond fraction. */
    at: number;
    /** Sequence number, increasing for the life of the agent process. */
    seq: number;
    node: string;
    type: "agent" | "bfd" | "route" | "address" | "nginx" | "error";
    [key: string]: unknown;
}

const RING = 2000;

export class EventLog {
    private readonly ring: AgentEvent[] = [];
    private readonly followers = new Set<(e: AgentEvent) => void>();
    private seq = 0;
    private fd?: number;

    constructor(private readonly node: string, file?: string) {
        if (file) {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            this.fd = fs.openSync(file, "a", 0o640);
        }
    }

    emit(type: AgentEvent["type"], fields: Record<string, unknown>, at = performance.timeOrigin + performance.now()): AgentEvent {
        const e: AgentEvent = { at, seq: ++this.seq, node: this.node, type, ...fields };
        this.ring.push(e);
        if (this.ring.length > RING) this.ring.shift();
        if (this.fd !== undefined) {
            try {
                fs.writeSync(this.fd, `${JSON.stringify(e)}\n`);
            } catch {
                // A full disk must not stop forwarding decisions; the ring still has the event.
            }
        }
        for (const f of this.followers) f(e);
        return e;
    }

    recent(limit = 100): AgentEvent[] {
        return limit > 0 ? this.ring.slice(-limit) : [];
    }

    follow(listener: (e: AgentEvent) => void): () => void {
        this.followers.add(listener);
        return () => this.followers.delete(listener);
    }

    close(): void {
        if (this.fd !== undefined) fs.closeSync(this.fd);
        this.fd = undefined;
    }
}
