// Renders one node's NixOS configuration bundle: configuration.nix, the node's data
// (node.nix, pure data), the agent's config, Nginx's config and balancer when the node runs
// ingress, and a copy of the modules, so that every generation is self-contained.
//
// Pure: the same input gives the same files. The only I/O is reading the module files and
// balancer.lua from this repository, once. Secrets never enter the bundle: it names key files
// (NIXOS_PATHS), which the deploy tool provisions on the node.
import * as fs from "node:fs";
import * as path from "node:path";
import { subnet } from "../network/addressing";
import type { AgentConfig } from "../network/agent-config";
import { LUA_DIR } from "../network/nginx-conf";
import { LOOPBACK_SUBNET, WIREGUARD_PORT, type NodePlan, type OverlayPeerPlan, type OverlayPlan, type UplinkPlan } from "../network/site-plan";
import type { Site } from "../site/model";
import { nixString, toNix, type NixValue } from "./nix-value";
import { projectPath } from "../project";

/**
 * Where NixOS puts the node's runtime files and keys; agent.json must name the same ones (the
 * modules assert it). Each service has its own runtime folder: the agent's socket in the
 * agent's (/run/nublar, only user nublar writes there, so Nginx cannot replace the socket the
 * deploy's confirm step asks), Nginx's control socket in Nginx's (/run/nginx, 0750 nginx:nginx;
 * the agent joins group nginx to reach it).
 */
export const NIXOS_PATHS = {
    agentSocket: "/run/nublar/agent.sock",
    events: "/var/lib/nublar/events.jsonl",
    nginxControl: "/run/nginx/nublar-control.sock",
    /**
     * The control token's source: nginx.nix's nublar-control-token.service writes it once per
     * boot (root, 0600), and both services get it as a credential (LoadCredential=).
     */
    nginxControlToken: "/run/nublar-control-token/token",
    /** Nginx's credential copy of the token, which nginx.conf names (renderNginxConf's controlTokenFile). */
    nginxControlTokenCredential: "/run/credentials/nginx.service/nublar-control-token",
    /** The BFD key's source, as the deploy writes it (root, 0600); the agent gets it as a credential. */
    bfdKeyFile: "/run/keys/nublar-bfd.key",
    wireguardKeyFile: (ifname: string) => `/run/keys/nublar-wg-${ifname}.key`,
    /** Where nginx.nix installs balancer.lua (environment.etc."nublar/lua/balancer.lua"): renderNginxConf's luaDir. */
    luaDir: "/etc/nublar/lua",
};

/** The agent's file locations on a NixOS node, for model/network/agent-plan.ts's `paths` option. */
export function nixosAgentPaths() {
    return {
        socket: NIXOS_PATHS.agentSocket, events: NIXOS_PATHS.events,
        nginxControl: NIXOS_PATHS.nginxControl, nginxControlToken: NIXOS_PATHS.nginxControlToken,
        bfdKeyFile: NIXOS_PATHS.bfdKeyFile,
    };
}

/** renderNginxConf's options for a NixOS node: its Lua folder, no dynamic modules, its credential. */
export const NIXOS_NGINX = { luaDir: NIXOS_PATHS.luaDir, modules: [] as string[], controlTokenFile: NIXOS_PATHS.nginxControlTokenCredential };

const MODULES_DIR = projectPath("model", "nix", "modules");
/** NixOS's type for system.nixos.label. */
const PROFILE_LABEL = /^[a-zA-Z0-9:_.-]*$/;
/** Real keys are 44 characters of base64; only what would break the config is refused (tests use placeholders). */
const WIREGUARD_KEY = /^\S+$/;

export interface NixosNodeInput {
    site: Site;
    node: NodePlan;
    /**
     * The node's agent config, written as given. On NixOS its paths must be NIXOS_PATHS' (the
     * agent module asserts it); the lab, which runs bundles without NixOS, passes its own.
     */
    agent: AgentConfig;
    /**
     * renderNginxConf's output, written as given; required when agent.ingress is non-empty.
     * For NixOS render it with NIXOS_NGINX's options (nginx-conf.nix checks).
     */
    nginxConf?: string;
    /** OpenSSH public keys allowed to log in as root. */
    authorizedKeys: string[];
    /** node -> provider -> base64 public key; required for transport wireguard. */
    wireguardPublicKeys?: Record<string, Record<string, string>>;
    profile: { label: string; revision?: string };
}

export class NixosRenderError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "NixosRenderError";
    }
}

// The shape of node.nix: the node's plan, plus what the modules need that the plan leaves to
// the site (provider blocks, ports) or to the deploy (keys, profile).
export interface NixosPeerData extends OverlayPeerPlan {
    /** The peer's tunnel port on this provider (WireGuard: 51820 + its uplink index). */
    endpointPort: number;
    /** WireGuard only. */
    publicKey?: string;
    allowedIPs?: string[];
}

