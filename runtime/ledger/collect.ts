// Wires the agents' events into the ledger: tails each node's agent event file (JSON lines,
// runtime/agent/events.ts) and appends every event to a shard, normally `network`. Each event's
// idempotency key is node + its time + its sequence number (model/vocabulary.ts agentEventKey, also
// the id the agent's outbox gives it on the bus), so re-reading a file after a crash or
// restart never duplicates anything; the read offset is saved only after the ledger acknowledges.
// A line that is not valid JSON is not dropped: it is appended as a `malformed-event` entry.
import * as fs from "node:fs";
import type { AppendItem, ShardWriter } from "./writer";
import { agentEventKey, agentSource, malformedAgentLineKey } from "../../model/vocabulary";

export interface CollectedFile {
    node: string;
    file: string;
}

export class EventCollector {
    private offsets: Record<string, number> = {};
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

    private async pollFile(f: CollectedFile): Promise<void> {
        let size: number;
        try {
            size = fs.statSync(f.file).size;
        } catch {
            return; // not created yet: the node's agent has not started
        }
        let offset = this.offsets[f.file] ?? 0;
        if (size < offset) offset = 0; // truncated or replaced: start over (keys dedupe)
        if (size === offset) return;
        const fd = fs.openSync(f.file, "r");
        try {
            const length = Math.min(size - offset, 4 << 20);
            const buf = Buffer.alloc(length);
            fs.readSync(fd, buf, 0, length, offset);
            const end = buf.lastIndexOf(0x0a);
            if (end < 0) return; // no complete line yet
            const items: AppendItem[] = [];
            let at = offset;
            for (const line of buf.subarray(0, end).toString("utf8").split("\n")) {
                if (line.trim()) items.push(this.toItem(f.node, line, at));
                at += Buffer.byteLength(line) + 1;
            }
            try {
                const res = await this.writer.append(items);
                this.stats.appended += res.filter((r) => !r.duplicate).length;
                this.stats.duplicates += res.filter((r) => r.duplicate).length;
                this.offsets[f.file] = offset + end + 1;
                fs.writeFileSync(`${this.stateFile}.tmp`, JSON.stringify(this.offsets));
                fs.renameSync(`${this.stateFile}.tmp`, this.stateFile);
            } catch (err) {
                this.stats.errors++;
                this.log(`collect ${f.file}: ${(err as Error).message}; will retry`);
            }
        } finally {
            fs.closeSync(fd);
        }
    }

    private toItem(node: string, line: string, fileOffset: number): AppendItem {
        try {
            const e = JSON.parse(line) as { at?: unknown; seq?: unknown; type?: unknown };
            if (typeof e !== "object" || e === null || typeof e.at !== "number" || typeof e.seq !== "number") throw new Error("not an agent event (needs at and seq)");
            return { source: agentSource(node), time: e.at, payload: e, key: agentEventKey(node, e.at, e.seq) };
        } catch (err) {
            this.stats.malformed++;
            // Keyed by where it sits in the file, so a re-read does not append it twice.
            return { source: agentSource(node), payload: { type: "malformed-event", reason: (err as Error).message, line: line.slice(0, 4096) }, key: malformedAgentLineKey(node, fileOffset) };
        }
    }

    stop(): void {
        if (this.timer) clearInterval(this.timer);
    }
}
