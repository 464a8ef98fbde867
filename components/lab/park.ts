// The lab park: a small site made of network namespaces on this machine.
// It applies a LabPlan (model/network/lab-plan.ts) and decides nothing itself.
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { AgentConfig } from "../../model/network/agent-config";
import type { LabNodePlan, LabPlan } from "../../model/network/lab-plan";
import { renderBfddConf } from "../../lab/daemons";
import { labNodeDirs } from "../../lab/layout";
import { LabBridge, LabDaemon, LabFile, LabNetns, LabSshd, LabSshKey, LabVeth } from "./providers";
import { labSshPaths, renderKnownHosts, renderSshConfig } from "../../model/network/lab-ssh-config";

export interface LabParkArgs {
    plan: LabPlan;
    /** BFD timers for the provider routers' side of the gateway sessions (the agents' own). */
    timers: AgentConfig["timers"];
    /** HTTP services the lab runs for its ingress: node -> ports. */
    services: Record<string, number[]>;
    /** Absolute path of the project's ignored state folder (.nublar). */
    stateRoot: string;
}

/** How to reach one lab node: what `pulumi stack output nodes` shows. */
export interface LabNodeAccess {
    netns: string;
    role: string;
    failureDomain: string;
    managementAddress: string;
    uplinks: { provider: string; interface: string; address: string; prefix: string; gateway: string }[];
    /** The node's SSH host key, pinned in the lab's known_hosts. */
    hostKey: string;
    ssh: string;
    /** How `nublar --node` reaches the node's agent: SSH endpoint, pinned key, agent socket. */
    access: { host: string; port: number; user: string; hostKey: string; identityFile: string; agentSocket: string };
}

export class LabPark extends pulumi.ComponentResource {
    readonly nodes: pulumi.Output<Record<string, LabNodeAccess>>;
    readonly sshConfigFile: string;
    /** The operator's key, which the lab's deploys log in with. */
    readonly clientPublicKey: pulumi.Output<string>;
    /** Each node's machine identity: its namespace and sshd process. A rebuilt node gets a new one. */
    readonly machines: pulumi.Output<Record<string, string>>;
    /** The management bridge, which the lab's other namespaces (its Kubernetes node) hang off. */
    readonly bridge: LabBridge;

