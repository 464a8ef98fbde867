// Properties of the pure planners (site-plan.ts, agent-plan.ts, lab-plan.ts) over generated
// sites, the way pulumi-awsx checks its subnet distributor: the address plan never collides,
// adding, removing or reordering nodes renumbers no other node, every BFD session has its
// other end, and every route's gate is a session (or group) of its node.
//
// Sites are built from the fixtures (model/site/fixtures.ts) and vary in providers, node count,
// names, numbers, roles, uplinks and their order, transport, and (in the lab) the tag and the
// management prefix. They are valid by construction: every generated site must pass the site
// schema and plan without a PlanError; one that does not is a bug in the arbitraries below, and
// fails the test. Runs are seeded: a failure prints the seed and path that reproduce it.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import fc from "fast-check";
import { dcSiteInput, labSiteInput } from "../site/fixtures";
import { parseSite } from "../site/load";
import type { Site } from "../site/model";
import { NODE_ID_MAX, nodeId } from "./addressing";
import type { AgentConfig, AgentSession } from "./agent-config";
import { planAgents } from "./agent-plan";
import { planLab, type LabNodePlan, type LabPlan } from "./lab-plan";
import { HUB_ROLES, planSite, type NodePlan } from "./site-plan";

const SEED = 0x6e75626c; // "nubl"
const RUNS = 300;
const settings = (numRuns = RUNS) => ({ seed: SEED, numRuns });

// ---- Site arbitraries ----------------------------------------------------------------------

type Role = "edge" | "core" | "app" | "ledger" | "sensor-gateway";
const ROLES: readonly Role[] = ["edge", "core", "app", "ledger", "sensor-gateway"];
const isHub = (role: Role) => (HUB_ROLES as readonly string[]).includes(role);

interface ProviderSpec { name: string; prefix: string; uplinkHost?: number; vgw?: boolean }
interface NodeSpec { name: string; id?: number; role: Role; failureDomain: string; uplinks: string[] }
interface IngressSpec { name: string; port: number; upstreams: string[] }
interface SiteSpec {
    kind: "lab" | "datacenter";
    transport?: "vxlan" | "wireguard";
    lab?: { tag: string; managementPrefix: string };
    providers: ProviderSpec[];
    nodes: NodeSpec[];
    ingress: IngressSpec[];
}

const hex = (n: number | bigint) => n.toString(16);

/** Site-model names (model/site/model.ts `Name`): the fixtures' and the stacks' names, and any other. */
const nameArb = fc.oneof(
    fc.constantFrom("gate", "visitor-center", "control-room", "aviary", "lagoon", "paddock", "edge-1", "ledger-2", "a"),
    fc.stringMatching(/^[a-z]([a-z0-9-]{0,12}[a-z0-9])?$/),
);
/**
 * Node names. Not `p-<anything>`: the lab names a provider's router namespace nbl-<tag>-p-<provider>,
 * and refuses a node whose namespace would be the same (lab-plan.ts).
 */
const nodeNameArb = nameArb.filter((n) => !n.startsWith("p-"));

/** 1 to `max` providers with distinct names and distinct /48s (distinct /48s are disjoint). */
function providersArb(kind: SiteSpec["kind"], max: number) {
    return fc.uniqueArray(
        fc.record({
            name: fc.oneof(fc.constantFrom("provider-a", "provider-b", "costa-rica-telecom", "pacific-fiber", "aws-transit", "equinix"), nameArb),
            // Any /48 in 2000::/3.
            prefix: fc.tuple(fc.integer({ min: 0x2000, max: 0x3fff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }))
                .map(([a, b, c]) => `${hex(a)}:${hex(b)}:${hex(c)}::/48`),
            // AWS reserves ::0 to ::3 of every subnet (the schema's rule for VPC blocks).
            uplinkHost: fc.option(fc.integer({ min: kind === "datacenter" ? 4 : 2, max: 0xffff }), { nil: undefined }),
            vgw: fc.boolean(),
        }),
        { minLength: 1, maxLength: max, comparator: (a, b) => a.name === b.name || a.prefix === b.prefix },
    );
}

