// BFD, multihoming, IPv6-only and ingress rules, each with compliant and violating inputs, called
// as the engine calls them (policy/testing.ts): on the site component (planned at preview) and on
// a node deployment (the rendered files, known at `up`, unknown at preview).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { renderNginxConf } from "../../model/network/nginx-conf";
import type { AgentConfig } from "../../model/network/agent-config";
import { dcSiteInput, labSiteInput } from "../../model/site/fixtures";
import { loadSiteFromStackFile, parseSite } from "../../model/site/load";
import type { Site } from "../../model/site/model";
import { plannedAgents } from "../bfd-timing";
import { UNKNOWN, validateResource, type TestResource } from "../testing";
import { ingressHealthFromBfd, ingressRedundancy, ingressRetries } from "./ingress";
import { bfdCoverage, bfdDetectionWithinBudget, bfdMultihopAuthenticated, ipv6Only, multihoming } from "./network";
import { TYPES } from "./resources";
import { projectPath } from "../../model/project";

const STACKS = projectPath("stacks");
const park = () => loadSiteFromStackFile(path.join(STACKS, "Pulumi.isla-nublar.yaml"));
const siteResource = (site: Site): TestResource => ({ type: TYPES.site, name: site.name, props: { site } });

/** A site with an edge, two app upstreams in two domains: compliant with every network rule. */
function goodSite(overrides: Record<string, unknown> = {}): Site {
    const input = labSiteInput(["edge", "app-1", "app-2"], {
        sla: { availability: 0.999, failoverBudgetMs: 300 },
        ingress: [{ name: "web", port: 80, upstreams: ["app-1", "app-2"] }],
        ...overrides,
    });
    input.nodes[1].failureDomain = "west";
    return parseSite(input);
}

