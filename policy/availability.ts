// The SLA policy's availability model: a pure estimate of a site's availability from its
// replicas, failure domains, detection and failover times, and its stated failure rates.
// policy/README.md "The availability model" states it in words, with its assumptions; the audit
// report prints the estimate and every input it used.
//
// In short: the site is available while traffic can enter it and reach a live upstream of every
// ingress service. That is a series of redundant groups (the providers, the edge nodes that run
// Nginx, each service's upstreams); a group is down while all its members are down at once
// (members sharing a failure domain go down with it), and each failure of a member costs the
// failover time (BFD detection plus the agent's reaction) before traffic moves off it.
import type { AgentConfig } from "../model/network/agent-config";
import type { Site } from "../model/site/model";
import { agentDetections, plannedAgents, providerTimersOf, summarize, type DetectionSummary } from "./bfd-timing";

export const HOURS_PER_YEAR = 8766; // 365.25 days
const SECONDS_PER_YEAR = HOURS_PER_YEAR * 3600;

export interface MemberInput {
    name: string;
    failureDomain?: string;
    perYear: number;
    repairHours: number;
}

export interface GroupEstimate {
    /** What the group is: `network`, `edge`, or `ingress:<service>`. */
    name: string;
    description: string;
    members: MemberInput[];
    /** Failure domains the members span (members without one count as their own). */
    failureDomains: number;
    /** Probability that every member is down at the same time (steady state). */
    allDown: number;
    /** Fraction of time lost to failovers: member failures per year x failover time. */
    failoverGap: number;
    unavailability: number;
}

export interface AvailabilityEstimate {
    site: string;
    target: number;
    availability: number;
    unavailability: number;
    /** Expected downtime per year at this availability. */
    downtimeSecondsPerYear: number;
    /** Downtime per year the target allows. */
    allowedSecondsPerYear: number;
    meets: boolean;
    inputs: {
        failureRates: Site["sla"]["failureRates"];
        detectionMs: number;
        reactionMs: number;
        failoverMs: number;
        detection: DetectionSummary;
    };
    groups: GroupEstimate[];
    /** Not counted against the target (see the README): the ledger's write availability. */
    ledgerWrites: { instances: number; needUp: number; unavailability: number };
    /** The group that costs the most, for the report's headline. */
    weakest: string;
}

/** Steady-state unavailability of one component: the fraction of time it is under repair. */
export function unavailabilityOf(rate: { perYear: number; repairHours: number }): number {
    const down = rate.perYear * rate.repairHours;
    return down / (HOURS_PER_YEAR + down);
}

/**
 * A redundant group: down while every member is down at once. Members in the same failure domain
 * also go down together when their domain fails; domains fail independently of each other.
 */
export function groupEstimate(name: string, description: string, members: MemberInput[], domainRate: { perYear: number; repairHours: number }, failoverMs: number): GroupEstimate {
    const byDomain = new Map<string, MemberInput[]>();
    for (const m of members) {
        const key = m.failureDomain ?? `(own:${m.name})`;
        byDomain.set(key, [...(byDomain.get(key) ?? []), m]);
    }
    const uDomain = unavailabilityOf(domainRate);
    // No members at all: the group is always down (an ingress service with no edge to enter by).
    let allDown = 1;
    for (const [domain, inDomain] of byDomain) {
        const membersDown = inDomain.reduce((p, m) => p * unavailabilityOf(m), 1);
        // A member with no failure domain is only as likely to fail as itself.
        const domainDown = domain.startsWith("(own:") ? 0 : uDomain;
        allDown *= domainDown + (1 - domainDown) * membersDown;
    }
    // Every failure of a member (or of its domain) interrupts the traffic it carried until BFD
    // notices and the agent moves it: with one member left there is nothing to move to, and
    // allDown already counts that time.
    const failuresPerYear = members.length > 1
        ? members.reduce((s, m) => s + m.perYear, 0) + [...byDomain.keys()].filter((d) => !d.startsWith("(own:")).length * domainRate.perYear
        : 0;
    const failoverGap = (failuresPerYear * failoverMs / 1000) / SECONDS_PER_YEAR;
    return {
        name, description, members,
        failureDomains: byDomain.size,
        allDown,
        failoverGap,
        unavailability: Math.min(1, allDown + failoverGap),
    };
}

