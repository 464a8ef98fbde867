// Deploys every node of a site: renders each node's bundle from the plans, then creates one
// NixosNode per node in waves. The canary goes first, alone; the others follow in groups of
// `maxParallel`, each group after the previous one confirmed. A node that does not confirm
// fails `pulumi up`, and the engine starts nothing that depends on it: one bad config stops
// at the canary.
import * as pulumi from "@pulumi/pulumi";
import type { NodeAccess } from "../../runtime/agent/client";
import { BFD_KEY_RULE, bfdKeyProblem, type AgentConfig } from "../../model/network/agent-config";
import { renderNginxConf } from "../../model/network/nginx-conf";
import type { SitePlan } from "../../model/network/site-plan";
import { NIXOS_PATHS, renderNixosNode } from "../../model/nix/render";
import type { Site } from "../../model/site/model";
import type { ActivationSpec } from "./node";
import { NixosNode, type DeployEventsTarget } from "./node";
import { GeneratedKey } from "./secrets";

export interface SiteDeployArgs {
    site: Site;
    plan: SitePlan;
    agents: AgentConfig[];
    /** How to reach each node (the lab's outputs, or the site's ssh settings). */
    access: (node: string) => pulumi.Input<Omit<NodeAccess, "agentSocket">>;
    activation: (node: string) => ActivationSpec;
    /** What identifies each node's machine (see NixosNodeArgs.machine). */
    machine: (node: string) => pulumi.Input<string>;
    /** Public keys allowed to log in as root on the nodes. */
    authorizedKeys: pulumi.Input<string[]>;
    /** The program's commit, recorded in each system profile. */
    revision?: string;
    /** Nginx's Lua folder, modules and control token file (model/nix/render.ts NIXOS_NGINX on NixOS; the lab uses Debian's and the defaults). */
    nginx?: { luaDir?: string; modules?: string[]; controlTokenFile?: string };
    /** Where each node's deploy publishes a `deploy` event (events/). */
    events?: DeployEventsTarget;
}

/**
 * What is wrong with the stack's `nublar:bfdKey`, as a message for the person running
 * `pulumi preview` (never quoting the key), or undefined when it is good or not set. An empty or
 * whitespace key would otherwise reach the nodes as an empty key file.
 */
export function bfdKeyConfigError(raw: string | undefined): string | undefined {
    if (raw === undefined) return undefined;
    const problem = bfdKeyProblem(raw);
    if (!problem) return undefined;
    return `stack config nublar:bfdKey is not a usable BFD key: ${problem}. It must be ${BFD_KEY_RULE}. ` +
        "Set one with `pulumi config set --secret nublar:bfdKey 0x$(openssl rand -hex 20)`, or remove it (`pulumi config rm nublar:bfdKey`) and nublar generates one. Nothing was deployed.";
}

/**
 * The stack's `nublar:bfdKey` as a secret, when set; checked first, so that a bad key stops the
 * program at preview, before any resource exists (a RunError prints its message alone).
 */
export function configuredBfdKey(config: pulumi.Config = new pulumi.Config("nublar")): pulumi.Output<string> | undefined {
    const error = bfdKeyConfigError(config.get("bfdKey"));
    if (error) throw new pulumi.RunError(error);
    return config.getSecret("bfdKey");
}

/** Nodes in deploy order, grouped in waves: [canary], then groups of maxParallel. */
export function deployWaves(site: Site): string[][] {
    const names = site.nodes.map((n) => n.name);
    const { canary, maxParallel } = site.deploy;
    const first = canary === false ? undefined : canary === true ? names[0] : canary;
    const rest = names.filter((n) => n !== first);
    const waves: string[][] = first ? [[first]] : [];
    for (let i = 0; i < rest.length; i += maxParallel) waves.push(rest.slice(i, i + maxParallel));
    return waves;
}

export class SiteDeploy extends pulumi.ComponentResource {
    readonly generations: pulumi.Output<Record<string, number>>;

