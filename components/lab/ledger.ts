// The lab's Unicorn ledger as Pulumi resources: generated passwords and the checkpoint signing key
// (Pulumi secrets), and one resource of nublar's provider that runs the cluster and the ingest service on this
// machine (lab/ledger/up.ts). Parks and data centers get the same ledger from CloudNativePG instead.
import * as pulumi from "@pulumi/pulumi";
import type { ClusterPasswords } from "../../lab/ledger/cluster";
import type { LedgerPlan } from "../../model/ledger/plan";
import { GeneratedKey } from "../nixos/secrets";
import { NublarResource } from "../resource";

/** The PostgreSQL cluster, Redis and the ingest service (provider/resources/services.ts). */
class LabLedgerCluster extends NublarResource {
    declare readonly socket: pulumi.Output<string>;
    constructor(name: string, args: { plan: LedgerPlan; passwords: pulumi.Input<ClusterPasswords>; signingKey: pulumi.Input<string>; publicKey: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super("labLedgerCluster", name, { ...args, socket: undefined }, opts, { secretOutputs: ["passwords", "signingKey"] });
    }
}

export interface LabLedgerArgs {
    plan: LedgerPlan;
}

export class LabLedger extends pulumi.ComponentResource {
    /** The checkpoint signing key's public half (SPKI PEM): give it to auditors. */
    readonly publicKey: pulumi.Output<string>;
    /** Where things are, for `nublar ledger` and the stack's outputs (no secrets). */
    readonly info: pulumi.Output<Record<string, unknown>>;

    constructor(name: string, args: LabLedgerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:Ledger", name, {}, opts);
        const lab = args.plan.lab;
        if (!lab) throw new Error("LabLedger needs a plan with a lab layout");
        const password = (what: keyof ClusterPasswords) => new GeneratedKey(`${name}-${what}-password`, "password", { parent: this }).value;
        const passwords = pulumi.all([password("ingest"), password("auditor"), password("replicator"), password("redis")])
            .apply(([ingest, auditor, replicator, redis]) => ({ ingest, auditor, replicator, redis }));
        const signing = new GeneratedKey(`${name}-checkpoint-key`, "ed25519", { parent: this });
        // Secret in, by construction, whatever the keys' outputs say: the policy pack's secrets
        // rule trusts these two inputs to be secret (policy/rules/secrets.ts).
        const cluster = new LabLedgerCluster(`${name}-cluster`, {
            plan: args.plan, passwords: pulumi.secret(passwords), signingKey: pulumi.secret(signing.value), publicKey: signing.publicKey,
        }, { parent: this });
        this.publicKey = signing.publicKey;
        this.info = cluster.socket.apply((socket): Record<string, unknown> => ({
            shards: args.plan.shards,
            socket,
            postgres: lab.pgPorts.map((p) => `[::1]:${p}`),
            redis: `[::1]:${lab.redisPort}`,
            config: lab.configFile,
            publicKeyFile: lab.publicKeyFile,
            lake: lab.lakeDir,
            checkpoint: args.plan.checkpoint,
        }));
        this.registerOutputs({ publicKey: this.publicKey, info: this.info });
    }
}
