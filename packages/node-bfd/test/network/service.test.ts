// The client API between two node-bfd speakers: link-local peers with a scope,
// profiles, run-time changes, removal, counters, and clear errors for bad input.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import { Lab, requireTools, sh, type Speaker } from "./harness";

const lab = new Lab();
let a: Speaker, b: Speaker;
let nsA = "";
let ifA = "", ifB = "";
let llA = "", llB = "";

function linkLocal(ns: string, ifname: string): string {
    const out = sh(["ip", "-n", ns, "-6", "-j", "addr", "show", "dev", ifname, "scope", "link"]);
    // iproute2 leaves filtered-out addresses as empty objects in the list.
    return JSON.parse(out)[0].addr_info.find((x: { local?: string }) => x.local).local;
}

before(async () => {
    requireTools("ip");
    const na = lab.ns("a");
    nsA = na;
    const nb = lab.ns("b");
    ({ ifA, ifB } = lab.link({ a: na, b: nb, addresses: [["2001:db8:5::1/64", "2001:db8:5::2/64"]] }));
    // Link-local addresses appear once the links are up.
    await new Promise((r) => setTimeout(r, 200));
    llA = linkLocal(na, ifA);
    llB = linkLocal(nb, ifB);
    a = await lab.speaker(na);
    b = await lab.speaker(nb);
});

after(async () => {
    await lab.close();
});

test("IPv6 link-local peers, with the interface as the address's zone", async () => {
    await a.call({ op: "add", id: "ll", spec: { peer: `${llB}%${ifA}`, local: `${llA}%${ifA}`, transmitIntervalMs: 20, receiveIntervalMs: 20 } });
    await b.call({ op: "add", id: "ll", spec: { peer: `${llA}%${ifB}`, local: `${llB}%${ifB}`, transmitIntervalMs: 20, receiveIntervalMs: 20 } });
    await a.waitState("ll", "up", 10_000);
    await b.waitState("ll", "up", 10_000);
    const s = await a.session("ll");
    assert.equal(s.interface, ifA);
});

test("profiles: a session takes its timers from a profile, and follows it when it changes", async () => {
    await a.call({ op: "profile", name: "fast", profile: { transmitIntervalMs: 30, receiveIntervalMs: 30, detectMultiplier: 4 } });
    await b.call({ op: "profile", name: "fast", profile: { transmitIntervalMs: 30, receiveIntervalMs: 30, detectMultiplier: 4 } });
    await a.call({ op: "add", id: "g", spec: { peer: "2001:db8:5::2", local: "2001:db8:5::1", profile: "fast" } });
    await b.call({ op: "add", id: "g", spec: { peer: "2001:db8:5::1", local: "2001:db8:5::2", profile: "fast" } });
    await a.waitState("g", "up", 10_000);
    let s = await a.session("g");
    assert.equal(s["detect-multiplier"], 4);
    assert.equal(s["transmit-interval"], 30);
    const before = a.events.length;
    await a.call({ op: "profile", name: "fast", profile: { transmitIntervalMs: 40, receiveIntervalMs: 40, detectMultiplier: 4 } });
    await new Promise((r) => setTimeout(r, 500));
    s = await a.session("g");
    assert.equal(s["transmit-interval"], 40);
    assert.equal(s["poll-active"], false);
    assert.equal(s.status, "up");
    assert.ok(!a.events.slice(before).some((e) => e.event === "state" && e.id === "g"));
});

test("counters: packets in and out, transitions", async () => {
    const s = await a.session("g");
    assert.ok(s.counters["control-packet-input"] > 5);
    assert.ok(s.counters["control-packet-output"] > 5);
    assert.equal(s.counters["session-up"], 1);
    assert.equal(s.counters["session-down"], 0);
});

test("removing a session sends AdminDown for a Detection Time, closes its socket, frees its name", async () => {
    const before = b.events.length;
    const rxBefore = (await b.session("g")).counters["control-packet-input"];
    await a.call({ op: "remove", id: "g" });
    const down = await b.waitState("g", "down", 3_000, before);
    assert.equal(down.diagnostic, "neighbor signaled session down");
    assert.equal(await a.session("g"), undefined);
    await new Promise((r) => setTimeout(r, 300));
    // 4 x 40 ms of AdminDown (the profile's multiplier and interval), then silence.
    const rxAfter = (await b.session("g")).counters["control-packet-input"];
    assert.ok(rxAfter - rxBefore >= 4, `AdminDown packets received: ${rxAfter - rxBefore}`);
    const listening = sh(["ip", "netns", "exec", nsA, "ss", "-H", "-uln", "sport", "=", ":3784"]);
    assert.ok(!listening.includes("2001:db8:5::1"), `no socket left on 2001:db8:5::1: ${listening}`);
    await a.call({ op: "add", id: "g", spec: { peer: "2001:db8:5::2", local: "2001:db8:5::1", profile: "fast" } });
    await a.waitState("g", "up", 10_000);
});

test("bad input gets a clear error and changes nothing", async () => {
    const errors: string[] = [];
    const attempt = async (cmd: Record<string, unknown>) => {
        try {
            await a.call(cmd);
            errors.push("(accepted)");
        } catch (err) {
            errors.push((err as Error).message);
        }
    };
    await attempt({ op: "add", id: "g", spec: { peer: "2001:db8:5::2" } });
    await attempt({ op: "add", id: "dup", spec: { peer: "2001:db8:5::2", local: "2001:db8:5::1" } });
    await attempt({ op: "add", id: "x", spec: { peer: "2001:db8:5::9", profile: "nope" } });
    await attempt({ op: "add", id: "y", spec: { peer: "2001:db8:5::9", detectMultiplier: 0 } });
    await attempt({ op: "add", id: "z", spec: { peer: "2001:db8:5::9", multihop: true } });
    await attempt({ op: "add", id: "w", spec: { peer: "2001:db8:5::9", auth: { type: "keyed-sha1", keys: [{ id: 1, secret: "x".repeat(21) }], sendKeyId: 1 } } });
    await attempt({ op: "update", id: "missing", spec: { peer: "2001:db8:5::9" } });
    await attempt({ op: "add", id: "if2", spec: { peer: "2001:db8:5::2", local: "2001:db8:5::1", interface: "other0" } });
    assert.match(errors[0], /session 'g' already exists/);
    assert.match(errors[1], /a session to 2001:db8:5::2 from 2001:db8:5::1 \(single-hop\) already exists: 'g'/);
    assert.match(errors[2], /profile 'nope' is not defined/);
    assert.match(errors[3], /detectMultiplier 0 must be 1-255/);
    assert.match(errors[4], /multihop session needs a local address/);
    assert.match(errors[5], /secret must be 1-20 bytes/);
    assert.match(errors[6], /no session 'missing'/);
    assert.match(errors[7], /sessions 'g' and 'if2' to 2001:db8:5::2 differ only by interface/);
    const snap = await a.call({ op: "snapshot" });
    assert.deepEqual(snap.sessions.map((s: any) => s.id).sort(), ["g", "ll"]);
});
