// The whole program under mocks: config in, validated site, resources out;
// and bad config stops the program before any resource is registered.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { readFileSync } from "node:fs";
import { projectPath } from "./model/project";

const labConfig = parse(readFileSync(projectPath("stacks", "Pulumi.lab.yaml"), "utf8")).config["nublar:site"];
const types: string[] = [];

async function runProgram(site: unknown): Promise<Record<string, unknown>> {
    types.length = 0;
    await pulumi.runtime.setMocks({
        newResource: (args) => {
            types.push(args.type);
            return { id: `${args.name}-id`, state: { ...args.inputs, publicKey: "ssh-ed25519 AAAAtest" } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
    pulumi.runtime.setAllConfig({ "nublar:site": JSON.stringify(site) });
    delete require.cache[require.resolve("./index")];
    return require("./index");
}

// Bad config first: a second setMocks would orphan the good program's pending registrations.
test("bad config fails the program with the key, value and rule, and registers nothing", async () => {
    const bad = structuredClone(labConfig);
    bad.providers[0].prefix = "198.51.100.0/24";
    await assert.rejects(
        async () => runProgram(bad),
        (err: Error) => err instanceof pulumi.RunError &&
            err.message.includes('nublar:site.providers[0].prefix = "198.51.100.0/24"') && err.message.includes("IPv6-only") &&
            err.message.includes("nothing was created"),
    );
    assert.deepEqual(types, []);
});

test("the program builds the Site from the stack's nublar:site config", async () => {
    const program = await runProgram(labConfig);
    assert.equal(program.siteName, "lab");
    const ssh = await new Promise<Record<string, string>>((resolve) => (program.ssh as pulumi.Output<Record<string, string>>).apply(resolve));
    assert.deepEqual(Object.keys(ssh).sort(), ["control-room", "gate", "visitor-center"]);
    assert.ok(types.includes("nublar:site:Site"));
});