/** P(fewer than `need` of `n` independent members up), each down with probability u. */
function fewerThanUp(n: number, need: number, u: number): number {
    let p = 0;
    for (let up = 0; up < need && up <= n; up++) p += binomial(n, up) * (1 - u) ** up * u ** (n - up);
    return p;
}

function binomial(n: number, k: number): number {
    let r = 1;
    for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
    return r;
}

/** `agents`: the site's planned agent configs, when the caller has them (the policies do). */
export function estimateAvailability(site: Site, agents: AgentConfig[] = plannedAgents(site)): AvailabilityEstimate {
    const rates = site.sla.failureRates;
    const timers = providerTimersOf(site);
    const detection = summarize(agents.flatMap((a) => agentDetections(a, timers)));
    const failoverMs = detection.worstMs + site.sla.reactionMs;
    const nodeMember = (name: string): MemberInput => {
        const n = site.nodes.find((x) => x.name === name);
        return { name, failureDomain: n?.failureDomain, ...rates.node };
    };
    const groups: GroupEstimate[] = [];
    groups.push(groupEstimate("network", "transit providers: traffic enters over any provider that is up",
        site.providers.map((p) => ({ name: p.name, ...rates.provider })), { perYear: 0, repairHours: 0 }, failoverMs));
    if (site.ingress.length) {
        const edges = site.nodes.filter((n) => n.role === "edge").map((n) => nodeMember(n.name));
        groups.push(groupEstimate("edge", "edge nodes running Nginx in front of every service (clients reach any of them)", edges, rates.failureDomain, failoverMs));
        for (const svc of site.ingress) {
            groups.push(groupEstimate(`ingress:${svc.name}`, `upstreams of ${svc.name} (port ${svc.port}): any live one serves`,
                svc.upstreams.map(nodeMember), rates.failureDomain, failoverMs));
        }
    }
    // Groups fail independently: the site is up while every group is.
    const availability = groups.reduce((a, g) => a * (1 - g.unavailability), 1);
    const unavailability = 1 - availability;
    const instances = site.ledger.instances;
    const needUp = instances > 1 ? 2 : 1; // the primary and one synchronous standby
    const weakest = [...groups].sort((a, b) => b.unavailability - a.unavailability)[0];
    return {
        site: site.name,
        target: site.sla.availability,
        availability,
        unavailability,
        downtimeSecondsPerYear: unavailability * SECONDS_PER_YEAR,
        allowedSecondsPerYear: (1 - site.sla.availability) * SECONDS_PER_YEAR,
        meets: availability >= site.sla.availability,
        inputs: { failureRates: rates, detectionMs: detection.worstMs, reactionMs: site.sla.reactionMs, failoverMs, detection },
        groups,
        ledgerWrites: { instances, needUp, unavailability: fewerThanUp(instances, needUp, unavailabilityOf(rates.node)) },
        weakest: weakest?.name ?? "network",
    };
}

/** "99.99986%", "99.9999%": enough digits to show the nines and the first digit after them. */
export function percent(a: number): string {
    if (a >= 1) return "100%";
    // The small epsilon keeps 1 - 0.999999 (a hair above 1e-6 in floating point) at six nines.
    const nines = Math.max(0, Math.floor(-Math.log10(1 - a) + 1e-9));
    const fixed = (a * 100).toFixed(Math.min(10, Math.max(3, nines)));
    return `${fixed.replace(/(\.\d\d\d*?)0+$/, "$1")}%`;
}
