// Test support (like ./fixtures.ts): mutated site descriptions for the fuzz tests, and the rule
// every outcome must follow. Beside the code so that both the schema's fuzz test
// (./fuzz.test.ts) and the planners' (model/network/site-fuzz.test.ts) use one corpus: the
// committed stacks' `nublar:site` values, each mutated a few times over, from a seeded PRNG
// (case `i` of seed `s` is always the same site, so a failure names what reproduces it).
import * as fs from "node:fs";
import * as path from "node:path";
import { PROJECT_ROOT } from "../project";
import { readStackConfig, SiteConfigError, parseSite } from "./load";
import type { Site } from "./model";
import { CONTROL_CHARS } from "./text";
import { canonicalPrefix, parseIpv6Prefix } from "./ipv6";
import { prng } from "../testing/prng";

/** The longest error message any site may give (the validator's, or a planner's). */
export const MAX_ERROR_CHARS = 16 * 1024;

/** The committed stacks' raw site descriptions, read with the loader's own helper. */
export function stackSites(): { stack: string; raw: unknown }[] {
    const dir = path.join(PROJECT_ROOT, "stacks");
    return fs.readdirSync(dir)
        .filter((f) => /^Pulumi\..+\.yaml$/.test(f))
        .sort()
        .map((f) => ({ stack: f.replace(/^Pulumi\.|\.yaml$/g, ""), raw: readStackConfig(path.join(dir, f)).site }))
        .filter((s) => s.raw !== undefined);
}

export { prng };

type Json = unknown;
type Container = Record<string, Json> | Json[];
type Rng = () => number;

const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)];

/** Text that has broken, or could break, a validator, a config renderer or a terminal. */
const NASTY_STRINGS: readonly string[] = [
    "", " ", "-", "--", "-oProxyCommand=sh", "a;b", "a b", "$(reboot)", "`id`", "a\nb", "a\r\nb", "\t", "\u0000", "\u001b[2J", "\u001b]0;owned\u0007", "\u009b31m",
    "\u202eevil", "\u2028", "\ufeff", "\ud800", "🦖", "é", "e\u0301", "Ünïcode", "٣", "１２３", "ａ", "İ", "ß",
    "2001:db8:b::%x;y/48", "2001:db8:b::%eth0/48", "fe80::1%eth0", "2001:DB8:B::/48", "2001:0db8:000b::/48", "2001:db8:b:0::/48", "2001:db8:b::/048", "2001:db8:b::1/48",
    "2001:db8:b::/128", "::/0", "::", "::1", "::ffff:10.0.0.3", "::ffff:a00:3", "::ffff:0:0/96", "10.0.0.0/8", "10.0.0.3", "167772163", "0xa000003", "[2001:db8::1]", "[::1]:9092", "2001:db8::1:9092",
    "ff02::1", "2001:db8:a::/48 ", "fd6e:626c:6172::/64", "2001:db8:a::/48", "2001:db8:1100::/48", "2001:db8:3100::/48",
    "http://example.com/", "javascript:alert(1)", "https://user:pw@example.com/", "https://[::1]/", "http://[::1]:9/x", "https://10.0.0.3/", "file:///etc/passwd",
    "../../etc/passwd", "/etc/passwd", "s3://bucket/\u001b", "0 0 3 * * *", "0 0 3 * * *\n* * * * * *", "* * * * *", "@daily",
    "ssh-ed25519 AAAA", "ssh-ed25519 AAAA x\u001b[2J", "sha256:", "edge", "core", "app", "ledger", "lab", "park", "datacenter", "wireguard", "vxlan",
    "true", "false", "null", "NaN", "Infinity", "-1", "0", "1e309", "__proto__", "constructor", "toString", "gate", "provider-a", "eu-west-1", "eu-west-1a",
];
/** Keys whose values are addresses, prefixes, hosts or URLs: they get ADDRESS_STRINGS more often. */
const ADDRESS_KEY = /prefix|host|url|sshFrom|brokers|destination|schedule/i;
const ADDRESS_STRINGS: readonly string[] = NASTY_STRINGS.filter((s) => /[:.%/]/.test(s) || s === "");

const NASTY_NUMBERS: readonly number[] = [0, -0, 1, -1, 2, 3, 4, 22, 0.5, 1.5, 0.999999, 1 - 1e-16, 65535, 65536, 0x3fff, 0x4000, 0xffff, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 53), 1e308, 5e-324, NaN, Infinity, -Infinity];

