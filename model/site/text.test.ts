// Showing a site's text safely (./text.ts): what `nublar site show` and the validator's errors
// print, whatever the site holds.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { escapeText, findControlChar, listNames, preview, safeJson, truncate } from "./text";

const NASTY = "a\u0000\u0007\t\n\r\u001b[2J\u001b]0;title\u0007\u007f\u0085\u009b31m\u061c\u200e\u2028\u202e\u2066\ufeff\ud800z";

test("escapeText shows every control character as a visible escape, and leaves other text alone", () => {
    const out = escapeText(NASTY);
    assert.doesNotMatch(out, /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]/);
    assert.equal(out, "a\\x00\\x07\\x09\\x0a\\x0d\\x1b[2J\\x1b]0;title\\x07\\x7f\\x85\\x9b31m\\u061c\\u200e\\u2028\\u202e\\u2066\\ufeff\\ud800z");
    const fine = "Isla Nublar — Ünïcode, 🦖, \"quotes\", 'single' and a \\ backslash";
    assert.equal(escapeText(fine), fine);
    assert.equal(findControlChar(fine), undefined);
    assert.equal(findControlChar("ok\u001bx"), "U+001B at 2");
    assert.equal(findControlChar("\u{1F996}\ud800"), "U+D800 at 2");
});

test("safeJson is JSON of the same value with no control character left raw", () => {
    const value = { s: NASTY, list: [NASTY, 1, null], nested: { [NASTY]: true } };
    const out = safeJson(value, 2);
    assert.deepEqual(JSON.parse(out), value);
    assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/);
});

test("listNames lists ten names, escaped and cut, then counts the rest", () => {
    assert.equal(listNames(["a", "b"]), "a, b");
    assert.equal(listNames([]), "");
    const many = Array.from({ length: 60_000 }, (_, i) => `n${i}`);
    assert.equal(listNames(many), "n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, ... and 59990 more");
    assert.equal(listNames(new Set(["x\u001b", "y".repeat(100)]), 10, (n) => `'${n}'`), `'x\\x1b', '${"y".repeat(61)}...'`);
});

test("preview shows any value briefly: long strings, huge lists, cycles, odd types", () => {
    assert.equal(preview("10.0.0.0/8"), '"10.0.0.0/8"');
    assert.equal(preview({ tag: "x" }), '{"tag":"x"}');
    assert.equal(preview(5), "5");
    assert.equal(preview(null), "null");
    assert.equal(preview("x".repeat(1_000_000)).length, 80);
    assert.equal(preview(Array.from({ length: 1_000_000 }, (_, i) => i)).length, 80);
    const cycle: any = { a: [1] };
    cycle.a.push(cycle);
    assert.equal(preview(cycle), '{"a":[1,...]}');
    assert.equal(preview("\u001b[2J\u202e"), '"\\u001b[2J\\u202e"');
    assert.equal(preview(10n), "10");
    assert.equal(preview(new Date(0)), '"1970-01-01T00:00:00.000Z"');
    let deep: unknown = "bottom";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.ok(preview(deep).length <= 80);
});

test("truncate cuts long text with '...' and never splits a surrogate pair", () => {
    assert.equal(truncate("abc", 5), "abc");
    assert.equal(truncate("abcdefgh", 5), "ab...");
    assert.equal(truncate("a🦖bcdefgh", 6), "a🦖...");
    assert.equal(truncate("ab🦖cdefgh", 6), "ab...");
});
