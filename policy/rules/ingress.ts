// Ingress: every service survives the loss of an upstream or a whole failure domain, requests
// in flight are retried, and members come and go with BFD, not with Nginx reloads.
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { capped, confLines, nodesOf } from "./nodes";
import { configOf, siteOf } from "./resources";

export const ingressRedundancy: ResourceValidationPolicy = {
    name: "ingress-redundancy",
    description: "Every ingress service has at least two upstreams, in at least two failure domains, and the site has an edge node to run Nginx in front of them.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "List a second upstream node from another failureDomain in ingress[].upstreams (add an app node if needed), and give the site an edge node.",
    configSchema: {
        properties: {
            minUpstreams: { type: "integer", minimum: 1, default: 2 },
            minFailureDomains: { type: "integer", minimum: 1, default: 2 },
        },
    },
    validateResource: (args, report) => {
        const site = siteOf(args);
        if (!site) return;
        const { minUpstreams, minFailureDomains } = configOf(args, { minUpstreams: 2, minFailureDomains: 2 });
        const domainOf = new Map(site.nodes.map((n) => [n.name, n.failureDomain]));
        const bad: string[] = [];
        for (const svc of site.ingress) {
            const domains = new Set(svc.upstreams.map((u) => domainOf.get(u)));
            if (svc.upstreams.length < minUpstreams || domains.size < minFailureDomains) {
                bad.push(`${svc.name} has ${svc.upstreams.length} upstream(s) (${svc.upstreams.join(", ")}) in ${domains.size} failure domain(s)`);
            }
        }
        if (site.ingress.length && !site.nodes.some((n) => n.role === "edge")) bad.push("no node has role 'edge', so no Nginx serves the ingress");
        if (bad.length) report(`ingress is not redundant (needs ${minUpstreams} upstreams in ${minFailureDomains} failure domains): ${capped(bad)}. Fix: add upstreams from other failure domains to ingress[].upstreams.`);
    },
};

export const ingressRetries: ResourceValidationPolicy = {
    name: "ingress-retries",
    description: "Nginx retries a request on another member when the one it tried fails (proxy_next_upstream on error and timeout, with at least two tries), so that a member dying mid-request costs no visitor an error.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Render Nginx's config with nublar's renderer (model/network/nginx-conf.ts), which sets proxy_next_upstream error timeout http_502 http_503 and proxy_next_upstream_tries 3.",
    configSchema: { properties: { minTries: { type: "integer", minimum: 2, default: 2 } } },
    validateResource: (args, report) => {
        const { minTries } = configOf(args, { minTries: 2 });
        const bad: string[] = [];
        for (const n of nodesOf(args)) {
            if (!n.nginxConf) continue;
            const lines = confLines(n.nginxConf);
            const next = lines.find((l) => l.startsWith("proxy_next_upstream "));
            const tries = lines.find((l) => l.startsWith("proxy_next_upstream_tries "));
            const words = next?.replace(/;$/, "").split(/\s+/).slice(1) ?? [];
            const triesN = tries ? Number(tries.replace(/;$/, "").split(/\s+/)[1]) : 0;
            if (!next || words.includes("off") || !words.includes("error") || !words.includes("timeout")) bad.push(`${n.node}: retries are off (${next ?? "no proxy_next_upstream"})`);
            // 0, and the default when unset, mean "every member" in Nginx.
            else if (triesN !== 0 && triesN < minTries) bad.push(`${n.node}: proxy_next_upstream_tries is ${triesN}, below ${minTries}`);
        }
        if (bad.length) report(`requests are not retried on another upstream: ${capped(bad)}. Fix: set proxy_next_upstream error timeout; and proxy_next_upstream_tries ${minTries} or more.`);
    },
};

export const ingressHealthFromBfd: ResourceValidationPolicy = {
    name: "ingress-health-from-bfd",
    description: "Upstream membership follows BFD: the balancer takes members from the agent at runtime, each member gated by the sessions of its paths, with no fixed server list, passive health checks or reloads.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Use nublar's Nginx config (balancer_by_lua with members pushed by the agent); remove fixed `server` entries with max_fails and any reload-based health checking.",
    validateResource: (args, report) => {
        const bad: string[] = [];
        for (const n of nodesOf(args)) {
            if (!n.nginxConf) continue;
            const lines = confLines(n.nginxConf);
            if (!lines.some((l) => l.startsWith("balancer_by_lua"))) bad.push(`${n.node}: no balancer_by_lua (members are not taken from the agent)`);
            const fixed = lines.filter((l) => /^server\s/.test(l) && /max_fails|fail_timeout/.test(l));
            if (fixed.length) bad.push(`${n.node}: ${fixed.length} fixed server(s) with passive health checks (${fixed[0]})`);
            for (const up of n.agent.ingress) for (const m of up.members) {
                if (!m.sessions.length) bad.push(`${n.node}: ${up.name} member ${m.node} has no BFD session deciding it`);
            }
        }
        if (bad.length) report(`upstream health does not come from BFD: ${capped(bad)}. Fix: render Nginx with nublar's balancer config.`);
    },
};

export const ingressPolicies = [ingressRedundancy, ingressRetries, ingressHealthFromBfd];
