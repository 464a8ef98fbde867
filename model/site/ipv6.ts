// Strict IPv6 text for the site schema: addresses and prefixes as they may appear in a site
// description, which end up in node configs, nftables rules, SSH configs and known_hosts lines.
// Accepted: hex groups as RFC 4291 writes them, nothing else: no zone (`%eth0`), no embedded
// dotted IPv4, no brackets, no whitespace. The schema hands the planners the canonical text
// (RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as `::`),
// so what is copied into a config is always that, whatever spelling the site used.
//
// Parsing is ip-num's (the planners' IPv6 library, model/network/addressing.ts), behind a strict
// check of the characters first: ip-num throws on some junk (a zone with ';'), and accepts
// forms a site must not use (dotted IPv4). Each prefix is parsed once per validation.
import { IPv6 } from "ip-num";
import { collapseIPv6Number } from "ip-num/dist/src/IPv6Utils";

/** Why a text is not an IPv6 address, or its value. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Hex groups and colons only, as RFC 4291 writes them (at most 8 groups of 4 and 7 colons, or '::'). */
const HEX_FORM = /^[0-9a-fA-F:]{2,39}$/;

/** The 128-bit value of an IPv6 address in any RFC 4291 hex form (no zone, no dotted IPv4), or undefined. */
export function ipv6Value(text: string): bigint | undefined {
    if (!HEX_FORM.test(text)) return undefined;
    try {
        return IPv6.fromString(text).getValue();
    } catch {
        return undefined;
    }
}

/** RFC 5952 text of an address given as a number. */
export function formatIpv6(value: bigint): string {
    return collapseIPv6Number(new IPv6(value).toString());
}

/** ::ffff:0:0/96, IPv4-mapped addresses: an IPv4 peer in IPv6 clothing. */
export function isIpv4Mapped(value: bigint): boolean {
    return value >> 32n === 0xffffn;
}

const MAPPED_BASE = 0xffffn << 32n;

/** Why `text` is not an IPv6 address or prefix, as precisely as can be told. */
function describeJunk(text: string, kind: "address" | "prefix"): string {
    const example = kind === "prefix" ? "2001:db8:a::/48" : "2001:db8:a::10";
    if (text.includes("%")) {
        return kind === "prefix"
            ? `must not carry a zone ('%...'): a prefix names a network, not an interface; write it like ${example}`
            : `must not carry a zone ('%...'): the address is copied into configs and firewall rules, which take none; write it like ${example}`;
    }
    if (text.includes("[") || text.includes("]")) return `must be written without brackets, like ${example}`;
    if (/\s/.test(text)) return `must not contain spaces or line breaks; write it like ${example}`;
    if (/\d+\.\d+\.\d+\.\d+/.test(text)) return `must not embed a dotted IPv4 address (the site is IPv6-only); write it like ${example}`;
    return kind === "prefix" ? `must be an IPv6 prefix in CIDR notation, like ${example}` : `must be an IPv6 address, like ${example}`;
}

/**
 * An IPv6 address as the schema accepts it: hex groups, no zone, unicast (not ::, not
 * multicast), not IPv4-mapped. formatIpv6 gives its canonical text.
 */
export function parseIpv6Address(text: string): Parsed<bigint> {
    const value = ipv6Value(text);
    if (value === undefined) return { ok: false, reason: describeJunk(text, "address") };
    if (isIpv4Mapped(value)) return { ok: false, reason: "is an IPv4-mapped address (::ffff:0:0/96); the site is IPv6-only" };
    if (value === 0n) return { ok: false, reason: "is the unspecified address (::), which reaches no host" };
    if (value >> 120n === 0xffn) return { ok: false, reason: "is a multicast address (ff00::/8), which is not one host" };
    return { ok: true, value };
}

/** An IPv6 prefix in CIDR form: the network (host bits zero) and its length. formatPrefix gives its canonical text. */
export function parseIpv6Prefix(text: string): Parsed<{ base: bigint; length: number }> {
    const example = "2001:db8:a::/48";
    if (/[%\s]/.test(text)) return { ok: false, reason: describeJunk(text, "prefix") };
    const slash = text.indexOf("/");
    if (slash < 0 || slash !== text.lastIndexOf("/")) return { ok: false, reason: describeJunk(text, "prefix") };
    const addr = text.slice(0, slash);
    const len = text.slice(slash + 1);
    const value = ipv6Value(addr);
    if (value === undefined) return { ok: false, reason: describeJunk(addr, "prefix") };
    if (!/^\d{1,3}$/.test(len) || Number(len) > 128) return { ok: false, reason: `must end in a prefix length from /0 to /128 (found '/${len.slice(0, 8)}'), like ${example}` };
    const length = Number(len);
    const hostMask = length === 128 ? 0n : (1n << BigInt(128 - length)) - 1n;
    const base = value & ~hostMask;
    if (base !== value) return { ok: false, reason: `host bits must be zero (the network is ${formatIpv6(base)}/${length})` };
    if (length >= 96 && base >> 32n === MAPPED_BASE >> 32n) return { ok: false, reason: "is IPv4-mapped (inside ::ffff:0:0/96); the site is IPv6-only" };
    return { ok: true, value: { base, length } };
}

/** RFC 5952 text of a prefix: `2001:db8:a::/48`. */
export function formatPrefix(p: { base: bigint; length: number }): string {
    return `${formatIpv6(p.base)}/${p.length}`;
}

/** The canonical text of a prefix the schema accepts, or the text as given when it does not. */
export function canonicalPrefix(text: string): string {
    const parsed = parseIpv6Prefix(text);
    return parsed.ok ? formatPrefix(parsed.value) : text;
}

/** The canonical text of an IPv6 address the schema accepts, or the text as given when it does not. */
export function canonicalAddress(text: string): string {
    const parsed = parseIpv6Address(text);
    return parsed.ok ? formatIpv6(parsed.value) : text;
}

/** The first and last address of a parsed prefix. */
export function prefixBounds(p: { base: bigint; length: number }): { first: bigint; last: bigint } {
    const hostMask = p.length === 128 ? 0n : (1n << BigInt(128 - p.length)) - 1n;
    return { first: p.base, last: p.base | hostMask };
}