/** A node on some of `providers` (its uplinks in any order); its number is from the name unless `id` is set. */
function nodeArb(kind: SiteSpec["kind"], providers: string[]) {
    return fc.record({
        name: nodeNameArb,
        // Mostly numbered from the name; one node in five has its own `id`.
        id: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: NODE_ID_MAX }) }),
        role: fc.constantFrom(...ROLES),
        failureDomain: kind === "lab" ? fc.constantFrom("east", "west", "north") : fc.constantFrom("eu-west-1a", "eu-west-1b", "eu-west-1c"),
        uplinks: fc.shuffledSubarray(providers, { minLength: 1 }),
    }).map(({ id, ...n }): NodeSpec => (id === undefined ? n : { ...n, id }));
}

/** Distinct names and distinct node numbers: a clash of numbers is a PlanError (addressing.ts), not a plan. */
const sameNodeSlot = (a: NodeSpec, b: NodeSpec) => a.name === b.name || nodeId(a) === nodeId(b);

function nodesArb(kind: SiteSpec["kind"], providers: string[], min: number, max: number) {
    return fc.uniqueArray(nodeArb(kind, providers), { minLength: min, maxLength: max, comparator: sameNodeSlot });
}

/** Whether `n` shares a provider with some other node that is a hub. */
function sharesHub(nodes: NodeSpec[], n: NodeSpec): boolean {
    return nodes.some((h) => h !== n && isHub(h.role) && h.uplinks.some((p) => n.uplinks.includes(p)));
}

/**
 * Make a node list plannable, by rules the planners state: there is a hub (site-plan.ts), and
 * every spoke shares a provider with one (else it is cut off from the overlay). On EC2 nodes
 * (datacenter), an uplink's router answers no BFD, so every uplink needs a path over it
 * (agent-plan.ts): hubs are on every provider, and a lone hub is never alone on one.
 * Changes only the nodes that break a rule.
 */
function plannable(kind: SiteSpec["kind"], providers: string[], nodes: NodeSpec[], hubPick: number, hubRole: Role): NodeSpec[] {
    const out = nodes.map((n) => ({ ...n, uplinks: [...n.uplinks] }));
    if (!out.some((n) => isHub(n.role))) out[hubPick % out.length].role = hubRole;
    if (kind === "datacenter") {
        for (const h of out.filter((n) => isHub(n.role))) for (const p of providers) if (!h.uplinks.includes(p)) h.uplinks.push(p);
        const hubs = out.filter((n) => isHub(n.role));
        if (hubs.length === 1) {
            for (const p of providers) {
                if (!out.some((n) => n !== hubs[0] && n.uplinks.includes(p))) out.find((n) => !isHub(n.role))!.uplinks.push(p);
            }
        }
        // EC2 nodes span two zones or more (the schema's rule).
        if (new Set(out.map((n) => n.failureDomain)).size < 2) out[1].failureDomain = out[0].failureDomain === "eu-west-1a" ? "eu-west-1b" : "eu-west-1a";
    }
    // A spoke that shares no provider with any hub is given the first hub's first provider.
    const firstHub = out.find((n) => isHub(n.role))!;
    for (const n of out) if (!isHub(n.role) && !sharesHub(out, n)) n.uplinks.push(firstHub.uplinks[0]);
    return out;
}

/**
 * Ingress services whose upstreams an edge can reach: nodes other than the edges, each sharing a
 * provider with every edge (agent-plan.ts refuses an edge as its own upstream, or one it has no
 * tunnel to). `picks` choose among them.
 */
