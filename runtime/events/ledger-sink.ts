// The ledger consumer's sink: each event goes to its topic's shard (model/events/topics.ts) as one
// entry keyed by the event's id, timed by the event's own time. The ledger drops a key it already
// holds, so a batch read twice (a crash before the offset commit, a replay) writes nothing twice,
// and a replay into an empty ledger re-derives the same chain.
// A key it already holds with a different payload is an id conflict, never a silent drop: the
// new event is dead-lettered and an `id-conflict` alert goes to the alerts topic (below).
import * as crypto from "node:crypto";
import * as http from "node:http";
import canonicalize from "canonicalize";
import { SinkRefusal, type Delivered } from "./consume";
import { encodeEvent, type NublarEvent } from "../../model/events/schema";
import { topicNamed } from "../../model/events/topics";
import { publishEvents, sendDeadLetters, type EventProducer } from "./kafka";

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
    onAcked?: (batch: Delivered[], ackedAtUs: number, results: { duplicates: number; appended: number; conflicts: number }) => void;
    /** Where id conflicts go: dead letters and `id-conflict` alerts. Without it they are only logged (and counted). */
    conflicts?: { producer: EventProducer; site: string };
    log?: (m: string) => void;
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
                // 400 and 413: the ledger is up and refuses these entries (consume.ts isolates the one at fault and dead-letters it);
                // anything else (503: no primary, 500, no answer) is the ledger unavailable, retried without limit.
                const Refusal = res.statusCode === 400 || res.statusCode === 413 ? SinkRefusal : Error;
                if (res.statusCode !== 200) return reject(new Refusal(`the ledger refused shard ${shard}'s batch (${res.statusCode}): ${text.slice(0, 300)}`));
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

export function ledgerSink(o: LedgerSinkOptions): ((batch: Delivered[]) => Promise<void>) & { stats: { conflicts: number } } {
    const stats = { conflicts: 0 };
    const sink = async (batch: Delivered[]) => {
        const byShard = new Map<string, LedgerEntryItem[]>();
        const delivered = new Map<LedgerEntryItem, Delivered>();
        for (const d of batch) {
            const shard = topicNamed(d.topic)?.shard;
            if (!shard) continue; // the lake only (alerts)
            let list = byShard.get(shard);
            if (!list) byShard.set(shard, (list = []));
            const item = ledgerItemOf(d.event);
            delivered.set(item, d);
            list.push(item);
        }
        let duplicates = 0;
        let appended = 0;
        const conflicts: IdConflict[] = [];
        // Shards are independent databases: write them in parallel; each keeps the batch's order.
        await Promise.all([...byShard].map(async ([shard, items]) => {
            for (let i = 0; i < items.length; i += CHUNK) {
                const chunk = items.slice(i, i + CHUNK);
                const results = await post(o.socket, shard, chunk);
                for (const r of results) r.duplicate ? duplicates++ : appended++;
                const dups = chunk.flatMap((item, k) => (results[k]?.duplicate ? [{ item, seq: (results[k] as unknown as { seq: number }).seq, d: delivered.get(item)! }] : []));
                if (dups.length) conflicts.push(...await idConflicts(o.socket, shard, dups));
            }
        }));
        // Before the batch is acknowledged, so a crash here repeats it (the alert's id is stable).
        if (conflicts.length) await reportConflicts(o, conflicts, (stats.conflicts += conflicts.length));
        o.onAcked?.(batch, Math.round((performance.timeOrigin + performance.now()) * 1000), { duplicates, appended, conflicts: conflicts.length });
    };
    return Object.assign(sink, { stats });
}

// ---- Id conflicts: a key the ledger holds, with another payload ----

interface IdConflict {
    d: Delivered;
    shard: string;
    seq: number;
    held: Record<string, unknown>;
    refused: Record<string, unknown>;
}

/** What makes two events with one id the same: the gateway's receipt (when, from which address) may differ on a resend. */
function content(source: string, payload: Record<string, unknown>): { source: string; payload: Record<string, unknown> } {
    const { receivedAt: _r, address: _a, ...rest } = payload;
    return { source, payload: rest };
}

