// Fuzz node-bfd's receive path: random and mutated packets through decode, demux and
// the session state machine. Expect no exception, bounded memory, and no session moved
// by a packet that fails validation or authentication.
//   node --import tsx bench/bfd-fuzz.ts [packets]        (default 1,000,000)
import { AuthType, decode, Demux, encodeSigned, encode, step, State, type AuthConfig, type Session } from "../packages/node-bfd/src";
import { Sim, seeded } from "../packages/node-bfd/src/testing/sim";
import { summary, writeResult } from "./machine";

const total = Number(process.argv[2] ?? 1_000_000);
const rnd = seeded(20261122);
const MS = 1000;

// Two sessions brought Up on a virtual clock: one with meticulous keyed SHA1, one without auth.
const auth: AuthConfig = { type: AuthType.MeticulousKeyedSHA1, keys: [{ id: 1, secret: Buffer.from("fuzz-key") }], sendKeyId: 1 };
const sim = new Sim(3);
const timers = { desiredMinTxUs: 10 * MS, requiredMinRxUs: 10 * MS, detectMult: 3 };
sim.add("secure", { ...timers, auth }, 1001);
sim.add("secure-peer", { ...timers, auth }, 2001);
sim.connect("secure", "secure-peer");
const plainSim = new Sim(4);
plainSim.add("plain", timers, 1002);
plainSim.add("plain-peer", timers, 2002);
plainSim.connect("plain", "plain-peer");
sim.run(3_000 * MS);
plainSim.run(3_000 * MS);
const sessions: Record<string, Session> = { secure: sim.get("secure"), plain: plainSim.get("plain") };
if (sessions.secure.state !== State.Up || sessions.plain.state !== State.Up) throw new Error("setup: sessions did not come up");

const demux = new Demux<string>();
demux.add(1001, { peer: "2001:db8::2", multihop: false }, "secure");
demux.add(1002, { peer: "2001:db8::3", multihop: false }, "plain");

// Seeds for mutation: valid packets as the peers would send them.
const seeds: Buffer[] = [
    encodeSigned({ ...basePacket(2001, 1001) }, auth, 12345),
    // In the replay window, so that mutations reach the digest check.
    encodeSigned({ ...basePacket(2001, 1001) }, auth, (sessions.secure.authRx.rcvSeq + 1) >>> 0),
    encode(basePacket(2002, 1002)),
    encode({ ...basePacket(2002, 0), state: State.Down }),
    encodeSigned({ ...basePacket(2001, 1001), poll: true }, { ...auth, type: AuthType.KeyedMD5 }, 1),
    encodeSigned({ ...basePacket(2001, 1001) }, { ...auth, type: AuthType.SimplePassword }, 1),
];

function basePacket(my: number, your: number) {
    return {
        version: 1, diag: 0, state: State.Up, poll: false, final: false, controlPlaneIndependent: false, demand: false,
        multipoint: false, detectMult: 3, myDiscriminator: my, yourDiscriminator: your, desiredMinTxUs: 10 * MS,
        requiredMinRxUs: 10 * MS, requiredMinEchoRxUs: 0,
    };
}

function mutate(seed: Buffer): Buffer {
    const kind = rnd();
    let b = Buffer.from(seed);
    if (kind < 0.5) {
        const flips = 1 + Math.floor(rnd() * 4);
        for (let i = 0; i < flips; i++) b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
    } else if (kind < 0.65) {
        b = b.subarray(0, Math.floor(rnd() * b.length));
    } else if (kind < 0.8) {
        b = Buffer.concat([b, Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)))]);
    } else {
        const i = Math.floor(rnd() * b.length);
        b[i] = Math.floor(rnd() * 256);
        b[3] = Math.floor(rnd() * 80); // the Length field
    }
    return b;
}

function randomBytes(): Buffer {
    const b = Buffer.alloc(Math.floor(rnd() * 96));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
    return b;
}

const reasons: Record<string, number> = {};
let accepted = 0;
let moved = 0;
let violations = 0;
let exceptions = 0;
const heap: number[] = [];
const started = process.hrtime.bigint();
let now = sim.now;

for (let i = 0; i < total; i++) {
    if (i % 100_000 === 0) heap.push(process.memoryUsage().heapUsed);
    const bytes = rnd() < 0.3 ? randomBytes() : mutate(seeds[Math.floor(rnd() * seeds.length)]);
    now += 10; // 10 us between packets, so timers never fire mid-run
    try {
        const d = decode(bytes);
        if (!d.ok) { reasons[d.reason] = (reasons[d.reason] ?? 0) + 1; continue; }
        const found = demux.lookup(d.packet, { peer: "2001:db8::99", multihop: false });
        if (!found.ok) { reasons[found.reason] = (reasons[found.reason] ?? 0) + 1; continue; }
        const before = sessions[found.id];
        const dropsBefore = Object.values(before.counters.drops).reduce((x, y) => x + (y ?? 0), 0);
        const { session } = step(before, { type: "rx", packet: d.packet, raw: bytes }, now, rnd);
        const dropsAfter = Object.values(session.counters.drops).reduce((x, y) => x + (y ?? 0), 0);
        if (dropsAfter > dropsBefore) {
            const reason = Object.entries(session.counters.drops).find(([k, v]) => (v ?? 0) > (before.counters.drops[k as never] ?? 0))![0];
            reasons[`session:${reason}`] = (reasons[`session:${reason}`] ?? 0) + 1;
            // A rejected packet must leave the session exactly as it was, but for the counter.
            const same = session.state === before.state && session.remoteDiscr === before.remoteDiscr && session.lastRxAt === before.lastRxAt &&
                session.detectAt === before.detectAt && session.authRx === before.authRx && session.remoteMinRxUs === before.remoteMinRxUs;
            if (!same) violations++;
        } else {
            accepted++;
            if (session.state !== before.state) moved++;
            // Accepted packets may legitimately change the session; keep the original so the
            // run keeps testing an Up session (and the secure one's replay window stays put).
        }
    } catch (err) {
        exceptions++;
        if (exceptions <= 3) console.error(err);
    }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
heap.push(process.memoryUsage().heapUsed);

const result = {
    packets: total,
    seconds: Math.round(seconds * 100) / 100,
    packetsPerSecond: Math.round(total / seconds),
    exceptions,
    acceptedBySession: accepted,
    acceptedThatChangedState: moved,
    rejectedThatMovedASession: violations,
    dropReasons: reasons,
    heapMiB: summary(heap.map((h) => h / 2 ** 20)),
    verdict: exceptions === 0 && violations === 0 ? "pass" : "FAIL",
};
const file = writeResult("bfd-fuzz", result);
console.log(JSON.stringify(result, null, 2));
console.log(`written to ${file}`);
process.exit(result.verdict === "pass" ? 0 : 1);
