// The lake consumer's sink: events become Avro object container files (deflate-compressed, with
// the envelope schema inside, readable by Spark, Athena or avro-tools), partitioned by topic,
// date and hour of the event:
//
//   events/<topic>/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset>+<last offset>.avro
//
// Exactly once without a transaction: a file holds one partition's *contiguous* run of offsets,
// files are written whole (temporary name, fsync, rename; S3 puts are atomic) before the offsets
// are committed, and the sink skips any offset at or below the highest one already in the lake.
// A crash after the write but before the commit therefore re-reads messages the lake already
// has, and skips them.
//
// The same event can also be on the bus twice, as two messages: a sensor that resent a reading
// whose 202 it never saw, an agent that republished after a crash. The sink drops an event whose
// id it has written recently (the last RECENT_IDS ids, seeded at start from the files of the
// last two hours), so such a resend is not a second record either. Beyond that window, readers
// can still tell: every record carries its id.
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import * as avro from "avsc";
import { SinkRefusal, type Delivered } from "./consume";
import { ENVELOPE_TYPE, fromAvro, toAvro, type NublarEvent } from "../../model/events/schema";

export interface LakeStore {
    /** Every key under the prefix. */
    list(prefix: string): Promise<string[]>;
    /** Writes the whole object, atomically; never a partial object under `key`. */
    put(key: string, data: Buffer): Promise<void>;
}

/** The lab's lake (and any mounted filesystem): a folder. */
export class DirectoryLake implements LakeStore {
    constructor(readonly root: string) {}

    async list(prefix: string): Promise<string[]> {
        const base = path.join(this.root, prefix);
        if (!fs.existsSync(base)) return [];
        return (fs.readdirSync(base, { recursive: true }) as string[]).filter((f) => f.endsWith(".avro")).map((f) => path.posix.join(prefix, f.split(path.sep).join("/")));
    }

    async get(key: string): Promise<Buffer> {
        return fs.readFileSync(path.join(this.root, key));
    }

    async put(key: string, data: Buffer): Promise<void> {
        const file = path.join(this.root, key);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const tmp = `${file}.tmp-${process.pid}`;
        const fd = fs.openSync(tmp, "w", 0o640);
        try {
            fs.writeSync(fd, data);
            fs.fsyncSync(fd);
        } finally {
            fs.closeSync(fd);
        }
        fs.renameSync(tmp, file);
        // The rename itself must survive a power cut too.
        const dirFd = fs.openSync(path.dirname(file), "r");
        try {
            fs.fsyncSync(dirFd);
        } finally {
            fs.closeSync(dirFd);
        }
    }
}

/** One Avro container file holding these events, deflate-compressed. */
export function avroFile(events: NublarEvent[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        const enc = new avro.streams.BlockEncoder(ENVELOPE_TYPE, { codec: "deflate", codecs: { deflate: zlib.deflateRaw } } as never);
        enc.on("data", (c: Buffer) => chunks.push(c));
        enc.on("end", () => resolve(Buffer.concat(chunks)));
        enc.on("error", reject);
        for (const e of events) enc.write(toAvro(e));
        enc.end();
    });
}

/** Reads an Avro container file back into envelopes (tests, analytics). */
export function readAvroFile(data: Buffer): Promise<NublarEvent[]> {
    return new Promise((resolve, reject) => {
        const out: NublarEvent[] = [];
        const dec = new avro.streams.BlockDecoder({ codecs: { deflate: zlib.inflateRaw } } as never);
        dec.on("data", (r: Parameters<typeof fromAvro>[0]) => {
            const e = fromAvro(r);
            if (e) out.push(e);
        });
        dec.on("end", () => resolve(out));
        dec.on("error", reject);
        dec.end(data);
    });
}

const FILE = /\/([^/+]+)\+(\d+)\+(\d{20})\+(\d{20})\.avro$/;
const pad = (n: bigint) => n.toString().padStart(20, "0");

export function lakeKey(topic: string, partition: number, timeUs: number, first: bigint, last: bigint): string {
    const d = new Date(Math.floor(timeUs / 1000));
    const date = d.toISOString().slice(0, 10);
    const hour = d.toISOString().slice(11, 13);
    return `events/${topic}/date=${date}/hour=${hour}/${topic}+${partition}+${pad(first)}+${pad(last)}.avro`;
}

