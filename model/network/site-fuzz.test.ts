// Fuzzing the planners with what the site validator accepts: the same 10,000 mutations of the
// committed stacks as model/site/fuzz.test.ts (model/site/fuzz.ts; it lives here because
// model/site may not import the planners, which import it). Each must give a clear error (a
// SiteConfigError whose problems each name a key), or a valid site that planSite, planAgents
// and (for lab sites) planLab accept or refuse with their own PlanError, never a crash
// (TypeError, RangeError, stack overflow), and no error over 16 KB.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { judgeSite, MAX_ERROR_CHARS, mutatedSite, stackSites } from "../site/fuzz";
import { PlanError } from "./addressing";
import { planAgents } from "./agent-plan";
import { planLab } from "./lab-plan";
import { planSite } from "./site-plan";

const SEED = 0x73697465; // "site", as model/site/fuzz.test.ts
const CASES = 10_000;

const paths = (n: string) => ({ socket: `/run/${n}/agent.sock`, events: `/run/${n}/events.jsonl`, nginxControl: `/run/${n}/nginx.sock`, bfdKeyFile: "/run/keys/bfd" });

test(`${CASES} mutations of the committed stacks: the valid ones plan, or fail with a PlanError`, () => {
    const stacks = stackSites();
    const wall = performance.now();
    const cpu = process.cpuUsage();
    const tally = { refused: 0, planned: 0, planError: 0 };
    for (let i = 0; i < CASES; i++) {
        const { stack, raw, did } = mutatedSite(stacks, SEED, i);
        const what = `case ${i} (seed ${SEED}, stack ${stack}: ${did.join("; ")})`;
        const outcome = judgeSite(raw, what);
        if (!outcome.ok) {
            tally.refused++;
            continue;
        }
        const site = outcome.site;
        try {
            const plan = planSite(site);
            planAgents(site, { paths }, plan);
            if (site.kind === "lab") planLab(site, plan);
            tally.planned++;
        } catch (err) {
            if (!(err instanceof PlanError)) assert.fail(`${what}: a planner threw ${(err as Error)?.stack ?? String(err)}`);
            assert.ok(err.message.length <= MAX_ERROR_CHARS, `${what}: a PlanError of ${err.message.length} characters`);
            tally.planError++;
        }
    }
    const used = process.cpuUsage(cpu);
    console.log(`# planner fuzz: ${CASES} mutations in ${(performance.now() - wall).toFixed(0)} ms (${((used.user + used.system) / 1000).toFixed(0)} ms CPU): ${tally.refused} refused by the validator, ${tally.planned} planned, ${tally.planError} refused by a planner (PlanError)`);
    assert.ok(tally.planned > CASES / 20, JSON.stringify(tally));
});
