// The lake sink: Avro container files partitioned by topic, date and hour, and exactly once
// across a crash between writing a file and committing the offsets.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as avro from "avsc";
import type { Delivered } from "./consume";
import { DirectoryLake, lakeKey, lakeSink, readAvroFile } from "./lake-sink";
import type { NublarEvent } from "../../model/events/schema";

const HOUR = 3_600_000_000;
const T0 = Date.UTC(2026, 10, 23, 9, 59, 0) * 1000;

function reading(seq: number, time: number): NublarEvent {
    return { id: `sensor/s1/${seq}`, site: "lab", source: "sensor-gateway", time, type: "sensor-reading", payload: { sensor: "s1", kind: "temperature", value: seq / 10, unit: "C", seq, receivedAt: time, address: "::1" } };
}
const delivered = (offsets: number[], time = (o: number) => T0 + o * 1000): Delivered[] =>
    offsets.map((o) => ({ event: reading(o, time(o)), topic: "nublar.sensors", partition: 0, offset: BigInt(o) }));

async function lakeIds(root: string): Promise<string[]> {
    const lake = new DirectoryLake(root);
    const keys = await lake.list("events/");
    return (await Promise.all(keys.map((k) => readAvroFile(fs.readFileSync(path.join(root, k)))))).flat().map((e) => e.id);
}

test("events become deflate Avro files under topic/date/hour, named by partition and offsets, readable by any Avro reader", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-lake-"));
    try {
        // Offsets 0-2 at 09:59, 3-4 after 10:00: two files.
        const { handle, stats } = lakeSink(new DirectoryLake(root));
        await handle(delivered([0, 1, 2, 3, 4], (o) => T0 + (o >= 3 ? 61_000_000 : 0) + o));
        const keys = (await new DirectoryLake(root).list("events/")).sort();
        assert.deepEqual(keys, [
            lakeKey("nublar.sensors", 0, T0, 0n, 2n),
            lakeKey("nublar.sensors", 0, T0 + HOUR, 3n, 4n),
        ]);
        assert.match(keys[0], /^events\/nublar\.sensors\/date=2026-11-23\/hour=09\/nublar\.sensors\+0\+0{20}\+0{19}2\.avro$/);
        assert.equal(stats.files, 2);
        // A plain avsc decoder, knowing nothing of nublar, reads it with the schema in the file header.
        const records: unknown[] = [];
        await new Promise<void>((resolve, reject) => avro.createFileDecoder(path.join(root, keys[0])).on("data", (r: unknown) => records.push(r)).on("end", () => resolve()).on("error", reject));
        assert.equal(records.length, 3);
        const raw = fs.readFileSync(path.join(root, keys[0]));
        assert.match(raw.subarray(0, 8192).toString("latin1"), /avro\.codec\x0edeflate/);
        assert.deepEqual((await readAvroFile(raw)).map((e) => e.id), ["sensor/s1/0", "sensor/s1/1", "sensor/s1/2"]);
    } finally {
        fs.rmSync(root, { recursive: true, force: true });
    }
});

test("a batch read again after a crash (files written, offsets not committed) adds nothing; a new sink finds its place from the files", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-lake-"));
    try {
        const first = lakeSink(new DirectoryLake(root));
        await first.handle(delivered([0, 1, 2, 3]));
        // The process dies before committing. A new one (no memory) gets 0-3 again, and more.
        const second = lakeSink(new DirectoryLake(root));
        await second.handle(delivered([0, 1, 2, 3, 4, 5]));
        assert.equal(second.stats.skipped, 4);
        assert.equal(second.stats.written, 2);
        const ids = await lakeIds(root);
        assert.deepEqual(ids.sort(), ["sensor/s1/0", "sensor/s1/1", "sensor/s1/2", "sensor/s1/3", "sensor/s1/4", "sensor/s1/5"].sort());
    } finally {
        fs.rmSync(root, { recursive: true, force: true });
    }
});

test("a write that fails half way through a batch (the second hour's file) loses nothing and duplicates nothing on retry", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-lake-"));
    try {
        const dir = new DirectoryLake(root);
        let fail = true;
        const flaky = { list: dir.list.bind(dir), put: async (k: string, d: Buffer) => {
            if (fail && k.includes("hour=10")) throw new Error("disk full");
            return dir.put(k, d);
        } };
        const sink = lakeSink(flaky);
        const batch = delivered([0, 1, 2, 3, 4], (o) => T0 + (o >= 2 ? 61_000_000 : 0));
        await assert.rejects(sink.handle(batch), /disk full/);
        fail = false;
        await sink.handle(batch); // what runConsumer does: retry the same batch
        assert.deepEqual((await lakeIds(root)).sort(), batch.map((d) => d.event.id).sort());
        assert.ok(!fs.readdirSync(root, { recursive: true }).some((f) => String(f).includes(".tmp")), "no temporary file left");
    } finally {
        fs.rmSync(root, { recursive: true, force: true });
    }
});

test("the same event sent twice (a sensor's resend: a new message, same id) is one record, also after a restart", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-lake-"));
    try {
        const first = lakeSink(new DirectoryLake(root));
        await first.handle(delivered([0, 1, 2]));
        const resend = (offset: number, seq: number): Delivered => ({ event: reading(seq, T0 + seq * 1000), topic: "nublar.sensors", partition: 0, offset: BigInt(offset) });
        await first.handle([resend(3, 1), ...delivered([4]), resend(5, 9), resend(6, 9)]);
        assert.equal(first.stats.resends, 2, "a resend of an old event, and the second copy of a new one in the same batch");
        const restarted = lakeSink(new DirectoryLake(root));
        await restarted.handle([resend(7, 2), ...delivered([8])]);
        assert.equal(restarted.stats.resends, 1, "remembered from the files");
        assert.deepEqual((await lakeIds(root)).sort(), ["sensor/s1/0", "sensor/s1/1", "sensor/s1/2", "sensor/s1/4", "sensor/s1/8", "sensor/s1/9"]);
    } finally {
        fs.rmSync(root, { recursive: true, force: true });
    }
});
