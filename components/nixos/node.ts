// NixosNode: one node's system, deployed over SSH by `pulumi up` (./deploy.ts), with the
// activation the stack chose (./activation.ts). A change to the rendered bundle or to a
// secret deploys a new generation; a deploy that does not confirm is rolled back and fails
// the update with a message saying what was seen, so `pulumi up` reports it.
//
// The deploy itself runs in a dynamic provider (Pulumi's Node.js provider host), which loads
// ./deploy.ts by absolute path through tsx, as the lab's providers do.
import * as pulumi from "@pulumi/pulumi";
import type { NodeAccess } from "../../runtime/agent/client";
import type { DeployMode } from "../../model/nix/activation";
import { PROJECT_ROOT } from "../../model/project";

const DEPLOY_MODULE = require.resolve("../../runtime/deploy/deploy");
const ACTIVATION_MODULE = require.resolve("../../model/nix/activation");
const KAFKA_MODULE = require.resolve("../../runtime/events/kafka");
const TSX_HOOK = require.resolve("tsx/cjs");
const PROJECT_DIR = PROJECT_ROOT;

export type ActivationSpec =
    | { kind: "nixos"; root?: string }
    | { kind: "lab"; root: string; nodeDir: string; projectDir: string; nodeBinary: string };

export interface NixosNodeArgs {
    node: string;
    access: pulumi.Input<Omit<NodeAccess, "agentSocket">>;
    agentSocket: pulumi.Input<string>;
    /**
     * Identifies the machine itself (a lab node's sshd process, a real node's host key): when
     * it changes, the node was rebuilt or reinstalled, and is deployed again.
     */
    machine: pulumi.Input<string>;
    activation: ActivationSpec;
    mode: DeployMode;
    confirmTimeoutMs: number;
    /** The rendered bundle (model/nix/render.ts, plus the lab's overlay.json): relative path -> content. */
    files: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** Secrets for /run/keys: name -> content. Pass Pulumi secrets; they stay encrypted in state. */
    secrets: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** Where the deploy publishes what it did (a `deploy` event); none: it does not. */
    events?: DeployEventsTarget;
}

export interface DeployEventsTarget {
    brokers: string[];
    site: string;
    stack: string;
}

interface DeploymentInputs {
    node: string;
    access: Omit<NodeAccess, "agentSocket">;
    agentSocket: string;
    machine: string;
    activation: ActivationSpec;
    mode: DeployMode;
    confirmTimeoutMs: number;
    files: Record<string, string>;
    secrets: Record<string, string>;
    events?: DeployEventsTarget;
}

interface DeploymentOutputs extends Omit<DeploymentInputs, "secrets" | "files"> {
    digest: string;
    /** A digest of the secrets (itself kept secret), so that a rotated key redeploys. */
    secretsDigest: string;
    generation: number;
    confirmedInMs?: number;
}

function modules() {
    require(TSX_HOOK);
    return { deploy: require(DEPLOY_MODULE) as typeof import("../../runtime/deploy/deploy"), activation: require(ACTIVATION_MODULE) as typeof import("../../model/nix/activation") };
}

function activationFor(spec: ActivationSpec) {
    const { activation } = modules();
    return spec.kind === "nixos" ? activation.nixosActivation(spec.root) : activation.labActivation(spec);
}

function digests(inputs: DeploymentInputs) {
    const { deploy } = modules();
    return { digest: deploy.bundleDigest(inputs.files), secretsDigest: deploy.bundleDigest(inputs.secrets) };
}

/**
 * Tells the event bus what the deploy did, confirmed or not (best effort: a deploy never fails
 * because the bus is down; the line in the deploy's log says so).
 */
async function publishDeploy(inputs: DeploymentInputs, startedAt: number, outcome: { generation: number; outcome: string; message: string }): Promise<void> {
    if (!inputs.events) return;
    require(TSX_HOOK);
    const { publishOnce } = require(KAFKA_MODULE) as typeof import("../../runtime/events/kafka");
    const time = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const e = inputs.events;
    const r = await publishOnce(e.brokers, `deploy-${inputs.node}`, [{
        id: `deploy/${e.stack}/${inputs.node}/${time}`, site: e.site, source: "nublar-deploy", time, type: "deploy",
        payload: { stack: e.stack, node: inputs.node, generation: outcome.generation, outcome: outcome.outcome, message: outcome.message.slice(0, 2000), durationMs: Math.round(performance.now() - startedAt) },
    }]);
    if (!r.ok) process.stderr.write(`nublar deploy: ${inputs.node}: the deploy event did not reach the event bus (${r.error})\n`);
}

