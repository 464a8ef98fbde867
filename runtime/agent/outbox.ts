// How an agent publishes: its event log file (runtime/agent/events.ts) is its outbox. The
// publisher reads what is new in the file, turns each agent event into an envelope, sends them
// with an idempotent acks=all producer, and only then saves how far it got. A crash, a restart
// or a broker outage loses nothing: the file still holds the events, and the envelope id
// (`agent/<node>/<time>/<seq>`, model/vocabulary.ts agentEventKey, the collector's ledger key too)
// lets the ledger drop what is sent twice. States go from the agent's spelling (`down`) to the
// envelope's (`Down`) through the vocabulary's one table, BFD_STATES. The file is rotated at a
// size bound; the outbox finishes the old file before it starts the new one (./event-file.ts).
import * as fs from "node:fs";
import type { AgentEvent } from "./events";
import { EventFileTail, linesOf, type TailPosition } from "./event-file";
import type { NublarEvent } from "../../model/events/schema";
import { agentEventKey, agentSource, BFD_STATES, isBfdState, isBfdStateSymbol, isDiagnostic, isRouteEvent, type BfdStateSymbol, type Diagnostic, type RouteEvent } from "../../model/vocabulary";
import { messageOf, sendDeadLetters, type EventProducer } from "../events/kafka";

/** An agent's state (`down`) as the envelope's symbol (`Down`); a symbol is taken as it is. */
function bfdState(v: unknown, field: string): BfdStateSymbol {
    if (isBfdState(v)) return BFD_STATES[v];
    if (isBfdStateSymbol(v)) return v;
    throw new Error(`${field}: '${String(v)}' is not a BFD state`);
}

function diagnostic(v: unknown): Diagnostic {
    if (isDiagnostic(v)) return v;
    throw new Error(`diagnostic: '${String(v)}' is not a BFD diagnostic`);
}

function routeEvent(v: unknown): RouteEvent {
    if (isRouteEvent(v)) return v;
    throw new Error(`event: '${String(v)}' is not a route event`);
}

const str = (v: unknown, field: string): string => {
    if (typeof v !== "string" || !v) throw new Error(`${field} is missing`);
    return v;
};
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

/** The envelope for one agent event. Throws naming the field when the event cannot be one. */
export function envelopeOfAgentEvent(site: string, e: AgentEvent): NublarEvent {
    if (typeof e !== "object" || e === null || typeof e.at !== "number" || typeof e.seq !== "number" || typeof e.node !== "string") {
        throw new Error("not an agent event (needs at, seq and node)");
    }
    const base = { id: agentEventKey(e.node, e.at, e.seq), site, source: agentSource(e.node), time: Math.round(e.at * 1000) };
    const { at: _at, seq, node, type, ...rest } = e;
    switch (type) {
        case "bfd":
            return {
                ...base, type: "bfd-change",
                payload: {
                    node, seq, session: str(rest.session, "session"), peer: str(rest.peer, "peer"),
                    from: bfdState(rest.from, "from"), to: bfdState(rest.to, "to"), diagnostic: diagnostic(rest.diagnostic),
                    remoteState: rest.remoteState === undefined || rest.remoteState === null ? null : bfdState(rest.remoteState, "remoteState"),
                },
            };
        case "route": {
            const destination = str(rest.destination, "destination");
            const source = typeof rest.source === "string" ? rest.source : undefined;
            const metric = typeof rest.metric === "number" ? rest.metric : null;
            return {
                ...base, type: "route-change",
                payload: {
                    node, seq, event: routeEvent(rest.event), route: `${destination}${source ? ` from ${source}` : ""}${metric !== null ? ` metric ${metric}` : ""}`,
                    prefix: destination, via: typeof rest.dev === "string" ? rest.dev : null, metric, reason: typeof rest.reason === "string" ? rest.reason : null,
                },
            };
        }
        case "nginx":
            return {
                ...base, type: "ingress-change",
                payload: {
                    node, seq, upstream: str(rest.upstream, "upstream"), event: typeof rest.event === "string" ? rest.event : "members",
                    members: strings(rest.members), added: strings(rest.added),
                    removed: typeof rest.member === "string" ? [rest.member] : strings(rest.removed),
                },
            };
        default: {
            // An error can carry a command's whole output: keep notices well under the ledger's limit.
            const fields = JSON.stringify(rest);
            return { ...base, type: "agent-notice", payload: { node, seq, kind: String(type), fields: fields.length > 16_384 ? `${fields.slice(0, 16_384)}... (${fields.length} characters, cut)` : fields } };
        }
    }
}

