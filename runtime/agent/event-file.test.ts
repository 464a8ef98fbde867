// The agent's event log rotates at a size bound, and its readers follow it: the outbox here,
// the ledger's collector in runtime/ledger/collect.test.ts. A writer rotates many times while a
// reader tails; every event is read exactly once and in order, and the log's files never hold
// more than the bound.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EventLog } from "./events";
import { EventFileTail, linesOf, rotatedPath } from "./event-file";
import type { EventProducer } from "../events/kafka";
import { Outbox } from "./outbox";
import { decodeEvent } from "../../model/events/schema";
import { prng } from "../../model/testing/prng";

const MAX = 4096;
const KEEP = 2;

function tmp(t: { after: (fn: () => void) => void }): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-eventlog-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    return dir;
}

/** Bytes in FILE and every FILE.<i>. */
function diskUse(file: string): { bytes: number; files: number } {
    let bytes = 0;
    let files = 0;
    for (let i = 0; i <= 20; i++) {
        try {
            bytes += fs.statSync(rotatedPath(file, i)).size;
            files++;
        } catch {
            // not there
        }
    }
    return { bytes, files };
}


function bus() {
    const seqs: number[] = [];
    let down = false;
    const producer: EventProducer = {
        async send(o) {
            if (down) throw new Error("connect ECONNREFUSED");
            for (const m of o.messages as { value: Buffer }[]) {
                const d = decodeEvent(m.value);
                assert.ok(d.ok);
                seqs.push((d.event.payload as { seq: number }).seq);
            }
            return {};
        },
        async close() {},
    };
    return { seqs, producer, setDown: (v: boolean) => (down = v) };
}

const emitOne = (log: EventLog, i: number, rnd: () => number) =>
    log.emit("bfd", { session: `path/n${i % 7}/provider-a`, peer: "fd00::2", from: "up", to: "down", diagnostic: "control detection time expired", remoteState: "up", pad: "x".repeat(Math.floor(rnd() * 300)) } as never);

test("the event log rotates before a file passes its bound and keeps `keep` old files: the log never holds more than (keep + 1) x maxBytes", (t) => {
    const file = path.join(tmp(t), "events.jsonl");
    const log = new EventLog("gate", file, { maxBytes: MAX, keep: KEEP });
    const rnd = prng(1);
    let peak = 0;
    for (let i = 0; i < 2000; i++) {
        emitOne(log, i, rnd);
        const use = diskUse(file);
        peak = Math.max(peak, use.bytes);
        assert.ok(use.bytes <= (KEEP + 1) * MAX, `${use.bytes} bytes on disk after event ${i + 1}`);
        assert.ok(use.files <= KEEP + 1);
    }
    assert.ok(log.stats.rotations > 50, `rotated ${log.stats.rotations} times`);
    for (const i of [0, 1, 2]) assert.ok(fs.statSync(rotatedPath(file, i)).size <= MAX);
    assert.equal(fs.existsSync(rotatedPath(file, KEEP + 1)), false);
    // What is kept is the newest events, in order, ending with the last one.
    const seqs = [KEEP, 1, 0].flatMap((i) => fs.readFileSync(rotatedPath(file, i), "utf8").trim().split("\n").map((l) => JSON.parse(l).seq as number));
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, k) => 2000 - seqs.length + 1 + k));
    assert.equal(log.recent(1)[0].seq, 2000, "the ring is not affected");
    t.diagnostic(`bound ${(KEEP + 1) * MAX} bytes (maxBytes ${MAX}, keep ${KEEP}); peak on disk ${peak} bytes over ${log.stats.rotations} rotations`);
    log.close();
});

test("the outbox follows the rotations: a writer rotating many times while it tails, through outages and restarts, publishes every event once, in order", async (t) => {
    const dir = tmp(t);
    const file = path.join(dir, "events.jsonl");
    const stateFile = path.join(dir, "outbox.json");
    const log = new EventLog("gate", file, { maxBytes: MAX, keep: KEEP });
    const { seqs, producer, setDown } = bus();
    let box = new Outbox({ site: "lab", node: "gate", file, stateFile, producer, maxBytes: 1500 });
    const rnd = prng(7);
    const N = 3000;
    let peak = 0;
    for (let i = 0; i < N; i++) {
        emitOne(log, i, rnd);
        peak = Math.max(peak, diskUse(file).bytes);
        const r = rnd();
        // Sometimes right away, sometimes after a rotation or two (never more than KEEP behind).
        if (r < 0.3) await box.flush();
        else if (r < 0.31) {
            setDown(true);
            await box.flush();
            setDown(false);
        } else if (r < 0.32) box = new Outbox({ site: "lab", node: "gate", file, stateFile, producer, maxBytes: 1500 }); // a restarted agent
        if (i % 25 === 24) await box.flush();
    }
    await box.flush();
    assert.ok(log.stats.rotations > 80, `rotated ${log.stats.rotations} times`);
    assert.deepEqual(seqs, Array.from({ length: N }, (_, k) => k + 1), "every event once, in order");
    assert.ok(peak <= (KEEP + 1) * MAX, `peak on disk ${peak}`);
    t.diagnostic(`${N} events over ${log.stats.rotations} rotations: ${seqs.length} published, peak on disk ${peak} of ${(KEEP + 1) * MAX} bytes`);
    log.close();
});

