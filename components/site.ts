// `Site`: the one component a stack builds. It takes the validated site model and
// applies the plans derived from it. Today that is the lab park for lab sites;
// later issues add NixOS deploys, the overlay, ingress, the ledger and event bus.
import * as pulumi from "@pulumi/pulumi";
import { planAgents } from "../network/agent-plan";
import { planLab } from "../network/lab-plan";
import type { Site as SiteModel } from "../site/model";
import { labAgentPaths, LabPark, type LabNodeAccess } from "./lab/park";

export interface SiteArgs {
    site: SiteModel;
    /** Absolute path of the project's ignored state folder (.nublar). */
    stateRoot: string;
}

/** What a stack tells about one node, whatever the kind of site. */
export type NodeAccess = LabNodeAccess | { role: string; failureDomain: string; ssh: string; hostKey: string };

export class Site extends pulumi.ComponentResource {
    readonly nodes: pulumi.Output<Record<string, NodeAccess>>;
    readonly sshConfigFile?: string;

    constructor(name: string, args: SiteArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:site:Site", name, {}, opts);
        const { site } = args;

        if (site.kind === "lab") {
            const plan = planLab(site);
            const { paths, bfdKeyFile } = labAgentPaths(plan, args.stateRoot);
            const services: Record<string, number[]> = {};
            for (const svc of site.ingress) for (const n of svc.upstreams) services[n] = [...new Set([...(services[n] ?? []), svc.port])];
            const park = new LabPark(`${name}-park`, {
                plan, stateRoot: args.stateRoot, agents: planAgents(site, { paths }), bfdKeyFile, services,
            }, { parent: this });
            this.nodes = park.nodes;
            this.sshConfigFile = park.sshConfigFile;
        } else {
            // Real nodes are reached at their configured endpoints with their pinned keys.
            this.nodes = pulumi.output(Object.fromEntries(site.nodes.map((n): [string, NodeAccess] => [n.name, {
                role: n.role,
                failureDomain: n.failureDomain,
                ssh: `ssh -p ${n.ssh!.port} ${n.ssh!.user}@${n.ssh!.host}`,
                hostKey: n.ssh!.hostKey,
            }])));
        }
        this.registerOutputs({ nodes: this.nodes });
    }
}