/**
 * path-latency samples from node-bfd's receive gaps (RxGap): one per session that was Up in the
 * window. RTT is not measured yet (rttMs null); the gap against the detection time is what says
 * how close a session came to going Down.
 */
export function latencySamples(site: string, node: string, gaps: { id: string; peer: string; maxGapMs: number | null; detectionMs: number; up: boolean }[], windowMs: number, timeUs = Math.round((performance.timeOrigin + performance.now()) * 1000)): NublarEvent[] {
    return gaps.filter((g) => g.up && g.maxGapMs !== null && g.detectionMs > 0).map((g) => ({
        id: `latency/${node}/${g.id}/${timeUs}`, site, source: agentSource(node), time: timeUs, type: "path-latency" as const,
        payload: { node, session: g.id, peer: g.peer, rttMs: null, maxGapMs: Math.round(g.maxGapMs! * 1000) / 1000, detectionMs: g.detectionMs, windowMs: Math.round(windowMs) },
    }));
}

export interface OutboxOptions {
    site: string;
    node: string;
    file: string;
    /** Where the read position is kept (written after every acknowledged send). */
    stateFile: string;
    producer: EventProducer;
    log?: (m: string) => void;
    /** At most this many bytes per send. */
    maxBytes?: number;
}

export class Outbox {
    private readonly tail: EventFileTail;
    private running = false;
    private again = false;
    private timer?: NodeJS.Timeout;
    readonly stats = { published: 0, deadLettered: 0, errors: 0, lastError: "" };

    constructor(private readonly o: OutboxOptions) {
        // {"offset": N} from before the log was rotated is read as a position in FILE.
        let saved: TailPosition | undefined;
        try {
            const j = JSON.parse(fs.readFileSync(o.stateFile, "utf8"));
            saved = { offset: Number(j.offset) || 0, ino: typeof j.ino === "number" ? j.ino : undefined, head: typeof j.head === "string" ? j.head : undefined };
        } catch {
            saved = undefined;
        }
        this.tail = new EventFileTail(o.file, saved, (m) => o.log?.(`outbox: ${m}`));
    }

    /** Polls every `intervalMs` (and whenever `kick` is called, for an event just written). */
    start(intervalMs = 500): void {
        this.timer = setInterval(() => this.kick(), intervalMs);
        this.timer.unref();
        this.kick();
    }

    kick(): void {
        if (this.running) {
            this.again = true;
            return;
        }
        void this.flush().catch(() => undefined);
    }

    /** Publishes what is new in the file; resolves when it is acknowledged (or failed, to be retried). */
    async flush(): Promise<void> {
        if (this.running) return;
        this.running = true;
        try {
            do {
                this.again = false;
                try {
                    await this.publishNew();
                } catch (err) {
                    // A full disk or a vanished file must not take the agent down: the next kick retries.
                    this.stats.errors++;
                    this.stats.lastError = (err as Error).message;
                    this.o.log?.(`outbox: ${(err as Error).message}; will retry`);
                    return;
                }
            } while (this.again);
        } finally {
            this.running = false;
        }
    }

    /** Publishes the log from the saved position on, across its rotations (./event-file.ts): each line once, in order. */
    private async publishNew(): Promise<void> {
        const maxBytes = this.o.maxBytes ?? 1 << 20;
        for (let chunk = this.tail.read(maxBytes); chunk; chunk = this.tail.read(maxBytes)) {
            const messages: ReturnType<typeof messageOf>[] = [];
            const dead: { value: Buffer; reason: string; origin: string }[] = [];
            for (const { text, offset } of linesOf(chunk)) {
                try {
                    messages.push(messageOf(envelopeOfAgentEvent(this.o.site, JSON.parse(text) as AgentEvent)));
                } catch (err) {
                    dead.push({ value: Buffer.from(text), reason: `agent ${this.o.node}: ${(err as Error).message}`, origin: `${chunk.path}@${offset}` });
                }
            }
            try {
                if (messages.length) await this.o.producer.send({ messages });
                await sendDeadLetters(this.o.producer, dead);
            } catch (err) {
                this.stats.errors++;
                this.stats.lastError = (err as Error).message;
                this.o.log?.(`outbox: cannot publish to the event bus (${(err as Error).message}); the events wait in ${this.o.file}`);
                return;
            }
            this.stats.published += messages.length;
            this.stats.deadLettered += dead.length;
            this.tail.commit(chunk);
            fs.writeFileSync(`${this.o.stateFile}.tmp`, JSON.stringify(this.tail.position));
            fs.renameSync(`${this.o.stateFile}.tmp`, this.o.stateFile);
        }
    }

    stop(): void {
        if (this.timer) clearInterval(this.timer);
    }
}