function randomString(rng: Rng): string {
    switch (int(rng, 6)) {
        case 0: {
            // Long: up to 100,000 characters.
            const unit = pick(rng, ["x", "a-", "🦖", "\u001b", "2001:db8::", "::", "%", "."]);
            return unit.repeat(1 + int(rng, 100_000 / unit.length));
        }
        case 1: {
            let s = "";
            const n = int(rng, 40);
            for (let i = 0; i < n; i++) s += String.fromCodePoint(pick(rng, [int(rng, 0x80), int(rng, 0x100), int(rng, 0x10000), int(rng, 0x110000)]));
            return s;
        }
        default:
            return pick(rng, NASTY_STRINGS);
    }
}

/** A value of any type, sometimes nested, sometimes huge. */
function randomValue(rng: Rng, depth = 0): Json {
    switch (int(rng, depth > 2 ? 4 : 7)) {
        case 0: return randomString(rng);
        case 1: return pick(rng, NASTY_NUMBERS);
        case 2: return pick(rng, [true, false, null]);
        case 3: return int(rng, 1 << 16);
        case 4: return Array.from({ length: int(rng, 4) }, () => randomValue(rng, depth + 1));
        case 5: return Object.fromEntries(Array.from({ length: int(rng, 4) }, () => [randomString(rng).slice(0, 20), randomValue(rng, depth + 1)]));
        default: {
            // Deep nesting.
            let v: Json = randomValue(rng, 3);
            const n = int(rng, 1000);
            for (let i = 0; i < n; i++) v = [v];
            return v;
        }
    }
}

/** Every container in the tree (to depth 40), with the path to it (objects and arrays both). */
function containers(root: Json): { path: (string | number)[]; value: Container }[] {
    const out: { path: (string | number)[]; value: Container }[] = [];
    const seen = new Set<unknown>();
    const walk = (v: Json, p: (string | number)[]) => {
        if (v === null || typeof v !== "object" || seen.has(v) || out.length > 50_000 || p.length > 40) return;
        seen.add(v);
        out.push({ path: p, value: v as Container });
        if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
        else for (const [k, x] of Object.entries(v as Record<string, Json>)) walk(x, [...p, k]);
    };
    walk(root, []);
    return out;
}

const keysOf = (c: Container): (string | number)[] => (Array.isArray(c) ? c.map((_, i) => i) : Object.keys(c));
const get = (c: Container, k: string | number): Json => (c as Record<string | number, Json>)[k];
const set = (c: Container, k: string | number, v: Json) => {
    if (Array.isArray(c) && typeof k === "number") c[k] = v;
    else Object.defineProperty(c, k, { value: v, enumerable: true, writable: true, configurable: true }); // "__proto__" too, as YAML makes it
};

/** A valid-looking fresh name, and a fresh /48, so some mutated sites stay valid and reach the planners. */
const freshName = (rng: Rng) => `${pick(rng, ["n", "gate", "edge", "p", "x"])}${int(rng, 100_000).toString(36)}`;
const freshPrefix = (rng: Rng) => `2001:db8:${(1 + int(rng, 0xfffe)).toString(16)}::/48`;

