// Wires the agents' events into the ledger: tails each node's agent event file (JSON lines,
// runtime/agent/events.ts) and appends every event to a shard, normally `network`. Each event's
// idempotency key is node + its time + its sequence number (model/vocabulary.ts agentEventKey, also
// the id the agent's outbox gives it on the bus), so re-reading a file after a crash or
// restart never duplicates anything; the read offset is saved only after the ledger acknowledges.
// A line that is not valid JSON is not dropped: it is appended as a `malformed-event` entry.
// The agent rotates the file at a size bound; the collector finishes the old file, then goes on
// from the start of the new one (runtime/agent/event-file.ts), so no event is lost or read twice.
import * as fs from "node:fs";
import type { AppendItem, ShardWriter } from "./writer";
import { agentEventKey, agentSource, malformedAgentLineKey } from "../../model/vocabulary";
import { EventFileTail, linesOf, type TailPosition } from "../agent/event-file";

export interface CollectedFile {
    node: string;
    file: string;
}

export class EventCollector {
    /** Saved positions by file: {offset, ino, head} (runtime/agent/event-file.ts), or a bare offset from before rotation. */
    private offsets: Record<string, TailPosition | number> = {};
    private readonly tails = new Map<string, EventFileTail>();
    private timer?: NodeJS.Timeout;
    private running = false;
    readonly stats = { appended: 0, duplicates: 0, malformed: 0, errors: 0 };

    constructor(private readonly writer: ShardWriter, private readonly files: CollectedFile[], private readonly stateFile: string, private readonly log: (m: string) => void = () => undefined) {
        try {
            this.offsets = JSON.parse(fs.readFileSync(stateFile, "utf8"));
        } catch {
            this.offsets = {};
        }
    }

    start(intervalMs = 200): void {
        this.timer = setInterval(() => void this.poll(), intervalMs);
        this.timer.unref();
    }

    /** Reads what is new in every file and appends it; resolves when acknowledged. */
    async poll(): Promise<void> {
        if (this.running) return;
        this.running = true;
        try {
            for (const f of this.files) await this.pollFile(f);
        } finally {
            this.running = false;
        }
    }

    private tailOf(f: CollectedFile): EventFileTail {
        let t = this.tails.get(f.file);
        if (!t) {
            const saved = this.offsets[f.file];
            t = new EventFileTail(f.file, typeof saved === "number" ? { offset: saved } : saved, (m) => this.log(`collect: ${m}`));
            this.tails.set(f.file, t);
        }
        return t;
    }

    /** Appends what is new in one node's log, across its rotations: the rest of a rotated file first, then the next, each line once. */
    private async pollFile(f: CollectedFile): Promise<void> {
        const tail = this.tailOf(f);
        // A few chunks a poll: enough to finish a rotated file and start the next, without starving the other files.
        for (let n = 0; n < 8; n++) {
            const chunk = tail.read(4 << 20);
            if (!chunk) return; // nothing new (or not created yet: the node's agent has not started)
            const items = linesOf(chunk).map((l) => this.toItem(f.node, l.text, chunk.fileId, l.offset));
            try {
                const res = items.length ? await this.writer.append(items) : [];
                this.stats.appended += res.filter((r) => !r.duplicate).length;
                this.stats.duplicates += res.filter((r) => r.duplicate).length;
                tail.commit(chunk);
                this.offsets[f.file] = tail.position;
                fs.writeFileSync(`${this.stateFile}.tmp`, JSON.stringify(this.offsets));
                fs.renameSync(`${this.stateFile}.tmp`, this.stateFile);
            } catch (err) {
                this.stats.errors++;
                this.log(`collect ${f.file}: ${(err as Error).message}; will retry`);
                return;
            }
        }
    }

    private toItem(node: string, line: string, fileId: string, fileOffset: number): AppendItem {
        try {
            const e = JSON.parse(line) as { at?: unknown; seq?: unknown; type?: unknown };
            if (typeof e !== "object" || e === null || typeof e.at !== "number" || typeof e.seq !== "number") throw new Error("not an agent event (needs at and seq)");
            return { source: agentSource(node), time: e.at, payload: e, key: agentEventKey(node, e.at, e.seq) };
        } catch (err) {
            this.stats.malformed++;
            // Keyed by where it sits: which file (its id outlives renames) and where in it, so a
            // re-read does not append it twice, and the same offset in another file is another line.
            return { source: agentSource(node), payload: { type: "malformed-event", reason: (err as Error).message, line: line.slice(0, 4096) }, key: `${malformedAgentLineKey(node, fileOffset)}@${fileId}` };
        }
    }

    stop(): void {
        if (this.timer) clearInterval(this.timer);
    }
}