type Service = { name: string; port: number; picks: number[] };
function ingressFor(nodes: NodeSpec[], services: Service[]): IngressSpec[] {
    const edges = nodes.filter((n) => n.role === "edge");
    const candidates = nodes.filter((n) => n.role !== "edge" && edges.every((e) => e.uplinks.some((p) => n.uplinks.includes(p)))).map((n) => n.name);
    if (!candidates.length) return [];
    const seen = new Set<string>();
    return services.filter((s) => !seen.has(s.name) && seen.add(s.name)).map((s) => ({
        name: s.name, port: s.port, upstreams: [...new Set(s.picks.map((k) => candidates[k % candidates.length]))],
    }));
}

const servicesArb = fc.array(fc.record({ name: nameArb, port: fc.integer({ min: 1, max: 65535 }), picks: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }) }), { maxLength: 2 });

/**
 * The lab's management /64: a ULA, like the default. (One inside a provider's /48 collided with
 * the planned loopbacks or overlay; this property found it, and the schema now refuses it.)
 */
const managementPrefixArb = fc.tuple(fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }))
    .map(([a, b, c, d]) => `fd${hex(a).padStart(2, "0")}:${hex(b)}:${hex(c)}:${hex(d)}::/64`);

const labArb = fc.record({ tag: fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/), managementPrefix: managementPrefixArb });

function siteSpecArb(kind: SiteSpec["kind"], opts: { maxNodes?: number; ingress?: boolean } = {}): fc.Arbitrary<SiteSpec> {
    const maxNodes = opts.maxNodes ?? 8;
    return providersArb(kind, 3).chain((providers) => {
        const names: string[] = providers.map((p) => p.name);
        return fc.record({
            nodes: nodesArb(kind, names, kind === "datacenter" ? 2 : 1, maxNodes),
            hubPick: fc.nat(),
            hubRole: fc.constantFrom<Role>("edge", "core"),
            transport: fc.constantFrom(undefined, "vxlan" as const, "wireguard" as const),
            lab: labArb,
            services: opts.ingress === false ? fc.constant<Service[]>([]) : servicesArb,
        }).map(({ nodes, hubPick, hubRole, transport, lab, services }): SiteSpec => {
            const planned = plannable(kind, names, nodes, hubPick, hubRole);
            return {
                kind, providers, transport, nodes: planned, ingress: ingressFor(planned, services),
                ...(kind === "lab" ? { lab } : {}),
            };
        });
    });
}

/** The raw site (as stack config holds it), from the fixture of its kind with the spec's parts. */
function rawSite(spec: SiteSpec): any {
    const providers = spec.providers.map(({ vgw: _, uplinkHost, ...p }) => ({ ...p, ...(uplinkHost === undefined ? {} : { uplinkHost }) }));
    const overlay = spec.transport ? { overlay: { transport: spec.transport } } : {};
    const ingress = { ingress: spec.ingress.map((s) => ({ ...s, upstreams: [...s.upstreams] })) };
    if (spec.kind === "lab") {
        const raw = labSiteInput(spec.nodes.map((n) => n.name), { providers, lab: { ...spec.lab }, ...overlay, ...ingress });
        spec.nodes.forEach((n, i) => {
            Object.assign(raw.nodes[i], { role: n.role, failureDomain: n.failureDomain, uplinks: n.uplinks.map((provider) => ({ provider })) });
            if (n.id !== undefined) raw.nodes[i].id = n.id;
        });
        return raw;
    }
    const raw = dcSiteInput({ providers, ...overlay, ...ingress });
    raw.aws.vpc.uplinks = spec.providers.map((p, k) => ({
        provider: p.name,
        ipamPoolId: `ipam-pool-${hex(0x10000000 + k)}`,
        ...(p.vgw ? { route: { virtualGatewayId: `vgw-${hex(0x20000000 + k)}` } } : {}),
    }));
    raw.nodes = spec.nodes.map((n) => ({
        name: n.name, ...(n.id === undefined ? {} : { id: n.id }), role: n.role, failureDomain: n.failureDomain, ec2: {}, uplinks: n.uplinks.map((provider) => ({ provider })),
    }));
    return raw;
}

