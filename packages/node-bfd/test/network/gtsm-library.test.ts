// GTSM (RFC 5881 §5) enforced by node-bfd itself, with no nftables rule installed by anyone
// else (node-bfd used on its own, outside the nublar agent):
//
//   ns "x" (off-link sender) ---v1--- ns "b" (peer, and router) ---v0--- ns "a" (node-bfd under test)
//
// A Control packet from "x" is forwarded by "b", so it arrives in "a" with hop limit 254.
// An AdminDown with the right discriminators from there must not move the session; the same
// packet from on-link (hop limit 255) does, which shows that the forged packet is right.
// Then: the table goes when the service stops or crashes, and a single-hop session is
// refused where node-bfd cannot enforce GTSM, unless the caller opts out.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { GTSM_TABLE } from "../../src/gtsm";
import { Lab, requireTools, sh, type Speaker } from "./harness";

const lab = new Lab();
let a: string, b: string, x: string, r: string;
let speakerA: Speaker, speakerB: Speaker;
// Unhurried timers: the tests assert "no state change" for a while, and this host is shared.
// A packet that got through would still act at once: an AdminDown takes the session Down on receipt.
const fast = { transmitIntervalMs: 50, receiveIntervalMs: 50, detectMultiplier: 5 };

/** Send `count` Control packets from `ns`, leaving with hop limit 255 (State 0 is AdminDown, diag 7 administratively down). */
function sendControl(ns: string, from: string, to: string, p: { state: number; diag: number; myDiscr: number; yourDiscr: number }, count = 1): void {
    const script = `
        const dgram = require("node:dgram");
        const { encode } = require(${JSON.stringify(path.resolve(__dirname, "../../src/packet.ts"))});
        const s = dgram.createSocket("udp6");
        s.bind({ address: ${JSON.stringify(from)}, port: 0 }, async () => {
            s.setTTL(255);
            const bytes = encode({ version: 1, diag: ${p.diag}, state: ${p.state}, poll: false, final: false, controlPlaneIndependent: false,
                demand: false, multipoint: false, detectMult: 3, myDiscriminator: ${p.myDiscr}, yourDiscriminator: ${p.yourDiscr},
                desiredMinTxUs: 20000, requiredMinRxUs: 20000, requiredMinEchoRxUs: 0 });
            for (let i = 0; i < ${count}; i++) await new Promise((res) => s.send(bytes, 3784, ${JSON.stringify(to)}, res));
            s.close();
        });`;
    const res = spawnSync("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", "-e", script], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
}

// Not `nft -j` for tables: nft 1.0.6 prints an owner table's flags as garbage in JSON.
function tables(ns: string): string[] {
    const out = sh(["ip", "netns", "exec", ns, "nft", "list", "tables", "inet"]);
    return out.split("\n").filter(Boolean).map((line) => line.trim().split(/\s+/)[2]);
}

/** Packets counted by the hop-limit drop rules of table `table` ("inet <name>") in `ns`. */
function dropCounter(ns: string, table: string): number {
    const out = sh(["ip", "netns", "exec", ns, "nft", "-j", "list", "chain", ...table.split(" "), "input"]);
    let packets = 0;
    for (const item of JSON.parse(out).nftables) {
        const expr: any[] | undefined = item.rule?.expr;
        if (!expr?.some((e) => ["hoplimit", "ttl"].includes(e.match?.left?.payload?.field))) continue;
        for (const e of expr) if (e.counter) packets += e.counter.packets;
    }
    return packets;
}

async function until(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((res) => setTimeout(res, 50));
    }
}

