// One node's forwarding plan as the policies read it, from either place it appears: the site
// component (planned at preview by the same planners the program uses, so a violation blocks the
// preview) or a node deployment (the files actually shipped to the node, known at `up`).
import type { AgentConfig } from "../../model/network/agent-config";
import { renderNginxConf } from "../../model/network/nginx-conf";
import { planSite, type SitePlan } from "../../model/network/site-plan";
import type { Site } from "../../model/site/model";
import { plannedAgents } from "../bfd-timing";
import { renderedOf, siteOf } from "./resources";

export interface NodeView {
    node: string;
    agent: AgentConfig;
    nginxConf?: string;
    /** `plan`: derived from the site description; `rendered`: the deployed files. */
    source: "plan" | "rendered";
}

export interface SiteView {
    site: Site;
    plan: SitePlan;
    nodes: NodeView[];
}

/**
 * The site's plan, once per site content: every policy gets its own copy of the inputs from the
 * engine, so an identity cache would plan a big site once per rule. The key is the site's JSON,
 * which also tells a site with placeholders (unknowns) apart.
 */
const cache = new Map<string, SiteView | Error>();
const CACHED_SITES = 4;

/** Forget every planned site (benchmarks measure a cold evaluation, as one preview does). */
export function clearPlanCache(): void {
    cache.clear();
}

export function siteView(site: Site): SiteView {
    const key = JSON.stringify(site);
    const hit = cache.get(key);
    if (hit instanceof Error) throw hit;
    if (hit) return hit;
    let view: SiteView | Error;
    try {
        const plan = planSite(site);
        const nodes = plannedAgents(site, plan).map((agent): NodeView => ({
            node: agent.node,
            agent,
            nginxConf: agent.ingress.length ? renderNginxConf({ upstreams: agent.ingress, controlSocket: agent.paths.nginxControl! }) : undefined,
            source: "plan",
        }));
        view = { site, plan, nodes };
    } catch (err) {
        view = err as Error;
    }
    if (cache.size >= CACHED_SITES) cache.delete(cache.keys().next().value!);
    cache.set(key, view);
    if (view instanceof Error) throw view;
    return view;
}

/**
 * The nodes a resource describes: every node of a site component, or the one node of a
 * deployment. A deployment whose agent.json does not parse is reported by `onBroken`.
 */
export function nodesOf(args: { type: string; props: Record<string, any> }, onBroken?: (message: string) => void): NodeView[] {
    const site = siteOf(args);
    if (site) return siteView(site).nodes;
    const rendered = renderedOf(args);
    if (!rendered) return [];
    if (rendered.agentError) {
        onBroken?.(`node ${rendered.node}: agent.json is not a valid agent config: ${rendered.agentError}`);
        return [];
    }
    return rendered.agent ? [{ node: rendered.node, agent: rendered.agent, nginxConf: rendered.nginxConf, source: "rendered" }] : [];
}

/** nginx.conf's directives, one per line, without comments. */
export function confLines(conf: string): string[] {
    return conf.split("\n").map((l) => l.replace(/#.*/, "").trim());
}

/** At most `max` findings, then how many more: a 5,000-node site must not print 5,000 lines. */
export function capped(findings: string[], max = 8): string {
    if (findings.length <= max) return findings.join("; ");
    return `${findings.slice(0, max).join("; ")}; and ${findings.length - max} more`;
}
