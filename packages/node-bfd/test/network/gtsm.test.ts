// GTSM (RFC 5881 §5): node-bfd sends with hop limit 255, and the nftables rule from
// gtsmRuleset() drops single-hop BFD that arrives with any other hop limit, which
// Node's dgram could not check itself. Here the table is installed as the nublar agent
// does, before the speakers start: node-bfd finds it and uses it (gtsm-library.test.ts
// covers node-bfd on its own, installing a table itself).
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { GTSM_TABLE, gtsmRuleset } from "../../src/gtsm";
import { Lab, requireTools, sh, type Speaker } from "./harness";

const lab = new Lab();
let a: string, b: string, attacker: string;
let speakerA: Speaker, speakerB: Speaker;

/** Send one BFD Control packet (state Down, Your Discriminator 0) from `ns` with this hop limit. */
function sendForged(ns: string, from: string, to: string, hopLimit: number, myDiscr: number): void {
    const script = `
        const dgram = require("node:dgram");
        const { encode } = require(${JSON.stringify(path.resolve(__dirname, "../../src/packet.ts"))});
        const s = dgram.createSocket("udp6");
        s.bind({ address: ${JSON.stringify(from)}, port: 0 }, () => {
            s.setTTL(${hopLimit});
            const p = { version: 1, diag: 0, state: 1, poll: false, final: false, controlPlaneIndependent: false, demand: false,
                multipoint: false, detectMult: 3, myDiscriminator: ${myDiscr}, yourDiscriminator: 0, desiredMinTxUs: 1000000,
                requiredMinRxUs: 1000000, requiredMinEchoRxUs: 0 };
            s.send(encode(p), 3784, ${JSON.stringify(to)}, () => s.close());
        });`;
    const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
}

function dropCounter(ns: string): number {
    const out = sh(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", GTSM_TABLE]);
    let packets = 0;
    for (const item of JSON.parse(out).nftables) {
        const expr: any[] | undefined = item.rule?.expr;
        if (!expr?.some((e) => e.match?.left?.payload?.field === "hoplimit")) continue;
        for (const e of expr) if (e.counter) packets += e.counter.packets;
    }
    return packets;
}

before(async () => {
    requireTools("ip", "nft");
    a = lab.ns("a");
    b = lab.ns("b");
    attacker = lab.ns("x");
    lab.link({ a, b, addresses: [["2001:db8:9::1/64", "2001:db8:9::2/64"]] });
    // The attacker sits one router away: its packets are forwarded (hop limit decremented).
    lab.link({ a: attacker, b, addresses: [["2001:db8:7::1/64", "2001:db8:7::2/64"]] });
    lab.route(attacker, "2001:db8:9::/64", "2001:db8:7::2");
    lab.route(a, "2001:db8:7::/64", "2001:db8:9::2");
    for (const ns of [a, b]) sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], { input: gtsmRuleset() });
    speakerA = await lab.speaker(a);
    speakerB = await lab.speaker(b);
});

after(async () => {
    await lab.close();
});

test("node-bfd's packets carry hop limit 255: two speakers behind GTSM come Up", async () => {
    const t = { transmitIntervalMs: 20, receiveIntervalMs: 20 };
    await speakerA.call({ op: "add", id: "ab", spec: { peer: "2001:db8:9::2", local: "2001:db8:9::1", ...t } });
    await speakerB.call({ op: "add", id: "ba", spec: { peer: "2001:db8:9::1", local: "2001:db8:9::2", ...t } });
    await speakerA.waitState("ab", "up", 10_000);
    await speakerB.waitState("ba", "up", 10_000);
    assert.equal(dropCounter(a), 0);
});

test("node-bfd finds this table in place and uses it, as it does the agent's: no table of its own", async () => {
    for (const [ns, speaker] of [[a, speakerA], [b, speakerB]] as const) {
        const { gtsm } = await speaker.call({ op: "snapshot" });
        assert.deepEqual(gtsm, { mode: "nftables", table: `inet ${GTSM_TABLE}`, owned: false });
        assert.equal(sh(["ip", "netns", "exec", ns, "nft", "list", "tables"]).trim(), `table inet ${GTSM_TABLE}`);
    }
});

test("a packet with hop limit 254 is dropped by the rule; the session never sees it", async () => {
    // A session expecting a peer that only the attacker claims to be.
    await speakerA.call({ op: "add", id: "victim", spec: { peer: "2001:db8:7::1", local: "2001:db8:9::1", transmitIntervalMs: 20, receiveIntervalMs: 20 } });
    const before = dropCounter(a);
    // Sent with 255 from one hop away, it arrives with 254.
    sendForged(attacker, "2001:db8:7::1", "2001:db8:9::1", 255, 4242);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(dropCounter(a), before + 1, "the nftables rule counted the drop");
    const victim = await speakerA.session("victim");
    assert.equal(victim.status, "down");
    assert.equal(victim.counters["control-packet-input"], 0);
    assert.equal(victim["remote-id"], 0);
});

test("the same packet with hop limit 255 on arrival would have moved the session (the test can fail)", async () => {
    // Sent from a directly connected address, it arrives with 255 and passes the rule.
    sh(["ip", "-n", b, "addr", "add", "2001:db8:9::99/64", "dev", "v0b", "nodad"]);
    await speakerA.call({ op: "add", id: "control", spec: { peer: "2001:db8:9::99", local: "2001:db8:9::1", transmitIntervalMs: 20, receiveIntervalMs: 20 } });
    sendForged(b, "2001:db8:9::99", "2001:db8:9::1", 255, 4343);
    await speakerA.waitState("control", "init", 3_000);
});
