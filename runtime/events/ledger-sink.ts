// The ledger consumer's sink: each event goes to its topic's shard (model/events/topics.ts) as one
// entry keyed by the event's id, timed by the event's own time. The ledger drops a key it already
// holds, so a batch read twice (a crash before the offset commit, a replay) writes nothing twice,
// and a replay into an empty ledger re-derives the same chain.
import * as http from "node:http";
import type { Delivered } from "./consume";
import type { NublarEvent } from "../../model/events/schema";
import { topicNamed } from "../../model/events/topics";

export interface LedgerEntryItem {
    source: string;
    key: string;
    /** Milliseconds since the epoch (the ledger's unit), exact to the µs. */
    time: number;
    payload: Record<string, unknown>;
}

export function ledgerItemOf(e: NublarEvent): LedgerEntryItem {
    return { source: e.source, key: e.id, time: e.time / 1000, payload: { type: e.type, site: e.site, ...e.payload } };
}

/** The most entries per request: well under the service's body limit. */
const CHUNK = 2000;

export interface LedgerSinkOptions {
    /** The ingest service's unix socket. */
    socket: string;
    /** Called once a batch is acknowledged, with the acknowledgement's time (for latency metrics). */
    onAcked?: (batch: Delivered[], ackedAtUs: number, results: { duplicates: number; appended: number }) => void;
}

// One keep-alive connection pool for the socket: a new connection per batch costs more than the batch.
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function post(socket: string, shard: string, entries: LedgerEntryItem[]): Promise<{ duplicate: boolean }[]> {
    const body = JSON.stringify({ entries });
    return new Promise((resolve, reject) => {
        const req = http.request({ socketPath: socket, agent, method: "POST", path: `/v1/shards/${encodeURIComponent(shard)}/entries`, timeout: 30_000, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
                const text = Buffer.concat(chunks).toString("utf8");
                if (res.statusCode !== 200) return reject(new Error(`the ledger refused shard ${shard}'s batch (${res.statusCode}): ${text.slice(0, 300)}`));
                try {
                    resolve((JSON.parse(text) as { results: { duplicate: boolean }[] }).results);
                } catch {
                    reject(new Error(`the ledger answered with non-JSON: ${text.slice(0, 200)}`));
                }
            });
        });
        req.on("timeout", () => req.destroy(new Error(`no answer from the ledger at ${socket} within 30 s`)));
        req.on("error", reject);
        req.end(body);
    });
}

export function ledgerSink(o: LedgerSinkOptions): (batch: Delivered[]) => Promise<void> {
    return async (batch) => {
        const byShard = new Map<string, LedgerEntryItem[]>();
        for (const d of batch) {
            const shard = topicNamed(d.topic)?.shard;
            if (!shard) continue; // the lake only (alerts)
            let list = byShard.get(shard);
            if (!list) byShard.set(shard, (list = []));
            list.push(ledgerItemOf(d.event));
        }
        let duplicates = 0;
        let appended = 0;
        // Shards are independent databases: write them in parallel; each keeps the batch's order.
        await Promise.all([...byShard].map(async ([shard, items]) => {
            for (let i = 0; i < items.length; i += CHUNK) {
                const results = await post(o.socket, shard, items.slice(i, i + CHUNK));
                for (const r of results) r.duplicate ? duplicates++ : appended++;
            }
        }));
        o.onAcked?.(batch, Math.round((performance.timeOrigin + performance.now()) * 1000), { duplicates, appended });
    };
}