function deployment(agent: AgentConfig, nginxConf?: string, extra: Record<string, unknown> = {}): TestResource {
    const files: Record<string, string> = { "agent.json": JSON.stringify(agent) };
    if (nginxConf) files["nginx.conf"] = nginxConf;
    return {
        type: TYPES.deployment,
        name: `${agent.node}-deployment`,
        props: { node: agent.node, access: { host: "2001:db8::1", port: 22, user: "root", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1DPPZ1bdOYcF29MZO/LFWFEfFqOlt3s2EXlc/YUWXB" }, files, secrets: { "bfd.key": "s3cret" }, ...extra },
    };
}

const edgeAgent = (site: Site) => plannedAgents(site).find((a) => a.node === "edge")!;
const edgeConf = (agent: AgentConfig) => renderNginxConf({ upstreams: agent.ingress, controlSocket: agent.paths.nginxControl! });

test("the shipped park and the compliant site pass every network and ingress rule, on the site and on each deployment", async () => {
    for (const site of [park(), goodSite()]) {
        for (const policy of [bfdDetectionWithinBudget, bfdMultihopAuthenticated, bfdCoverage, multihoming, ipv6Only, ingressRedundancy, ingressRetries, ingressHealthFromBfd]) {
            const o = await validateResource(policy, siteResource(site));
            assert.deepEqual(o.violations, [], `${policy.name} on ${site.name}`);
            for (const agent of plannedAgents(site)) {
                const d = await validateResource(policy, deployment(agent, agent.ingress.length ? edgeConf(agent) : undefined));
                assert.deepEqual(d.violations, [], `${policy.name} on ${agent.node}'s deployment`);
            }
        }
    }
});

test("bfd-detection-within-budget: a budget the fastest timers cannot meet is named with the session and the numbers", async () => {
    // 10 ms x 3 = 30 ms detection + 50 ms reaction = 80 ms > 50 ms.
    const o = await validateResource(bfdDetectionWithinBudget, siteResource(goodSite({ sla: { availability: 0.999, failoverBudgetMs: 50 } })));
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /cannot fail over within 50 ms/);
    assert.match(o.violations[0].message, /edge gw\/provider-a: detection 30 ms \+ reaction 50 ms = 80 ms/);
    assert.match(o.violations[0].message, /Fix: /);
});

test("bfd-detection-within-budget: a provider's slower router timers are negotiated, and only its gateway sessions fail", async () => {
    const site = goodSite({
        providers: [
            { name: "provider-a", prefix: "2001:db8:a::/48", bfd: { transmitIntervalMs: 100, receiveIntervalMs: 100, detectMultiplier: 3 } },
            { name: "provider-b", prefix: "2001:db8:b::/48" },
        ],
    });
    const o = await validateResource(bfdDetectionWithinBudget, siteResource(site));
    assert.equal(o.violations.length, 1);
    // max(our 20 ms, their 100 ms) x 3 = 300 ms at our end.
    assert.match(o.violations[0].message, /3 BFD session\(s\)/);
    assert.match(o.violations[0].message, /gw\/provider-a: detection 300 ms/);
    assert.doesNotMatch(o.violations[0].message, /provider-b/);
    // The policy's budgetShare config tightens it further.
    const tight = await validateResource(bfdDetectionWithinBudget, siteResource(goodSite()), { budgetShare: 0.3 });
    assert.match(tight.violations[0]?.message ?? "", /within 90 ms/);
});

test("bfd-multihop-authenticated: path or multihop sessions without a key fail, on the plan and on a deployment", async () => {
    const agent = edgeAgent(goodSite());
    const { pathAuth: _, ...noAuth } = agent;
    const o = await validateResource(bfdMultihopAuthenticated, deployment(noAuth as AgentConfig));
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /edge: path\/app-1\/provider-a, .* without authentication/);
    // A multihop gateway session needs the key too; with it, the same config passes.
    const multihop = { ...noAuth, sessions: noAuth.sessions.map((s) => (s.id === "gw/provider-a" ? { ...s, multihop: true } : s)) };
    const m = await validateResource(bfdMultihopAuthenticated, deployment(multihop as AgentConfig));
    assert.match(m.violations[0]?.message ?? "", /edge: gw\/provider-a, path\//);
    assert.deepEqual((await validateResource(bfdMultihopAuthenticated, deployment({ ...multihop, pathAuth: agent.pathAuth } as AgentConfig))).violations, []);
});

test("bfd-coverage: an uplink, an upstream member or a route without its session is found", async () => {
    const agent = edgeAgent(goodSite());
    const noGateway = { ...agent, uplinks: agent.uplinks.map((u, i) => (i === 1 ? { ...u, gateway: "2001:db8:b:1::99" } : u)) };
    const a = await validateResource(bfdCoverage, deployment(noGateway));
    assert.match(a.violations[0]?.message ?? "", /uplink up1 \(provider-b\) has no gateway session to 2001:db8:b:1::99/);
    const ungated = { ...agent, ingress: agent.ingress.map((u) => ({ ...u, members: u.members.map((m) => ({ ...m, sessions: [] })) })) };
    const b = await validateResource(bfdCoverage, deployment(ungated));
    assert.match(b.violations[0]?.message ?? "", /upstream web member app-1 is not gated/);
    const route = agent.routes.find((r) => r.id.startsWith("loopback/"))!;
    const { session: _, ...ungatedRoute } = route;
    const c = await validateResource(bfdCoverage, deployment({ ...agent, routes: agent.routes.map((r) => (r === route ? ungatedRoute : r)) }));
    assert.match(c.violations[0]?.message ?? "", new RegExp(`route ${route.id} is not gated`));
});

test("multihoming: a node with one uplink, or two uplinks to one provider, fails", async () => {
    const input = labSiteInput(["edge", "app-1"]);
    input.nodes[1].uplinks = [{ provider: "provider-a" }];
    const o = await validateResource(multihoming, siteResource(parseSite(input)));
    assert.equal(o.violations.length, 1);
    assert.match(o.violations[0].message, /app-1 has 1 uplink\(s\) on 1 provider\(s\) \(provider-a\)/);
    const agent = edgeAgent(goodSite());
    const same = { ...agent, uplinks: agent.uplinks.map((u) => ({ ...u, provider: "provider-a" })) };
    const d = await validateResource(multihoming, deployment(same));
    assert.match(d.violations[0]?.message ?? "", /edge has 2 uplink\(s\) on 1 provider/);
    // The threshold is config.
    const three = await validateResource(multihoming, siteResource(goodSite()), { minUplinks: 3 });
    assert.equal(three.violations.length, 1);
});

test("ipv6-only: IPv4 in an agent config or in Nginx's listeners is found", async () => {
    const agent = edgeAgent(goodSite());
    const v4 = { ...agent, routes: [...agent.routes, { id: "legacy", destination: "10.0.0.0/8", via: "192.0.2.1", dev: "up0", metric: 1, reason: "x" }] };
    const o = await validateResource(ipv6Only, deployment(v4));
    assert.match(o.violations[0]?.message ?? "", /route legacy destination 10\.0\.0\.0\/8/);
    const conf = edgeConf(agent).replace("listen [::]:80", "listen 0.0.0.0:80");
    const n = await validateResource(ipv6Only, deployment(agent, conf));
    assert.match(n.violations[0]?.message ?? "", /nginx\.conf: 'listen 0\.0\.0\.0:80/);
});

test("ingress-redundancy: one upstream, or two in one failure domain, or no edge, fails", async () => {
    const one = await validateResource(ingressRedundancy, siteResource(goodSite({ ingress: [{ name: "web", port: 80, upstreams: ["app-1"] }] })));
    assert.match(one.violations[0]?.message ?? "", /web has 1 upstream\(s\) \(app-1\) in 1 failure domain/);
    const input = labSiteInput(["edge", "app-1", "app-2"], { ingress: [{ name: "web", port: 80, upstreams: ["app-1", "app-2"] }] });
    const sameDomain = await validateResource(ingressRedundancy, siteResource(parseSite(input)));
    assert.match(sameDomain.violations[0]?.message ?? "", /web has 2 upstream\(s\) \(app-1, app-2\) in 1 failure domain/);
    const noEdge = labSiteInput(["core-1", "app-1", "app-2"], { ingress: [{ name: "web", port: 80, upstreams: ["app-1", "app-2"] }] });
    noEdge.nodes[0].role = "core";
    noEdge.nodes[1].failureDomain = "west";
    const e = await validateResource(ingressRedundancy, siteResource(parseSite(noEdge)));
    assert.match(e.violations[0]?.message ?? "", /no node has role 'edge'/);
});

test("ingress-retries and ingress-health-from-bfd: retries off, too few tries, or a fixed server list fail", async () => {
    const agent = edgeAgent(goodSite());
    const conf = edgeConf(agent);
    const off = await validateResource(ingressRetries, deployment(agent, conf.replace(/proxy_next_upstream error[^;]*;/, "proxy_next_upstream off;")));
    assert.match(off.violations[0]?.message ?? "", /edge: retries are off/);
    const once = await validateResource(ingressRetries, deployment(agent, conf.replace("proxy_next_upstream_tries 3;", "proxy_next_upstream_tries 1;")));
    assert.match(once.violations[0]?.message ?? "", /proxy_next_upstream_tries is 1, below 2/);
    const passive = renderNginxConf({ upstreams: agent.ingress, controlSocket: "/run/x.sock", passive: { maxFails: 1, failTimeoutS: 10 } });
    const h = await validateResource(ingressHealthFromBfd, deployment(agent, passive));
    assert.match(h.violations[0]?.message ?? "", /no balancer_by_lua/);
    assert.match(h.violations[0]?.message ?? "", /fixed server\(s\) with passive health checks/);
});

test("at preview a deployment's files are unknown: the rules neither fail nor crash, and the site's plan is still checked", async () => {
    const unknownFiles: TestResource = { type: TYPES.deployment, name: "gate-deployment", props: { node: "gate", access: UNKNOWN.object, files: UNKNOWN.object, secrets: UNKNOWN.object } };
    for (const policy of [bfdMultihopAuthenticated, bfdCoverage, multihoming, ipv6Only, ingressRetries, ingressHealthFromBfd]) {
        const o = await validateResource(policy, unknownFiles);
        assert.deepEqual(o.violations, [], policy.name);
        assert.equal(o.unknown, undefined, `${policy.name} touched an unknown value`);
    }
    const partly: TestResource = { ...unknownFiles, props: { ...unknownFiles.props, files: { "agent.json": UNKNOWN.string } } };
    const p = await validateResource(bfdCoverage, partly);
    assert.deepEqual([p.violations, p.unknown], [[], undefined]);
    // The same site, planned at preview, is still checked: a broken budget fails there.
    const site = await validateResource(bfdDetectionWithinBudget, siteResource(goodSite({ sla: { availability: 0.999, failoverBudgetMs: 50 } })));
    assert.equal(site.violations.length, 1);
});

test("a deployment whose agent.json is broken is reported, not crashed on", async () => {
    const broken = deployment(edgeAgent(goodSite()));
    broken.props.files["agent.json"] = "{ not json";
    const o = await validateResource(bfdCoverage, broken);
    assert.match(o.violations[0]?.message ?? "", /edge: agent\.json is not a valid agent config/);
});

test("bfd-coverage: EC2 nodes' uplinks (a VPC router without BFD) are covered by their paths; a group of anything else is not", async () => {
    const site = parseSite(dcSiteInput());
    for (const policy of [bfdDetectionWithinBudget, bfdMultihopAuthenticated, bfdCoverage, multihoming, ipv6Only]) {
        assert.deepEqual((await validateResource(policy, siteResource(site))).violations, [], policy.name);
    }
    const agent = plannedAgents(site).find((a) => a.node === "ledger-1")!;
    assert.ok(agent.sessionGroups?.length, "the EC2 node's uplinks are judged by groups");
    assert.deepEqual((await validateResource(bfdCoverage, deployment(agent))).violations, []);
    // A group that also names a session over the other provider does not watch this uplink.
    const [g0, g1] = agent.sessionGroups!;
    const crossed = { ...agent, sessionGroups: [{ ...g0, anyOf: [...g0.anyOf, g1.anyOf[0]] }, g1] };
    const o = await validateResource(bfdCoverage, deployment(crossed));
    assert.match(o.violations[0]?.message ?? "", /uplink up0 \(aws-transit\) is judged by group gw\/aws-transit, whose members are not all path sessions over aws-transit/);
});
