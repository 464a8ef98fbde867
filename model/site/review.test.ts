// The security review of the site validator ("The site validator"): each finding, as a site that
// must end in a clear error naming the config key (never a crash, never a silently accepted
// value), or as a bound the validator keeps (time, message size).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { dcSiteInput, labSiteInput } from "./fixtures";
import { loadSiteFromStackFile, parseSite, SiteConfigError, siteFromConfig } from "./load";
import { PROJECT_ROOT } from "../project";

/** The problems parseSite reports; fails unless it throws a SiteConfigError. */
function problems(raw: unknown): string[] {
    try {
        parseSite(raw);
    } catch (err) {
        assert.ok(err instanceof SiteConfigError, `expected SiteConfigError, got ${(err as Error)?.stack ?? err}`);
        return err.problems;
    }
    assert.fail("expected the site to be rejected");
}

/** Exactly one problem, at `key`, and matching `rule`. */
function refusedAt(raw: unknown, key: string, rule: RegExp): string {
    const ps = problems(raw);
    assert.equal(ps.length, 1, ps.join("\n"));
    assert.ok(ps[0].startsWith(`nublar:site.${key} = `), ps[0]);
    assert.match(ps[0], rule);
    return ps[0];
}

function parkSite(host: string): any {
    const raw = labSiteInput(["gate"], { kind: "park", ledger: { backup: { schedule: "0 0 3 * * *", retentionDays: 30 } } });
    raw.nodes[0].ssh = { host, hostKey: "ssh-ed25519 AAAAC3Nza" };
    return raw;
}

// ---- Prefixes and addresses: no zones, no non-canonical text -------------------------------

test("a prefix with a zone is refused naming the key, in every prefix field (it crashed, or was copied into node.nix)", () => {
    for (const prefix of ["2001:db8:b::%x;y/48", "2001:db8:b::%eth0/48"]) {
        const raw = labSiteInput(["gate"]);
        raw.providers[1].prefix = prefix;
        refusedAt(raw, "providers[1].prefix", /zone/);
        refusedAt(labSiteInput(["gate"], { lab: { managementPrefix: prefix.replace("/48", "/64") } }), "lab.managementPrefix", /zone/);
        const dc = dcSiteInput();
        dc.aws.vpc.sshFrom = [prefix];
        refusedAt(dc, "aws.vpc.sshFrom[0]", /zone/);
    }
});

test("prefixes: other junk is refused too; other spellings of the hex are parsed as the canonical text (RFC 5952) the planners copy", () => {
    for (const [prefix, rule] of [
        ["2001:db8:b::/48/48", /CIDR/],
        ["2001:db8:b::/0048", /prefix length/],
        [" 2001:db8:b::/48", /spaces/],
        ["2001:db8:b::/48\n", /spaces/],
        ["[2001:db8:b::]/48", /brackets/],
        ["::ffff:10.0.0.0/104", /dotted IPv4/],
        ["::ffff:a00:0/104", /IPv4-mapped/],
        ["2001:db8:b::1/48", /host bits must be zero \(the network is 2001:db8:b::\/48\)/],
    ] as const) {
        const raw = labSiteInput(["gate"]);
        raw.providers[1].prefix = prefix;
        refusedAt(raw, "providers[1].prefix", rule);
    }
    for (const prefix of ["2001:DB8:B::/48", "2001:0db8:000b::/48", "2001:db8:b:0:0:0:0:0/48", "2001:db8:b::/048"]) {
        const raw = labSiteInput(["gate"], { lab: { managementPrefix: "FD00:0:0:1::/64" } });
        raw.providers[1].prefix = prefix;
        const site = parseSite(raw);
        assert.equal(site.providers[1].prefix, "2001:db8:b::/48");
        assert.equal(site.lab?.managementPrefix, "fd00:0:0:1::/64");
    }
    // The same network in two spellings is one network.
    const raw = labSiteInput(["gate"]);
    raw.providers[1].prefix = "2001:DB8:A::/48";
    refusedAt(raw, "providers[1].prefix", /overlaps providers\[0\] 'provider-a' \(2001:db8:a::\/48\)/);
});

// ---- The provider overlap check: O(n log n), same message -----------------------------------