before(async () => {
    requireTools("ip", "nft", "setpriv");
    a = lab.ns("a");
    b = lab.ns("b");
    x = lab.ns("x");
    lab.link({ a, b, addresses: [["2001:db8:9::1/64", "2001:db8:9::2/64"]] });
    // The off-link sender sits one router away: its packets are forwarded (hop limit 254).
    lab.link({ a: x, b, addresses: [["2001:db8:7::1/64", "2001:db8:7::2/64"]] });
    lab.route(x, "2001:db8:9::/64", "2001:db8:7::2");
    lab.route(a, "2001:db8:7::/64", "2001:db8:9::2");
    // For the refusals: a namespace of its own, linked to an empty one.
    r = lab.ns("r");
    lab.link({ a: r, b: lab.ns("s"), addresses: [["2001:db8:6::1/64", "2001:db8:6::2/64"]] });
    assert.ok(!tables(a).includes(GTSM_TABLE), "no one else installed a GTSM rule in the namespace under test");
    speakerA = await lab.speaker(a);
    speakerB = await lab.speaker(b);
});

after(async () => {
    await lab.close();
});

test("a single-hop session comes Up, behind a GTSM table node-bfd installed itself", async () => {
    await speakerA.call({ op: "add", id: "ab", spec: { peer: "2001:db8:9::2", local: "2001:db8:9::1", ...fast } });
    await speakerB.call({ op: "add", id: "ba", spec: { peer: "2001:db8:9::1", local: "2001:db8:9::2", ...fast } });
    await speakerA.waitState("ab", "up", 10_000);
    await speakerB.waitState("ba", "up", 10_000);
    const { gtsm } = await speakerA.call({ op: "snapshot" });
    assert.equal(gtsm.mode, "nftables");
    assert.equal(gtsm.owned, true, JSON.stringify(gtsm));
    assert.match(gtsm.table, /^inet node_bfd_gtsm_/);
    assert.ok(tables(a).includes(gtsm.table.split(" ")[1]));
    assert.equal(dropCounter(a, gtsm.table), 0, "our peer's packets arrive with 255");
});

test("an AdminDown with the session's discriminators from one router away (hop limit 254) is dropped: the session stays Up", async () => {
    const ours = await speakerA.session("ab");
    const table: string | undefined = (await speakerA.call({ op: "snapshot" })).gtsm?.table;
    const dropsBefore = table ? dropCounter(a, table) : NaN;
    const rxBefore = ours.counters["control-packet-input"];
    const since = speakerA.events.length;
    sendControl(x, "2001:db8:7::1", "2001:db8:9::1", { state: 0, diag: 7, myDiscr: ours["remote-id"], yourDiscr: ours["local-id"] }, 3);
    await new Promise((res) => setTimeout(res, 500));
    assert.deepEqual(speakerA.events.slice(since).filter((e) => e.event === "state"), [], "no state change");
    const now = await speakerA.session("ab");
    assert.equal(now.status, "up");
    assert.equal(now["remote-diagnostic"], "ok");
    assert.ok(now.counters["control-packet-input"] > rxBefore, "the peer's packets still arrive");
    assert.ok(table, "the snapshot names the GTSM table");
    assert.equal(dropCounter(a, table), dropsBefore + 3, "node-bfd's nftables rule counted the three drops");
});

test("the same AdminDown from on-link (hop limit 255) takes the session Down (the forged packet is right)", async () => {
    sh(["ip", "-n", b, "addr", "add", "2001:db8:9::99/64", "dev", "v0b", "nodad"]);
    const ours = await speakerA.session("ab");
    const since = speakerA.events.length;
    sendControl(b, "2001:db8:9::99", "2001:db8:9::1", { state: 0, diag: 7, myDiscr: ours["remote-id"], yourDiscr: ours["local-id"] });
    const down = await speakerA.waitState("ab", "down", 3_000, since);
    assert.equal(down.diagnostic, "neighbor signaled session down");
    await speakerA.waitState("ab", "up", 10_000, since);
});