/** Parse: a generated site the schema refuses is a bug in the arbitraries (the error says which rule). */
const siteOf = (spec: SiteSpec): Site => parseSite(rawSite(spec), "generated site");

const anySiteArb = fc.oneof(siteSpecArb("lab"), siteSpecArb("datacenter", { maxNodes: 6 }));

const paths = (n: string) => ({ socket: `/run/${n}/agent.sock`, events: `/run/${n}/events.jsonl`, nginxControl: `/run/${n}/nginx.sock`, bfdKeyFile: "/run/keys/bfd" });

// ---- IPv6 arithmetic, independent of the planners' (they use ip-num and addressing.ts) --------

interface Range { text: string; base: bigint; length: number }

function ipv6(text: string): bigint {
    const halves = text.split("::");
    assert.ok(halves.length <= 2, `${text}: one '::' at most`);
    const head = halves[0] ? halves[0].split(":") : [];
    const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
    const groups = halves.length === 2 ? [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail] : head;
    assert.equal(groups.length, 8, `${text}: eight groups`);
    return groups.reduce((acc, g) => {
        assert.match(g, /^[0-9a-f]{1,4}$/, `${text}: group '${g}'`);
        return (acc << 16n) | BigInt(parseInt(g, 16));
    }, 0n);
}

function range(cidr: string): Range {
    const [address, bits] = cidr.split("/");
    const length = Number(bits);
    const base = ipv6(address);
    assert.equal(base & ((1n << BigInt(128 - length)) - 1n), 0n, `${cidr}: host bits are zero`);
    return { text: cidr, base, length };
}

const within = (outer: Range, base: bigint, length = 128) =>
    length >= outer.length && base >> BigInt(128 - outer.length) === outer.base >> BigInt(128 - outer.length);
const overlap = (a: Range, b: Range) => within(a, b.base, b.length) || within(b, a.base, a.length);

// ---- Properties -----------------------------------------------------------------------------

