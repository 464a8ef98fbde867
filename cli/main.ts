// The `nublar` command line: what network and infra engineers type.
// Each subcommand reads the same site model the Pulumi program uses.
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { Command, CommanderError, Option } from "commander";
import { registerAuditCommands } from "./audit";
import { registerEventsCommands } from "./events";
import { PROJECT_DIR, pulumiProjectDir } from "../runtime/pulumi-engine";
import { registerNetworkCommands } from "./network";
import { registerLedgerCommands } from "./ledger";
import { EXIT_CODES, UserFacingError } from "../model/errors";
import { ledgerClusterName, planLedger } from "../model/ledger/plan";
import { cleanLab, inspectLab } from "../lab/inspect";
import { labKubeAlive } from "../lab/kube/cluster";
import { labKubePlan } from "../lab/layout";
import { cutUplink, restoreUplink } from "../lab/ops";
import { labSshPaths } from "../model/network/lab-ssh-config";
import { planLab } from "../model/network/lab-plan";
import { planSite, type SitePlan } from "../model/network/site-plan";
import { planAwsNetwork, type AwsNetworkPlan } from "../model/network/aws-plan";
import { PlanError } from "../model/network/addressing";
import { loadSiteFromStackFile, SiteConfigError, stackFile } from "../model/site/load";
import type { Site } from "../model/site/model";
import { escapeText, safeJson } from "../model/site/text";

const stateRoot = () => process.env.NUBLAR_STATE_DIR ?? path.join(PROJECT_DIR, ".nublar");

/** Errors a user can fix: printed as a message, exit code 1, no stack trace. */
class UserError extends UserFacingError {
    readonly kind = "user";
}

function siteFor(opts: { stack?: string; file?: string }): Site {
    const file = opts.file ?? stackFile(pulumiProjectDir(), opts.stack ?? "lab");
    if (!fs.existsSync(file)) {
        throw new UserError(`no stack file at ${file}; stacks are: ${listStacks().join(", ")}`);
    }
    return loadSiteFromStackFile(file);
}

function listStacks(): string[] {
    return fs.readdirSync(path.join(pulumiProjectDir(), "stacks"))
        .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
        .filter((s): s is string => !!s)
        .sort();
}