/** One mutation, in place; returns what it did. */
function mutateOnce(root: { site: Json }, rng: Rng): string {
    const all = containers(root);
    const { path: at, value: c } = pick(rng, all);
    const keys = keysOf(c);
    const where = at.slice(1).join(".") || "(site)";
    const k = keys.length ? pick(rng, keys) : undefined;
    const old = k === undefined ? undefined : get(c, k);
    switch (int(rng, 18)) {
        case 0: // Replace a value by any other value.
            if (k === undefined) return "nothing";
            set(c, k, randomValue(rng));
            return `replace ${where}.${k}`;
        case 1: // Mutate a string: insert text, change case, pad, repeat.
        case 2: {
            if (k === undefined || typeof old !== "string") return "nothing";
            const ins = randomString(rng).slice(0, 1 + int(rng, 64));
            const at2 = int(rng, old.length + 1);
            const next = pick(rng, [
                old.slice(0, at2) + ins + old.slice(at2),
                old.toUpperCase(),
                ` ${old}`,
                `${old}\n`,
                `-${old}`,
                old.repeat(1 + int(rng, 2000)),
                old.slice(0, int(rng, old.length + 1)),
                `${old}%eth0`,
                old.replace(/::/, ":0:"),
                old.normalize("NFD"),
            ]);
            set(c, k, next);
            return `edit string ${where}.${k}`;
        }
        case 3: { // Numbers: edge values, off by one.
            if (k === undefined || typeof old !== "number") return "nothing";
            set(c, k, pick(rng, [old + 1, old - 1, -old, old * 1000, String(old), pick(rng, NASTY_NUMBERS)]));
            return `edit number ${where}.${k}`;
        }
        case 4: // Drop a key or an element.
            if (k === undefined) return "nothing";
            if (Array.isArray(c)) c.splice(k as number, 1);
            else delete (c as Record<string, Json>)[k as string];
            return `drop ${where}.${k}`;
        case 5: { // Duplicate an element (or a whole list, many times over).
            if (!Array.isArray(c) || !c.length) return "nothing";
            const n = pick(rng, [1, 1, 2, 10, 200]);
            for (let i = 0; i < n; i++) c.push(structuredClone(c[int(rng, c.length)]));
            return `duplicate in ${where} x${n}`;
        }
        case 6: { // Add a key: unknown, misspelt, or another key's value under a new name.
            if (Array.isArray(c)) return "nothing";
            const key = pick(rng, [randomString(rng).slice(0, 40), `${String(k ?? "x")}s`, "__proto__", "constructor", String(k ?? "name").toUpperCase()]);
            set(c, key, k === undefined ? randomValue(rng) : structuredClone(old));
            return `add key ${where}.${JSON.stringify(key)}`;
        }
        case 7: { // Swap two values anywhere in the site (a name where a prefix goes, a node where a provider goes).
            const other = pick(rng, all);
            const ok = keysOf(other.value);
            if (k === undefined || !ok.length) return "nothing";
            const k2 = pick(rng, ok);
            const v2 = get(other.value, k2);
            set(other.value, k2, structuredClone(old));
            set(c, k, structuredClone(v2));
            return `swap ${where}.${k} with ${other.path.slice(1).join(".")}.${k2}`;
        }
        case 8: // A container becomes the other kind, or empty.
            if (k === undefined || old === null || typeof old !== "object") return "nothing";
            set(c, k, pick(rng, [Array.isArray(old) ? { ...old } : Object.values(old as object), [], {}]));
            return `reshape ${where}.${k}`;
        case 9: // Shuffle a list.
            if (!Array.isArray(c)) return "nothing";
            for (let i = c.length - 1; i > 0; i--) {
                const j = int(rng, i + 1);
                [c[i], c[j]] = [c[j], c[i]];
            }
            return `shuffle ${where}`;
        case 10: // A cycle, as YAML aliases make them (&a [*a]).
            if (k === undefined) return "nothing";
            set(c, k, c);
            return `cycle ${where}.${k}`;
        case 11: case 12: { // A new node: a copy of one with a fresh name, maybe an id.
            const site = root.site as Record<string, Json>;
            if (!site || typeof site !== "object" || !Array.isArray(site.nodes) || !site.nodes.length) return "nothing";
            const node = structuredClone(pick(rng, site.nodes)) as Record<string, Json>;
            if (!node || typeof node !== "object") return "nothing";
            node.name = freshName(rng);
            if (rng() < 0.3) node.id = 1 + int(rng, 0x3fff);
            if (rng() < 0.3) node.role = pick(rng, ["edge", "core", "app", "ledger", "sensor-gateway"]);
            site.nodes.push(node);
            return `add node ${String(node.name)}`;
        }
        case 13: { // A new provider with a fresh /48, and uplinks to it.
            const site = root.site as Record<string, Json>;
            if (!site || typeof site !== "object" || !Array.isArray(site.providers) || !Array.isArray(site.nodes)) return "nothing";
            const name = freshName(rng);
            site.providers.push({ name, prefix: freshPrefix(rng), ...(rng() < 0.3 ? { uplinkHost: 2 + int(rng, 100) } : {}) });
            for (const n of site.nodes) {
                if (n && typeof n === "object" && Array.isArray((n as Record<string, Json>).uplinks) && rng() < 0.5) ((n as Record<string, Json>).uplinks as Json[]).push({ provider: name });
            }
            return `add provider ${name}`;
        }
        case 14: { // A valid value elsewhere in the schema: kind, transport, a role, a port.
            const site = root.site as Record<string, Json>;
            if (!site || typeof site !== "object") return "nothing";
            const change = int(rng, 4);
            if (change === 0) site.kind = pick(rng, ["lab", "park", "datacenter"]);
            if (change === 1) site.overlay = { transport: pick(rng, ["wireguard", "vxlan"]) };
            if (change === 2) site.description = randomString(rng);
            if (change === 3) site.ingress = [{ name: freshName(rng), port: 1 + int(rng, 65535), upstreams: Array.isArray(site.nodes) ? site.nodes.slice(0, 1 + int(rng, 3)).map((n) => (n as { name?: Json })?.name) : [] }];
            return `set site field ${change}`;
        }
        case 15: case 16: { // An address, prefix, host or URL field gets junk: a zone, case, padding, IPv4.
            const fields: { c: Container; k: string | number; v: string }[] = [];
            for (const { value } of all) {
                for (const key of keysOf(value)) {
                    const v = get(value, key);
                    if (typeof v === "string" && (ADDRESS_KEY.test(String(key)) || (Array.isArray(value) && /[:/]/.test(v)))) fields.push({ c: value, k: key, v });
                }
            }
            if (!fields.length) return "nothing";
            const f = pick(rng, fields);
            set(f.c, f.k, pick(rng, [
                pick(rng, ADDRESS_STRINGS),
                f.v.replace("/", `%${pick(rng, ["eth0", "x;y", "0", "", "🦖"])}/`),
                `${f.v}%eth0`,
                f.v.toUpperCase(),
                f.v.replace(/::/, ":0::"),
                f.v.replace(/:(\w)/, ":0$1"),
                `${f.v}${pick(rng, [" ", "\n", "\u0000", "/48", ";id"])}`,
            ]));
            return `address ${String(f.k)}`;
        }
        default: { // Nothing but a harmless change: the description.
            const site = root.site as Record<string, Json>;
            if (!site || typeof site !== "object") return "nothing";
            site.description = pick(rng, ["A park.", "Ünïcode 🦖", "x".repeat(500)]);
            return "description";
        }
    }
}

