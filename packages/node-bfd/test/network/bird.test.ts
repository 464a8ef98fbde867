// node-bfd against BIRD 2 (Debian bird2) with authentication, which FRR 8.4 lacks:
// keyed SHA1 and meticulous keyed SHA1 come Up; a wrong key never does.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import { Lab, requireTools, type Bird, type Speaker } from "./harness";

const lab = new Lab();
let bird: Bird;
let bfd: Speaker;

// One BFD protocol, one interface (veth link) per authentication setup: BIRD takes
// authentication from the interface block.
function birdConfig(sha1If: string, meticulousIf: string, wrongIf: string): string {
    const block = (ifname: string, auth: string, key: string, id: number) => `
  interface "${ifname}" {
    min rx interval 10 ms;
    min tx interval 10 ms;
    multiplier 3;
    authentication ${auth};
    password "${key}" { id ${id}; };
  };`;
    return `
log "${lab.dir}/bird.log" all;
router id 192.0.2.2;
protocol device { }
protocol bfd {${block(sha1If, "keyed sha1", "nublar-sha1", 1)}${block(meticulousIf, "meticulous keyed sha1", "nublar-meticulous", 7)}${block(wrongIf, "keyed sha1", "not-the-key", 1)}
  neighbor 2001:db8:a::1 dev "${sha1If}" local 2001:db8:a::2;
  neighbor 2001:db8:b::1 dev "${meticulousIf}" local 2001:db8:b::2;
  neighbor 2001:db8:c::1 dev "${wrongIf}" local 2001:db8:c::2;
}
`;
}

const ifs: Record<string, string> = {};

before(async () => {
    requireTools("ip", "bird", "birdc");
    const n = lab.ns("n");
    const b = lab.ns("b");
    const birdIfs: string[] = [];
    for (const net of ["a", "b", "c"]) {
        const { ifA, ifB } = lab.link({ a: n, b, addresses: [[`2001:db8:${net}::1/64`, `2001:db8:${net}::2/64`]] });
        ifs[net] = ifA;
        birdIfs.push(ifB);
    }
    bird = lab.bird(b, birdConfig(birdIfs[0], birdIfs[1], birdIfs[2]));
    bfd = await lab.speaker(n);
});

after(async () => {
    await lab.close();
});

const timers = { transmitIntervalMs: 10, receiveIntervalMs: 10, detectMultiplier: 3 };

test("keyed SHA1: node-bfd and BIRD come Up", async () => {
    await bfd.call({ op: "add", id: "sha1", spec: {
        peer: "2001:db8:a::2", local: "2001:db8:a::1", interface: ifs.a, ...timers,
        auth: { type: "keyed-sha1", keys: [{ id: 1, secret: "nublar-sha1" }], sendKeyId: 1 },
    } });
    await bfd.waitState("sha1", "up", 15_000);
    await bird.waitSession("2001:db8:a::1", "Up", 5_000);
    const ours = await bfd.session("sha1");
    assert.equal(ours.authentication, "keyed-sha1");
    assert.deepEqual(ours.counters.drops, {});
});

test("meticulous keyed SHA1: node-bfd and BIRD come Up and stay Up", async () => {
    await bfd.call({ op: "add", id: "meticulous", spec: {
        peer: "2001:db8:b::2", local: "2001:db8:b::1", interface: ifs.b, ...timers,
        auth: { type: "meticulous-keyed-sha1", keys: [{ id: 7, secret: "nublar-meticulous" }], sendKeyId: 7 },
    } });
    await bfd.waitState("meticulous", "up", 15_000);
    await bird.waitSession("2001:db8:b::1", "Up", 5_000);
    // Let a few hundred sequence numbers go by at 10 ms (BIRD switches to fast timers after Up).
    let ours = await bfd.session("meticulous");
    const deadline = Date.now() + 10_000;
    while (ours.counters["control-packet-input"] < 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        ours = await bfd.session("meticulous");
    }
    assert.equal(ours.status, "up");
    assert.ok(ours.counters["control-packet-input"] >= 200, `packets flowing: ${ours.counters["control-packet-input"]}`);
    assert.deepEqual(ours.counters.drops, {}, "every sequence number was accepted");
});

test("a wrong key: no session, and the drops are counted as bad digests", async () => {
    await bfd.call({ op: "add", id: "wrong", spec: {
        peer: "2001:db8:c::2", local: "2001:db8:c::1", interface: ifs.c, ...timers,
        auth: { type: "keyed-sha1", keys: [{ id: 1, secret: "nublar-sha1" }], sendKeyId: 1 },
    } });
    await new Promise((r) => setTimeout(r, 3_000));
    const ours = await bfd.session("wrong");
    assert.notEqual(ours.status, "up");
    assert.ok((ours.counters.drops["auth-digest"] ?? 0) >= 1, JSON.stringify(ours.counters));
    assert.equal(ours["remote-id"], 0);
    assert.doesNotMatch(bird.sessions(), /2001:db8:c::1\s+\S+\s+Up/);
});
