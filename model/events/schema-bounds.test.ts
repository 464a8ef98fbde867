// The decoder's bounds (security review, item 1): bytes that claim more than they hold are refused
// quickly, with a reason, in bounded memory; and a fuzz of mutated envelopes never makes
// decodeEvent throw or allocate beyond a bound.
//
// Every check runs in a child process of this file with a 64 MB heap (NUBLAR_DECODE_BOUNDS_CHILD
// says which): a decoder that allocates what a hostile message claims kills that child, and the
// test fails, instead of the test runner dying. (A worker thread's resourceLimits did not
// contain it: V8 aborted the whole process.)
import { test as nodeTest } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as v8 from "node:v8";
import * as avro from "avsc";
import fc from "fast-check";
import { decodeEvent, encodeEvent, MAX_EVENT_BYTES, validateEvent, type NublarEvent } from "./schema";
import { DIAGNOSTICS } from "../vocabulary";
import { avroLong, avroString, ENVELOPE_HEADER, envelopeHead, POISON_41 } from "../../test/helpers/avro-bytes";

// In a child (below), this file registers no tests: it only runs the check it was started for.
const test = (process.env.NUBLAR_DECODE_BOUNDS_CHILD ? () => undefined : nodeTest) as typeof nodeTest;

const HEAP_MB = 64;
/** The most the heap may grow while one message is decoded. */
const GROWTH_BOUND = 10 << 20;
const T = 1_795_400_000_000_000;

const long = avroLong;
const str = avroString;
const header = ENVELOPE_HEADER;
const envelope = (branch: number, id = "x/123") => envelopeHead(branch, id, T);
export { POISON_41 };

/** Hostile messages, each with what its refusal must say. */
const CRAFTED: [string, Buffer, RegExp][] = [
    ["the 41-byte ingress-change claiming 2e8 members", POISON_41, /payload\.members \(IngressChange\): a list of 200000000 items, but only 0 bytes are left/],
    ["an id claiming 2^31 bytes", Buffer.concat([header, long(2 ** 31), Buffer.from("abc")]), /^not valid Avro .*: id: a string of 2147483648 bytes, but only 3 are left/],
    ["the members list as a negative block (count 2e8) with a block size of 2^40", Buffer.concat([envelope(3), str("gate"), str("web"), str("m"), long(-2e8), long(2 ** 40)]), /payload\.members \(IngressChange\): a list block of 1099511627776 bytes/],
    ["a members list claiming 2^62 items", Buffer.concat([envelope(3), str("gate"), str("web"), str("m"), long(2n ** 62n), Buffer.alloc(20, 2)]), /a list of \d+ items, but only 20 bytes are left/],
    ["a union branch of 2e9", envelope(2e9), /payload: union branch 2000000000 of 9/],
    ["an enum index of 2^40", Buffer.concat([envelope(1), str("gate"), str("gw/a"), str("::1"), long(2 ** 40)]), /payload\.from \(BfdChange\): symbol 1099511627776 of an enum of 4/],
    ["a number of 11 bytes", Buffer.concat([header, Buffer.alloc(11, 0xff), Buffer.from([1])]), /id: a number longer than 10 bytes/],
    ["a message that ends inside a number", Buffer.concat([envelope(3), str("gate"), str("web"), str("m"), Buffer.from([0x80, 0x80])]), /the message ends inside a number/],
    ["a message over the size bound", Buffer.concat([header, Buffer.alloc(MAX_EVENT_BYTES)]), new RegExp(`too large: ${MAX_EVENT_BYTES + 2} bytes, an event takes at most ${MAX_EVENT_BYTES}`)],
];

// ---------------------------------------------------------------------------------------------
// The child: runs one check and prints its findings as JSON on the last line of stdout.

function heapUsed(): number {
    return v8.getHeapStatistics().used_heap_size;
}

function childCrafted(): unknown {
    const out: { name: string; ok: boolean; reason?: string; ms: number; grewBytes: number }[] = [];
    for (const [name, buf] of CRAFTED) {
        (globalThis as { gc?: () => void }).gc?.();
        const before = heapUsed();
        const t = performance.now();
        const v = decodeEvent(buf);
        const ms = performance.now() - t;
        out.push({ name, ok: v.ok, reason: v.ok ? undefined : v.reason, ms, grewBytes: heapUsed() - before });
    }
    return out;
}

