// Engine layer: what scripts/setup leaves behind for the engine (npm test runs setup first).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { spawnSync } from "node:child_process";
import { projectPath } from "../../model/project";

test("setup keeps Pulumi's state folder, its home and the lab's files private to their owner (0700)", () => {
    const r = spawnSync(projectPath("scripts", "setup"), ["--quiet"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    for (const dir of [".nublar", ".nublar/state", ".nublar/pulumi-home"]) {
        assert.equal(fs.statSync(projectPath(dir)).mode & 0o777, 0o700, `${dir} is 0700`);
    }
});