export interface NixosOverlayData extends Omit<OverlayPlan, "peers"> {
    /** The provider's /48: every uplink on this provider, and so every tunnel endpoint, is in it. */
    providerPrefix: string;
    /** WireGuard only: a path on the node, never the key. */
    privateKeyFile?: string;
    peers: NixosPeerData[];
}

export interface NixosNodeData {
    site: string;
    name: string;
    id: number;
    role: string;
    failureDomain: string;
    hub: boolean;
    loopback: string;
    loopbackPrefix: string;
    sitePrefixes: string[];
    sshPort: number;
    uplinks: Omit<UplinkPlan, "gatewayBfd">[];
    overlays: NixosOverlayData[];
    sensors: { provider: string; prefix: string }[];
    /** Ports this node's Nginx serves clients on (edge nodes). */
    ingressPorts: number[];
    /** Ports of the ingress services this node is an upstream member of. */
    upstreamPorts: number[];
    authorizedKeys: string[];
    profile: { label: string; revision: string | null };
}

let moduleFiles: Record<string, string> | undefined;
let balancerLua: string | undefined;

/** The modules, read once. */
function modules(): Record<string, string> {
    moduleFiles ??= Object.fromEntries(fs.readdirSync(MODULES_DIR).filter((f) => f.endsWith(".nix")).sort()
        .map((f) => [`modules/${f}`, fs.readFileSync(path.join(MODULES_DIR, f), "utf8")]));
    return moduleFiles;
}

function balancer(): string {
    balancerLua ??= fs.readFileSync(path.join(LUA_DIR, "balancer.lua"), "utf8");
    return balancerLua;
}

/**
 * The files every node's bundle takes from this release of nublar, as they are: the NixOS
 * modules and Nginx's Lua balancer (model/nix/bundle.ts keeps them out of each deployment's state).
 */
export function releaseFiles(): Record<string, string> {
    return { ...modules(), "balancer.lua": balancer() };
}