/** `n` providers with distinct /48s, listed in a scrambled order; one node uplinked to the first. */
function manyProviders(n: number): any {
    const providers = Array.from({ length: n }, (_, i) => {
        const k = ((i * 7919) % n) + 1; // a permutation of 1..n
        return { name: `p${i}`, prefix: `2001:db8:${k.toString(16)}::/48` };
    });
    return labSiteInput(["gate"], {
        providers,
        nodes: [{ name: "gate", role: "edge", failureDomain: "east", uplinks: [{ provider: "p0" }] }],
        lab: { managementPrefix: "fd00:1:2:3::/64" },
    });
}

test("2,000 providers validate in well under 10 s (the pairwise check took 48 s for 400)", () => {
    const started = performance.now();
    const site = parseSite(manyProviders(2000));
    const ms = performance.now() - started;
    assert.equal(site.providers.length, 2000);
    console.log(`# 2,000 providers validated in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 10_000, `${ms} ms`);
    // And an overlap among them is found, with the message the pairwise check gave.
    const raw = manyProviders(2000);
    raw.providers[1999].prefix = raw.providers[1234].prefix;
    const overlapStarted = performance.now();
    const ps = problems(raw);
    assert.ok(performance.now() - overlapStarted < 10_000);
    assert.deepEqual(ps, [`nublar:site.providers[1999].prefix = "${raw.providers[1234].prefix}": overlaps providers[1234] 'p1234' (${raw.providers[1234].prefix})`]);
});

test("overlap: nesting and repeats in any order are reported once per provider, at the later one, naming the nearest block that holds it", () => {
    const raw = labSiteInput(["gate"]);
    raw.providers = [
        { name: "z", prefix: "2001:db8:9::/48" },
        { name: "wide", prefix: "2001:db8::/32" }, // field rule: not a /48, and holds the others
        { name: "a", prefix: "2001:db8:1::/48" },
        { name: "again", prefix: "2001:db8:9::/48" },
        { name: "outside", prefix: "2001:db9:1::/48" },
    ];
    raw.nodes[0].uplinks = [{ provider: "z" }];
    const overlaps = problems(raw).filter((p) => p.includes("overlaps"));
    assert.deepEqual(overlaps.map((p) => p.replace(/ = .*: overlaps/, " overlaps")), [
        "nublar:site.providers[1].prefix overlaps providers[0] 'z' (2001:db8:9::/48)",
        "nublar:site.providers[2].prefix overlaps providers[1] 'wide' (2001:db8::/32)",
        "nublar:site.providers[3].prefix overlaps providers[0] 'z' (2001:db8:9::/48)",
    ]);
});

// ---- ssh.host: a DNS name or an IPv6 address, nothing else ----------------------------------

test("ssh.host: shell junk, a leading '-', numeric IPv4 and IPv4-mapped addresses are refused", () => {
    for (const [host, rule] of [
        ["gate;reboot", /DNS name/],
        ["gate example", /DNS name/],
        ["-oProxyCommand=sh", /DNS name/],
        ["gate-.example.net", /DNS name/],
        ["167772163", /IPv6-only.*IPv4/],
        ["0xa000003", /IPv6-only.*IPv4/],
        ["10.0.0.3", /IPv6-only/],
        ["::ffff:10.0.0.3", /IPv6-only/],
        ["::ffff:a00:3", /IPv4-mapped/],
        ["2001:db8:a::10%eth0", /zone/],
        ["[2001:db8:a::10]", /brackets/],
        ["", /DNS name/],
        ["a".repeat(300), /Too big|DNS name/],
    ] as const) {
        const ps = problems(parkSite(host));
        assert.ok(ps.some((p) => p.startsWith("nublar:site.nodes[0].ssh.host = ") && rule.test(p)), `${JSON.stringify(host)}:\n${ps.join("\n")}`);
    }
    for (const host of ["gate.example.net", "gate", "Gate-1.Park.Example", "2001:db8:a::10", "2001:db8:1100:10::2", "fd00::1"]) {
        assert.equal(parseSite(parkSite(host)).nodes[0].ssh?.host, host);
    }
    assert.equal(parseSite(parkSite("2001:DB8:A:0:0::10")).nodes[0].ssh?.host, "2001:db8:a::10");
});

// ---- alerts.url: https (http only to [::1]) -------------------------------------------------

test("events.alerts.url must be https; plain http only to the loopback [::1]", () => {
    const withUrl = (url: string) => labSiteInput(["gate"], { events: { alerts: { url } } });
    for (const url of ["http://events.example.net/v2/enqueue", "javascript:alert(1)", "file:///etc/passwd", "http://[::2]:9/x", "https://user:secret@events.example.net/", "https://10.0.0.3/x", "https://[::ffff:a00:3]/x", "https://events.example.net/\u001b[2J"]) {
        refusedAt(withUrl(url), "events.alerts.url", /https|credentials|IPv6-only|IPv4-mapped|control/);
    }
    for (const url of ["https://events.pagerduty.com/v2/enqueue", "https://[2001:db8::5]:8443/hook", "http://[::1]:9000/v2/enqueue"]) {
        assert.equal(parseSite(withUrl(url)).events.alerts.url, url);
    }
});

// ---- Free text: one line, no control characters, bounded ------------------------------------

test("free text: no control characters (schedule, description, host key, backup destination), and the description is bounded", () => {
    refusedAt(labSiteInput(["gate"], { ledger: { backup: { schedule: "0 0 3 * * *\n0 0 4 * * *", retentionDays: 3 } } }), "ledger.backup.schedule", /six-field cron schedule/);
    refusedAt(labSiteInput(["gate"], { ledger: { backup: { schedule: "0 0 3 * *\t*", retentionDays: 3 } } }), "ledger.backup.schedule", /six-field cron schedule/);
    parseSite(labSiteInput(["gate"], { ledger: { backup: { schedule: "0 30 2 * * MON-FRI", retentionDays: 3 } } }));
    for (const description of ["red \u001b[31malert", "two\nlines", "bell\u0007", "csi \u009b31m", "trojan \u202eevil", "x".repeat(501)]) {
        const p = refusedAt(labSiteInput(["gate"], { description }), "description", /control characters|Too big/);
        assert.doesNotMatch(p, /[\u0000-\u001f\u007f-\u009f\u202e]/, "the error itself shows the character escaped");
    }
    parseSite(labSiteInput(["gate"], { description: "Ünïcode is fine: 🦖 Isla Nublar, \"quoted\" and 'single'" }));
    parseSite(labSiteInput(["gate"], { description: "x".repeat(500) }));
    const key = parkSite("gate.example.net");
    key.nodes[0].ssh.hostKey = "ssh-ed25519 AAAAC3Nza root@gate\u001b]0;owned\u0007";
    refusedAt(key, "nodes[0].ssh.hostKey", /control characters/);
    const dc = dcSiteInput({ kubernetes: { images: { postgres: `pg@sha256:${"a".repeat(64)}`, redis: `r@sha256:${"b".repeat(64)}`, cacheProxy: `c@sha256:${"c".repeat(64)}` }, ledgerBackups: { destination: "s3://bucket/x\u001b[2J" } } });
    refusedAt(dc, "kubernetes.ledgerBackups.destination", /control characters/);
});

test("site show and site validate print what the site holds with control characters escaped", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-review-"));
    try {
        const file = path.join(dir, "Pulumi.x.yaml");
        fs.writeFileSync(file, stringify({ config: { "nublar:site": labSiteInput(["gate"], { description: "evil \u001b[2J\u001b]0;owned\u0007 \u009b31m \u202eend" }) } }));
        for (const args of [["show", "--file", file], ["validate", "--file", file], ["validate", "--json", "--file", file]]) {
            const r = spawnSync(process.execPath, [path.join(PROJECT_ROOT, "cli", "nublar.js"), "site", ...args], { encoding: "utf8" });
            const out = r.stdout + r.stderr;
            assert.match(out, /description/, out);
            assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/, `site ${args.join(" ")}: ${JSON.stringify(out)}`);
        }
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

// ---- nublar:siteFile: inside the project, and never echoed ----------------------------------

test("nublar:siteFile must stay inside the project (symlinks resolved), and an error never echoes the file", () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-sitefile-"));
    const project = path.join(base, "project");
    try {
        fs.mkdirSync(path.join(project, "sites"), { recursive: true });
        const secret = "hunter2-s3cr3t";
        fs.writeFileSync(path.join(base, "outside.yaml"), stringify(labSiteInput(["gate"])));
        fs.writeFileSync(path.join(base, "secret.txt"), `${secret}\n`);
        fs.symlinkSync(path.join(base, "outside.yaml"), path.join(project, "sites", "link.yaml"));
        fs.symlinkSync(base, path.join(project, "sites", "up"));
        const refused = (siteFile: string, rule: RegExp) => {
            assert.throws(() => siteFromConfig({ siteFile }, project, "test"), (e: Error) => {
                assert.ok(e instanceof SiteConfigError, String(e));
                assert.equal(e.problems.length, 1);
                assert.ok(e.problems[0].startsWith(`nublar:siteFile = ${JSON.stringify(siteFile)}: `), e.problems[0]);
                assert.match(e.problems[0], rule);
                assert.ok(!e.message.includes(secret) && !e.message.includes("provider-a"), e.message);
                return true;
            });
        };
        for (const f of ["../outside.yaml", path.join(base, "outside.yaml"), "sites/link.yaml", "sites/up/outside.yaml", "/etc/passwd", "../secret.txt"]) {
            refused(f, /inside the project folder/);
        }
        // Inside, but not a site: neither a non-YAML file, nor YAML that is not a mapping, is quoted.
        fs.writeFileSync(path.join(project, "sites", "secret.txt"), secret);
        refused("sites/secret.txt", /YAML file/);
        fs.writeFileSync(path.join(project, "sites", "scalar.yaml"), `${secret}\n`);
        refused("sites/scalar.yaml", /does not hold a site description/);
        fs.writeFileSync(path.join(project, "sites", "broken.yaml"), `name: [${secret}\n`);
        refused("sites/broken.yaml", /not valid YAML \(\w+ at line \d+, column \d+\)/);
        fs.mkdirSync(path.join(project, "sites", "dir.yaml"));
        refused("sites/dir.yaml", /regular file/);
        // A site file inside the project, by a relative or an absolute path, is read as before.
        fs.writeFileSync(path.join(project, "sites", "park.yaml"), stringify(labSiteInput(["gate"])));
        assert.equal(siteFromConfig({ siteFile: "sites/park.yaml" }, project, "test").name, "lab");
        assert.equal(siteFromConfig({ siteFile: path.join(project, "sites", "park.yaml") }, project, "test").name, "lab");
    } finally {
        fs.rmSync(base, { recursive: true, force: true });
    }
});

// ---- Bounded errors ------------------------------------------------------------------------

test("one bad reference in a 60,000-node site gives a short error: lists of names are capped", () => {
    const raw = labSiteInput(Array.from({ length: 60_000 }, (_, i) => `n${i}`));
    raw.nodes[59_999].uplinks[1].provider = "nowhere";
    raw.ingress = [{ name: "web", port: 80, upstreams: ["n1", "ghost"] }];
    raw.deploy = { canary: "ghost" };
    let err: unknown;
    try {
        parseSite(raw);
    } catch (e) {
        err = e;
    }
    assert.ok(err instanceof SiteConfigError, String(err));
    assert.ok(err.message.length < 2_000, `${err.message.length} characters`);
    assert.deepEqual(err.problems, [
        `nublar:site.nodes[59999].uplinks[1].provider = "nowhere": must name one of the site's providers (provider-a, provider-b)`,
        `nublar:site.ingress[0].upstreams[1] = "ghost": must name one of the site's nodes (n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, ... and 59990 more)`,
        `nublar:site.deploy.canary = "ghost": must name one of the site's nodes (n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, ... and 59990 more), or be true or false`,
    ]);
});