function getEntries(socket: string, shard: string, from: number, limit: number): Promise<{ seq: number; source: string; payload: Record<string, unknown> }[]> {
    return new Promise((resolve, reject) => {
        const req = http.get({ socketPath: socket, agent, path: `/v1/shards/${encodeURIComponent(shard)}/entries?from=${from}&limit=${limit}`, timeout: 30_000 }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
                const text = Buffer.concat(chunks).toString("utf8");
                if (res.statusCode !== 200) return reject(new Error(`the ledger refused to read shard ${shard} from ${from} (${res.statusCode}): ${text.slice(0, 300)}`));
                try {
                    resolve((JSON.parse(text) as { entries: { seq: number; source: string; payload: Record<string, unknown> }[] }).entries);
                } catch {
                    reject(new Error(`the ledger answered with non-JSON: ${text.slice(0, 200)}`));
                }
            });
        });
        req.on("timeout", () => req.destroy(new Error(`no answer from the ledger at ${socket} within 30 s`)));
        req.on("error", reject);
    });
}

/** The duplicates whose held entry differs, read back in runs of consecutive seqs (a replay's duplicates are one run). */
async function idConflicts(socket: string, shard: string, dups: { item: LedgerEntryItem; seq: number; d: Delivered }[]): Promise<IdConflict[]> {
    const seqs = [...new Set(dups.map((x) => x.seq))].sort((a, b) => a - b);
    const held = new Map<number, { source: string; payload: Record<string, unknown> }>();
    for (let i = 0; i < seqs.length;) {
        let j = i;
        while (j + 1 < seqs.length && seqs[j + 1] === seqs[j] + 1 && seqs[j + 1] - seqs[i] < 10_000) j++;
        for (const e of await getEntries(socket, shard, seqs[i], seqs[j] - seqs[i] + 1)) held.set(e.seq, e);
        i = j + 1;
    }
    const out: IdConflict[] = [];
    for (const x of dups) {
        const h = held.get(x.seq);
        if (!h) throw new Error(`the ledger did not return shard ${shard}'s entry ${x.seq}, which it named for key ${x.item.key}`);
        const a = content(h.source, h.payload);
        const b = content(x.item.source, x.item.payload);
        if (canonicalize(a) !== canonicalize(b)) out.push({ d: x.d, shard, seq: x.seq, held: a.payload, refused: b.payload });
    }
    return out;
}

function conflictAlert(site: string, c: IdConflict, origin: string): NublarEvent {
    const e = c.d.event;
    const p = e.payload as unknown as Record<string, unknown>;
    const node = String(p.sensor ?? p.node ?? e.source);
    const digest = crypto.createHash("sha256").update(`${e.id}\n${canonicalize(c.refused)}`).digest("hex").slice(0, 32);
    const clip = (v: unknown) => canonicalize(v)!.slice(0, 2000);
    return {
        id: `ledger/id-conflict/${digest}`, site, source: "nublar-ledger-sink", time: e.time, type: "alert",
        payload: {
            dedupKey: `nublar/${site}/${node}/id-conflict/${e.id}`, action: "trigger", severity: "error", class: "id-conflict",
            summary: `${e.id}: a ${e.type} whose id the ledger already holds (shard ${c.shard}, seq ${c.seq}) with another payload; the new one was dead-lettered`,
            node, session: null, details: JSON.stringify({ id: e.id, shard: c.shard, seq: c.seq, origin, held: clip(c.held), refused: clip(c.refused) }),
        },
    } as NublarEvent;
}

async function reportConflicts(o: LedgerSinkOptions, conflicts: IdConflict[], total: number): Promise<void> {
    for (const c of conflicts) {
        o.log?.(`ledger: id conflict (${total} so far): ${c.d.event.id} from ${c.d.topic}/${c.d.partition}@${c.d.offset} differs from shard ${c.shard}'s entry ${c.seq}${o.conflicts ? "; dead-lettered, alert raised" : ""}`);
    }
    if (!o.conflicts) return;
    const { producer, site } = o.conflicts;
    const origin = (c: IdConflict) => `${c.d.topic}/${c.d.partition}@${c.d.offset}`;
    await sendDeadLetters(producer, conflicts.map((c) => ({
        value: encodeEvent(c.d.event), key: c.d.event.id, origin: origin(c),
        reason: `id conflict: ${c.d.event.id} is already in the ledger (shard ${c.shard}, seq ${c.seq}) with another payload: held ${canonicalize(c.held)!.slice(0, 300)}, refused ${canonicalize(c.refused)!.slice(0, 300)}`,
    })));
    await publishEvents(producer, conflicts.map((c) => conflictAlert(site, c, origin(c))));
}
