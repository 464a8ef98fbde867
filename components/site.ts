// `Site`: the one component a stack builds. It takes the validated site model, plans it
// (model/network/site-plan.ts, model/network/agent-plan.ts) and applies the plans: the lab park's
// machinery for lab sites, then every node's system, deployed over SSH (components/nixos).
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { planAgents } from "../model/network/agent-plan";
import { planLab, type LabPlan } from "../model/network/lab-plan";
import { planSite, type SitePlan } from "../model/network/site-plan";
import type { NodeAccess as AgentNodeAccess } from "../runtime/agent/client";
import { NIXOS_NGINX, NIXOS_PATHS, nixosAgentPaths } from "../model/nix/render";
import type { Site as SiteModel } from "../model/site/model";
import { LabEventBus } from "./lab/event-bus";
import { LabLedger } from "./lab/ledger";
import { LabPark, type LabNodeAccess } from "./lab/park";
import { labAgentPaths, labEventsPlan, labKubeVolumes, labLedgerPlan, labNodeDirs } from "../lab/layout";
import { NIXOS_PROJECT_DIR } from "./nixos/node";
import { configuredBfdKey, SiteDeploy } from "./nixos/site-deploy";

export interface SiteArgs {
    site: SiteModel;
    /** Absolute path of the project's ignored state folder (.nublar). */
    stateRoot: string;
    /** The program's commit, recorded in each node's system profile. */
    revision?: string;
}

/** What a stack tells about one node, whatever the kind of site. */
export type NodeAccess = LabNodeAccess | { role: string; failureDomain: string; ssh: string; hostKey: string; access: { host: string; port: number; user: string; hostKey: string; agentSocket: string } };

export class Site extends pulumi.ComponentResource {
    readonly nodes: pulumi.Output<Record<string, NodeAccess>>;
    readonly sshConfigFile?: string;
    readonly generations: pulumi.Output<Record<string, number>>;
    /** The Unicorn ledger: where it is and its checkpoint public key (lab sites). */
    readonly ledger?: pulumi.Output<Record<string, unknown>>;
    /** The event pipeline: brokers, the sensor gateway, topics, the lake (lab sites). */
    readonly events?: pulumi.Output<Record<string, unknown>>;
    /** The lab's Kubernetes cluster: where its API is, and its admin kubeconfig's file (lab sites with `kubernetes`). */
    readonly kube?: pulumi.Output<Record<string, unknown>>;

    /**
     * The lab's single-node cluster (components/lab/kube.ts) and the site's workloads on it,
     * through the real Kubernetes provider, with the lab's own images (scripts/images).
     */
    private labKube(name: string, site: SiteModel, lab: LabPlan, park: LabPark, stateRoot: string) {
        const { LabKube, labWorkloadsArgs } = require("./lab/kube") as typeof import("./lab/kube");
        const { SiteWorkloads } = require("./k8s/workloads") as typeof import("./k8s/workloads");
        const { labImages } = require("../lab/images") as typeof import("../lab/images");
        const images = labImages();
        const kube = new LabKube(`${name}-kube`, { plan: lab, bridge: park.bridge, stateRoot, images, volumes: labKubeVolumes(site) }, { parent: this });
        new SiteWorkloads(`${name}-workloads`, { site, ...labWorkloadsArgs(site, images) }, { parent: this, providers: [kube.provider], dependsOn: kube.ready });
        return kube.info;
    }

    /**
     * A park's or data center's cloud parts: its S3 data lake, and its Kubernetes workloads
     * (ledger, event bus, LAMP apps). Loaded only when the site asks for them: the Kubernetes
     * and AWS SDKs take a second each to load.
     */
    private workloads(name: string, site: SiteModel) {
        const lakeName = `${name}-lake`;
        if (site.aws?.dataLake) {
            const { DataLake } = require("./aws/data-lake") as typeof import("./aws/data-lake");
            new DataLake(lakeName, { region: site.aws.region, replicaRegion: site.aws.replicaRegion, ledgerBackupDays: site.ledger.backup?.retentionDays }, { parent: this });
        }
        if (site.kubernetes) {
            const { SiteWorkloads } = require("./k8s/workloads") as typeof import("./k8s/workloads");
            // A data center's ledger backs up to its own lake.
            const defaultLedgerBackups = site.aws?.dataLake ? `s3://${lakeName}-ledger-backups/unicorn` : undefined;
            const provider = this.kubernetesProvider(name);
            new SiteWorkloads(`${name}-workloads`, { site, defaultLedgerBackups }, { parent: this, providers: provider ? [provider] : [] });
        }
    }

