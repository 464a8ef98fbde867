// NixosNode: one node's system, deployed over SSH by `pulumi up` with the activation the stack
// chose. A change to the rendered bundle or to a secret deploys a new generation; a deploy that
// does not confirm is rolled back and fails the update with a message saying what was seen.
// nublar's provider plugin does the deploy (provider/resources/deployment.ts, which calls
// runtime/deploy/deploy.ts).
//
// One resource per node. Until 2026-12 it was a component holding a dynamic resource named
// `<name>-deployment`; the alias moves such a deployment here in place (the component, which
// held nothing else, leaves the state).
import * as pulumi from "@pulumi/pulumi";
import type { NodeAccess } from "../../runtime/agent/client";
import type { DeployMode } from "../../model/nix/activation";
import { packBundle } from "../../model/nix/bundle";
import { PROJECT_ROOT } from "../../model/project";
import type { ActivationSpec, DeployEventsTarget } from "../../provider/resources/deployment";
import { DYNAMIC_TYPES } from "../../provider/tokens";
import { NublarResource } from "../resource";

export type { ActivationSpec, DeployEventsTarget };

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

/** The type the per-node component had (its dynamic deployment was its only child). */
const FORMER_COMPONENT_TYPE = "nublar:nixos:NixosNode";

export class NixosNode extends NublarResource {
    declare readonly generation: pulumi.Output<number>;
    declare readonly digest: pulumi.Output<string>;

    constructor(name: string, args: NixosNodeArgs, opts?: pulumi.CustomResourceOptions) {
        const formerParent = pulumi.createUrn(name, FORMER_COMPONENT_TYPE, opts?.parent);
        // The state keeps the node's own files; the release's (modules, balancer) by digest.
        const bundle = pulumi.output(args.files).apply((files) => packBundle(files));
        super("deployment", name, {
            ...args,
            files: bundle.own,
            release: bundle.release,
            // Secret in, never out: the provider returns only their digest.
            secrets: pulumi.secret(args.secrets),
            generation: undefined, digest: undefined, secretsDigest: undefined, confirmedInMs: undefined,
        }, opts, {
            secretOutputs: ["secretsDigest"],
            formerly: pulumi.createUrn(`${name}-deployment`, DYNAMIC_TYPES.deployment!, formerParent),
        });
    }
}

export const NIXOS_PROJECT_DIR = PROJECT_ROOT;