/** Case `i` of a run seeded `seed`: a committed stack's site, mutated one to four times. */
export function mutatedSite(stacks: readonly { stack: string; raw: unknown }[], seed: number, i: number): { stack: string; raw: unknown; did: string[] } {
    const rng = prng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
    const base = stacks[i % stacks.length];
    const root = { site: structuredClone(base.raw) };
    const did: string[] = [];
    const n = 1 + int(rng, 4);
    for (let m = 0; m < n; m++) did.push(mutateOnce(root, rng));
    return { stack: base.stack, raw: root.site, did };
}

/** What one mutated site gave: a clear error, or a valid site. Throws (the fuzz finding) on anything else. */
export function judgeSite(raw: unknown, what: string): { ok: true; site: Site } | { ok: false; problems: string[] } {
    let site: Site;
    try {
        site = parseSite(raw);
    } catch (err) {
        if (!(err instanceof SiteConfigError)) throw new Error(`${what}: the validator threw ${(err as Error)?.stack ?? String(err)}`);
        if (err.message.length > MAX_ERROR_CHARS) throw new Error(`${what}: an error of ${err.message.length} characters (bound ${MAX_ERROR_CHARS})`);
        if (!err.problems.length) throw new Error(`${what}: a SiteConfigError without problems`);
        for (const p of err.problems) {
            // Each problem names a key: nublar:site, or a key under it.
            if (!/^nublar:site(\.|\[|:| =| is missing)/.test(p)) throw new Error(`${what}: a problem that names no key: ${JSON.stringify(p.slice(0, 200))}`);
        }
        return { ok: false, problems: err.problems };
    }
    // Valid: no text in it carries a control character, and every prefix is canonical text.
    const strings: string[] = [];
    const walk = (v: unknown) => {
        if (typeof v === "string") strings.push(v);
        else if (v && typeof v === "object") Object.values(v).forEach(walk);
    };
    walk(site);
    const bad = strings.find((s) => CONTROL_CHARS.test(s));
    if (bad !== undefined) throw new Error(`${what}: a valid site holds a control character: ${JSON.stringify(bad.slice(0, 200))}`);
    for (const prefix of [...site.providers.map((p) => p.prefix), ...(site.lab ? [site.lab.managementPrefix] : []), ...(site.aws?.vpc?.sshFrom ?? [])]) {
        if (!parseIpv6Prefix(prefix).ok || canonicalPrefix(prefix) !== prefix) throw new Error(`${what}: a valid site holds the prefix ${JSON.stringify(prefix)}`);
    }
    return { ok: true, site };
}
