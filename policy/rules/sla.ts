// The stack-level SLA rule: estimate the site's availability from its replicas, failure domains,
// detection and failover times and stated failure rates (../availability.ts), and compare it
// with the site's target.
import type { StackValidationPolicy } from "@pulumi/policy";
import { estimateAvailability, percent } from "../availability";
import { siteView } from "./nodes";
import { configOf, siteOf } from "./resources";

export const slaAvailability: StackValidationPolicy = {
    name: "sla-availability",
    description: "The site's estimated availability (policy/README.md, \"The availability model\") meets its SLA target, and the target meets the minimum for its kind of site (parks aim for 99.9999%).",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Look at the estimate's weakest group in the audit report: add a provider, an edge node or an upstream in another failure domain, shorten the failover budget, or state failure rates your contracts support (sla.failureRates). Lowering sla.availability below the minimum for the site's kind is not a fix.",
    configSchema: {
        properties: {
            minimumTarget: {
                type: "object",
                description: "Lowest acceptable sla.availability per site kind.",
                additionalProperties: { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 },
                default: { park: 0.999999, datacenter: 0.999999 },
            },
        },
    },
    validateStack: (args, report) => {
        const { minimumTarget } = configOf(args, { minimumTarget: { park: 0.999999, datacenter: 0.999999 } as Record<string, number> });
        for (const r of args.resources) {
            const site = siteOf(r);
            if (!site) continue;
            const e = estimateAvailability(site, siteView(site).nodes.map((n) => n.agent));
            const min = minimumTarget[site.kind];
            if (min !== undefined && site.sla.availability < min) {
                report(`site ${site.name}: sla.availability ${percent(site.sla.availability)} is below the ${percent(min)} required of a ${site.kind}. Fix: raise sla.availability and build the site to meet it.`, r.urn);
            }
            if (!e.meets) {
                const worst = e.groups.find((g) => g.name === e.weakest)!;
                report(`site ${site.name}: estimated availability ${percent(e.availability)} (${e.downtimeSecondsPerYear.toFixed(1)} s/year down) misses its target ${percent(e.target)} (${e.allowedSecondsPerYear.toFixed(1)} s/year). `
                    + `Weakest: ${worst.name}, ${worst.members.length} member(s) in ${worst.failureDomains} failure domain(s), unavailability ${worst.unavailability.toExponential(2)}; failover ${e.inputs.failoverMs} ms. `
                    + "Fix: add redundancy there (another provider, edge or upstream in another failure domain) or state the failure rates your contracts support (sla.failureRates).", r.urn);
            }
        }
    },
};

export const slaPolicies = [slaAvailability];
