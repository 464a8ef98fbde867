// A node's system, deployed over SSH (runtime/deploy/deploy.ts) with the activation the stack
// chose (model/nix/activation.ts). A change to the rendered bundle or to a secret deploys a new
// generation; a deploy that does not confirm is rolled back and fails the update with a message
// saying what was seen, so `pulumi up` reports it. The secrets come in as Pulumi secrets and
// never go out: the outputs hold only their digest, itself secret.
import { z } from "zod";
import type { NodeAccess } from "../../runtime/agent/client";
import type { Activation, DeployMode } from "../../model/nix/activation";
import { bundleDigest, unpackBundle, type PackedBundle } from "../../model/nix/bundle";
import type { Handler } from "../handler";
import { RESOURCE_TYPES } from "../tokens";
import { canonical, holdsUnknown } from "../wire";

const deployer = () => import("../../runtime/deploy/deploy");
const activations = () => import("../../model/nix/activation");

export type ActivationSpec =
    | { kind: "nixos"; root?: string }
    | { kind: "lab"; root: string; nodeDir: string; projectDir: string; nodeBinary: string };

/** Where the deploy publishes what it did (a `deploy` event). */
export interface DeployEventsTarget {
    brokers: string[];
    site: string;
    stack: string;
}

export const DEPLOY_MODES = ["switch", "boot", "test", "dry-activate"] as const satisfies readonly DeployMode[];

export interface DeploymentInputs {
    node: string;
    access: Omit<NodeAccess, "agentSocket">;
    agentSocket: string;
    /** Identifies the machine (a lab node's sshd process, a real node's host key): a new one is deployed again. */
    machine: string;
    activation: ActivationSpec;
    mode: DeployMode;
    confirmTimeoutMs: number;
    /** The node's own files of its bundle: relative path -> content (model/nix/bundle.ts). */
    files: Record<string, string>;
    /** The release files the bundle also holds, taken from this checkout: names and digest. */
    release: PackedBundle["release"];
    /** For /run/keys: name -> content (secret). */
    secrets: Record<string, string>;
    events?: DeployEventsTarget;
}

export interface DeploymentOutputs extends Omit<DeploymentInputs, "secrets" | "files" | "release"> {
    digest: string;
    /** A digest of the secrets (itself kept secret), so that a rotated key redeploys. */
    secretsDigest: string;
    generation: number;
    confirmedInMs?: number;
}

const absolute = z.string().startsWith("/", "an absolute path");

const schema = z.object({
    node: z.string().regex(/^[A-Za-z0-9-]{1,63}$/, "a node name"),
    access: z.object({
        host: z.string().min(1),
        port: z.number().int().min(1).max(65535),
        user: z.string().min(1),
        hostKey: z.string().regex(/^ssh-[a-z0-9-]+ [A-Za-z0-9+/=]+/, "a pinned host key, \"ssh-ed25519 AAAA...\""),
        identityFile: absolute.optional(),
        reachableWithinMs: z.number().int().min(0).optional(),
    }),
    agentSocket: absolute,
    machine: z.string().min(1),
    activation: z.discriminatedUnion("kind", [
        z.object({ kind: z.literal("nixos"), root: absolute.optional() }),
        z.object({ kind: z.literal("lab"), root: absolute, nodeDir: absolute, projectDir: absolute, nodeBinary: absolute }),
    ]),
    mode: z.enum(DEPLOY_MODES),
    confirmTimeoutMs: z.number().int().min(1),
    files: z.record(z.string(), z.string()),
    release: z.object({ files: z.array(z.string().min(1)), digest: z.string().regex(/^[0-9a-f]{16}$/, "a bundle digest") }),
    secrets: z.record(z.string(), z.string()),
    events: z.object({ brokers: z.array(z.string().min(1)).min(1), site: z.string().min(1), stack: z.string().min(1) }).optional(),
});

/** The whole bundle: the node's own files and the release's (ReleaseMismatchError if this checkout's differ). */
function bundleOf(i: Pick<DeploymentInputs, "files" | "release">): Record<string, string> {
    return unpackBundle({ own: i.files, release: i.release });
}

async function activationFor(spec: ActivationSpec): Promise<Activation> {
    const a = await activations();
    return spec.kind === "nixos" ? a.nixosActivation(spec.root) : a.labActivation(spec);
}

/**
 * Tells the event bus what the deploy did, confirmed or not (best effort: a deploy never fails
 * because the bus is down; the line in the provider's log says so).
 */
