// The agent's rendered config: everything one node's nublar-agent applies. It is produced by
// the pure planner (model/network/agent-plan.ts) from the site description and read back by the
// agent from a JSON file. This schema is the one shape of that data: the planner's return
// type is inferred from it, so the two cannot drift.
import * as fs from "node:fs";
import { z } from "zod";
import { UserFacingError } from "../errors";
import { BfdTimers } from "../site/model";

/** The rtnetlink route protocol number that marks routes the agent owns (see rt_protos). */
export const NUBLAR_ROUTE_PROTOCOL = 199;

/** The site model's BFD timers: the agent runs what the planner chose from the site's budget. */
const Timers = BfdTimers;

export const AgentSession = z.strictObject({
    /** Stable name, e.g. "gw/provider-a" or "path/visitor-center/provider-b". */
    id: z.string().min(1),
    /** "gateway": single-hop to the uplink's provider router. "path": multihop to another node over one provider. */
    kind: z.enum(["gateway", "path"]),
    provider: z.string(),
    /** The other node, for path sessions. */
    peerNode: z.string().optional(),
    peer: z.string(),
    local: z.string(),
    interface: z.string().optional(),
    multihop: z.boolean(),
});

/**
 * A name for "any of these sessions": usable while any member is. It stands in for a gateway
 * session where the router answers no BFD (an EC2 node's VPC router): the uplink then works
 * while any path over it does.
 */
export const AgentSessionGroup = z.strictObject({
    id: z.string().min(1),
    anyOf: z.array(z.string()).min(1),
    reason: z.string(),
});

export const AgentUplink = z.strictObject({
    provider: z.string(),
    ifname: z.string(),
    /** The uplink's /64; its addresses are deprecated while the uplink is down (RFC 8678). */
    prefix: z.string(),
    address: z.string(),
    gateway: z.string(),
    /** The gateway session (or session group) that says whether this uplink works. */
    session: z.string(),
});

export const AgentRoute = z.strictObject({
    /** Stable name, used in events and `nublar routes`. */
    id: z.string(),
    destination: z.string(),
    /** Source-specific route (`from <prefix>`), for per-uplink defaults. */
    source: z.string().optional(),
    /** Preferred source address for locally originated traffic. */
    preferredSource: z.string().optional(),
    via: z.string(),
    dev: z.string(),
    metric: z.number().int().min(0),
    /**
     * The BFD session (or session group) whose state gates this route. Absent: the route is always installed
     * (the routes that carry the BFD path sessions themselves, which must not depend on BFD).
     */
    session: z.string().optional(),
    /** Why the route exists, in words, for operators. */
    reason: z.string(),
});

export const AgentUpstreamMember = z.strictObject({
    node: z.string(),
    /** host:port as Nginx dials it; IPv6 in brackets. */
    address: z.string(),
    /** Sessions whose state decides this member: it is live while any of them is usable. Empty: always live (the node itself). */
    sessions: z.array(z.string()),
});

export const AgentUpstream = z.strictObject({
    name: z.string(),
    port: z.number().int().min(1).max(65535),
    members: z.array(AgentUpstreamMember),
    /**
     * Panic routing (the site's `ingress[].panic`): with no member live, push every member
     * rather than none. Absent (the default): an empty set, and Nginx answers 503. Written only
     * when true, so that upstreams without it render exactly as before.
     */
    panic: z.boolean().optional(),
});

export const AgentConfig = z.strictObject({
    version: z.literal(1),
    site: z.string(),
    node: z.string(),
    /** The node's loopback /128 address (on `lo`). */
    loopback: z.string(),
    routeProtocol: z.number().int().min(1).max(255),
    /** How long a session must stay Up after having gone Down before its paths are used again. */
    holdDownMs: z.number().int().min(0),
    /** After (re)start, how long routes already in the kernel are kept while sessions come Up (fail-static). */
    startupGraceMs: z.number().int().min(0),
    timers: Timers,
    /** Authentication for multihop path sessions; the secret lives in a key file, never in this config. */
    pathAuth: z.strictObject({
        type: z.enum(["keyed-sha1", "meticulous-keyed-sha1"]),
        keyId: z.number().int().min(0).max(255),
        keyFile: z.string(),
    }).optional(),
    uplinks: z.array(AgentUplink),
    sessions: z.array(AgentSession),
    /** Absent when empty, so that sites without such uplinks render exactly as before (no redeploy). */
    sessionGroups: z.array(AgentSessionGroup).optional(),
    routes: z.array(AgentRoute),
    /** Upstreams this node's Nginx serves (empty on nodes without ingress). */
    ingress: z.array(AgentUpstream),
    /**
     * The event bus (runtime/agent/outbox.ts): the agent publishes its event log there, idempotently and
     * with acks=all, keeping how far it got in `stateFile`. Absent: the event log file only.
     */
    eventBus: z.strictObject({
        brokers: z.array(z.string()).min(1),
        stateFile: z.string(),
    }).optional(),
    /** Where the agent listens and writes. */
    paths: z.strictObject({
        /** Unix socket of the state API (and metrics). */
        socket: z.string(),
        /** JSON-lines event log. */
        events: z.string(),
        /** Unix socket of Nginx's control endpoint, when this node runs ingress. */
        nginxControl: z.string().optional(),
        /**
         * The file holding the secret the agent shows Nginx's control endpoint (a bearer token that
         * balancer.lua compares in constant time). Like pathAuth.keyFile, it names the source: the
         * agent's supervisor (systemd's LoadCredential=, the lab's startAgent) hands the agent a
         * private copy, credential NGINX_CONTROL_TOKEN_CREDENTIAL. Absent with nginxControl: the
         * file beside the socket (model/network/nginx-conf.ts defaultControlTokenFile).
         */
        nginxControlToken: z.string().optional(),
    }),
});