test("if the nft process holding the table is killed, node-bfd installs the table again", async () => {
    const first = (await speakerA.call({ op: "snapshot" })).gtsm.table;
    const nft = sh(["pgrep", "-P", String(speakerA.pid), "-x", "nft"]).trim().split("\n");
    assert.equal(nft.length, 1, `one nft -i child: ${nft}`);
    process.kill(Number(nft[0]), "SIGKILL");
    let now: any;
    const deadline = Date.now() + 5_000;
    do {
        await new Promise((res) => setTimeout(res, 50));
        now = (await speakerA.call({ op: "snapshot" })).gtsm;
    } while ((!now.table || now.table === first) && Date.now() < deadline);
    assert.ok(now.table && now.table !== first && now.owned, JSON.stringify(now));
    assert.equal(now.error, undefined);
    assert.ok(!tables(a).includes(first.split(" ")[1]) && tables(a).includes(now.table.split(" ")[1]));
    // And it works: the off-link AdminDown is dropped again.
    const ours = await speakerA.session("ab");
    const since = speakerA.events.length;
    sendControl(x, "2001:db8:7::1", "2001:db8:9::1", { state: 0, diag: 7, myDiscr: ours["remote-id"], yourDiscr: ours["local-id"] });
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(speakerA.events.slice(since).filter((e) => e.event === "state"), []);
    assert.equal(dropCounter(a, now.table), 1);
});

test("the table goes when the service stops, and when its process is killed", async () => {
    const { gtsm } = await speakerA.call({ op: "snapshot" });
    const name = gtsm.table.split(" ")[1];
    await speakerA.stop();
    assert.ok(!tables(a).includes(name), `${name} removed on stop: ${tables(a)}`);

    const crashing = await lab.speaker(a);
    await crashing.call({ op: "add", id: "ab", spec: { peer: "2001:db8:9::2", local: "2001:db8:9::1", ...fast } });
    const mine = (await crashing.call({ op: "snapshot" })).gtsm.table.split(" ")[1];
    assert.ok(tables(a).includes(mine));
    await crashing.kill();
    // The kernel removes an owner table when its owner's netlink socket closes.
    await until(`${mine} to go after SIGKILL`, () => !tables(a).includes(mine), 3_000);
});

test("without the nft command, a single-hop session is refused with a clear message; multihop is not affected", async () => {
    const s = await lab.speaker(r, { env: { PATH: "/nonexistent" } });
    await assert.rejects(s.call({ op: "add", id: "sh", spec: { peer: "2001:db8:6::2", local: "2001:db8:6::1" } }),
        /single-hop session 'sh' refused: node-bfd cannot enforce GTSM \(RFC 5881 §5.*the nft command was not found \(install nftables\).*"off-i-understand"/s);
    await s.call({ op: "add", id: "mh", spec: { peer: "2001:db8:6::2", local: "2001:db8:6::1", multihop: true, allowUnauthenticated: true } });
    const snap = await s.call({ op: "snapshot" });
    assert.deepEqual(snap.sessions.map((x: any) => x.id), ["mh"]);
    assert.equal(snap.gtsm.mode, "nftables");
    assert.match(snap.gtsm.error, /nft command was not found/);
});

test("without CAP_NET_ADMIN, a single-hop session is refused; with gtsm 'off-i-understand' it runs, and says so", async () => {
    const dropCap = ["setpriv", "--bounding-set", "-net_admin", "--"];
    const refused = await lab.speaker(r, { wrap: dropCap });
    await assert.rejects(refused.call({ op: "add", id: "sh", spec: { peer: "2001:db8:6::2", local: "2001:db8:6::1" } }),
        /single-hop session 'sh' refused: node-bfd cannot enforce GTSM.*Operation not permitted.*CAP_NET_ADMIN/s);
    assert.deepEqual((await refused.call({ op: "snapshot" })).sessions, []);
    await refused.stop();

    const optedOut = await lab.speaker(r, { wrap: dropCap, env: { NODE_BFD_GTSM: "off-i-understand" } });
    await optedOut.call({ op: "add", id: "sh", spec: { peer: "2001:db8:6::2", local: "2001:db8:6::1" } });
    const snap = await optedOut.call({ op: "snapshot" });
    assert.deepEqual(snap.sessions.map((x: any) => x.id), ["sh"]);
    assert.deepEqual(snap.gtsm, { mode: "off-i-understand" });
    assert.deepEqual(tables(r), [], "no table installed");
});
