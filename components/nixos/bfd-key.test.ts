// `nublar:bfdKey` is checked at preview, before any resource exists: an empty, whitespace or
// malformed key stops the program with a message naming the key and the rule (never the key),
// instead of reaching the nodes as an empty key file.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { loadSiteFromStackFile, stackFile } from "../../model/site/load";
import { PROJECT_ROOT } from "../../model/project";
import { bfdKeyConfigError, configuredBfdKey } from "./site-deploy";

const GOOD = `0x${"5a".repeat(20)}`;
const registered: string[] = [];

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            registered.push(args.type);
            return { id: `${args.name}-id`, state: args.inputs };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

test("bfdKeyConfigError: a good key and no key pass; every bad one is named with the rule, never quoted", () => {
    assert.equal(bfdKeyConfigError(undefined), undefined);
    assert.equal(bfdKeyConfigError(GOOD), undefined);
    assert.equal(bfdKeyConfigError(GOOD.toUpperCase().replace("0X", "0x")), undefined);
    const cases: [string, RegExp][] = [
        ["", /it is empty/],
        ["   \n", /it is only whitespace/],
        [` ${GOOD}`, /leading or trailing whitespace/],
        ["hunter2", /does not start with 0x \(7 characters of text\)/],
        [`0x${"5a".repeat(16)}`, /it has 32 hex digits after 0x, not 40/],
        [`0x${"zz".repeat(20)}`, /not hex digits/],
    ];
    for (const [value, why] of cases) {
        const message = bfdKeyConfigError(value)!;
        assert.ok(message, JSON.stringify(value));
        assert.match(message, /^stack config nublar:bfdKey is not a usable BFD key: /);
        assert.match(message, why);
        assert.match(message, /It must be 0x followed by 40 hex digits \(20 bytes/);
        if (value.trim()) assert.ok(!message.includes(value.trim()), "the key is never quoted");
    }
});

test("a bad nublar:bfdKey stops the Site before anything is registered; a good one is passed on as a secret", async () => {
    const { Site } = await import("../site");
    const model = loadSiteFromStackFile(stackFile(PROJECT_ROOT, "lab"));
    for (const bad of ["", "  "]) {
        pulumi.runtime.setAllConfig({ "nublar:bfdKey": bad }, ["nublar:bfdKey"]);
        registered.length = 0;
        assert.throws(() => new Site("lab", { site: model, stateRoot: "/tmp/nublar-unit" }),
            (e: Error) => e instanceof pulumi.RunError && /nublar:bfdKey is not a usable BFD key: it is (empty|only whitespace)/.test(e.message));
        assert.deepEqual(registered, [], "nothing registered");
    }
    pulumi.runtime.setAllConfig({ "nublar:bfdKey": GOOD }, ["nublar:bfdKey"]);
    const key = configuredBfdKey()!;
    assert.equal(await pulumi.isSecret(key), true);
    assert.equal(await new Promise((r) => key.apply(r)), GOOD);
    pulumi.runtime.setAllConfig({}, []);
    assert.equal(configuredBfdKey(), undefined, "not set: nublar generates one");
});