async function publishDeploy(inputs: DeploymentInputs, startedAt: number, outcome: { generation: number; outcome: string; message: string }): Promise<void> {
    if (!inputs.events) return;
    const { publishOnce } = await import("../../runtime/events/kafka");
    const time = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const e = inputs.events;
    const r = await publishOnce(e.brokers, `deploy-${inputs.node}`, [{
        id: `deploy/${e.stack}/${inputs.node}/${time}`, site: e.site, source: "nublar-deploy", time, type: "deploy",
        payload: { stack: e.stack, node: inputs.node, generation: outcome.generation, outcome: outcome.outcome, message: outcome.message.slice(0, 2000), durationMs: Math.round(performance.now() - startedAt) },
    }]);
    if (!r.ok) process.stderr.write(`nublar deploy: ${inputs.node}: the deploy event did not reach the event bus (${r.error})\n`);
}

async function run(inputs: DeploymentInputs): Promise<DeploymentOutputs> {
    const d = await deployer();
    const startedAt = performance.now();
    let result: Awaited<ReturnType<typeof d.deploy>>;
    try {
        result = await d.deploy({
            target: { node: inputs.node, access: inputs.access, agentSocket: inputs.agentSocket },
            activation: await activationFor(inputs.activation),
            mode: inputs.mode,
            files: bundleOf(inputs),
            secrets: inputs.secrets,
            confirmTimeoutMs: inputs.confirmTimeoutMs,
            // The provider's stderr reaches `pulumi up --debug` and its logs.
            log: (line) => process.stderr.write(`nublar deploy: ${line}\n`),
        });
    } catch (err) {
        const rolledBack = err instanceof d.DeployError && err.rolledBack;
        await publishDeploy(inputs, startedAt, { generation: Number(/generation (\d+)/.exec((err as Error).message)?.[1] ?? 0), outcome: rolledBack ? "rolled-back" : "failed", message: (err as Error).message });
        throw err;
    }
    await publishDeploy(inputs, startedAt, { generation: result.generation, outcome: "confirmed", message: `${result.sessions} BFD sessions Up${result.confirmedInMs !== undefined ? `, confirmed ${result.confirmedInMs} ms after activation` : ""}` });
    const { files: _f, secrets: _s, release: _r, ...rest } = inputs;
    return { ...rest, digest: result.digest, secretsDigest: bundleDigest(inputs.secrets), generation: result.generation, confirmedInMs: result.confirmedInMs };
}

/** What, besides the bundle and the secrets, deploys again when it changes. */
const REDEPLOY_ON = ["machine", "mode", "activation", "access", "agentSocket", "confirmTimeoutMs"] as const;

export const deployment: Handler<DeploymentInputs, DeploymentOutputs> = {
    schema,
    secretOutputs: ["secretsDigest"],
    diff(olds, news) {
        // Never a replace: a node is deployed again in place. Digests, because the outputs keep
        // no bundle and no secret. A bundle not known yet (a preview) is a change.
        const changed = [
            ...(holdsUnknown(news.files) || holdsUnknown(news.release) || bundleDigest(bundleOf(news)) !== olds.digest ? ["files"] : []),
            ...(holdsUnknown(news.secrets) || bundleDigest(news.secrets) !== olds.secretsDigest ? ["secrets"] : []),
            ...REDEPLOY_ON.filter((k) => canonical(olds[k]) !== canonical(news[k])),
        ];
        return { changes: changed.length > 0, replaces: [] };
    },
    async create(i) {
        return { id: i.node, outs: await run(i) };
    },
    async update(_id, _olds, news) {
        return run(news);
    },
    async exists(_id, p) {
        // Refresh asks whether the node still runs what we deployed. A lab node rebuilt behind
        // Pulumi's back (or a node reinstalled) does not: the next `up` deploys again. An
        // unreachable node is left as it is: refresh must not forget a deploy over a network blip.
        const [d, a, act] = [await deployer(), await activations(), await activationFor(p.activation)];
        try {
            const r = await d.execOnNode(p.node, p.access,
                `${act.statusCmd()} && cat ${a.sh(`${act.root}/generations/${p.generation}/nublar-digest`)} 2>/dev/null || true`);
            const [statusLine, digestLine] = r.stdout.trim().split("\n");
            const status = JSON.parse(statusLine) as { current: number | null };
            return status.current === p.generation && digestLine?.trim() === p.digest;
        } catch {
            return true;
        }
    },
    async delete(_id, p) {
        const act = await activationFor(p.activation);
        if (!act.deactivateCmd) return; // a real node keeps running its system; only Pulumi forgets it
        try {
            await (await deployer()).execOnNode(p.node, p.access, act.deactivateCmd());
        } catch {
            // The lab node is already gone (its namespace was deleted first): nothing runs there.
        }
    },
};

export const DEPLOYMENT_HANDLERS = { [RESOURCE_TYPES.deployment]: deployment };
