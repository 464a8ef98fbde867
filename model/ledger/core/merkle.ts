// Merkle tree hashes and inclusion proofs as defined in RFC 9162 §2.1 (the Certificate
// Transparency v2 tree), over the entry hashes of one checkpoint's range. Pure.
//   leaf  = SHA-256(0x00 || entry hash)
//   node  = SHA-256(0x01 || left || right)
//   a tree of n > 1 leaves splits at k, the largest power of two below n.
// RFC 9162's tree is what other tooling already checks, so a third party needs no nublar code.
import { sha256 } from "./encoding";

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

export function leafHash(data: Buffer): Buffer {
    return sha256(Buffer.concat([LEAF, data]));
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
    return sha256(Buffer.concat([NODE, left, right]));
}

/**
 * The root over `data` (the entry hashes, in seq order). Bottom-up, carrying an odd last node
 * up a level unchanged: this builds exactly RFC 9162's left-heavy tree in O(n) hashes. Verify
 * runs this over every entry, so it hashes out of one scratch buffer instead of concatenating.
 */
export function merkleRoot(data: readonly Buffer[]): Buffer {
    if (data.length === 0) return sha256(Buffer.alloc(0));
    if (data.some((d) => d.length !== 32)) return merkleRootOf(data.map(leafHash));
    const scratch = Buffer.allocUnsafe(65);
    scratch[0] = 0;
    let level: Buffer[] = new Array(data.length);
    for (let i = 0; i < data.length; i++) {
        data[i].copy(scratch, 1);
        level[i] = sha256(scratch.subarray(0, 1 + data[i].length));
    }
    return merkleRootOf(level, scratch);
}

/** The root above a level of nodes (32-byte hashes). */
function merkleRootOf(nodes: Buffer[], scratch = Buffer.allocUnsafe(65)): Buffer {
    let level = nodes;
    scratch[0] = 1;
    while (level.length > 1) {
        const next: Buffer[] = new Array(Math.ceil(level.length / 2));
        let j = 0;
        for (let i = 0; i + 1 < level.length; i += 2) {
            level[i].copy(scratch, 1);
            level[i + 1].copy(scratch, 33);
            next[j++] = sha256(scratch);
        }
        if (level.length % 2 === 1) next[j] = level[level.length - 1];
        level = next;
    }
    return level[0];
}

/** Largest power of two strictly below n (n >= 2). */
function split(n: number): number {
    let k = 1;
    while (k * 2 < n) k *= 2;
    return k;
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]): the sibling hashes from leaf `index` up to the root. */
export function inclusionPath(data: readonly Buffer[], index: number): Buffer[] {
    if (!Number.isInteger(index) || index < 0 || index >= data.length) {
        throw new RangeError(`leaf ${index} is outside a tree of ${data.length}`);
    }
    const path: Buffer[] = [];
    let lo = 0, hi = data.length, m = index;
    // Walk down from the root, remembering the sibling subtree at each split; the path lists
    // them leaf-first, so reverse at the end.
    while (hi - lo > 1) {
        const k = split(hi - lo);
        if (m < k) {
            path.push(merkleRoot(data.slice(lo + k, hi)));
            hi = lo + k;
        } else {
            path.push(merkleRoot(data.slice(lo, lo + k)));
            lo += k;
            m -= k;
        }
    }
    return path.reverse();
}

/**
 * RFC 9162 §2.1.3.2: does `path` prove that the leaf with `data` sits at `index` in a tree of
 * `size` leaves whose root is `root`? Never throws on malformed input; answers false.
 */
export function verifyInclusion(index: number, size: number, data: Buffer, path: readonly Buffer[], root: Buffer): boolean {
    if (!Number.isInteger(index) || !Number.isInteger(size) || index < 0 || index >= size) return false;
    let fn = index, sn = size - 1;
    let r = leafHash(data);
    for (const p of path) {
        if (!Buffer.isBuffer(p) || p.length !== 32) return false;
        if (sn === 0) return false;
        if (fn % 2 === 1 || fn === sn) {
            r = nodeHash(p, r);
            if (fn % 2 === 0) {
                while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
            }
        } else {
            r = nodeHash(r, p);
        }
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
    }
    return sn === 0 && r.equals(root);
}
