// Engine layer: upgrades reach existing resources. A resource is created by the installed
// nublar provider; then another build of the provider is installed under the same version (a
// test build whose LabFile notes its updates and deletes). `pulumi up` must run the new build
// for the update of the existing resource, and `pulumi destroy` for its delete: with dynamic
// providers both ran the code serialized into the state on the day the resource was created.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { stringify } from "yaml";
import { requireCommands } from "../helpers/prereq";
import { PROVIDER_PACKAGE, PROVIDER_VERSION } from "../../provider/tokens";
import { ROOT, TestProject } from "./project";

const project = new TestProject(path.join(__dirname, "fixtures", "file-program"));
const STACK = "upgrade";
const target = path.join(project.work, "files", "note.txt");
const marker = path.join(project.work, "marker.log");

function pulumi(args: string[]) {
    const r = project.pulumi(args, STACK);
    assert.equal(r.status, 0, `pulumi ${args.join(" ")}:\n${r.output}`);
    return r;
}

function configure(content: string) {
    fs.writeFileSync(project.stackFile(STACK), stringify({ config: { "test:file": target, "test:content": content } }));
}

before(() => {
    requireCommands("pulumi", "pulumi-language-nodejs");
    configure("first");
    const r = project.pulumi(["stack", "init", "--secrets-provider", "passphrase"], STACK);
    assert.equal(r.status, 0, r.output);
});

after(() => project.remove());

test("the installed provider creates the resource", () => {
    pulumi(["up", "--yes", "--skip-preview"]);
    assert.equal(fs.readFileSync(target, "utf8"), "first");
    assert.equal(fs.existsSync(marker), false);
});

test("a new build of the provider, installed under the same version, updates and deletes the existing resource", () => {
    // The test build's launcher, as scripts/build-provider writes the real one.
    const dir = path.join(project.work, "test-build");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "pulumi-resource-nublar"), [
        "#!/bin/sh",
        `NUBLAR_TEST_MARKER='${marker}' exec '${process.execPath}' --import 'file://${ROOT}/node_modules/tsx/dist/loader.mjs' '${path.join(__dirname, "fixtures", "marked-provider.ts")}' "$@"`,
        "",
    ].join("\n"), { mode: 0o755 });
    const install = spawnSync("pulumi", ["plugin", "install", "resource", PROVIDER_PACKAGE, PROVIDER_VERSION, "--file", dir, "--reinstall"], { cwd: project.work, env: project.env(), encoding: "utf8" });
    assert.equal(install.status, 0, install.stderr);

    configure("second");
    const up = pulumi(["up", "--yes", "--skip-preview"]);
    assert.match(up.output, /1 updated/);
    assert.equal(fs.readFileSync(target, "utf8"), "second");
    assert.deepEqual(fs.readFileSync(marker, "utf8").trim().split("\n"), [`update ${target}`], "the new build ran the update");

    pulumi(["destroy", "--yes", "--skip-preview"]);
    assert.equal(fs.existsSync(target), false);
    assert.deepEqual(fs.readFileSync(marker, "utf8").trim().split("\n"), [`update ${target}`, `delete ${target}`], "the new build ran the delete");
});
