// The activation commands are shell run on the node over SSH: they must be valid POSIX sh,
// quote what they are given, and do the steps in the order rollback depends on.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { labActivation, nixosActivation, sh } from "./activation";

const parses = (script: string) => {
    const r = spawnSync("sh", ["-n"], { input: script, encoding: "utf8" });
    assert.equal(r.status, 0, `sh -n rejected:\n${script}\n${r.stderr}`);
};

test("sh() quotes anything, including quotes, for a POSIX shell", () => {
    for (const hostile of ["plain", "it's", "$(reboot)", "a b\nc", "`id`", "'; rm -rf / #"]) {
        const r = spawnSync("sh", ["-c", `printf %s ${sh(hostile)}`], { encoding: "utf8" });
        assert.equal(r.stdout, hostile);
    }
});

test("NixOS activation: every command is valid sh, the watchdog is armed before nixos-rebuild, and rollback goes to the recorded system", () => {
    const a = nixosActivation("/var/lib/nublar/system");
    for (const mode of ["switch", "boot", "test", "dry-activate"] as const) {
        const cmd = a.switchCmd(7, mode, 90);
        parses(cmd);
        assert.ok(cmd.indexOf("systemd-run") < cmd.indexOf("nixos-rebuild"), "the watchdog exists before the switch");
        assert.match(cmd, new RegExp(`nixos-rebuild ${mode} -I nixos-config="\\$G/configuration.nix"`));
        const rollback = a.extraFiles(7, mode)["nublar-rollback.sh"];
        parses(rollback);
        assert.match(rollback, /previous-system/);
        assert.equal(/nix-env -p \/nix\/var\/nix\/profiles\/system --set/.test(rollback), mode === "switch" || mode === "boot");
    }
    // A changed key restarts the agent (it loads its credential copy at start); the fingerprints
    // stay in root's folder, never in /run/nublar, which is the agent's own.
    const sw = a.switchCmd(7, "switch", 90);
    assert.match(sw, /\/run\/nublar-deploy\/keys\.sha256/);
    assert.doesNotMatch(sw, /\/run\/nublar\//);
    assert.match(sw, /systemctl restart nublar-agent\.service/);
    parses(a.statusCmd());
    parses(a.confirmCmd(7));
    parses(a.rollbackCmd(7));
    assert.equal(a.changesRunningSystem("switch"), true);
    assert.equal(a.changesRunningSystem("boot"), false);
    assert.equal(a.deactivateCmd, undefined, "a real node keeps its system when Pulumi forgets it");
});

test("lab activation runs lab-system.ts on the node, with every path quoted", () => {
    const a = labActivation({ root: "/srv/it's here/system", nodeDir: "/srv/it's here", projectDir: "/work/main", nodeBinary: "/usr/bin/node" });
    for (const cmd of [a.statusCmd(), a.switchCmd(3, "switch", 60), a.confirmCmd(3), a.rollbackCmd(3), a.deactivateCmd!()]) parses(cmd);
    assert.match(a.switchCmd(3, "switch", 60), /node-system\.ts switch --root '\/srv\/it'\\''s here\/system' .* --gen 3 --watchdog-s 60/);
    assert.match(a.switchCmd(3, "boot", 60), /no boot loader/);
});

test("the status command reports generations as JSON on a real shell", () => {
    const fs = require("node:fs") as typeof import("node:fs");
    const os = require("node:os") as typeof import("node:os");
    const path = require("node:path") as typeof import("node:path");
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-act-"));
    try {
        const status = () => JSON.parse(spawnSync("sh", ["-c", nixosActivation(root).statusCmd()], { encoding: "utf8" }).stdout);
        assert.deepEqual(status(), { current: null, generations: [] });
        for (const g of ["1", "2", "10"]) fs.mkdirSync(path.join(root, "generations", g), { recursive: true });
        fs.writeFileSync(path.join(root, "current"), "10\n");
        assert.deepEqual(status(), { current: 10, generations: [1, 2, 10] });
    } finally {
        fs.rmSync(root, { recursive: true, force: true });
    }
});
