import { test } from "node:test";
import * as assert from "node:assert/strict";
import { hostKeyMatches } from "./client";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz2Q0hZFSOPggsoAlK8BkxfAVXfuggFwVHG79+hT3uw gate@nublar-lab";

test("a host key is accepted only when it is the pinned one", () => {
    const blob = Buffer.from(KEY.split(" ")[1], "base64");
    assert.ok(hostKeyMatches(KEY, blob));
    const other = Buffer.from(blob);
    other[other.length - 1] ^= 1;
    assert.ok(!hostKeyMatches(KEY, other));
    assert.ok(!hostKeyMatches("", blob));
    assert.ok(!hostKeyMatches("ssh-ed25519", blob));
});
