// GTSM without a kernel: the rendered rules, which nftables listings count as enforcing GTSM,
// and Gtsm's decisions with a scripted `nft`. The real thing is test/network/gtsm*.test.ts.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { BfdGtsmError, Gtsm, gtsmCoverage, gtsmRefusal, gtsmRuleset, GTSM_TABLE, ownTableCommands, type NftRunner } from "./gtsm";

test("gtsmRuleset() is the table the agent and the NixOS module install, byte for byte", () => {
    assert.equal(gtsmRuleset(), [
        "table inet nublar_bfd_gtsm {",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        "    meta nfproto ipv6 udp dport 3784 ip6 hoplimit != 255 counter drop",
        "    meta nfproto ipv4 udp dport 3784 ip ttl != 255 counter drop",
        "  }",
        "}",
        "",
    ].join("\n"));
    assert.match(gtsmRuleset(13784), /udp dport 13784 ip6 hoplimit != 255 counter drop/);
});

test("node-bfd's own table: an owner table, created in one nft -i line (one transaction)", () => {
    const input = ownTableCommands("node_bfd_gtsm_1_abc", 3784);
    assert.equal(input.split("\n").length, 2);
    assert.ok(input.endsWith("\n"));
    assert.match(input, /^add table inet node_bfd_gtsm_1_abc \{ flags owner; \}; add chain inet node_bfd_gtsm_1_abc input \{ type filter hook input priority filter; policy accept; \}; /);
    assert.match(input, /add rule inet node_bfd_gtsm_1_abc input meta nfproto ipv6 udp dport 3784 ip6 hoplimit != 255 counter drop; /);
    assert.match(input, /add rule inet node_bfd_gtsm_1_abc input meta nfproto ipv4 udp dport 3784 ip ttl != 255 counter drop\n$/);
});

// `nft -j list table inet nublar_bfd_gtsm` for gtsmRuleset(), as nftables 1.0.6 prints it.
const match = (protocol: string, field: string, op: string, right: unknown) => ({ match: { op, left: { payload: { protocol, field } }, right } });
const v6 = (port = 3784) => [match("udp", "dport", "==", port), match("ip6", "hoplimit", "!=", 255), { counter: { packets: 0, bytes: 0 } }, { drop: null }];
const v4 = (port = 3784) => [match("udp", "dport", "==", port), match("ip", "ttl", "!=", 255), { counter: { packets: 0, bytes: 0 } }, { drop: null }];
function listing(rules: unknown[][], chain: Record<string, unknown> = { type: "filter", hook: "input", prio: 0, policy: "accept" }) {
    return {
        nftables: [
            { metainfo: { version: "1.0.6", json_schema_version: 1 } },
            { table: { family: "inet", name: GTSM_TABLE, handle: 1 } },
            { chain: { family: "inet", table: GTSM_TABLE, name: "input", handle: 1, ...chain } },
            ...rules.map((expr, i) => ({ rule: { family: "inet", table: GTSM_TABLE, chain: "input", handle: i + 2, expr } })),
        ],
    };
}

test("gtsmCoverage: the agent's table covers both families on its port, and nothing else", () => {
    assert.deepEqual(gtsmCoverage(listing([v6(), v4()]), 3784), { ipv6: true, ipv4: true });
    assert.deepEqual(gtsmCoverage(listing([v6(), v4()]), 13784), { ipv6: false, ipv4: false }, "another port");
    assert.deepEqual(gtsmCoverage(listing([v6()]), 3784), { ipv6: true, ipv4: false }, "IPv6 only");
    // With the `meta nfproto` match kept (some nft versions print it).
    assert.deepEqual(gtsmCoverage(listing([[{ match: { op: "==", left: { meta: { key: "nfproto" } }, right: "ipv6" } }, ...v6()]]), 3784), { ipv6: true, ipv4: false });
});