test("addresses never collide: loopbacks, uplinks and their routers, overlay, sensors and the lab's management", () => {
    fc.assert(fc.property(anySiteArb, (spec) => {
        const site = siteOf(spec);
        const plan = planSite(site);
        const lab = site.kind === "lab" ? planLab(site, plan) : undefined;
        const block = new Map(site.providers.map((p) => [p.name, range(p.prefix)]));

        // Every prefix the plans assign; a segment that several nodes share is one prefix.
        const prefixes: { what: string; range: Range }[] = [];
        const hosts: { what: string; address: string; in: Range }[] = [];
        const loopbacks = range(plan.loopbackPrefix);
        assert.ok(within(block.get(site.providers[0].name)!, loopbacks.base, loopbacks.length), "the loopback /64 is in the first provider's /48");
        prefixes.push({ what: "loopbacks", range: loopbacks });
        const segments = new Map<string, Range>();
        for (const n of plan.nodes) {
            hosts.push({ what: `${n.name} loopback`, address: n.loopback, in: loopbacks });
            for (const u of n.uplinks) {
                const r = range(u.prefix);
                assert.ok(within(block.get(u.provider)!, r.base, r.length), `${n.name}'s ${u.provider} uplink ${u.prefix} is in ${u.provider}'s /48`);
                prefixes.push({ what: `${n.name} uplink ${u.provider}`, range: r });
                hosts.push({ what: `${n.name} on ${u.ifname}`, address: u.address, in: r });
                hosts.push({ what: `${u.provider}'s router for ${n.name}`, address: u.gateway, in: r });
            }
            for (const o of n.overlays) {
                const seg = segments.get(o.provider) ?? range(o.prefix);
                assert.equal(o.prefix, seg.text, `every node on ${o.provider}'s overlay segment has the same /64`);
                assert.ok(within(block.get(o.provider)!, seg.base, seg.length));
                segments.set(o.provider, seg);
                hosts.push({ what: `${n.name} on ${o.ifname}`, address: o.address, in: seg });
            }
            for (const s of n.sensors) {
                const r = range(s.prefix);
                assert.ok(within(block.get(s.provider)!, r.base, r.length));
                prefixes.push({ what: `${n.name} sensors ${s.provider}`, range: r });
            }
        }
        for (const [provider, r] of segments) prefixes.push({ what: `overlay ${provider}`, range: r });
        if (lab) {
            const mgmt = range(lab.mgmt.prefix);
            prefixes.push({ what: "lab management", range: mgmt });
            hosts.push({ what: "the lab host on the management bridge", address: lab.mgmt.hostAddress, in: mgmt });
            for (const n of lab.nodes) hosts.push({ what: `${n.name} on ${n.mgmt.ifname}`, address: n.mgmt.address, in: mgmt });
        }

        for (let i = 0; i < prefixes.length; i++) for (let j = i + 1; j < prefixes.length; j++) {
            const [a, b] = [prefixes[i], prefixes[j]];
            assert.ok(!overlap(a.range, b.range), `${a.what} (${a.range.text}) and ${b.what} (${b.range.text}) overlap`);
        }
        const owner = new Map<bigint, string>();
        for (const h of hosts) {
            const value = ipv6(h.address);
            assert.ok(within(h.in, value), `${h.what} ${h.address} is in ${h.in.text}`);
            const other = owner.get(value);
            assert.ok(other === undefined, `${h.what} and ${other} are both ${h.address}`);
            owner.set(value, h.what);
        }
        if (lab) {
            // A router's side of each uplink is an interface in the router's namespace: one name per node.
            for (const r of lab.routers) {
                const names: string[] = lab.nodes.flatMap((n) => n.uplinks.filter((u) => u.provider === r.provider).map((u) => u.routerIfname));
                assert.equal(new Set(names).size, names.length, `interface names in ${r.netns} are distinct`);
            }
            const netns = [...lab.routers.map((r) => r.netns), ...lab.nodes.map((n) => n.netns)];
            assert.equal(new Set(netns).size, netns.length, "namespaces are distinct");
        }
    }), settings());
});

/** What the plans give one node that must not move when other nodes come, go or move in the list. */
function numbering(n: NodePlan, lab?: LabNodePlan) {
    return {
        id: n.id,
        loopback: n.loopback,
        uplinks: n.uplinks,
        // The tunnels' own addresses and identities; their peer lists change with the inventory.
        overlays: n.overlays.map(({ peers: _p, loopbacksVia: _v, ...o }) => o),
        sensors: n.sensors,
        lab: lab && { netns: lab.netns, mgmt: lab.mgmt, uplinks: lab.uplinks },
    };
}

type Change = { kind: "add"; pool: number; at: number } | { kind: "remove"; pick: number } | { kind: "reorder"; keys: number[] };

const changeArb: fc.Arbitrary<Change> = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), pool: fc.nat(), at: fc.nat() }),
    fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("reorder" as const), keys: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }) }),
);

/** Nodes that can go with the site still plannable: spokes, and hubs that leave a hub for every spoke. */
function removable(nodes: NodeSpec[]): NodeSpec[] {
    return nodes.filter((n) => {
        const rest = nodes.filter((x) => x !== n);
        return rest.some((x) => isHub(x.role)) && rest.every((x) => isHub(x.role) || sharesHub(rest, x));
    });
}

/**
 * Apply changes to a lab site's nodes. Added nodes come from `pool` (distinct from every node,
 * by name and by number); an added spoke that shares no provider with a hub is given one.
 */
