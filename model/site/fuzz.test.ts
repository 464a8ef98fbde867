// Fuzzing the site validator: 10,000 mutations of the committed stacks (types, lengths,
// characters, structure; ./fuzz.ts), each of which must end in a clear error (a SiteConfigError
// whose problems each name a key, at most 16 KB) or a valid site, never a crash. The planners
// get the valid ones in model/network/site-fuzz.test.ts (this folder may not import them).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { judgeSite, mutatedSite, stackSites } from "./fuzz";

const SEED = 0x73697465; // "site"
const CASES = 10_000;

test(`${CASES} mutations of the committed stacks: each a clear error or a valid site, never a crash`, () => {
    const stacks = stackSites();
    assert.ok(stacks.length >= 4, "the committed stacks are read");
    const started = performance.now();
    const cpu = process.cpuUsage();
    let valid = 0;
    let refused = 0;
    let longest = 0;
    for (let i = 0; i < CASES; i++) {
        const { stack, raw, did } = mutatedSite(stacks, SEED, i);
        const outcome = judgeSite(raw, `case ${i} (seed ${SEED}, stack ${stack}: ${did.join("; ")})`);
        if (outcome.ok) valid++;
        else {
            refused++;
            longest = Math.max(longest, outcome.problems.join("\n").length);
        }
    }
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    console.log(`# site fuzz: ${CASES} mutations in ${ms.toFixed(0)} ms (${((used.user + used.system) / 1000).toFixed(0)} ms CPU): ${valid} valid, ${refused} refused (longest error ${longest} characters)`);
    // The corpus reaches both outcomes, so neither side goes untested.
    assert.ok(valid > CASES / 20 && refused > CASES / 2, `${valid} valid, ${refused} refused`);
});
