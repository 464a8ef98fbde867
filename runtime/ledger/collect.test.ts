// The ledger's collector follows an agent's event log across its rotations (runtime/agent/event-file.ts):
// with a writer rotating many times while it polls, and restarts in between, every event is
// appended exactly once and in order (test/ledger/service.test.ts runs it against a real ledger).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EventLog } from "../agent/events";
import { rotatedPath } from "../agent/event-file";
import { EventCollector } from "./collect";
import type { AppendItem, ShardWriter } from "./writer";
import { prng } from "../../model/testing/prng";

/** A shard that keeps what it is given, answers duplicates by key as the ledger does, and can be down. */
function shard() {
    const keys = new Set<string>();
    const appended: AppendItem[] = [];
    const counts = { duplicates: 0 };
    let down = false;
    const writer = {
        async append(items: AppendItem[]) {
            if (down) throw new Error("no primary reachable");
            return items.map((it) => {
                const duplicate = keys.has(it.key!);
                if (!duplicate) {
                    keys.add(it.key!);
                    appended.push(it);
                } else counts.duplicates++;
                return { seq: appended.length, hash: "", duplicate };
            });
        },
    } as unknown as ShardWriter;
    return { writer, appended, counts, setDown: (v: boolean) => (down = v) };
}


test("the collector follows the rotated log: every event appended once, in order, across outages and restarts; the log stays under its bound", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-collect-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "events.jsonl");
    const state = path.join(dir, "offsets.json");
    const MAX = 4096;
    const KEEP = 2;
    const log = new EventLog("gate", file, { maxBytes: MAX, keep: KEEP });
    const { writer, appended, counts, setDown } = shard();
    let c = new EventCollector(writer, [{ node: "gate", file }], state);
    const rnd = prng(3);
    const N = 3000;
    let peak = 0;
    let malformed = 0;
    for (let i = 0; i < N; i++) {
        log.emit("route", { event: "route-added", destination: `2001:db8:${i.toString(16)}::/48`, metric: 100, protocol: 199, pad: "r".repeat(Math.floor(rnd() * 300)) } as never);
        let use = 0;
        for (let k = 0; k <= KEEP + 1; k++) use += fs.existsSync(rotatedPath(file, k)) ? fs.statSync(rotatedPath(file, k)).size : 0;
        peak = Math.max(peak, use);
        const r = rnd();
        if (r < 0.3) await c.poll();
        else if (r < 0.31) {
            setDown(true);
            await c.poll();
            setDown(false);
        } else if (r < 0.32) c = new EventCollector(writer, [{ node: "gate", file }], state); // the service restarted
        if (i % 20 === 19) await c.poll();
    }
    // Until it has caught up: a poll takes a few chunks at most.
    for (let k = 0; k < 10; k++) await c.poll();
    const seqs = appended.filter((a) => (a.payload as { type?: string }).type === "route").map((a) => (a.payload as { seq: number }).seq);
    malformed = appended.length - seqs.length;
    assert.equal(malformed, 0);
    assert.deepEqual(seqs, Array.from({ length: N }, (_, k) => k + 1), "every event once, in order");
    assert.equal(counts.duplicates, 0, "and never sent twice: the ledger's keys were not needed to drop a re-read");
    assert.ok(peak <= (KEEP + 1) * MAX, `peak on disk ${peak}`);
    assert.ok(log.stats.rotations > 80);
    t.diagnostic(`${N} events over ${log.stats.rotations} rotations appended once each; peak on disk ${peak} of ${(KEEP + 1) * MAX} bytes`);
    log.close();
});

test("a malformed line at the same offset of two rotated files is two entries, each kept once", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-collect-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "events.jsonl");
    const state = path.join(dir, "offsets.json");
    const { writer, appended } = shard();
    const c = new EventCollector(writer, [{ node: "gate", file }], state);
    const ev = (seq: number) => `${JSON.stringify({ at: 1_795_000_000_000 + seq, seq, node: "gate", type: "agent" })}\n`;
    fs.writeFileSync(file, `${ev(1)}not json\n`);
    await c.poll();
    fs.renameSync(file, `${file}.1`);
    fs.writeFileSync(file, `${ev(2)}not json\n`);
    await c.poll();
    assert.equal(appended.length, 4);
    const keys = appended.filter((a) => (a.payload as { type: string }).type === "malformed-event").map((a) => a.key);
    assert.equal(new Set(keys).size, 2, `distinct keys: ${keys.join(", ")}`);
    // Re-read from scratch (the offsets lost): nothing new.
    fs.rmSync(state);
    const again = new EventCollector(writer, [{ node: "gate", file }], state);
    await again.poll();
    await again.poll();
    assert.deepEqual([again.stats.appended, again.stats.duplicates], [0, 4]);
});