function change(nodes: NodeSpec[], pool: NodeSpec[], changes: Change[]): NodeSpec[] {
    let out = [...nodes];
    const unused = [...pool];
    for (const c of changes) {
        if (c.kind === "add" && unused.length) {
            const [n] = unused.splice(c.pool % unused.length, 1);
            const added = isHub(n.role) || sharesHub(out, n) ? n : { ...n, uplinks: [...n.uplinks, out.find((h) => isHub(h.role))!.uplinks[0]] };
            out.splice(c.at % (out.length + 1), 0, added);
        } else if (c.kind === "remove") {
            const can = removable(out);
            if (can.length) out = out.filter((n) => n !== can[c.pick % can.length]);
        } else if (c.kind === "reorder") {
            out = out.map((n, i) => ({ n, key: c.keys[i % c.keys.length], i })).sort((a, b) => a.key - b.key || a.i - b.i).map((x) => x.n);
        }
    }
    return out;
}

test("adding, removing or reordering nodes renumbers no other node", () => {
    const arb = siteSpecArb("lab", { ingress: false }).chain((spec) => fc.record({
        spec: fc.constant(spec),
        pool: fc.uniqueArray(nodeArb("lab", spec.providers.map((p) => p.name)), { maxLength: 4, comparator: sameNodeSlot })
            .map((pool) => pool.filter((p) => !spec.nodes.some((n) => sameNodeSlot(n, p)))),
        changes: fc.array(changeArb, { minLength: 1, maxLength: 4 }),
    }));
    fc.assert(fc.property(arb, ({ spec, pool, changes }) => {
        const before = siteOf(spec);
        const after = siteOf({ ...spec, nodes: change(spec.nodes, pool, changes) });
        const [planBefore, planAfter] = [planSite(before), planSite(after)];
        const [labBefore, labAfter] = [planLab(before, planBefore), planLab(after, planAfter)];
        assert.equal(planAfter.loopbackPrefix, planBefore.loopbackPrefix);
        for (const n of planBefore.nodes) {
            const m = planAfter.nodes.find((x) => x.name === n.name);
            if (!m) continue;
            assert.deepEqual(
                numbering(m, labAfter.nodes.find((x) => x.name === n.name)),
                numbering(n, labBefore.nodes.find((x) => x.name === n.name)),
                `${n.name} keeps its numbers`,
            );
        }
    }), settings());
});

/** The session on `config` for this kind, peer node and provider (ids are the planner's business). */
const findSession = (config: AgentConfig, kind: AgentSession["kind"], provider: string, peerNode?: string) =>
    config.sessions.filter((s) => s.kind === kind && s.provider === provider && s.peerNode === peerNode);

/**
 * The provider routers' BFD peers, as the lab configures them (components/lab/park.ts renders
 * FRR's bfdd from the lab plan): on each router, one peer per node uplink to it.
 */
const routerPeers = (lab: LabPlan, provider: string) =>
    lab.nodes.flatMap((n) => n.uplinks.filter((u) => u.provider === provider).map((u) => ({ node: n.name, ifname: u.ifname, peer: u.address, local: u.routerAddress })));