export interface LakeSinkStats {
    files: number;
    written: number;
    /** Messages at or below the lake's high offset: read again after a crash. */
    skipped: number;
    /** Events whose id the lake already holds: the same event sent twice. */
    resends: number;
}

/** How many recent ids the sink remembers to drop resends (about 50 bytes each). */
export const RECENT_IDS = 500_000;

/** Insertion-ordered, bounded: the oldest id goes when a new one comes and the set is full. */
class RecentIds {
    private readonly ids = new Set<string>();
    constructor(private readonly max: number) {}
    has(id: string) {
        return this.ids.has(id);
    }
    add(id: string) {
        this.ids.add(id);
        if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as string);
    }
}

export function lakeSink(store: LakeStore & { get?(key: string): Promise<Buffer> }, stats: LakeSinkStats = { files: 0, written: 0, skipped: 0, resends: 0 }, recentIds = RECENT_IDS): { handle: (batch: Delivered[]) => Promise<void>; stats: LakeSinkStats } {
    /** The highest offset the lake holds, per topic and partition (-1: none); loaded per topic on first use. */
    const high = new Map<string, Map<number, bigint>>();
    const recent = new RecentIds(recentIds);

    async function highFor(topic: string): Promise<Map<number, bigint>> {
        let m = high.get(topic);
        if (m) return m;
        m = new Map();
        const keys = await store.list(`events/${topic}/`);
        for (const key of keys) {
            const f = FILE.exec(key);
            if (!f) continue;
            const p = Number(f[2]);
            const last = BigInt(f[4]);
            if (last > (m.get(p) ?? -1n)) m.set(p, last);
        }
        // Seed the recent ids from the last two hours' files (the newest folders sort last).
        const hours = [...new Set(keys.map((k) => k.slice(0, k.lastIndexOf("/"))))].sort().slice(-2);
        if (store.get) {
            for (const key of keys.filter((k) => hours.includes(k.slice(0, k.lastIndexOf("/"))))) {
                for (const e of await readAvroFile(await store.get(key))) recent.add(e.id);
            }
        }
        high.set(topic, m);
        return m;
    }

    async function handle(batch: Delivered[]): Promise<void> {
        // Per partition, in offset order: runs of consecutive events in the same hour become one file each.
        const parts = new Map<string, Delivered[]>();
        for (const d of batch) {
            const k = `${d.topic}\u0000${d.partition}`;
            let list = parts.get(k);
            if (!list) parts.set(k, (list = []));
            list.push(d);
        }
        for (const list of parts.values()) {
            list.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
            const { topic, partition } = list[0];
            const marks = await highFor(topic);
            const done = marks.get(partition) ?? -1n;
            const unseen = list.filter((d) => d.offset > done);
            stats.skipped += list.length - unseen.length;
            const inBatch = new Set<string>();
            const fresh = unseen.filter((d) => {
                if (recent.has(d.event.id) || inBatch.has(d.event.id)) return false;
                inBatch.add(d.event.id);
                return true;
            });
            stats.resends += unseen.length - fresh.length;
            let run: Delivered[] = [];
            const hourOf = (d: Delivered) => Math.floor(d.event.time / 3_600_000_000);
            const write = async () => {
                if (!run.length) return;
                const first = run[0].offset;
                const last = run[run.length - 1].offset;
                // What the events themselves cannot be made into is a refusal (consume.ts isolates the
                // event and dead-letters it); the store failing is the lake unavailable, retried.
                let key: string;
                let data: Buffer;
                try {
                    key = lakeKey(topic, partition, run[0].event.time, first, last);
                    data = await avroFile(run.map((d) => d.event));
                } catch (err) {
                    throw new SinkRefusal(`the lake cannot write ${run.length === 1 ? `event ${run[0].event.id}` : `${run.length} events`}: ${(err as Error).message}`);
                }
                await store.put(key, data);
                marks.set(partition, last);
                for (const d of run) recent.add(d.event.id);
                stats.files++;
                stats.written += run.length;
                run = [];
            };
            for (const d of fresh) {
                if (run.length && hourOf(run[0]) !== hourOf(d)) await write();
                run.push(d);
            }
            await write();
        }
    }

    return { handle, stats };
}
