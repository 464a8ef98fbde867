import { test } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import { inclusionPath, leafHash, merkleRoot, nodeHash, verifyInclusion } from "./merkle";

// RFC 9162 §2.1.1 MTH, written as literally as the RFC states it, to check the fast version.
function mthLiteral(d: Buffer[]): Buffer {
    if (d.length === 0) return crypto.createHash("sha256").digest();
    if (d.length === 1) return leafHash(d[0]);
    let k = 1;
    while (k * 2 < d.length) k *= 2;
    return nodeHash(mthLiteral(d.slice(0, k)), mthLiteral(d.slice(k)));
}

const leaves = (n: number) => Array.from({ length: n }, (_, i) => crypto.createHash("sha256").update(`leaf ${i}`).digest());

test("the empty tree's root is SHA-256 of nothing (RFC 9162)", () => {
    assert.equal(merkleRoot([]).toString("hex"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});

test("merkleRoot equals the RFC's recursive definition for every size up to 70", () => {
    for (let n = 1; n <= 70; n++) assert.ok(merkleRoot(leaves(n)).equals(mthLiteral(leaves(n))), `n=${n}`);
});

test("every leaf's inclusion path verifies, and a changed leaf, index, root or path does not", () => {
    for (let n = 1; n <= 33; n++) {
        const d = leaves(n);
        const root = merkleRoot(d);
        for (let i = 0; i < n; i++) {
            const path = inclusionPath(d, i);
            assert.ok(verifyInclusion(i, n, d[i], path, root), `n=${n} i=${i}`);
            assert.equal(verifyInclusion(i, n, d[(i + 1) % n], path, root), n === 1 ? true : false, `wrong leaf n=${n} i=${i}`);
            if (n > 1) assert.equal(verifyInclusion((i + 1) % n, n, d[i], path, root), false, `wrong index n=${n} i=${i}`);
            // (A wrong tree size can still verify for leaves on the left edge, by RFC 9162's
            // construction; the size is bound by the signed checkpoint, not by the path.)
            assert.equal(verifyInclusion(i, n, d[i], path, merkleRoot(leaves(n + 1))), false, `wrong root n=${n} i=${i}`);
            if (path.length) {
                const bad = path.map((p) => Buffer.from(p));
                bad[0][0] ^= 1;
                assert.equal(verifyInclusion(i, n, d[i], bad, root), false);
                assert.equal(verifyInclusion(i, n, d[i], path.slice(1), root), false);
            }
        }
    }
});

test("malformed proofs answer false rather than throwing", () => {
    const d = leaves(5);
    const root = merkleRoot(d);
    assert.equal(verifyInclusion(-1, 5, d[0], [], root), false);
    assert.equal(verifyInclusion(5, 5, d[0], [], root), false);
    assert.equal(verifyInclusion(0.5, 5, d[0], [], root), false);
    assert.equal(verifyInclusion(0, 5, d[0], [Buffer.alloc(3)], root), false);
    assert.throws(() => inclusionPath(d, 9), /outside a tree of 5/);
});