test("every BFD session has its other end: path sessions on the peer, gateway sessions on the provider's router", () => {
    fc.assert(fc.property(anySiteArb, (spec) => {
        const site = siteOf(spec);
        const plan = planSite(site);
        const configs = new Map(planAgents(site, { paths }, plan).map((c) => [c.node, c]));
        const lab = site.kind === "lab" ? planLab(site, plan) : undefined;
        for (const config of configs.values()) {
            const node = plan.nodes.find((n) => n.name === config.node)!;
            // A packet without Your Discriminator is matched by (hop mode, peer, local) alone when it
            // arrives without an interface (node-bfd's demux): no two sessions of a node share them.
            const keys = config.sessions.map((s) => `${s.multihop}|${ipv6(s.peer)}|${ipv6(s.local)}`);
            assert.equal(new Set(keys).size, keys.length, `${config.node}: sessions are told apart by peer and local address`);
            assert.equal(new Set(config.sessions.map((s) => s.id)).size, config.sessions.length);
            for (const s of config.sessions) {
                assert.equal(s.multihop, false, `${config.node} ${s.id}: single-hop (port 3784), inside its link`);
                if (s.kind === "path") {
                    // Our end: our address on the tunnel named, the peer on the same segment.
                    const ours = node.overlays.find((o) => o.ifname === s.interface)!;
                    assert.ok(ours && ours.provider === s.provider && ours.address === s.local, `${config.node} ${s.id}: local is our address on ${s.interface}`);
                    assert.ok(within(range(ours.prefix), ipv6(s.peer)), `${config.node} ${s.id}: the peer is on ${ours.prefix}`);
                    // The tunnel runs both ways, between the two nodes' uplinks on this provider.
                    const peer = plan.nodes.find((n) => n.name === s.peerNode)!;
                    const theirs = peer.overlays.find((o) => o.provider === s.provider)!;
                    assert.ok(theirs, `${s.peerNode} has a tunnel on ${s.provider}`);
                    assert.equal(theirs.address, s.peer, `${config.node} ${s.id}: the peer address is ${s.peerNode}'s on ${s.provider}`);
                    assert.deepEqual(ours.peers.find((p) => p.node === peer.name)?.endpoint, theirs.underlay.local);
                    assert.deepEqual(theirs.peers.find((p) => p.node === node.name)?.endpoint, ours.underlay.local, `${s.peerNode} tunnels back to ${config.node} on ${s.provider}`);
                    // And the session mirrors: the peer's session to us, addresses swapped, same timers and keys.
                    const other = configs.get(s.peerNode!)!;
                    const back = findSession(other, "path", s.provider, config.node);
                    assert.equal(back.length, 1, `${s.peerNode} has one path session to ${config.node} over ${s.provider}`);
                    assert.deepEqual([back[0].local, back[0].peer, back[0].interface, back[0].multihop], [s.peer, s.local, theirs.ifname, s.multihop]);
                    assert.deepEqual(other.timers, config.timers);
                    assert.deepEqual(other.pathAuth && { type: other.pathAuth.type, keyId: other.pathAuth.keyId }, config.pathAuth && { type: config.pathAuth.type, keyId: config.pathAuth.keyId });
                } else {
                    // Our end: our address on the uplink named, the provider's router on the same /64.
                    const up = node.uplinks.find((u) => u.ifname === s.interface)!;
                    assert.ok(up && up.provider === s.provider && up.gatewayBfd, `${config.node} ${s.id}: on a BFD-speaking uplink`);
                    assert.deepEqual([s.local, s.peer], [up.address, up.gateway]);
                    assert.ok(within(range(up.prefix), ipv6(s.peer)));
                }
            }
            // Every uplink is judged: by its gateway session where the router runs BFD, else by a
            // group of the path sessions over it (EC2 nodes: the VPC's router answers none).
            for (const u of node.uplinks) {
                const gw = findSession(config, "gateway", u.provider);
                const uplink = config.uplinks.find((x) => x.ifname === u.ifname)!;
                if (u.gatewayBfd) {
                    assert.equal(gw.length, 1, `${config.node}: one gateway session on ${u.provider}`);
                    assert.equal(uplink.session, gw[0].id);
                } else {
                    assert.equal(gw.length, 0, `${config.node}: no gateway session to ${u.provider}'s router, which answers no BFD`);
                    const group = config.sessionGroups?.find((g) => g.id === uplink.session);
                    assert.ok(group, `${config.node}: ${u.provider}'s uplink is judged by a group`);
                    assert.deepEqual(group.anyOf, config.sessions.filter((s) => s.kind === "path" && s.provider === u.provider).map((s) => s.id));
                }
            }
        }
        // The provider's end of the gateway sessions: in the lab, each router's BFD peers are
        // exactly the nodes' gateway sessions to it, addresses swapped. (Other sites' routers are
        // the providers' to configure: the plan only says which sessions the nodes expect.)
        if (lab) {
            assert.deepEqual(lab.routers.map((r) => r.provider).sort(), [...new Set(site.nodes.flatMap((n) => n.uplinks.map((u) => u.provider)))].sort());
            for (const r of lab.routers) {
                const routerSide: unknown[] = routerPeers(lab, r.provider).map((p) => [p.node, p.ifname, p.local, p.peer]);
                const nodeSide = [...configs.values()].flatMap((c) => findSession(c, "gateway", r.provider).map((s) => [c.node, s.interface, s.peer, s.local]));
                assert.deepEqual(routerSide, nodeSide, `${r.provider}'s router answers every gateway session, and no other`);
            }
        }
    }), settings());
});