    /**
     * The cluster a park's workloads go to: `nublar:kubeconfig` (a secret: the kubeconfig's
     * contents), or `nublar:kubernetesRenderTo` (a folder: the provider writes the manifests
     * there and reaches no cluster, for a review or a GitOps hand-off), else the provider's
     * default (KUBECONFIG, ~/.kube/config).
     */
    private kubernetesProvider(name: string) {
        const config = new pulumi.Config("nublar");
        const renderTo = config.get("kubernetesRenderTo");
        const kubeconfig = config.getSecret("kubeconfig");
        if (!renderTo && !kubeconfig) return undefined;
        const k8s = require("@pulumi/kubernetes") as typeof import("@pulumi/kubernetes");
        if (renderTo) {
            // The rendered Secrets hold their values in plain text: a folder only this user reads.
            fs.mkdirSync(path.resolve(renderTo), { recursive: true, mode: 0o700 });
            fs.chmodSync(path.resolve(renderTo), 0o700);
        }
        return new k8s.Provider(`${name}-kubernetes`, renderTo
            ? { renderYamlToDirectory: path.resolve(renderTo) }
            : { kubeconfig, enableServerSideApply: true }, { parent: this });
    }

    /**
     * A data center's EC2 nodes (nodes[].ec2): the VPC from its plan (model/network/aws-plan.ts), then
     * one instance per node. Loaded only when the site has any (the AWS SDK takes a second).
     */
    private ec2Nodes(name: string, site: SiteModel, plan: SitePlan, authorizedKeys: string[]) {
        const { planAwsNetwork } = require("../model/network/aws-plan") as typeof import("../model/network/aws-plan");
        const network = planAwsNetwork(site, plan);
        const instances = new Map<string, import("./aws/nixos-instance").NixosInstance>();
        if (!network) return instances;
        // The first boot lets these keys in; the first deploy then declares them. Without any,
        // nobody could ever log in.
        if (!authorizedKeys.length) {
            throw new Error(`site '${site.name}' has EC2 nodes but no operator keys: set nublar:operatorKeys (the public keys allowed to log in as root, e.g. pulumi config set --path 'nublar:operatorKeys[0]' "$(cat ~/.ssh/id_ed25519.pub)")`);
        }
        const { DataCenterNetwork } = require("./aws/vpc") as typeof import("./aws/vpc");
        const { NixosInstance } = require("./aws/nixos-instance") as typeof import("./aws/nixos-instance");
        const vpc = new DataCenterNetwork(`${name}-vpc`, { plan: network }, { parent: this });
        for (const p of network.instances) {
            instances.set(p.node, new NixosInstance(`${name}-${p.node}`, {
                site: site.name, region: network.region, plan: p, subnetIds: vpc.subnetIds, authorizedKeys,
                securityGroupIds: p.ingress ? [vpc.nodeSecurityGroupId, vpc.ingressSecurityGroupId] : [vpc.nodeSecurityGroupId],
            }, { parent: this }));
        }
        return instances;
    }

