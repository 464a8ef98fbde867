// The availability model: its formulas against hand computation, its behaviour (redundancy and
// failure domains help, shared domains and slow failover hurt), and the shipped stacks' estimates.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { labSiteInput } from "../model/site/fixtures";
import { loadSiteFromStackFile, parseSite } from "../model/site/load";
import { estimateAvailability, groupEstimate, HOURS_PER_YEAR, unavailabilityOf } from "./availability";
import { validateStack } from "./testing";
import { slaAvailability } from "./rules/sla";
import { TYPES } from "./rules/resources";
import { projectPath } from "../model/project";

const STACKS = projectPath("stacks");
const rate = { perYear: 2, repairHours: 4 };
const domain = { perYear: 0.5, repairHours: 10 };

test("one component: unavailable for its repair time after each failure", () => {
    assert.equal(unavailabilityOf(rate), 8 / (HOURS_PER_YEAR + 8));
    assert.equal(unavailabilityOf({ perYear: 0, repairHours: 4 }), 0);
});

test("a group is down while every member is, members of one domain fall with it, and each failure costs the failover time", () => {
    const u = unavailabilityOf(rate), d = unavailabilityOf(domain);
    const two = groupEstimate("g", "", [{ name: "a", failureDomain: "x", ...rate }, { name: "b", failureDomain: "y", ...rate }], domain, 0);
    assert.ok(Math.abs(two.allDown - (d + (1 - d) * u) ** 2) < 1e-18);
    const shared = groupEstimate("g", "", [{ name: "a", failureDomain: "x", ...rate }, { name: "b", failureDomain: "x", ...rate }], domain, 0);
    assert.ok(Math.abs(shared.allDown - (d + (1 - d) * u * u)) < 1e-18);
    assert.ok(shared.allDown > two.allDown * 10, "a shared failure domain is far worse");
    // Failover: (2 + 2 member failures + 2 x 0.5 domain failures) a year, 1 s each.
    const slow = groupEstimate("g", "", two.members, domain, 1000);
    assert.ok(Math.abs(slow.failoverGap - 5 / (HOURS_PER_YEAR * 3600)) < 1e-18);
    assert.equal(groupEstimate("g", "", [], domain, 1000).unavailability, 1, "no member: always down");
    assert.equal(groupEstimate("g", "", [{ name: "a", ...rate }], domain, 1000).failoverGap, 0, "one member: nothing to fail over to");
});

test("the lab's one edge node is its weakest group; a second edge in another domain helps by orders of magnitude", () => {
    const lab = loadSiteFromStackFile(path.join(STACKS, "Pulumi.lab.yaml"));
    const e = estimateAvailability(lab);
    assert.equal(e.weakest, "edge");
    assert.ok(e.availability > 0.999 && e.availability < 0.9999, `lab estimate ${e.availability}`);
    const two = structuredClone(lab);
    two.nodes.push({ ...two.nodes[0], name: "gate-2", failureDomain: "south", id: undefined });
    assert.ok(1 - estimateAvailability(two).availability < (1 - e.availability) / 100);
    // Detection and reaction add up into the failover time the report shows.
    assert.equal(e.inputs.failoverMs, e.inputs.detectionMs + lab.sla.reactionMs);
    assert.equal(e.inputs.detectionMs, 60, "20 ms x 3 for a 300 ms budget");
});

test("the shipped parks and data center meet six nines with their stated rates; with ingress, the defaults would not", () => {
    for (const stack of ["isla-nublar", "isla-sorna", "dc-eu-west"]) {
        const site = loadSiteFromStackFile(path.join(STACKS, `Pulumi.${stack}.yaml`));
        const e = estimateAvailability(site);
        assert.ok(e.meets, `${stack}: ${e.availability}`);
        const defaults = parseSite({ ...labSiteInput(["edge"]), sla: { availability: 0.999999, failoverBudgetMs: 100 } });
        // Isla Sorna serves no ingress: two providers alone meet six nines even at the default rates.
        if (site.ingress.length) assert.ok(!estimateAvailability({ ...site, sla: { ...site.sla, failureRates: defaults.sla.failureRates } }).meets, stack);
    }
});

test("sla-availability: a site missing its target fails with the estimate and the weakest group; parks need six nines", async () => {
    const lab = loadSiteFromStackFile(path.join(STACKS, "Pulumi.lab.yaml"));
    const resource = (site: typeof lab) => ({ type: TYPES.site, name: site.name, props: { site } });
    assert.deepEqual((await validateStack(slaAvailability, [resource(lab)])).violations, []);
    const strict = { ...lab, sla: { ...lab.sla, availability: 0.999999 } };
    const o = await validateStack(slaAvailability, [resource(strict)]);
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /site lab: estimated availability 99\.9\d+% \(\d+\.\d s\/year down\) misses its target 99\.9999% \(31\.6 s\/year\)\. Weakest: edge, 1 member/);
    assert.ok(o.violations[0].urn?.includes(TYPES.site));
    const park = loadSiteFromStackFile(path.join(STACKS, "Pulumi.isla-nublar.yaml"));
    const lax = { ...park, sla: { ...park.sla, availability: 0.999 } };
    const p = await validateStack(slaAvailability, [resource(lax)]);
    assert.match(p.violations[0]?.message ?? "", /sla\.availability 99\.90% is below the 99\.9999% required of a park/);
    assert.deepEqual((await validateStack(slaAvailability, [resource(lax)], { minimumTarget: { park: 0.999 } })).violations, []);
});

test("policy config merges into the defaults one level down: one kind's minimum leaves the others'", async () => {
    const dc = loadSiteFromStackFile(path.join(STACKS, "Pulumi.dc-eu-west.yaml"));
    const lax = { ...dc, sla: { ...dc.sla, availability: 0.999 } };
    const o = await validateStack(slaAvailability, [{ type: TYPES.site, name: dc.name, props: { site: lax } }], { minimumTarget: { park: 0.999 } });
    assert.match(o.violations[0]?.message ?? "", /below the 99\.9999% required of a datacenter/);
});