const word = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/);
const names = fc.array(fc.string({ maxLength: 24 }), { maxLength: 12 });
/** Valid events of every type, with lists and strings of varying lengths. */
const validEvent: fc.Arbitrary<NublarEvent> = fc.record({ id: word.map((w) => `fuzz/${w}`), seq: fc.nat(1_000_000), node: word, s: fc.string({ maxLength: 40 }), a: names, b: names, c: names, x: fc.double({ noNaN: true, noDefaultInfinity: true }), kind: fc.nat(8) }).map(({ id, seq, node, s, a, b, c, x, kind }) => {
    const base = { id, site: "lab", source: "fuzz", time: T + seq };
    const events: NublarEvent[] = [
        { ...base, type: "sensor-reading", payload: { sensor: node, kind: "temperature", value: x, unit: "C", seq, receivedAt: T, address: "::1" } },
        { ...base, type: "bfd-change", payload: { node, session: "gw/a", peer: s, from: "Up", to: "Down", diagnostic: DIAGNOSTICS.controlDetectionTimeExpired, remoteState: seq % 2 ? null : "Init", seq } },
        { ...base, type: "route-change", payload: { node, event: "route-added", route: s, prefix: null, via: s, metric: seq % 1000, reason: null, seq } },
        { ...base, type: "ingress-change", payload: { node, upstream: s, event: "members", members: a, added: b, removed: c, seq } },
        { ...base, type: "path-latency", payload: { node, session: "gw/a", peer: "::1", rttMs: null, maxGapMs: x, detectionMs: 60, windowMs: 5000 } },
        { ...base, type: "deploy", payload: { stack: node, node, generation: seq, outcome: "confirmed", message: s, durationMs: x } },
        { ...base, type: "audit-result", payload: { stack: node, reportId: s, verdict: "pass", contentSha256: s, findings: seq, mandatory: 0, estimatedAvailability: null } },
        { ...base, type: "alert", payload: { dedupKey: s, action: "trigger", severity: "warning", class: "flap-storm", summary: s, node, session: null, details: a.join(",") } },
        { ...base, type: "agent-notice", payload: { node, kind: "error", fields: s, seq } },
    ];
    return events[kind];
});
const wire = validEvent.map((e) => encodeEvent(e));

/** Mutations of valid envelopes: bit flips, truncations, length-field inflations, random bytes, splices. */
const mutated: fc.Arbitrary<Buffer> = fc.oneof(
    fc.tuple(wire, fc.array(fc.tuple(fc.nat(), fc.nat(7)), { minLength: 1, maxLength: 8 })).map(([w, flips]) => {
        const b = Buffer.from(w);
        for (const [pos, bit] of flips) b[2 + (pos % (b.length - 2))] ^= 1 << bit;
        return b;
    }),
    fc.tuple(wire, fc.nat()).map(([w, n]) => w.subarray(0, n % w.length)),
    // A length or count inflated: a big varint written over the bytes at a position (most
    // positions of a short event are a length, a count or a union index), with the rest kept or cut.
    fc.tuple(wire, fc.nat(), fc.oneof(fc.bigInt({ min: 1n << 10n, max: 1n << 62n }), fc.constantFrom(2n * 10n ** 8n, 1n << 31n, 1n << 53n)), fc.boolean(), fc.boolean()).map(([w, pos, n, negative, keepRest]) => {
        const at = 2 + (pos % (w.length - 2));
        const rest = keepRest ? w.subarray(at + 1) : Buffer.alloc(0);
        return Buffer.concat([w.subarray(0, at), long(negative ? -n : n), rest]);
    }),
    fc.uint8Array({ maxLength: 300 }).map((r) => Buffer.concat([header, Buffer.from(r)])),
    fc.uint8Array({ maxLength: 64 }).map((r) => Buffer.from(r)),
    fc.tuple(wire, wire, fc.nat(), fc.nat()).map(([a, b, i, j]) => Buffer.concat([a.subarray(0, i % a.length), b.subarray(j % b.length)])),
);