    constructor(name: string, args: SiteArgs, opts?: pulumi.ComponentResourceOptions) {
        // A bad `nublar:bfdKey` stops the program before any resource is registered.
        configuredBfdKey();
        // The validated site description is the component's input, so that the nublar-sla policy
        // pack (policy/) checks the very plan this component applies, at preview.
        super("nublar:site:Site", name, { site: args.site }, opts);
        const { site } = args;
        const plan = planSite(site);

        if (site.kind === "lab") {
            const lab = planLab(site, plan);
            const events = labEventsPlan(site, lab, args.stateRoot);
            const paths = labAgentPaths(lab, args.stateRoot, NIXOS_PATHS.bfdKeyFile);
            const agents = planAgents(site, {
                paths,
                // The outbox's offset beside the event log it reads (removed with it).
                eventBus: events && ((node) => ({ brokers: events.agentBrokers, stateFile: path.join(path.dirname(paths(node).events), "outbox.json") })),
            }, plan);
            const services: Record<string, number[]> = {};
            for (const svc of site.ingress) for (const n of svc.upstreams) services[n] = [...new Set([...(services[n] ?? []), svc.port])];
            const park = new LabPark(`${name}-park`, { plan: lab, stateRoot: args.stateRoot, timers: agents[0].timers, services }, { parent: this });
            this.nodes = park.nodes;
            this.sshConfigFile = park.sshConfigFile;
            // The ledger, on this machine; agents' events flow into its `network` shard.
            const ledgerPlan = labLedgerPlan(site, lab, args.stateRoot);
            const ledger = new LabLedger(`${name}-ledger`, { plan: ledgerPlan }, { parent: this });
            this.ledger = ledger.info;
            // The bus, its sensor gateway and its consumers; the agents publish to it over the
            // management bridge, so it needs the park's bridge, and its ledger consumer the ledger.
            // Deploys wait for it, so that each publishes what it did.
            const bus = events && new LabEventBus(`${name}-events`, { plan: events, ledgerSocket: ledger.info.apply((i) => String(i.socket)) }, { parent: this, dependsOn: [park, ledger] });
            this.events = bus?.info;
            const deploy = new SiteDeploy(`${name}-deploy`, {
                site, plan, agents, revision: args.revision,
                access: (node) => park.nodes.apply((all) => {
                    const { agentSocket: _, ...access } = all[node].access;
                    return access;
                }),
                machine: (node) => park.machines.apply((m) => m[node]),
                activation: (node) => {
                    const dirs = labNodeDirs(lab, args.stateRoot, node);
                    return { kind: "lab", root: dirs.systemRoot, nodeDir: dirs.nodeDir, projectDir: NIXOS_PROJECT_DIR, nodeBinary: process.execPath };
                },
                authorizedKeys: park.clientPublicKey.apply((k) => [k]),
                // Lab nodes run Debian's Nginx with this checkout's balancer.
                nginx: {},
                events: events && { brokers: events.brokers, site: site.name, stack: pulumi.getStack() },
            }, { parent: this, dependsOn: bus ? [park, bus] : [park] });
            this.generations = deploy.generations;
            if (site.kubernetes) this.kube = this.labKube(name, site, lab, park, args.stateRoot);
        } else {
            const agents = planAgents(site, { paths: nixosAgentPaths }, plan);
            const operatorKeys = new pulumi.Config("nublar").getObject<string[]>("operatorKeys") ?? [];
            // Real nodes are reached at their configured endpoints with their pinned keys, as the
            // operator (SSH agent, or `nublar:sshIdentityFile`).
            const identityFile = new pulumi.Config("nublar").get("sshIdentityFile");
            // EC2 nodes are built first (their VPC, interfaces, host keys); the deploy then reaches
            // them like any node, at their planned address, pinning the generated key.
            const instances = this.ec2Nodes(name, site, plan, operatorKeys);
            const access = (node: string): pulumi.Output<Omit<AgentNodeAccess, "agentSocket">> => {
                const instance = instances.get(node);
                if (instance) {
                    return pulumi.all([instance.instanceId, instance.hostKey]).apply(([, hostKey]) => ({
                        host: instance.sshAddress, port: 22, user: "root", hostKey, identityFile, reachableWithinMs: site.aws!.nixos!.bootTimeoutMs,
                    }));
                }
                const ssh = site.nodes.find((n) => n.name === node)!.ssh!;
                return pulumi.output({ host: ssh.host, port: ssh.port, user: ssh.user, hostKey: ssh.hostKey, identityFile });
            };
            const deploy = new SiteDeploy(`${name}-deploy`, {
                site, plan, agents, revision: args.revision,
                access,
                // A new instance is a new machine: deployed again.
                machine: (node) => instances.get(node)?.instanceId ?? site.nodes.find((n) => n.name === node)!.ssh!.hostKey,
                activation: () => ({ kind: "nixos" }),
                authorizedKeys: operatorKeys,
                nginx: NIXOS_NGINX,
            }, { parent: this });
            this.generations = deploy.generations;
            this.workloads(name, site);
            this.nodes = pulumi.all(Object.fromEntries(site.nodes.map((n) => [n.name, access(n.name).apply((a): NodeAccess => ({
                role: n.role,
                failureDomain: n.failureDomain,
                ssh: `ssh -p ${a.port} ${a.user}@${a.host}`,
                hostKey: a.hostKey,
                access: { host: a.host, port: a.port, user: a.user, hostKey: a.hostKey, agentSocket: NIXOS_PATHS.agentSocket },
            }))])));
        }
        // The site description is an output too: stack-level policies (the SLA estimate) see a
        // resource's outputs, not its inputs.
        this.registerOutputs({ site: args.site, nodes: this.nodes, generations: this.generations, ledger: this.ledger, events: this.events, kube: this.kube });
    }
}