test("every route's gate is a planned session or session group on its node, over the route's own next hop", () => {
    fc.assert(fc.property(anySiteArb, (spec) => {
        const site = siteOf(spec);
        for (const config of planAgents(site, { paths })) {
            const sessions = new Map(config.sessions.map((s) => [s.id, s]));
            const groups = new Map((config.sessionGroups ?? []).map((g) => [g.id, g]));
            for (const g of groups.values()) {
                assert.ok(!sessions.has(g.id), `${config.node}: group ${g.id} is not also a session`);
                for (const m of g.anyOf) assert.equal(sessions.get(m)?.kind, "path", `${config.node}: ${g.id} gathers path sessions (${m})`);
            }
            for (const r of config.routes) {
                if (r.session === undefined) {
                    // Ungated by design: the tunnels' own underlay, and the last resorts below every gated route.
                    assert.match(r.id, /^(underlay|last-resort)\//, `${config.node}: ${r.id} is gated`);
                    continue;
                }
                const s = sessions.get(r.session);
                const g = groups.get(r.session);
                assert.ok(s || g, `${config.node}: route ${r.id} is gated by '${r.session}', which the node does not plan`);
                if (s) {
                    // The session tests the next hop the route uses.
                    assert.deepEqual([r.dev, r.via], [s.interface, s.peer], `${config.node}: ${r.id} goes where ${s.id} looks`);
                } else {
                    const up = config.uplinks.find((u) => u.session === g!.id)!;
                    assert.ok(up, `${config.node}: group ${g!.id} judges an uplink`);
                    assert.deepEqual([r.dev, r.via], [up.ifname, up.gateway], `${config.node}: ${r.id} goes over the uplink ${g!.id} judges`);
                }
            }
            for (const u of config.uplinks) assert.ok(sessions.has(u.session) || groups.has(u.session), `${config.node}: uplink ${u.ifname} judged by '${u.session}'`);
            for (const svc of config.ingress) for (const m of svc.members) for (const x of m.sessions) {
                assert.equal(sessions.get(x)?.peerNode, m.node, `${config.node}: ${svc.name} member ${m.node} judged by its own path session '${x}'`);
            }
        }
    }), settings());
});

test("the site arbitraries give valid, plannable sites of every kind, role and transport (a check of the generator)", () => {
    const seen = new Set<string>();
    fc.assert(fc.property(anySiteArb, (spec) => {
        const site = siteOf(spec);
        planAgents(site, { paths });
        if (site.kind === "lab") planLab(site);
        seen.add(`kind:${site.kind}`).add(`transport:${site.overlay.transport}`).add(`nodes:${Math.min(site.nodes.length, 4)}`);
        for (const n of site.nodes) seen.add(`role:${n.role}`).add(`id:${n.id === undefined ? "hashed" : "set"}`);
        if (site.ingress.length) seen.add("ingress");
        if (site.providers.length > 1) seen.add("multihomed");
    }), settings(100));
    for (const want of ["kind:lab", "kind:datacenter", "transport:vxlan", "transport:wireguard", "nodes:1", "nodes:4", ...ROLES.map((r) => `role:${r}`), "id:hashed", "id:set", "ingress", "multihomed"]) {
        assert.ok(seen.has(want), `generated: ${want}`);
    }
});
