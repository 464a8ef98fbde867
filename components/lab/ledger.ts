// The lab's Unicorn ledger as Pulumi resources: generated passwords and the checkpoint signing key
// (Pulumi secrets), and one dynamic resource that runs the cluster and the ingest service on this
// machine (lab/ledger/up.ts). Parks and data centers get the same ledger from CloudNativePG instead.
import * as pulumi from "@pulumi/pulumi";
import type { ClusterPasswords } from "../../lab/ledger/cluster";
import type { LabLedgerInputs } from "../../lab/ledger/up";
import type { LedgerPlan } from "../../model/ledger/plan";
import { GeneratedKey } from "../nixos/secrets";

// Plain strings, so Pulumi's closure serializer captures them by value (see providers.ts).
const UP_MODULE = require.resolve("../../lab/ledger/up");
const TSX_HOOK = require.resolve("tsx/cjs");

function up(): typeof import("../../lab/ledger/up") {
    require(TSX_HOOK);
    return require(UP_MODULE);
}

type Outs = LabLedgerInputs & { socket: string };

/** Ports, instance count or place changed: a new cluster. Shards or cadence: the same one, updated. */
const REPLACE_ON = ["instances", "lab"] as const;

const ledgerProvider: pulumi.dynamic.ResourceProvider<LabLedgerInputs, Outs> = {
    async create(inputs) {
        await up().labLedgerUp(inputs);
        return { id: inputs.plan.lab!.dir, outs: { ...inputs, socket: inputs.plan.lab!.socket } };
    },
    async update(_id, _olds, news) {
        await up().labLedgerUp(news);
        return { outs: { ...news, socket: news.plan.lab!.socket } };
    },
    async delete(_id, props) {
        await up().labLedgerDown(props.plan, props.passwords);
    },
    async read(id, props) {
        return props && up().labLedgerAlive(props.plan, props.passwords) ? { id, props } : { id: "", props };
    },
    async diff(_id, olds, news) {
        const replaces = REPLACE_ON.filter((k) => JSON.stringify(olds.plan?.[k]) !== JSON.stringify(news.plan[k]));
        const changed = JSON.stringify({ ...olds, socket: undefined }) !== JSON.stringify({ ...news, socket: undefined });
        return { changes: changed, replaces: replaces.map((k) => `plan.${k}`), deleteBeforeReplace: true };
    },
};

class LabLedgerCluster extends pulumi.dynamic.Resource {
    declare readonly socket: pulumi.Output<string>;
    constructor(name: string, args: { plan: LedgerPlan; passwords: pulumi.Input<ClusterPasswords>; signingKey: pulumi.Input<string>; publicKey: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super(ledgerProvider, name, { ...args, socket: undefined }, { ...opts, additionalSecretOutputs: ["passwords", "signingKey"] }, "lab", "LedgerCluster");
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