export function renderNixosNode(input: NixosNodeInput): Record<string, string> {
    checkInput(input);
    const data = nodeData(input);
    const ingress = input.agent.ingress.length > 0;
    const files: Record<string, string> = {
        ...modules(),
        "configuration.nix": configurationNix(input, ingress),
        "node.nix": `# ${input.node.name} of site ${input.site.name}: pure data, written by nublar (model/nix/render.ts); do not edit.\n${toNix(data as unknown as NixValue)}\n`,
        "agent.json": `${JSON.stringify(input.agent, null, 2)}\n`,
    };
    if (ingress) {
        files["nginx.conf"] = input.nginxConf!;
        files["balancer.lua"] = balancer();
    }
    return Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function checkInput(input: NixosNodeInput): void {
    const { site, node, agent } = input;
    const where = `node '${node.name}' of site '${site.name}'`;
    const problems: string[] = [];
    if (agent.site !== site.name || agent.node !== node.name) problems.push(`the agent config is for node '${agent.node}' of site '${agent.site}'`);
    if (agent.pathAuth && agent.pathAuth.keyFile !== NIXOS_PATHS.bfdKeyFile) problems.push(`agent pathAuth.keyFile is ${agent.pathAuth.keyFile}, NixOS provisions ${NIXOS_PATHS.bfdKeyFile}`);
    if (agent.ingress.length > 0) {
        if (input.nginxConf === undefined) problems.push("the agent serves ingress but no nginxConf was given");
    } else if (input.nginxConf !== undefined) {
        problems.push("an nginxConf was given but the agent serves no ingress");
    }
    if (!PROFILE_LABEL.test(input.profile.label)) problems.push(`profile label '${input.profile.label}' may only hold a-z, A-Z, 0-9, ':', '_', '.' and '-' (NixOS's system.nixos.label)`);
    input.authorizedKeys.forEach((k, i) => {
        if (k.trim() === "" || /[\r\n]/.test(k)) problems.push(`authorizedKeys[${i}] must be one non-empty line`);
    });
    for (const o of node.overlays) {
        if (o.transport !== "wireguard") continue;
        for (const p of o.peers) {
            const key = input.wireguardPublicKeys?.[p.node]?.[o.provider];
            if (key === undefined) problems.push(`no WireGuard public key for peer '${p.node}' on provider '${o.provider}' (wireguardPublicKeys.${p.node}.${o.provider})`);
            else if (!WIREGUARD_KEY.test(key)) problems.push(`wireguardPublicKeys.${p.node}.${o.provider} is empty or holds whitespace: not a WireGuard public key`);
        }
    }
    if (problems.length) throw new NixosRenderError(`cannot render the NixOS configuration of ${where}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
}

/** node.nix: the plan, with what the modules need from the site and the deploy. */
export function nodeData(input: NixosNodeInput): NixosNodeData {
    const { site, node } = input;
    const loopbackPrefix = subnet(site.providers[0].prefix, 64, LOOPBACK_SUBNET);
    const siteNode = site.nodes.find((n) => n.name === node.name);
    if (!siteNode) throw new NixosRenderError(`site '${site.name}' has no node '${node.name}'`);
    const providerPrefix = (provider: string) => site.providers.find((p) => p.name === provider)!.prefix;
    const uniqueSorted = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);

    return {
        site: site.name,
        name: node.name,
        id: node.id,
        role: node.role,
        failureDomain: node.failureDomain,
        hub: node.hub,
        loopback: node.loopback,
        loopbackPrefix,
        sitePrefixes: site.providers.map((p) => p.prefix),
        sshPort: siteNode.ssh?.port ?? 22,
        // Whether the router runs BFD is the agent's business (its config), not the system's.
        uplinks: node.uplinks.map(({ gatewayBfd: _, ...u }) => u),
        overlays: node.overlays.map((o) => overlayData(input, o, loopbackPrefix, providerPrefix(o.provider))),
        sensors: node.sensors.map((s) => ({ ...s })),
        ingressPorts: uniqueSorted(input.agent.ingress.map((u) => u.port)),
        upstreamPorts: uniqueSorted(site.ingress.filter((svc) => svc.upstreams.includes(node.name)).map((svc) => svc.port)),
        authorizedKeys: [...input.authorizedKeys],
        profile: { label: input.profile.label, revision: input.profile.revision ?? null },
    };
}

function overlayData(input: NixosNodeInput, o: OverlayPlan, loopbackPrefix: string, providerPrefix: string): NixosOverlayData {
    const wireguard = o.transport === "wireguard";
    // WireGuard routes by allowed IPs, and a prefix belongs to at most one peer of an interface:
    // the loopback /64 goes to the hub the plan designated (OverlayPlan.loopbacksVia).
    const { loopbacksVia, ...overlay } = o;
    return {
        ...overlay,
        providerPrefix,
        privateKeyFile: wireguard ? NIXOS_PATHS.wireguardKeyFile(o.ifname) : undefined,
        peers: o.peers.map((p): NixosPeerData => ({
            ...p,
            endpointPort: wireguard ? peerWireguardPort(input.site, p.node, o.provider) : o.port,
            publicKey: wireguard ? input.wireguardPublicKeys![p.node][o.provider] : undefined,
            allowedIPs: wireguard
                ? [`${p.address}/128`, `${p.loopback}/128`, ...(p.node === loopbacksVia ? [loopbackPrefix] : [])]
                : undefined,
        })),
    };
}

/** node -> provider -> uplink index, per site: hubs have every node as a peer, so no scans per peer. */
const uplinkIndexes = new WeakMap<Site, Map<string, Map<string, number>>>();

/** The port the peer's WireGuard listens on for this provider: as model/network/site-plan.ts numbers it. */
function peerWireguardPort(site: Site, peer: string, provider: string): number {
    let byNode = uplinkIndexes.get(site);
    if (!byNode) {
        byNode = new Map(site.nodes.map((n) => [n.name, new Map(n.uplinks.map((u, k) => [u.provider, k]))]));
        uplinkIndexes.set(site, byNode);
    }
    return WIREGUARD_PORT + byNode.get(peer)!.get(provider)!;
}

function configurationNix(input: NixosNodeInput, ingress: boolean): string {
    const hardware = "/etc/nixos/hardware-configuration.nix";
    return [
        `# ${input.node.name} of site ${input.site.name}, written by nublar (model/nix/render.ts); do not edit.`,
        "# On the node: nixos-rebuild switch -I nixos-config=<this folder>/configuration.nix",
        "{ ... }:",
        "{",
        "  imports = [",
        "    ./modules/default.nix",
        "  ]",
        "  # The machine's own hardware (disks, boot loader, NIC names) is not part of the site plan.",
        `  ++ (if builtins.pathExists ${hardware} then [ ${hardware} ] else [ ]);`,
        "",
        "  nublar.node = import ./node.nix;",
        `  networking.hostName = ${nixString(input.node.name)};`,
        "",
        "  services.nublar-agent = {",
        "    enable = true;",
        "    configFile = ./agent.json;",
        `    bfdKeyFile = ${nixString(NIXOS_PATHS.bfdKeyFile)};`,
        "  };",
        "  nublar.overlay.enable = true;",
        "  nublar.firewall.enable = true;",
        "  nublar.sshd.enable = true;",
        "  nublar.profile.enable = true;",
        ...(ingress ? [
            "  nublar.ingress = {",
            "    enable = true;",
            "    configFile = ./nginx.conf;",
            "    balancer = ./balancer.lua;",
            "  };",
        ] : []),
        "}",
        "",
    ].join("\n");
}
