// The strict IPv6 text the site schema accepts (./ipv6.ts), checked against ip-num (the
// planners' parser), and the provider overlap check against the pairwise one it replaced.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import fc from "fast-check";
import { IPv6, IPv6CidrRange } from "ip-num";
import { collapseIPv6Number } from "ip-num/dist/src/IPv6Utils";
import { labSiteInput } from "./fixtures";
import { parseSite, SiteConfigError } from "./load";
import { canonicalAddress, canonicalPrefix, formatIpv6, ipv6Value, parseIpv6Address, parseIpv6Prefix } from "./ipv6";

const SEED = 0x69707636; // "ipv6"

/** Addresses with runs of zero groups, where canonical form is decided. */
const addressArb = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
    .map((gs) => gs.reduce((v, g) => (v << 16n) | BigInt(g), 0n));

test("formatIpv6 is RFC 5952 canonical text, as ip-num (the planners) print it, and ipv6Value reads it back", () => {
    fc.assert(fc.property(addressArb, (v) => {
        const text = formatIpv6(v);
        assert.equal(text, collapseIPv6Number(new IPv6(v).toString()));
        assert.equal(ipv6Value(text), v);
        // Any uncompressed or upper-case spelling reads as the same value, and has the same canonical text.
        const full = new IPv6(v).toString().toUpperCase();
        assert.equal(ipv6Value(full), v);
        assert.equal(canonicalPrefix(`${full}/128`), `${text}/128`);
    }), { seed: SEED, numRuns: 2000 });
    assert.equal(formatIpv6(0n), "::");
    assert.equal(formatIpv6(1n), "::1");
    assert.equal(formatIpv6(0x20010db8000000000001000000000001n), "2001:db8::1:0:0:1");
    assert.equal(formatIpv6(0x20010db8000000010001000100010001n), "2001:db8:0:1:1:1:1:1");
});

test("ipv6Value refuses everything but plain hex groups", () => {
    for (const bad of ["", ":", ":::", "1:::2", "1::2::3", ":1::2", "1::2:", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7::8",
        "12345::", "g::", "::ffff:10.0.0.1", "fe80::1%eth0", "[::1]", " ::1", "::1 ", "::1\n", "٣::1", "２::1"]) {
        assert.equal(ipv6Value(bad), undefined, JSON.stringify(bad));
    }
    assert.equal(ipv6Value("1:2:3:4:5:6:7::"), 0x0001000200030004000500060007_0000n);
});

test("prefixes: aligned, length 0-128, read as canonical text; addresses: unicast, not IPv4-mapped", () => {
    assert.deepEqual(parseIpv6Prefix("2001:db8:a::/48"), { ok: true, value: { base: 0x20010db8000a0000_0000000000000000n, length: 48 } });
    assert.deepEqual(parseIpv6Prefix("::/0"), { ok: true, value: { base: 0n, length: 0 } });
    for (const [text, rule] of [["2001:db8:a::/129", /prefix length/], ["2001:db8:a::/-1", /prefix length/], ["2001:db8:a::/", /prefix length/], ["2001:db8:a::", /CIDR/],
        ["2001:db8:a::1/48", /host bits.*2001:db8:a::\/48/], ["2001:db8:a::%0/48", /zone/], ["::ffff:0:0/96", /IPv4-mapped/]] as const) {
        const r = parseIpv6Prefix(text);
        assert.ok(!r.ok && rule.test(r.reason), `${text}: ${JSON.stringify(r)}`);
    }
    assert.equal(canonicalPrefix("2001:DB8:A:0::/048"), "2001:db8:a::/48");
    assert.equal(canonicalAddress("2001:0DB8:0:0::1"), "2001:db8::1");
    assert.ok(parseIpv6Address("2001:db8::1").ok);
    assert.ok(parseIpv6Address("::1").ok);
    for (const [text, rule] of [["::ffff:a00:3", /IPv4-mapped/], ["::", /unspecified/], ["ff02::1", /multicast/], ["fe80::1%25eth0", /zone/], ["2001:db8::1/128", /IPv6 address/]] as const) {
        const r = parseIpv6Address(text);
        assert.ok(!r.ok && rule.test(r.reason), `${text}: ${JSON.stringify(r)}`);
    }
});

test("the provider overlap check agrees with the pairwise one (ip-num) on random prefixes: refused exactly when two overlap, naming real overlaps", () => {
    // Few distinct networks and lengths, so repeats and nesting are common.
    const prefixArb = fc.tuple(fc.integer({ min: 0, max: 7 }), fc.constantFrom(44, 46, 48, 48, 48)).map(([k, len]) => {
        const base = (0x20010db8n << 96n) | (BigInt(k) << 80n);
        const mask = (1n << BigInt(128 - len)) - 1n;
        return `${formatIpv6(base & ~mask)}/${len}`;
    });
    fc.assert(fc.property(fc.array(prefixArb, { minLength: 1, maxLength: 12 }), (prefixes) => {
        const raw = labSiteInput(["gate"], { lab: { managementPrefix: "fd00:1:2:3::/64" } });
        raw.providers = prefixes.map((prefix, i) => ({ name: `p${i}`, prefix }));
        raw.nodes[0].uplinks = [{ provider: "p0" }];
        const ranges = prefixes.map((p) => IPv6CidrRange.fromCidr(p));
        const overlap = (i: number, j: number) => ranges[i].isOverlapping(ranges[j]) || ranges[i].contains(ranges[j]) || ranges[i].inside(ranges[j]);
        const pairs: [number, number][] = [];
        for (let j = 0; j < prefixes.length; j++) for (let i = 0; i < j; i++) if (overlap(i, j)) pairs.push([j, i]);
        let reported: [number, number][] = [];
        try {
            parseSite(raw);
        } catch (err) {
            assert.ok(err instanceof SiteConfigError);
            reported = err.problems.flatMap((p) => {
                const m = /^nublar:site\.providers\[(\d+)\]\.prefix = "[^"]+": overlaps providers\[(\d+)\] 'p\2' \(([^)]+)\)$/.exec(p);
                return m ? [[Number(m[1]), Number(m[2])] as [number, number]] : [];
            });
        }
        assert.equal(reported.length > 0, pairs.length > 0, `${prefixes.join(" ")}: reported ${JSON.stringify(reported)}`);
        for (const [j, i] of reported) assert.ok(i < j && overlap(i, j), `${prefixes.join(" ")}: ${j} vs ${i}`);
        // Every provider in an overlap is named, as the one reported or the one it overlaps.
        const named = new Set(reported.flat());
        for (const [j, i] of pairs) assert.ok(named.has(j) && named.has(i), `${prefixes.join(" ")}: ${j}, ${i} not named in ${JSON.stringify(reported)}`);
        // All /48s: each later copy of a prefix names the first provider with it.
        if (prefixes.every((p) => p.endsWith("/48"))) {
            const expected = prefixes.flatMap((p, j) => (prefixes.indexOf(p) < j ? [[j, prefixes.indexOf(p)]] : []));
            assert.deepEqual(reported, expected);
        }
    }), { seed: SEED, numRuns: 500 });
});