test("gtsmCoverage: rules that drop less, or may not be reached, do not count", () => {
    const none = { ipv6: false, ipv4: false };
    const iif = { match: { op: "==", left: { meta: { key: "iifname" } }, right: "eth0" } };
    assert.deepEqual(gtsmCoverage(listing([[iif, ...v6()], [iif, ...v4()]]), 3784), none, "only on one interface");
    assert.deepEqual(gtsmCoverage(listing([v6().map((e) => ("drop" in e ? { accept: null } : e)), v4().map((e) => ("drop" in e ? { accept: null } : e))]), 3784), none, "accept, not drop");
    assert.deepEqual(gtsmCoverage(listing([[{ accept: null }], v6(), v4()]), 3784), none, "after a rule that accepts everything");
    assert.deepEqual(gtsmCoverage(listing([[match("ip6", "hoplimit", "!=", 254), match("udp", "dport", "==", 3784), { drop: null }]]), 3784), none, "another hop limit");
    assert.deepEqual(gtsmCoverage(listing([v6(), v4()], { type: "filter", hook: "output", prio: 0 }), 3784), none, "an output chain");
    assert.deepEqual(gtsmCoverage(listing([v6(), v4()], {}), 3784), none, "a regular chain (not a hook)");
    assert.deepEqual(gtsmCoverage({}, 3784), none);
    assert.deepEqual(gtsmCoverage(null, 3784), none);
});

/** A scripted nft: answers by the table listed; records its calls. */
function fakeNft(answers: Record<string, Awaited<ReturnType<NftRunner>>>): NftRunner & { calls: string[][] } {
    const calls: string[][] = [];
    const run = async (args: string[]) => {
        calls.push(args);
        return answers[args[args.length - 1]] ?? { ok: false as const, error: "nft: No such file or directory", noSuchTable: true };
    };
    return Object.assign(run, { calls });
}

test("Gtsm uses the agent's table when it covers the port, and never touches it", async () => {
    const nft = fakeNft({ [GTSM_TABLE]: { ok: true, stdout: JSON.stringify(listing([v6(), v4()])) } });
    const g = new Gtsm("nftables", 3784, nft, "/nonexistent/nft");
    await Promise.all([g.ensure("a"), g.ensure("b")]);
    await g.ensure("c");
    assert.deepEqual(nft.calls, [["-j", "list", "table", "inet", GTSM_TABLE]], "one look, shared by concurrent sessions, then remembered");
    assert.deepEqual(g.status(), { mode: "nftables", table: `inet ${GTSM_TABLE}`, owned: false });
    await g.close();
    assert.equal(nft.calls.length, 1, "stop leaves it alone");
});

test("Gtsm refuses single-hop sessions when nft is missing or not permitted, says why and what to do, and tries again next time", async () => {
    const nft = fakeNft({ [GTSM_TABLE]: { ok: false, error: "the nft command was not found (install nftables)" } });
    const g = new Gtsm("nftables", 3784, nft, "/nonexistent/nft");
    const err = await g.ensure("gw-a").then(() => undefined, (e: Error) => e);
    assert.ok(err instanceof BfdGtsmError);
    assert.equal(err.name, "BfdGtsmError");
    assert.match(err.message, /^single-hop session 'gw-a' refused: node-bfd cannot enforce GTSM \(RFC 5881 §5/);
    assert.match(err.message, /the nft command was not found \(install nftables\)/);
    assert.match(err.message, /CAP_NET_ADMIN/);
    assert.match(err.message, /gtsmRuleset\(\)/);
    assert.match(err.message, /\{ gtsm: "off-i-understand" \}/);
    assert.match(g.status().error!, /nft command was not found/);
    await assert.rejects(g.ensure("gw-b"), /'gw-b' refused/);
    assert.equal(nft.calls.length, 2, "a failure is not remembered");

    const denied = new Gtsm("nftables", 3784, fakeNft({ [GTSM_TABLE]: { ok: false, error: "nft: Could not process rule: Operation not permitted (CAP_NET_ADMIN is needed)" } }));
    await assert.rejects(denied.ensure("x"), /Operation not permitted \(CAP_NET_ADMIN is needed\)/);
});

test("Gtsm without the shared table and without an nft to hold its own: refused, nothing left running", async () => {
    const g = new Gtsm("nftables", 3784, fakeNft({}), "/nonexistent/nft");
    await assert.rejects(g.ensure("s"), /refused: .*the nft command was not found/s);
    assert.equal(g.status().table, undefined);
    await g.close();
});

test("'off-i-understand' asks nothing of nft", async () => {
    const nft = fakeNft({});
    const g = new Gtsm("off-i-understand", 3784, nft);
    await g.ensure("s");
    assert.deepEqual(nft.calls, []);
    assert.deepEqual(g.status(), { mode: "off-i-understand" });
});

test("the refusal names the session and the remedy", () => {
    const text = gtsmRefusal("gw", "why");
    assert.match(text, /^single-hop session 'gw' refused: .*: why\. /);
});