    constructor(name: string, args: LabParkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:LabPark", name, {}, opts);
        const { plan } = args;
        const dir = path.join(args.stateRoot, plan.stateSubdir);
        const child = { parent: this };
        const id = (what: string) => `${name}-${what}`;

        const bridge = this.bridge = new LabBridge(id("mgmt-bridge"), {
            ifname: plan.mgmt.bridge,
            address: `${plan.mgmt.hostAddress}/64`,
        }, child);

        const routers = new Map(plan.routers.map((r) => [r.provider, new LabNetns(id(`router-${r.provider}`), { netns: r.netns, forwarding: true }, child)]));

        const clientKey = new LabSshKey(id("client-key"), {
            file: labSshPaths(plan, args.stateRoot).identityFile,
            comment: `nublar-lab-${plan.tag}-operator`,
        }, child);

        this.clientPublicKey = clientKey.publicKey;
        const nodeResources = plan.nodes.map((node) => this.node(id(`node-${node.name}`), node, { dir, bridge, bridgeName: plan.mgmt.bridge, routers, clientKey }));

        // The providers' side: FRR's bfdd answering each node's gateway session. The routers
        // route only the uplink /64s (connected): loopbacks travel inside the overlay.
        const timers = args.timers;
        for (const r of plan.routers) {
            const links = nodeResources.flatMap((n) => n.uplinks.filter((_, k) => n.plan.uplinks[k].provider === r.provider));
            const peers = plan.nodes.flatMap((n) => n.uplinks.filter((u) => u.provider === r.provider).map((u) => ({ peer: u.address, local: u.routerAddress, ...timers })));
            new LabDaemon(id(`router-${r.provider}-bfdd`), {
                kind: "bfdd", netns: r.netns, dir: path.join(dir, "routers", r.provider, "bfdd"), config: renderBfddConf(peers),
            }, { parent: this, dependsOn: links });
        }

        // The apps the lab's ingress balances. The node's system (overlay, agent, Nginx) is not
        // the park's: components/nixos deploys it over SSH, as it would to a real node.
        for (const n of nodeResources) {
            const rt = labNodeDirs(plan, args.stateRoot, n.plan.name).runtime;
            for (const port of args.services[n.plan.name] ?? []) {
                new LabDaemon(`${n.name}-hello-${port}`, {
                    kind: "hello", netns: n.plan.netns, dir: path.join(rt.helloDir, String(port)), config: "", port, name: n.plan.name,
                }, { parent: this, dependsOn: [n.netns] });
            }
        }

        this.machines = pulumi.all(nodeResources.map((n) => n.sshd.pid)).apply((pids) =>
            Object.fromEntries(plan.nodes.map((node, i) => [node.name, `${node.netns}/sshd:${pids[i]}`])));

        const paths = labSshPaths(plan, args.stateRoot);
        this.sshConfigFile = paths.configFile;
        const knownHosts = new LabFile(id("known-hosts"), {
            file: paths.knownHostsFile,
            content: pulumi.all(nodeResources.map((n) => n.hostKey.publicKey)).apply((keys) => renderKnownHosts(plan, keys)),
            mode: 0o644,
        }, child);
        const sshConfig = new LabFile(id("ssh-config"), {
            file: paths.configFile,
            content: renderSshConfig(plan, paths),
            mode: 0o644,
        }, { parent: this, dependsOn: [knownHosts, ...nodeResources.map((n) => n.sshd)] });

        const nodes = pulumi.all(nodeResources.map((n) => n.hostKey.publicKey)).apply((keys) =>
            Object.fromEntries(plan.nodes.map((node, i): [string, LabNodeAccess] => [node.name, {
                netns: node.netns,
                role: node.role,
                failureDomain: node.failureDomain,
                managementAddress: node.mgmt.address,
                uplinks: node.uplinks.map((u) => ({
                    provider: u.provider, interface: u.ifname, address: u.address, prefix: u.prefix, gateway: u.routerAddress,
                })),
                hostKey: keys[i],
                ssh: `ssh -F ${this.sshConfigFile} ${node.name}`,
                access: {
                    host: node.mgmt.address, port: 22, user: "root", hostKey: keys[i], identityFile: paths.identityFile,
                    agentSocket: labNodeDirs(plan, args.stateRoot, node.name).runtime.agentSocket,
                },
            }])));

        // Wait for the config file so that the ssh commands in the outputs work once `up` returns.
        this.nodes = pulumi.all([nodes, sshConfig.urn]).apply(([n]) => n);
        this.registerOutputs({ nodes: this.nodes, sshConfigFile: this.sshConfigFile, machines: this.machines });
    }

    private node(
        name: string,
        node: LabNodePlan,
        ctx: { dir: string; bridge: LabBridge; bridgeName: string; routers: Map<string, LabNetns>; clientKey: LabSshKey },
    ) {
        const child = { parent: this };
        const netns = new LabNetns(name, { netns: node.netns, forwarding: false }, child);

        const mgmt = new LabVeth(`${name}-mgmt`, {
            a: { netns: node.netns, ifname: node.mgmt.ifname, addresses: [`${node.mgmt.address}/64`] },
            b: { ifname: node.mgmt.hostIfname, addresses: [], master: ctx.bridgeName },
        }, { parent: this, dependsOn: [netns, ctx.bridge] });

        const uplinks = node.uplinks.map((u) => new LabVeth(`${name}-${u.ifname}`, {
            a: { netns: node.netns, ifname: u.ifname, addresses: [`${u.address}/64`] },
            b: { netns: u.routerNetns, ifname: u.routerIfname, addresses: [`${u.routerAddress}/64`] },
        }, { parent: this, dependsOn: [netns, ctx.routers.get(u.provider)!] }));

        const nodeDir = path.join(ctx.dir, "nodes", node.name);
        const hostKey = new LabSshKey(`${name}-host-key`, {
            file: path.join(nodeDir, "ssh_host_ed25519_key"),
            comment: `${node.name}@nublar-lab`,
        }, child);

        const sshd = new LabSshd(`${name}-sshd`, {
            netns: node.netns,
            hostname: node.name,
            dir: nodeDir,
            hostKeyFile: hostKey.file,
            listen: [node.mgmt.address, ...node.uplinks.map((u) => u.address)],
            authorizedKeys: ctx.clientKey.publicKey.apply((k) => [k]),
        }, { parent: this, dependsOn: [mgmt, ...uplinks, hostKey] });

        return { name, plan: node, netns, uplinks, hostKey, sshd };
    }
}
