import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { utils } from "ssh2";
import { newSshKeyPair, wholeSshKeyPair } from "./ssh-key";

test("ssh2 alone sometimes writes an ed25519 key it cannot read; such a pair is never whole", () => {
    // Draw until ssh2 gives a broken pair (about 1 in 256), so the check is seen to catch one.
    let broken: { private: string; public: string } | undefined;
    for (let i = 0; i < 20_000 && !broken; i++) {
        const pair = utils.generateKeyPairSync("ed25519");
        if (utils.parseKey(pair.private) instanceof Error) broken = pair;
    }
    assert.ok(broken, "no malformed key in 20000 draws: has ssh2 been fixed? then ssh-key.ts's retry can go");
    assert.equal(wholeSshKeyPair(broken), false);
});

test("newSshKeyPair: every pair parses, and OpenSSH derives the same public line from the private key", (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-ssh-key-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    for (let i = 0; i < 2000; i++) {
        const pair = newSshKeyPair();
        assert.ok(!(utils.parseKey(pair.private) instanceof Error), pair.private);
        if (i < 5) {
            fs.writeFileSync(path.join(dir, "k"), pair.private, { mode: 0o600 });
            const out = spawnSync("ssh-keygen", ["-y", "-f", path.join(dir, "k")], { encoding: "utf8" });
            assert.equal(out.status, 0, out.stderr);
            assert.equal(out.stdout.trim().split(" ").slice(0, 2).join(" "), pair.public.trim().split(" ").slice(0, 2).join(" "));
        }
    }
});