async function run(inputs: DeploymentInputs): Promise<DeploymentOutputs> {
    const { deploy } = modules();
    const startedAt = performance.now();
    let result: Awaited<ReturnType<typeof deploy.deploy>>;
    try {
        result = await deployOnce(inputs);
    } catch (err) {
        const rolledBack = err instanceof deploy.DeployError && err.rolledBack;
        await publishDeploy(inputs, startedAt, { generation: Number(/generation (\d+)/.exec((err as Error).message)?.[1] ?? 0), outcome: rolledBack ? "rolled-back" : "failed", message: (err as Error).message });
        throw err;
    }
    await publishDeploy(inputs, startedAt, { generation: result.generation, outcome: "confirmed", message: `${result.sessions} BFD sessions Up${result.confirmedInMs !== undefined ? `, confirmed ${result.confirmedInMs} ms after activation` : ""}` });
    const { files: _f, secrets: _s, ...rest } = inputs;
    return { ...rest, digest: result.digest, secretsDigest: deploy.bundleDigest(inputs.secrets), generation: result.generation, confirmedInMs: result.confirmedInMs };
}

function deployOnce(inputs: DeploymentInputs) {
    const { deploy } = modules();
    return deploy.deploy({
        target: { node: inputs.node, access: inputs.access, agentSocket: inputs.agentSocket },
        activation: activationFor(inputs.activation),
        mode: inputs.mode,
        files: inputs.files,
        secrets: inputs.secrets,
        confirmTimeoutMs: inputs.confirmTimeoutMs,
        // The provider host's stderr reaches `pulumi up --debug` and its logs.
        log: (line) => process.stderr.write(`nublar deploy: ${line}\n`),
    });
}

const deploymentProvider: pulumi.dynamic.ResourceProvider<DeploymentInputs, DeploymentOutputs> = {
    async create(inputs) {
        const outs = await run(inputs);
        return { id: `${inputs.node}`, outs };
    },
    async update(_id, _olds, news) {
        return { outs: await run(news) };
    },
    async diff(_id, olds, news) {
        const now = digests(news);
        const changed = [
            ...(now.digest !== olds.digest ? ["files"] : []),
            ...(now.secretsDigest !== olds.secretsDigest ? ["secrets"] : []),
            ...(["machine", "mode", "activation", "access", "agentSocket", "confirmTimeoutMs"] as const).filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k])),
        ];
        return { changes: changed.length > 0, replaces: [], stables: ["node"] };
    },
    async read(id, props) {
        // Refresh asks whether the node still runs what we deployed. A lab node rebuilt behind
        // Pulumi's back (or a node reinstalled) does not: an empty id makes the next `up` deploy
        // again. An unreachable node is left as it is: refresh must not forget a deploy because
        // of a network blip.
        if (!props) return { id, props };
        const { deploy, activation } = modules();
        const act = activationFor(props.activation);
        try {
            const r = await deploy.execOnNode(props.node, props.access,
                `${act.statusCmd()} && cat ${activation.sh(`${act.root}/generations/${props.generation}/nublar-digest`)} 2>/dev/null || true`);
            const [statusLine, digestLine] = r.stdout.trim().split("\n");
            const status = JSON.parse(statusLine) as { current: number | null };
            const running = status.current === props.generation && digestLine?.trim() === props.digest;
            return running ? { id, props } : { id: "", props };
        } catch {
            return { id, props };
        }
    },
    async delete(_id, props) {
        const act = activationFor(props.activation);
        if (!act.deactivateCmd) return; // a real node keeps running its system; only Pulumi forgets it
        try {
            await modules().deploy.execOnNode(props.node, props.access, act.deactivateCmd());
        } catch {
            // The lab node is already gone (its namespace was deleted first): nothing runs there.
        }
    },
};

class NixosDeployment extends pulumi.dynamic.Resource {
    declare readonly generation: pulumi.Output<number>;
    declare readonly digest: pulumi.Output<string>;
    constructor(name: string, args: Record<string, pulumi.Input<unknown>>, opts?: pulumi.CustomResourceOptions) {
        super(deploymentProvider, name, { ...args, generation: undefined, digest: undefined, secretsDigest: undefined, confirmedInMs: undefined }, {
            ...opts, additionalSecretOutputs: ["secretsDigest"],
        }, "nixos", "Deployment");
    }
}

export class NixosNode extends pulumi.ComponentResource {
    readonly generation: pulumi.Output<number>;
    readonly digest: pulumi.Output<string>;

    constructor(name: string, args: NixosNodeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:nixos:NixosNode", name, {}, opts);
        const deployment = new NixosDeployment(`${name}-deployment`, {
            node: args.node,
            access: args.access,
            agentSocket: args.agentSocket,
            machine: args.machine,
            activation: args.activation,
            mode: args.mode,
            confirmTimeoutMs: args.confirmTimeoutMs,
            files: args.files,
            // Secret in, never out: the provider returns only their digest.
            secrets: pulumi.secret(args.secrets),
            events: args.events,
        }, { parent: this });
        this.generation = deployment.generation;
        this.digest = deployment.digest;
        this.registerOutputs({ generation: this.generation, digest: this.digest });
    }
}

export const NIXOS_PROJECT_DIR = PROJECT_DIR;