test("a writer in another process rotating as fast as it can while a reader tails: every line once, in order", async (t) => {
    const dir = tmp(t);
    const file = path.join(dir, "events.jsonl");
    const progress = path.join(dir, "progress");
    fs.writeFileSync(progress, "-1");
    const N = 20_000;
    // The project's EventLog in a child process, a rotation about every 20 events, as fast as it
    // can, except that it never gets more than 40 events (two files) ahead of the reader: a
    // reader descheduled for a while must not make the test fail; only a race in following may.
    const script = `
        const fs = require("node:fs");
        const { EventLog } = require(${JSON.stringify(path.join(__dirname, "events.ts"))});
        const log = new EventLog("gate", ${JSON.stringify(file)}, { maxBytes: 4096, keep: 3 });
        let i = 0;
        const burst = () => {
            const read = Number(fs.readFileSync(${JSON.stringify(progress)}, "utf8")) || -1;
            for (let k = 0; k < 10 && i < ${N} && i - read < 40; k++, i++) log.emit("agent", { event: "tick", i, pad: "y".repeat(i % 200) });
            if (i < ${N}) setImmediate(burst); else { log.close(); console.log(JSON.stringify(log.stats)); }
        };
        burst();`;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const done = new Promise<number | null>((r) => child.on("exit", r));
    let exited = false;
    void done.then(() => (exited = true));
    const notes: string[] = [];
    const tail = new EventFileTail(file, undefined, (m) => notes.push(m));
    const got: number[] = [];
    const readAll = () => {
        for (let c = tail.read(2048); c; c = tail.read(2048)) {
            for (const l of linesOf(c)) got.push(JSON.parse(l.text).i);
            tail.commit(c);
        }
        fs.writeFileSync(progress, String(got.length ? got[got.length - 1] : -1));
    };
    while (!exited) {
        readAll();
        await new Promise((r) => setImmediate(r));
    }
    assert.equal(await done, 0);
    readAll();
    const stats = JSON.parse(out);
    assert.ok(stats.rotations > 500, `rotated ${stats.rotations} times`);
    assert.deepEqual(notes, [], "never lost its place");
    assert.equal(got.length, N, "nothing lost, nothing twice");
    assert.deepEqual(got, Array.from({ length: N }, (_, k) => k));
    t.diagnostic(`${N} lines over ${stats.rotations} rotations in another process, all read once, in order`);
});

test("readers of a log rotated by renames (as logrotate does) finish the old file before the new one", async (t) => {
    // Independent of EventLog: FILE renamed to FILE.1, a new FILE started, by hand.
    const dir = tmp(t);
    const file = path.join(dir, "events.jsonl");
    const stateFile = path.join(dir, "outbox.json");
    const { seqs, producer } = bus();
    const box = new Outbox({ site: "lab", node: "gate", file, stateFile, producer });
    const line = (seq: number) => `${JSON.stringify({ at: 1_795_000_000_000 + seq, seq, node: "gate", type: "agent", event: "x", pad: "z".repeat(seq % 50) })}\n`;
    let seq = 0;
    for (let round = 0; round < 5; round++) {
        for (let k = 0; k < 10; k++) fs.appendFileSync(file, line(++seq));
        await box.flush();
        for (let k = 0; k < 3; k++) fs.appendFileSync(file, line(++seq)); // written after the last read...
        if (fs.existsSync(`${file}.1`)) fs.renameSync(`${file}.1`, `${file}.2`);
        fs.renameSync(file, `${file}.1`); // ...then rotated
        fs.appendFileSync(file, line(++seq));
    }
    await box.flush();
    assert.deepEqual(seqs, Array.from({ length: seq }, (_, k) => k + 1));
});

test("a reader further behind than the files kept starts again from the oldest kept, and says so; an old {offset} state is read as FILE's", async (t) => {
    const dir = tmp(t);
    const file = path.join(dir, "events.jsonl");
    const log = new EventLog("gate", file, { maxBytes: 1024, keep: 1 });
    for (let i = 0; i < 5; i++) log.emit("agent", { event: "early", i });
    const messages: string[] = [];
    const tail = new EventFileTail(file, undefined, (m) => messages.push(m));
    const first = tail.read(1 << 20)!;
    tail.commit(first);
    assert.equal(linesOf(first).length, 5);
    for (let i = 0; i < 200; i++) log.emit("agent", { event: "late", i }); // many rotations: its file is gone
    const got: number[] = [];
    for (let c = tail.read(1 << 20); c; c = tail.read(1 << 20)) {
        got.push(...linesOf(c).map((l) => JSON.parse(l.text).seq as number));
        tail.commit(c);
    }
    assert.match(messages.join("\n"), /no longer there .* events in between may be lost/);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, k) => 205 - got.length + 1 + k), "the oldest kept to the newest, in order");
    log.close();

    // A position saved before rotation existed: a bare offset, taken as FILE's.
    const legacy = path.join(dir, "legacy.jsonl");
    fs.writeFileSync(legacy, '{"a":1}\n{"a":2}\n{"a":3}\n');
    const old = new EventFileTail(legacy, { offset: 8 });
    assert.deepEqual(linesOf(old.read(1024)!).map((l) => l.text), ['{"a":2}', '{"a":3}']);
    // A rotated file's last line cut short (a write that failed half way) is still returned, once.
    fs.appendFileSync(legacy, '{"a":4');
    const cut = new EventFileTail(legacy);
    cut.commit(cut.read(1024)!);
    fs.renameSync(legacy, `${legacy}.1`);
    fs.writeFileSync(legacy, '{"a":5}\n');
    const rest: string[] = [];
    for (let c = cut.read(1024); c; c = cut.read(1024)) rest.push(...linesOf(c).map((l) => l.text)), cut.commit(c);
    assert.deepEqual(rest, ['{"a":4', '{"a":5}']);
});
