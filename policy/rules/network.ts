// BFD, multihoming and IPv6-only: the rules that make failover fast and possible at all.
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { Validator } from "ip-num";
import { agentDetections, providerTimersOf } from "../bfd-timing";
import { capped, confLines, nodesOf, siteView } from "./nodes";
import { configOf, siteOf } from "./resources";

const IPV4 = /(^|[^0-9A-Za-z.:])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![0-9A-Za-z.])/;

export const bfdDetectionWithinBudget: ResourceValidationPolicy = {
    name: "bfd-detection-within-budget",
    description: "Every BFD session detects a failure, as negotiated by both ends (multiplier x the larger of the intervals), fast enough that detection plus the agent's reaction fits the site's failover budget.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Raise sla.failoverBudgetMs to what the site can meet, or agree faster BFD timers with the provider (providers[].bfd) so that multiplier x max(interval) + sla.reactionMs fits the budget. nublar picks its own timers from the budget (model/network/agent-plan.ts timersForBudget).",
    configSchema: {
        properties: {
            budgetShare: { type: "number", minimum: 0.01, maximum: 1, default: 1, description: "Share of sla.failoverBudgetMs that detection plus reaction may use." },
        },
    },
    validateResource: (args, report) => {
        const site = siteOf(args);
        if (!site) return;
        const { budgetShare } = configOf(args, { budgetShare: 1 });
        const budget = site.sla.failoverBudgetMs * budgetShare;
        const timers = providerTimersOf(site);
        const slow = siteView(site).nodes
            .flatMap((n) => agentDetections(n.agent, timers))
            .filter((d) => d.detectionMs + site.sla.reactionMs > budget)
            .map((d) => `${d.node} ${d.session}: detection ${d.detectionMs} ms + reaction ${site.sla.reactionMs} ms = ${d.detectionMs + site.sla.reactionMs} ms`);
        if (slow.length) {
            report(`${slow.length} BFD session(s) cannot fail over within ${budget} ms (sla.failoverBudgetMs ${site.sla.failoverBudgetMs}${budgetShare < 1 ? ` x ${budgetShare}` : ""}): ${capped(slow)}. Fix: raise sla.failoverBudgetMs or agree faster timers with the provider.`);
        }
    },
};

export const bfdMultihopAuthenticated: ResourceValidationPolicy = {
    name: "bfd-multihop-authenticated",
    description: "BFD sessions that cross a provider's network (multihop sessions, and path sessions inside tunnels) are authenticated, so that nobody outside the site can spoof a session Up or Down.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Give the agent a BFD key: keep the generated `bfd` key (components/nixos/secrets.ts) or set the `nublar:bfdKey` secret. Path sessions then use meticulous keyed SHA1 (agent config pathAuth).",
    validateResource: (args, report) => {
        const bad: string[] = [];
        for (const n of nodesOf(args, report)) {
            const needs = n.agent.sessions.filter((s) => s.multihop || s.kind === "path");
            if (needs.length && !n.agent.pathAuth) bad.push(`${n.node}: ${needs.map((s) => s.id).join(", ")} without authentication`);
        }
        if (bad.length) report(`unauthenticated BFD sessions: ${capped(bad)}. Fix: configure pathAuth with a BFD key (the nublar:bfdKey secret, or the generated one).`);
    },
};

export const bfdCoverage: ResourceValidationPolicy = {
    name: "bfd-coverage",
    description: "Every uplink gateway, every overlay path and every ingress upstream is watched by a BFD session, and the routes and members that depend on them are gated by it. An uplink whose router answers no BFD (an EC2 node's VPC router) is watched by the path sessions over it.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Let the planner write the agent configs (model/network/agent-plan.ts): it gives each uplink a gateway session, each tunnel peer a path session and each upstream member the sessions of its paths. A hand-edited or stale agent.json is what this finds.",
    validateResource: (args, report) => {
        const missing: string[] = [];
        const site = siteOf(args);
        const planned = site ? new Map(siteView(site).plan.nodes.map((p) => [p.name, p])) : undefined;
        for (const n of nodesOf(args, report)) {
            const sessions = new Map(n.agent.sessions.map((s) => [s.id, s]));
            const groups = new Map((n.agent.sessionGroups ?? []).map((g) => [g.id, g]));
            for (const u of n.agent.uplinks) {
                const s = sessions.get(u.session);
                const g = groups.get(u.session);
                // A router without BFD (an EC2 node's VPC router): the uplink is judged by the
                // path sessions over it, which must exist and run over this provider.
                const byPaths = g && g.anyOf.length > 0 && g.anyOf.every((id) => sessions.get(id)?.kind === "path" && sessions.get(id)?.provider === u.provider);
                if (g && !byPaths) missing.push(`${n.node}: uplink ${u.ifname} (${u.provider}) is judged by group ${g.id}, whose members are not all path sessions over ${u.provider}`);
                else if (!g && (!s || s.kind !== "gateway" || s.peer !== u.gateway)) missing.push(`${n.node}: uplink ${u.ifname} (${u.provider}) has no gateway session to ${u.gateway}`);
            }
            for (const up of n.agent.ingress) for (const m of up.members) {
                if (!m.sessions.length || m.sessions.some((id) => !sessions.has(id) && !groups.has(id))) missing.push(`${n.node}: upstream ${up.name} member ${m.node} is not gated by a BFD session`);
            }
            for (const r of n.agent.routes) {
                if (r.session === undefined && !r.id.startsWith("last-resort/") && !r.id.startsWith("underlay/")) missing.push(`${n.node}: route ${r.id} is not gated by a BFD session`);
            }
            const plan = planned?.get(n.node);
            if (plan) {
                // Hubs have a path to every node: index the path sessions, or this is quadratic.
                const paths = new Set(n.agent.sessions.filter((s) => s.kind === "path").map((s) => `${s.provider}|${s.peer}`));
                for (const o of plan.overlays) for (const p of o.peers) {
                    if (!paths.has(`${o.provider}|${p.address}`)) missing.push(`${n.node}: overlay path to ${p.node} over ${o.provider} has no path session`);
                }
            }
        }
        if (missing.length) report(`BFD does not cover: ${capped(missing)}. Fix: regenerate the agent configs from the site description.`);
    },
};

