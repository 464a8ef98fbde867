import { test } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import { EntryError, canonicalPayload, chainEntry, checkSource, entryHash, genesisHash, genesisHead, hashInput } from "./encoding";

test("the hash is SHA-256 over prev hash and the length-prefixed encoding, as documented", () => {
    const prev = genesisHash("network");
    const input = hashInput(prev, 1, 1_700_000_000_123_456, "gate", '{"a":1}');
    const manual = Buffer.concat([
        prev,
        Buffer.from("0000000000000001", "hex"),
        (() => { const b = Buffer.alloc(8); b.writeBigInt64BE(1_700_000_000_123_456n); return b; })(),
        Buffer.from("00000004", "hex"), Buffer.from("gate"),
        Buffer.from("00000007", "hex"), Buffer.from('{"a":1}'),
    ]);
    assert.ok(input.equals(manual));
    assert.equal(entryHash(prev, 1, 1_700_000_000_123_456, "gate", '{"a":1}').toString("hex"), crypto.createHash("sha256").update(manual).digest("hex"));
});

test("the genesis binds a chain to its shard", () => {
    assert.notDeepEqual(genesisHash("network"), genesisHash("habitat"));
    assert.equal(genesisHead("audit").seq, 0);
});

test("field boundaries matter: moving a byte from source to payload changes the hash", () => {
    const prev = genesisHash("x");
    assert.notDeepEqual(entryHash(prev, 1, 0, "ab", "c"), entryHash(prev, 1, 0, "a", "bc"));
});

test("payloads are RFC 8785 canonical JSON; non-JSON data is refused", () => {
    assert.equal(canonicalPayload({ b: 2, a: [1, "é", 1e21] }), '{"a":[1,"é",1e+21],"b":2}');
    assert.equal(canonicalPayload({ a: 1, b: 2 }), canonicalPayload({ b: 2, a: 1 }));
    assert.throws(() => canonicalPayload(undefined), EntryError);
    assert.throws(() => canonicalPayload({ x: 10n }), EntryError);
    assert.throws(() => canonicalPayload("x".repeat(70_000)), /limit/);
});

test("sources are short printable names", () => {
    assert.equal(checkSource("gate"), "gate");
    for (const bad of ["", 5, "a\nb", "x".repeat(300)]) assert.throws(() => checkSource(bad), EntryError);
});

test("chainEntry extends the chain by one", () => {
    const e1 = chainEntry(genesisHead("s"), 10, "a", "{}");
    const e2 = chainEntry(e1, 11, "a", "{}");
    assert.equal(e2.seq, 2);
    assert.ok(e2.prevHash.equals(e1.hash));
    assert.ok(e2.hash.equals(entryHash(e1.hash, 2, 11, "a", "{}")));
});
