// IPv6 arithmetic shared by the planners. Addresses are computed with ip-num and
// printed in RFC 5952 canonical form, so plans compare and diff cleanly.
import { IPv6CidrRange } from "ip-num";
import { UserFacingError } from "../errors";
import type { Site, SiteNode } from "../site/model";
import { formatIpv6 } from "../site/ipv6";

export class PlanError extends UserFacingError {
    readonly kind = "user";
    constructor(message: string) {
        super(message);
        this.name = "PlanError";
    }
}

/** Canonical text of an IPv6 address given as a number (the schema's, model/site/ipv6.ts). */
export { formatIpv6 };

/**
 * A prefix parsed once: ip-num's parser validates the text thoroughly and takes ~0.2 ms, and
 * the planners ask for the same few prefixes (the providers' /48s, each uplink's /64)
 * thousands of times in a large site (bench/site-plan.ts).
 */
const parsed = new Map<string, { base: bigint; length: number }>();
function parseCidr(cidr: string): { base: bigint; length: number } {
    let p = parsed.get(cidr);
    if (!p) {
        const range = IPv6CidrRange.fromCidr(cidr);
        p = { base: range.getFirst().getValue(), length: Number(range.cidrPrefix.getValue()) };
        parsed.set(cidr, p);
    }
    return p;
}

/** The network address of a prefix, as a number. */
export function prefixBase(cidr: string): bigint {
    return parseCidr(cidr).base;
}

/** The `index`-th subnet of length `childLength` inside `parent` (e.g. the 5th /64 of a /48). */
export function subnet(parent: string, childLength: number, index: number): string {
    const { base: parentBase, length: parentLength } = parseCidr(parent);
    const bits = childLength - parentLength;
    if (bits < 0 || BigInt(index) >= 1n << BigInt(bits)) {
        throw new PlanError(`subnet ${index} of /${childLength} does not fit in ${parent}`);
    }
    const base = parentBase + (BigInt(index) << BigInt(128 - childLength));
    return `${formatIpv6(base)}/${childLength}`;
}

/** The address `offset` inside `prefix` (offset 1 is the first host). */
export function hostAddress(prefix: string, offset: bigint | number): string {
    return formatIpv6(prefixBase(prefix) + BigInt(offset));
}

// FNV-1a, folded to 16 bits: a stable number from a name, independent of list order.
export function fnv16(name: string): number {
    let h = 0x811c9dc5;
    for (const ch of Buffer.from(name, "utf8")) {
        h ^= ch;
        h = Math.imul(h, 0x01000193) >>> 0;
    }
    return ((h >>> 16) ^ (h & 0xffff)) & 0xffff;
}

/**
 * The largest node number. Each provider's /48 holds 65,536 /64s, laid out by node number
 * (see model/network/site-plan.ts): uplinks at 1..NODE_ID_MAX, the overlay at 0x4000, sensors at
 * 0x8000 + number. So a site has room for NODE_ID_MAX nodes.
 */
export const NODE_ID_MAX = 0x3fff;

/**
 * Each node's number, used to derive its subnets. Taken from `id` when set, else from a hash
 * of the name, so adding or removing a node never renumbers the others. Two nodes with the
 * same number are an error that names both and suggests a free number, rather than a silent
 * re-numbering (which would move a running node's addresses).
 */
export function nodeIds(site: Pick<Site, "nodes">): Map<string, number> {
    if (site.nodes.length > NODE_ID_MAX) {
        throw new PlanError(`the site has ${site.nodes.length} nodes, but the address plan has room for ${NODE_ID_MAX} (one /64 per node in each provider's /48); split it into several sites`);
    }
    const ids = new Map<string, number>();
    const owner = new Map<number, string>();
    const clashes: string[] = [];
    for (const node of site.nodes) {
        const id = nodeId(node);
        if (id < 1 || id > NODE_ID_MAX) throw new PlanError(`node '${node.name}': id ${id} is outside the pool 1-${NODE_ID_MAX}`);
        const other = owner.get(id);
        if (other !== undefined) {
            clashes.push(`nodes '${other}' and '${node.name}' both get number ${id}`);
            continue;
        }
        owner.set(id, node.name);
        ids.set(node.name, id);
    }
    if (clashes.length) {
        let free = 1;
        const suggestions = clashes.map(() => {
            while (owner.has(free)) free++;
            return free++;
        });
        throw new PlanError(`${clashes.join("; ")}. Set a distinct 'id' (1-${NODE_ID_MAX}) on one node of each pair; free numbers include ${suggestions.join(", ")}`);
    }
    return ids;
}

export function nodeId(node: Pick<SiteNode, "name" | "id">): number {
    return node.id ?? (fnv16(node.name) % NODE_ID_MAX) + 1;
}