export type AgentConfig = z.infer<typeof AgentConfig>;

/**
 * The ids under which the agent's supervisor hands it its secrets, as systemd credentials
 * (LoadCredential=<id>:<source file>, read from $CREDENTIALS_DIRECTORY/<id>): the BFD key
 * (source: pathAuth.keyFile) and Nginx's control token (source: paths.nginxControlToken).
 * Nothing but the agent's own user can read them there.
 */
export const BFD_KEY_CREDENTIAL = "bfd-key";
export const NGINX_CONTROL_TOKEN_CREDENTIAL = "nginx-control-token";

/** The BFD key's one accepted form: 0x and 40 hex digits, 20 bytes, a full meticulous keyed SHA1 key. */
export const BFD_KEY_FORMAT = /^0x[0-9a-fA-F]{40}$/;
export const BFD_KEY_RULE = "0x followed by 40 hex digits (20 bytes: a full key for meticulous keyed SHA1, RFC 5880 §6.7.4; node-bfd reads 0x... as hex)";

/**
 * What is wrong with a BFD key, without quoting it (it is a secret), or undefined if it is
 * good. node-bfd would take 1-20 bytes of text too, but a shorter key is padded with zeros
 * (RFC 5880 §6.7.4) and a whitespace-only one becomes no key at all: nublar generates and
 * accepts 20 random bytes only.
 */
export function bfdKeyProblem(value: unknown): string | undefined {
    if (typeof value !== "string") return `it is not a string (${value === null ? "null" : typeof value})`;
    if (BFD_KEY_FORMAT.test(value)) return undefined;
    if (value.trim() === "") return value === "" ? "it is empty" : "it is only whitespace";
    if (value !== value.trim()) return "it has leading or trailing whitespace";
    if (!value.startsWith("0x")) return `it does not start with 0x (${value.length} characters of text)`;
    const digits = value.slice(2);
    if (/[^0-9a-fA-F]/.test(digits)) return "it holds characters that are not hex digits after 0x";
    return `it has ${digits.length} hex digits after 0x, not 40`;
}
export type AgentSession = z.infer<typeof AgentSession>;
export type AgentRoute = z.infer<typeof AgentRoute>;
export type AgentUplink = z.infer<typeof AgentUplink>;
export type AgentSessionGroup = z.infer<typeof AgentSessionGroup>;
export type AgentUpstream = z.infer<typeof AgentUpstream>;

export class AgentConfigError extends UserFacingError {
    readonly kind = "user";
    constructor(message: string) {
        super(message);
        this.name = "AgentConfigError";
    }
}

/** Parse and check a config; cross-references (sessions named by routes and members) must resolve. */
export function parseAgentConfig(raw: unknown, source = "agent config"): AgentConfig {
    const r = AgentConfig.safeParse(raw);
    if (!r.success) {
        const lines = r.error.issues.map((i) => `  ${i.path.join(".") || "(top)"}: ${i.message}`);
        throw new AgentConfigError(`${source} is not valid:\n${lines.join("\n")}`);
    }
    const config = r.data;
    const sessionIds = new Set(config.sessions.map((s) => s.id));
    const problems: string[] = [];
    if (sessionIds.size !== config.sessions.length) problems.push("sessions: two sessions share an id");
    // Groups gather sessions only (never groups), so a verdict never recurses.
    for (const g of config.sessionGroups ?? []) {
        if (sessionIds.has(g.id)) problems.push(`sessionGroups.${g.id}: the id is also a session's`);
        for (const m of g.anyOf) if (!sessionIds.has(m)) problems.push(`sessionGroups.${g.id}: session '${m}' is not defined`);
    }
    const groupIds = (config.sessionGroups ?? []).map((g) => g.id);
    const ids = new Set([...sessionIds, ...groupIds]);
    if (ids.size !== sessionIds.size + groupIds.length) problems.push("sessionGroups: two groups share an id");
    for (const route of config.routes) if (route.session !== undefined && !ids.has(route.session)) problems.push(`routes.${route.id}: session '${route.session}' is not defined`);
    for (const up of config.uplinks) if (!ids.has(up.session)) problems.push(`uplinks.${up.provider}: session '${up.session}' is not defined`);
    for (const u of config.ingress) for (const m of u.members) for (const s of m.sessions) {
        if (!ids.has(s)) problems.push(`ingress.${u.name}.${m.node}: session '${s}' is not defined`);
    }
    if (problems.length) throw new AgentConfigError(`${source} is not valid:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    return config;
}

export function readAgentConfig(file: string): AgentConfig {
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (err) {
        throw new AgentConfigError(`cannot read agent config ${file}: ${(err as Error).message}`);
    }
    let raw: unknown;
    try {
        raw = JSON.parse(text);
    } catch (err) {
        throw new AgentConfigError(`agent config ${file} is not JSON: ${(err as Error).message}`);
    }
    return parseAgentConfig(raw, `agent config ${file}`);
}