test("a cycle of YAML aliases gives a clear error, not a crash while quoting the value found", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-alias-"));
    try {
        fs.mkdirSync(path.join(dir, "stacks"));
        const file = path.join(dir, "stacks", "Pulumi.lab.yaml");
        const site = stringify({ config: { "nublar:site": labSiteInput(["gate"]) } });
        // lab: &l { tag: *l } — the value found at lab.tag holds itself.
        fs.writeFileSync(file, `${site}    lab: &l\n      tag: *l\n`);
        assert.throws(() => loadSiteFromStackFile(file), (e: Error) => {
            assert.ok(e instanceof SiteConfigError, String(e));
            assert.deepEqual(e.problems, [`nublar:site.lab.tag = {"tag":...}: Invalid input: expected string, received object`]);
            return true;
        });
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("a site with thousands of problems gives an error of bounded size, saying how many were left out", () => {
    const raw = labSiteInput(Array.from({ length: 5000 }, (_, i) => `n${i}`));
    raw.nodes.forEach((n: any) => {
        n.uplinks = [{ provider: "nowhere-".repeat(20) }];
        n[`\u001b[31m${"k".repeat(1000)}`] = 1;
    });
    const ps = problems(raw);
    const message = ps.join("\n");
    assert.ok(message.length < 16_384, `${message.length} characters`);
    assert.match(ps[ps.length - 1], /^nublar:site: \.\.\. and \d+ more problems, not listed/);
    assert.doesNotMatch(message, /\u001b/);
});