    constructor(name: string, args: SiteDeployArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:nixos:SiteDeploy", name, {}, opts);
        const { site, plan } = args;
        const child = { parent: this };

        // The BFD key: the stack's `nublar:bfdKey` secret when set (to rotate it), else generated.
        const configured = configuredBfdKey();
        const bfdKey = configured ?? new GeneratedKey(`${name}-bfd-key`, "bfd", child).value;

        const wireguard = new Map<string, Map<string, GeneratedKey>>();
        if (site.overlay.transport === "wireguard") {
            for (const n of plan.nodes) {
                wireguard.set(n.name, new Map(n.overlays.map((o) => [o.provider, new GeneratedKey(`${name}-${n.name}-wg-${o.ifname}`, "wireguard", child)])));
            }
        }
        // Each node's bundle waits only for the public keys it names: its own and its tunnel
        // peers'. Depending on every node's keys made a 5,000-node preview quadratic (every
        // bundle an Output of 10,000 keys; bench/site-plan.ts).
        const keyOutputs = (names: string[]) => pulumi.all(Object.fromEntries(names.map((name) => [name, pulumi.all(Object.fromEntries(
            [...(wireguard.get(name) ?? new Map<string, GeneratedKey>())].map(([p, k]) => [p, k.publicKey])))])));

        const byName = new Map(plan.nodes.map((n) => [n.name, n]));
        const agentByName = new Map(args.agents.map((a) => [a.node, a]));
        const deployed = new Map<string, NixosNode>();
        let previousWave: NixosNode[] = [];
        for (const wave of deployWaves(site)) {
            const current = wave.map((nodeName) => {
                const node = byName.get(nodeName)!;
                const agent = agentByName.get(nodeName)!;
                const named = [...new Set([nodeName, ...node.overlays.flatMap((o) => o.peers.map((p) => p.node))])];
                const publicKeys = site.overlay.transport === "wireguard" ? keyOutputs(named) : pulumi.output({});
                const files = pulumi.all([args.authorizedKeys, publicKeys]).apply(([authorizedKeys, wg]) => {
                    const nginxConf = agent.ingress.length
                        ? renderNginxConf({ upstreams: agent.ingress, controlSocket: agent.paths.nginxControl!, ...args.nginx })
                        : undefined;
                    const bundle = renderNixosNode({
                        site, node, agent, nginxConf, authorizedKeys,
                        wireguardPublicKeys: site.overlay.transport === "wireguard" ? wg : undefined,
                        profile: { label: `nublar-${site.name}`, revision: args.revision },
                    });
                    // The lab applies the overlay itself (lab/overlay.ts) from this file.
                    return { ...bundle, "overlay.json": `${JSON.stringify({ hub: node.hub, overlays: node.overlays }, null, 2)}\n` };
                });
                const secrets: Record<string, pulumi.Input<string>> = { [basename(NIXOS_PATHS.bfdKeyFile)]: bfdKey };
                for (const o of node.overlays) {
                    const key = wireguard.get(nodeName)?.get(o.provider);
                    if (key) secrets[basename(NIXOS_PATHS.wireguardKeyFile(o.ifname))] = key.value;
                }
                const n = new NixosNode(`${name}-${nodeName}`, {
                    node: nodeName,
                    access: args.access(nodeName),
                    agentSocket: agent.paths.socket,
                    machine: args.machine(nodeName),
                    activation: args.activation(nodeName),
                    mode: site.deploy.mode,
                    confirmTimeoutMs: site.deploy.confirmTimeoutMs,
                    files,
                    secrets,
                    events: args.events,
                }, { parent: this, dependsOn: previousWave });
                deployed.set(nodeName, n);
                return n;
            });
            previousWave = current;
        }
        this.generations = pulumi.all(Object.fromEntries([...deployed].map(([k, v]) => [k, v.generation])));
        this.registerOutputs({ generations: this.generations });
    }
}

function basename(p: string): string {
    return p.slice(p.lastIndexOf("/") + 1);
}