function print(json: boolean, value: unknown, text: () => string) {
    process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

export function buildProgram(): Command {
    const program = new Command("nublar")
        .description("nublar: IPv6 multihomed sites with BFD-driven failover, as Pulumi stacks.\n" +
            "Bring up the lab with `npm run lab`; deploy a site with `pulumi up --stack <name>`.")
        .showHelpAfterError()
        .exitOverride()
        .configureHelp({ sortSubcommands: true })
        // Options belong to the command they follow (`audit verify --json` is verify's).
        .enablePositionalOptions();

    const stackOpt = () => new Option("-s, --stack <name>", "stack name (a file stacks/Pulumi.<name>.yaml)").default("lab");
    const fileOpt = () => new Option("-f, --file <path>", "read this stack file instead of stacks/Pulumi.<stack>.yaml");
    const jsonOpt = () => new Option("--json", "machine-readable output");

    const site = program.command("site").description("inspect and validate site descriptions (stack config)");
    site.command("validate")
        .description("validate stack files against the site schema (all stacks unless --stack/--file)")
        .addOption(new Option("-s, --stack <name>", "only this stack"))
        .addOption(fileOpt())
        .addOption(jsonOpt())
        .action((opts: { stack?: string; file?: string; json?: boolean }) => {
            const files = opts.file ? [opts.file] : (opts.stack ? [opts.stack] : listStacks()).map((s) => stackFile(pulumiProjectDir(), s));
            const shown = (file: string) => (path.relative(process.cwd(), file).startsWith("..") ? file : path.relative(process.cwd(), file));
            const results = files.map((file) => {
                try {
                    const s = siteFor({ file });
                    return { file: shown(file), ok: true, site: s.name, problems: [] as string[] };
                } catch (err) {
                    if (!(err instanceof SiteConfigError || err instanceof UserError)) throw err;
                    const problems = err instanceof SiteConfigError ? err.problems : [err.message];
                    return { file: shown(file), ok: false, site: undefined, problems };
                }
            });
            // What the files hold reaches the terminal escaped (model/site/text.ts).
            const t = escapeText;
            process.stdout.write(opts.json ? `${safeJson(results, 2)}\n` : `${results.map((r) => r.ok
                ? `ok       ${t(r.file)} (site ${t(r.site ?? "")})`
                : `invalid  ${t(r.file)}\n${r.problems.map((p) => `  - ${t(p)}`).join("\n")}`).join("\n")}\n`);
            if (results.some((r) => !r.ok)) process.exitCode = 1;
        });
    site.command("show")
        .description("print a stack's site description with defaults filled in")
        .addOption(stackOpt()).addOption(fileOpt()).addOption(jsonOpt())
        .action((opts: { stack: string; file?: string; json?: boolean }) => {
            const s = siteFor(opts);
            // Anything from the site is printed with control characters escaped: an ESC in a
            // description would otherwise drive the terminal (model/site/text.ts).
            if (opts.json) {
                process.stdout.write(`${safeJson(s, 2)}\n`);
                return;
            }
            const t = escapeText;
            process.stdout.write(`${[
                `site ${t(s.name)} (${t(s.kind)})${s.description ? `: ${t(s.description)}` : ""}`,
                `SLA: availability ${s.sla.availability}, failover budget ${s.sla.failoverBudgetMs} ms`,
                "",
                table([["PROVIDER", "PREFIX"], ...s.providers.map((p) => [t(p.name), t(p.prefix)])]),
                "",
                table([["NODE", "ROLE", "FAILURE DOMAIN", "UPLINKS", "SSH"],
                    ...s.nodes.map((n) => [t(n.name), t(n.role), t(n.failureDomain), t(n.uplinks.map((u) => u.provider).join(",")),
                        n.ssh ? t(`${n.ssh.user}@${n.ssh.host.includes(":") ? `[${n.ssh.host}]` : n.ssh.host}:${n.ssh.port}`) : n.ec2 ? "(EC2: see site plan)" : "(lab)"])]),
            ].join("\n")}\n`);
        });

    site.command("plan")
        .description("the site's address and overlay plan: loopbacks, uplinks, tunnels and their peers, sensor subnets; a data center's VPC for its EC2 nodes")
        .addOption(stackOpt()).addOption(fileOpt()).addOption(jsonOpt())
        .addOption(new Option("--node <name>", "one node, with its tunnel peers"))
        .action((opts: { stack: string; file?: string; json?: boolean; node?: string }) => {
            const siteModel = siteFor(opts);
            let plan: SitePlan;
            try {
                plan = planSite(siteModel);
            } catch (err) {
                if (err instanceof PlanError) throw new UserError(`the site cannot be planned: ${err.message}`);
                throw err;
            }
            const nodes = opts.node ? plan.nodes.filter((n) => n.name === opts.node) : plan.nodes;
            if (opts.node && nodes.length === 0) throw new UserError(`no node '${opts.node}'; nodes are: ${plan.nodes.map((n) => n.name).join(", ")}`);
            // A data center's EC2 nodes: the VPC's subnets and interfaces (model/network/aws-plan.ts).
            let aws: AwsNetworkPlan | undefined;
            try {
                aws = planAwsNetwork(siteModel, plan);
            } catch (err) {
                if (err instanceof PlanError) throw new UserError(`the site's AWS network cannot be planned: ${err.message}`);
                throw err;
            }
            const instances = aws?.instances.filter((i) => nodes.some((n) => n.name === i.node)) ?? [];
            print(!!opts.json, opts.node ? nodes[0] : aws ? { ...plan, aws } : plan, () => [
                `site ${plan.site}: loopbacks from ${plan.loopbackPrefix}, overlay hubs ${plan.hubs.join(", ")}`,
                "",
                table([["NODE", "ID", "ROLE", "LOOPBACK", "UPLINKS", "TUNNELS (PEERS)", "SENSORS"],
                    ...nodes.map((n) => [n.name, String(n.id), `${n.role}${n.hub ? " (hub)" : ""}`, n.loopback,
                        n.uplinks.map((u) => `${u.ifname}=${u.address}`).join(" "),
                        n.overlays.map((o) => `${o.ifname}=${o.address} (${o.peers.length})`).join(" "),
                        n.sensors.map((x) => x.prefix).join(" ")])]),
                ...(opts.node ? ["", table([["TUNNEL", "TRANSPORT", "PEER", "PEER ADDRESS", "ENDPOINT", "PEER LOOPBACK"],
                    ...nodes[0].overlays.flatMap((o) => o.peers.map((p) => [o.ifname, o.transport, `${p.node}${p.hub ? " (hub)" : ""}`, p.address, p.endpoint, p.loopback]))])] : []),
                ...(aws && instances.length ? [
                    "",
                    `AWS ${aws.region}: VPC blocks ${aws.blocks.map((b) => `${b.prefix} (${b.provider}, ::/0 to ${b.defaultRoute.kind === "internet-gateway" ? "the Internet gateway" : b.defaultRoute.id})`).join(", ")}`,
                    table([["EC2 NODE", "ZONE", "TYPE", "INTERFACE", "SUBNET", "ADDRESS", "SSH"],
                        ...instances.flatMap((i) => i.interfaces.map((x) => [i.node, i.availabilityZone, i.instanceType, `${x.ifname} (${x.provider})`,
                            aws!.subnets.find((s) => s.key === x.subnet)!.prefix, x.address, x.address === i.sshAddress ? "yes" : ""]))]),
                ] : []),
            ].join("\n"));
        });

    const lab = program.command("lab").description("the lab park on this machine (start it with `npm run lab`)");
    lab.command("status")
        .description("compare the lab's plan with what runs on this machine: namespaces, links, addresses, sshd")
        .addOption(stackOpt()).addOption(fileOpt()).addOption(jsonOpt())
        .action((opts: { stack: string; file?: string; json?: boolean }) => {
            const plan = planLab(siteFor(opts));
            const nodes = inspectLab(plan, stateRoot());
            const sshConfig = labSshPaths(plan, stateRoot()).configFile;
            const kubePlan = labKubePlan(plan, stateRoot());
            const kube = kubePlan && { node: kubePlan.nodeName, netns: kubePlan.netns, api: kubePlan.apiServer, running: labKubeAlive(kubePlan), kubeconfig: kubePlan.paths.adminKubeconfig };
            print(!!opts.json, { site: plan.site, tag: plan.tag, sshConfig, nodes, kubernetes: kube ?? null }, () => [
                `lab park '${plan.site}' (tag ${plan.tag})`,
                table([["NODE", "STATE", "NAMESPACE", "MANAGEMENT", "UPLINKS", "SSHD"],
                    ...nodes.map((n) => {
                        const p = plan.nodes.find((x) => x.name === n.name)!;
                        return [n.name, n.healthy ? "up" : n.present ? "degraded" : "absent", n.netns, p.mgmt.address,
                            p.uplinks.map((u) => `${u.ifname}=${u.address}`).join(" "), n.sshd.running ? `pid ${n.sshd.pid}` : "-"];
                    })]),
                ...(kube ? ["", `kubernetes: node ${kube.node} ${kube.running ? "up" : "not running"}, API ${kube.api} (namespace ${kube.netns})`] : []),
                "",
                `ssh to a node: ssh -F ${sshConfig} <node>`,
                ...(kube ? ["kubectl on the lab's cluster: nublar lab kubectl -- get pods -A"] : []),
            ].join("\n"));
            if (!nodes.every((n) => n.healthy) || (kube && !kube.running)) process.exitCode = 3;
        });
    lab.command("kubectl")
        .description("run kubectl against the lab's Kubernetes cluster, as its admin (e.g. nublar lab kubectl -- get pods -A)")
        .argument("[args...]", "kubectl's arguments (put -- before options)")
        .addOption(stackOpt()).addOption(fileOpt())
        .action((args: string[], opts: { stack: string; file?: string }) => {
            const kubePlan = labKubePlan(planLab(siteFor(opts)), stateRoot());
            if (!kubePlan) throw new UserError(`the lab site '${opts.stack}' has no Kubernetes cluster (no \`kubernetes\` in its site description)`);
            if (!fs.existsSync(kubePlan.paths.adminKubeconfig) || !labKubeAlive(kubePlan)) throw new UserError("the lab's Kubernetes cluster is not running; run: npm run lab");
            const kubectl = path.join(PROJECT_DIR, ".tools", "kube", "bin", "kubectl");
            if (!fs.existsSync(kubectl)) throw new UserError(`${kubectl} is missing; run: scripts/setup`);
            // kubectl's discovery cache beside the cluster's files, not in ~/.kube.
            const res = spawnSync(kubectl, ["--kubeconfig", kubePlan.paths.adminKubeconfig, "--cache-dir", path.join(kubePlan.dir, "kubectl-cache"), ...args], { stdio: "inherit" });
            process.exitCode = res.status ?? 1;
        });
    lab.command("ledger-clusters")
        .description("the ledger's CloudNativePG clusters in the lab's Kubernetes cluster (kubernetes.ledger), as the operator sees them: " +
            "phase, primary, and each standby's sync state and lag. Exit 3 when one is not healthy")
        .addOption(stackOpt()).addOption(fileOpt()).addOption(jsonOpt())
        .action((opts: { stack: string; file?: string; json?: boolean }) => {
            const site = siteFor(opts);
            const kubePlan = labKubePlan(planLab(site), stateRoot());
            if (!kubePlan || !site.kubernetes?.ledger) {
                throw new UserError(`the lab site '${site.name}' runs its ledger on this machine, not on CloudNativePG (its kubernetes.ledger is off): see nublar ledger status`);
            }
            if (!labKubeAlive(kubePlan)) throw new UserError("the lab's Kubernetes cluster is not running; run: npm run lab");
            const { cnpgReplication, cnpgSettled, cnpgStatus } = require("../lab/kube/cnpg") as typeof import("../lab/kube/cnpg");
            const namespace = site.kubernetes.namespace;
            const clusters = site.ledger.shards.map((shard) => {
                const name = ledgerClusterName(shard);
                try {
                    const status = cnpgStatus(kubePlan, namespace, name);
                    const standbys = status.currentPrimary ? cnpgReplication(kubePlan, namespace, status.currentPrimary) : [];
                    return { shard, cluster: name, healthy: cnpgSettled(status), ...status, standbys };
                } catch (e) {
                    return { shard, cluster: name, healthy: false, error: (e as Error).message };
                }
            });
            print(!!opts.json, { namespace, clusters }, () => [
                `the ledger on CloudNativePG (namespace ${namespace})`,
                table([["SHARD", "CLUSTER", "PHASE", "READY", "PRIMARY", "STANDBYS (state/sync, replay lag)"],
                    ...clusters.map((c) => "error" in c
                        ? [c.shard, c.cluster, `unreadable: ${c.error}`, "-", "-", "-"]
                        : [c.shard, c.cluster, c.phase || "-", `${c.readyInstances}/${c.instances}`, c.currentPrimary || "-",
                            c.standbys.map((s) => `${s.instance} ${s.state}/${s.syncState} ${s.replayLagBytes} B${s.replayLagMs === null ? "" : ` ${s.replayLagMs} ms`}`).join(", ") || "none"])]),
            ].join("\n"));
            if (!clusters.every((c) => c.healthy)) process.exitCode = 3;
        });
    lab.command("ssh")
        .description("ssh to a lab node with its pinned host key")
        .argument("<node>", "node name")
        .argument("[command...]", "command to run on the node")
        .addOption(stackOpt()).addOption(fileOpt())
        .action((node: string, command: string[], opts: { stack: string; file?: string }) => {
            const plan = planLab(siteFor(opts));
            if (!plan.nodes.some((n) => n.name === node)) throw new UserError(`no node '${node}' in the lab; nodes are: ${plan.nodes.map((n) => n.name).join(", ")}`);
            const sshConfig = labSshPaths(plan, stateRoot()).configFile;
            if (!fs.existsSync(sshConfig)) throw new UserError(`the lab is not up (no ${sshConfig}); run: npm run lab`);
            const res = spawnSync("ssh", ["-F", sshConfig, node, ...command], { stdio: "inherit" });
            process.exitCode = res.status ?? 1;
        });
    const uplinkOf = (opts: { stack: string; file?: string }, node: string, provider: string) => {
        const plan = planLab(siteFor(opts));
        const n = plan.nodes.find((x) => x.name === node);
        if (!n) throw new UserError(`no node '${node}' in the lab; nodes are: ${plan.nodes.map((x) => x.name).join(", ")}`);
        const u = n.uplinks.find((x) => x.provider === provider);
        if (!u) throw new UserError(`node '${node}' has no uplink to '${provider}'; its providers are: ${n.uplinks.map((x) => x.provider).join(", ")}`);
        if (!inspectLab(plan, stateRoot()).find((x) => x.name === node)?.present) throw new UserError("the lab is not up; run: npm run lab");
        const router = plan.routers.find((r) => r.provider === provider)!;
        return { router, ifname: u.routerIfname };
    };
    lab.command("cut")
        .description("cut a node's uplink at the provider's router, to watch BFD, routes and Nginx fail over (undo with `lab restore`)")
        .argument("<node>", "node name")
        .argument("<provider>", "provider name")
        .addOption(new Option("--silent", "drop every packet on the link (nothing answers) instead of setting it down"))
        .addOption(stackOpt()).addOption(fileOpt())
        .action((node: string, provider: string, opts: { stack: string; file?: string; silent?: boolean }) => {
            const { router, ifname } = uplinkOf(opts, node, provider);
            cutUplink(router.netns, ifname, opts.silent ? "silent" : "link");
            process.stdout.write(`cut ${node}'s uplink to ${provider} (${opts.silent ? "silent loss" : "link down"} on ${ifname} in ${router.netns})\n` +
                `watch it: nublar events --node ${node} --follow   (undo: nublar lab restore ${node} ${provider})\n`);
        });
    lab.command("restore")
        .description("undo `lab cut`: the link comes back, with the provider's routes through it")
        .argument("<node>", "node name")
        .argument("<provider>", "provider name")
        .addOption(stackOpt()).addOption(fileOpt())
        .action((node: string, provider: string, opts: { stack: string; file?: string }) => {
            const { router, ifname } = uplinkOf(opts, node, provider);
            restoreUplink(router.netns, ifname);
            process.stdout.write(`restored ${node}'s uplink to ${provider}; its paths return after BFD comes Up and the hold-down passes\n`);
        });
    lab.command("clean")
        .description("remove whatever a lab with this stack's tag left on the machine (namespaces, links, our sshd, files)")
        .addOption(stackOpt()).addOption(fileOpt())
        .addOption(new Option("--tag <tag>", "clean by lab tag instead of reading the stack file"))
        .addOption(jsonOpt())
        .action((opts: { stack: string; file?: string; tag?: string; json?: boolean }) => {
            const tag = opts.tag ?? planLab(siteFor(opts)).tag;
            const result = cleanLab(tag, stateRoot());
            print(!!opts.json, result, () => [
                result.removed.length ? `removed:\n${result.removed.map((r) => `  ${r}`).join("\n")}` : `nothing of lab '${tag}' was left on this machine`,
                ...(result.kept.length ? [`kept (not ours to remove):\n${result.kept.map((k) => `  ${k}`).join("\n")}`] : []),
            ].join("\n"));
            if (result.kept.length) process.exitCode = 1;
        });

    registerNetworkCommands(program);
    const ledgerPlanFor = (site: Site) => {
        if (site.kind !== "lab") return planLedger(site);
        const { labLedgerPlan } = require("../lab/layout") as typeof import("../lab/layout");
        return labLedgerPlan(site, planLab(site), stateRoot());
    };
    registerLedgerCommands(program, { planFor: (stack) => ledgerPlanFor(siteFor({ stack })) });
    registerAuditCommands(program, {
        stateRoot,
        ledgerFor: (site) => (site.ledger.shards.includes("audit") ? ledgerPlanFor(site) : undefined),
        busFor: (site) => {
            const { planEvents } = require("../model/events/plan") as typeof import("../model/events/plan");
            const plan = planEvents(site, site.kind === "lab" ? { stateDir: stateRoot(), managementPrefix: site.lab!.managementPrefix } : undefined);
            return plan?.brokers;
        },
    });

    registerEventsCommands(program, {
        siteFor: (stack) => siteFor({ stack }),
        planFor: (stack) => {
            const site = siteFor({ stack });
            const { planEvents } = require("../model/events/plan") as typeof import("../model/events/plan");
            if (site.kind !== "lab") return planEvents(site);
            const { labEventsPlan } = require("../lab/layout") as typeof import("../lab/layout");
            return labEventsPlan(site, planLab(site), stateRoot());
        },
    });

    program.command("agent")
        .description("run nublar-agent for one node (the lab and NixOS start it; see runtime/agent/)")
        .requiredOption("-c, --config <file>", "the node's agent config (JSON, rendered by the planner)")
        .addOption(new Option("--bfd-nice <n>", "niceness of the BFD timer thread").default("-10"))
        .addOption(new Option("--bfd-realtime <prio>", "run the BFD timer thread under SCHED_FIFO at this priority (1-99)"))
        .action(async (opts: { config: string; bfdNice: string; bfdRealtime?: string }) => {
            // require, not import(): only tsx's CommonJS hook is registered (cli/nublar.js).
            const { runAgent } = require("../runtime/agent/main") as typeof import("../runtime/agent/main");
            await runAgent(opts.config, { bfdNiceness: Number(opts.bfdNice), bfdRealtimePriority: opts.bfdRealtime ? Number(opts.bfdRealtime) : undefined });
            await new Promise(() => undefined); // runs until signalled
        });

    return program;
}

export async function main(argv: string[]): Promise<void> {
    try {
        await buildProgram().parseAsync(argv);
    } catch (err) {
        if (err instanceof CommanderError) {
            // Commander printed the problem and the usage already.
            process.exitCode = ["commander.helpDisplayed", "commander.help", "commander.version"].includes(err.code) ? 0 : 2;
            return;
        }
        // An error a person can act on (model/errors.ts): its message, and its kind's exit code.
        if (err instanceof UserFacingError) {
            process.stderr.write(`nublar: ${err.message}\n`);
            process.exitCode = EXIT_CODES[err.kind];
            return;
        }
        throw err;
    }
}
