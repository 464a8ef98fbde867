// IPv6 arithmetic shared by the planners. Addresses are computed with ip-num and
// printed in RFC 5952 canonical form, so plans compare and diff cleanly.
import { IPv6, IPv6CidrRange } from "ip-num";
import { collapseIPv6Number } from "ip-num/dist/src/IPv6Utils";
import type { Site, SiteNode } from "../site/model";

export class PlanError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "PlanError";
    }
}

/** Canonical text of an IPv6 address given as a number. */
export function formatIpv6(value: bigint): string {
    return collapseIPv6Number(new IPv6(value).toString());
}

/** The network address of a prefix, as a number. */
export function prefixBase(cidr: string): bigint {
    return IPv6CidrRange.fromCidr(cidr).getFirst().getValue();
}

/** The `index`-th subnet of length `childLength` inside `parent` (e.g. the 5th /64 of a /48). */
export function subnet(parent: string, childLength: number, index: number): string {
    const range = IPv6CidrRange.fromCidr(parent);
    const parentLength = Number(range.cidrPrefix.getValue());
    const bits = childLength - parentLength;
    if (bits < 0 || BigInt(index) >= 1n << BigInt(bits)) {
        throw new PlanError(`subnet ${index} of /${childLength} does not fit in ${parent}`);
    }
    const base = range.getFirst().getValue() + (BigInt(index) << BigInt(128 - childLength));
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
 * Each node's number, used to derive its subnets. Taken from `id` when set, else from a hash
 * of the name, so adding or removing a node never renumbers the others. Two nodes with the
 * same number are an error that names both, rather than a silent re-numbering.
 */
export function nodeIds(site: Pick<Site, "nodes">): Map<string, number> {
    const ids = new Map<string, number>();
    const owner = new Map<number, string>();
    for (const node of site.nodes) {
        const id = nodeId(node);
        const other = owner.get(id);
        if (other !== undefined) {
            throw new PlanError(
                `nodes '${other}' and '${node.name}' both get number ${id}; set a distinct 'id' (1-65534) on one of them`,
            );
        }
        owner.set(id, node.name);
        ids.set(node.name, id);
    }
    return ids;
}

export function nodeId(node: Pick<SiteNode, "name" | "id">): number {
    return node.id ?? (fnv16(node.name) % 0xfffe) + 1;
}