function childFuzz(): unknown {
    let runs = 0;
    let refused = 0;
    let peak = 0;
    let slowest = 0;
    fc.assert(fc.property(mutated, (buf) => {
        runs++;
        const before = heapUsed();
        const t = performance.now();
        let v: ReturnType<typeof decodeEvent>;
        try {
            v = decodeEvent(buf);
        } catch (err) {
            throw new Error(`decodeEvent threw on ${buf.toString("hex")}: ${(err as Error).message}`);
        }
        slowest = Math.max(slowest, performance.now() - t);
        const grew = heapUsed() - before;
        peak = Math.max(peak, grew);
        if (grew > GROWTH_BOUND) throw new Error(`decoding ${buf.length} bytes grew the heap by ${grew} bytes: ${buf.toString("hex").slice(0, 200)}`);
        if (v.ok) {
            if (!validateEvent(v.event).ok) throw new Error(`accepted an invalid event: ${buf.toString("hex")}`);
        } else {
            refused++;
            if (typeof v.reason !== "string" || !v.reason.length) throw new Error("a refusal without a reason");
        }
    }), { numRuns: 30_000, seed: Number(process.env.NUBLAR_FUZZ_SEED ?? 4242) });
    return { runs, refused, peakGrowthBytes: peak, slowestMs: slowest, heapLimitMb: HEAP_MB };
}

function runChild(mode: string): never {
    const result = mode === "crafted" ? childCrafted() : childFuzz();
    process.stdout.write(`\n${JSON.stringify(result)}\n`);
    process.exit(0);
}

/** Runs this file as a child with a small heap; what it printed, or why it failed. */
function inChild(mode: string): any {
    const env: NodeJS.ProcessEnv = { ...process.env, NUBLAR_DECODE_BOUNDS_CHILD: mode };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--expose-gc", `--max-old-space-size=${HEAP_MB}`, __filename], { env, encoding: "utf8", timeout: 60_000 });
    assert.ok(r.status === 0, `the child (${mode}, ${HEAP_MB} MB heap) failed: status ${r.status}, signal ${r.signal}\n${(r.stderr ?? "").slice(-2000)}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

// ---------------------------------------------------------------------------------------------

if (process.env.NUBLAR_DECODE_BOUNDS_CHILD) runChild(process.env.NUBLAR_DECODE_BOUNDS_CHILD);

test("the review's 41-byte ingress-change claiming 2e8 members is refused at once, with a reason, in bounded memory", () => {
    assert.equal(POISON_41.length, 41);
    // It is what the review describes: avsc reads a valid prefix, then a members count of 2e8.
    const t = avro.Type.forSchema("long");
    assert.equal(t.fromBuffer(POISON_41.subarray(36)), 2e8);
    const [r] = inChild("crafted") as { name: string; ok: boolean; reason: string; ms: number; grewBytes: number }[];
    assert.equal(r.ok, false);
    assert.match(r.reason, CRAFTED[0][2]);
    assert.ok(r.ms < 200, `refused in ${r.ms.toFixed(2)} ms`); // about 0.4 ms; today's code grinds for seconds, then aborts
    assert.ok(r.grewBytes < GROWTH_BOUND, `the heap grew by ${r.grewBytes} bytes`);
    console.log(`  refused in ${r.ms.toFixed(3)} ms, heap growth ${r.grewBytes} bytes (bound ${GROWTH_BOUND}; the child's heap: ${HEAP_MB} MB): ${r.reason}`);
});

test("every length, count, branch and index that claims more than the message holds is refused, naming the field", () => {
    const results = inChild("crafted") as { name: string; ok: boolean; reason: string; ms: number; grewBytes: number }[];
    for (const [i, [name, , reason]] of CRAFTED.entries()) {
        const r = results[i];
        assert.equal(r.ok, false, name);
        assert.match(r.reason, reason, name);
        assert.ok(r.grewBytes < GROWTH_BOUND, `${name}: the heap grew by ${r.grewBytes} bytes`);
        assert.ok(r.ms < 200, `${name}: ${r.ms} ms`);
    }
});

test("the bounds refuse nothing valid: every valid event of every type, with lists and strings, still round-trips", () => {
    fc.assert(fc.property(validEvent, (e) => {
        const back = decodeEvent(encodeEvent(e));
        assert.ok(back.ok, back.ok ? "" : back.reason);
        assert.deepEqual(back.event, e);
    }), { numRuns: 3000 });
});

test("fuzz: 30,000 mutated envelopes (bit flips, truncations, inflated lengths, random bytes, splices): decodeEvent never throws, never grows the heap by 10 MB", () => {
    const r = inChild("fuzz");
    assert.equal(r.runs, 30_000);
    assert.ok(r.peakGrowthBytes < GROWTH_BOUND);
    console.log(`  ${r.runs} mutants, ${r.refused} refused with a reason, the rest decoded to valid events; peak heap growth per decode ${(r.peakGrowthBytes / 1024).toFixed(0)} KiB, slowest ${r.slowestMs.toFixed(2)} ms (child heap ${r.heapLimitMb} MB)`);
});