export const multihoming: ResourceValidationPolicy = {
    name: "multihoming",
    description: "Every node has at least two uplinks, on prefixes of at least two different providers, so that losing one provider never isolates it.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Give each node an uplink to a second provider in the site description (nodes[].uplinks), and list that provider with its own /48 (providers[]).",
    configSchema: {
        properties: {
            minUplinks: { type: "integer", minimum: 1, default: 2 },
            minProviders: { type: "integer", minimum: 1, default: 2 },
        },
    },
    validateResource: (args, report) => {
        const { minUplinks, minProviders } = configOf(args, { minUplinks: 2, minProviders: 2 });
        const bad: string[] = [];
        for (const n of nodesOf(args, report)) {
            const providers = new Set(n.agent.uplinks.map((u) => u.provider));
            const prefixes = new Set(n.agent.uplinks.map((u) => u.prefix));
            if (n.agent.uplinks.length < minUplinks || providers.size < minProviders || prefixes.size < Math.min(minUplinks, n.agent.uplinks.length)) {
                bad.push(`${n.node} has ${n.agent.uplinks.length} uplink(s) on ${providers.size} provider(s) (${[...providers].join(", ") || "none"})`);
            }
        }
        if (bad.length) report(`not multihomed (needs ${minUplinks} uplinks on ${minProviders} providers): ${capped(bad)}. Fix: add an uplink to another provider to each node in nodes[].uplinks.`);
    },
};

export const ipv6Only: ResourceValidationPolicy = {
    name: "ipv6-only",
    description: "The site is IPv6-only: provider prefixes, node addresses, routes, sessions and Nginx's listeners and upstreams carry no IPv4.",
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps: "Use IPv6 prefixes and addresses (or DNS names) everywhere in the site description; nublar plans every address from the providers' /48s.",
    validateResource: (args, report) => {
        const bad: string[] = [];
        const site = siteOf(args);
        if (site) {
            for (const p of site.providers) if (!Validator.isValidIPv6CidrNotation(p.prefix)[0]) bad.push(`provider ${p.name} prefix ${p.prefix}`);
            for (const n of site.nodes) if (n.ssh && IPV4.test(` ${n.ssh.host}`)) bad.push(`node ${n.name} ssh host ${n.ssh.host}`);
        }
        for (const n of nodesOf(args, report)) {
            const a = n.agent;
            const addresses: [string, string][] = [
                ["loopback", a.loopback],
                ...a.uplinks.flatMap((u): [string, string][] => [[`uplink ${u.ifname} address`, u.address], [`uplink ${u.ifname} gateway`, u.gateway], [`uplink ${u.ifname} prefix`, u.prefix]]),
                ...a.sessions.flatMap((s): [string, string][] => [[`session ${s.id} peer`, s.peer], [`session ${s.id} local`, s.local]]),
                ...a.routes.flatMap((r): [string, string][] => [[`route ${r.id} destination`, r.destination], [`route ${r.id} via`, r.via]]),
            ];
            for (const [what, v] of addresses) if (!v.includes(":")) bad.push(`${n.node} ${what} ${v}`);
            for (const line of confLines(n.nginxConf ?? "")) {
                const m = /^(listen|server|proxy_pass)\s/.test(line) ? IPV4.exec(line) : null;
                if (m) bad.push(`${n.node} nginx.conf: '${line}'`);
            }
        }
        if (bad.length) report(`IPv4 in an IPv6-only site: ${capped(bad)}. Fix: use IPv6 addresses and prefixes.`);
    },
};

export const networkPolicies = [bfdDetectionWithinBudget, bfdMultihopAuthenticated, bfdCoverage, multihoming, ipv6Only];
