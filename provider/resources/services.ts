// The lab's long-running services on this machine: the event pipeline (KRaft broker and pipeline
// daemon, lab/event-bus.ts) and the Unicorn ledger (PostgreSQL cluster, Redis and the ingest
// service, lab/ledger/up.ts). Parks and data centers get them from Strimzi and CloudNativePG.
import { z } from "zod";
import type { LabEventsInputs } from "../../lab/event-bus";
import type { LabLedgerInputs } from "../../lab/ledger/up";
import type { Handler } from "../handler";
import { RESOURCE_TYPES } from "../tokens";
import { canonical } from "../wire";

const eventBus = () => import("../../lab/event-bus");
const ledger = () => import("../../lab/ledger/up");

// Plans are the planners' own output (model/events/plan.ts, model/ledger/plan.ts): checked for
// the lab layout these resources need, not re-described here.
const labPlan = z.object({ lab: z.object({ dir: z.string().startsWith("/", "an absolute path") }).loose() }).loose();

// ---- Event bus ----

/** Ports or place changed: a new broker. Topics, gateway, alerts: the same one, the pipeline restarted. */
const BUS_REPLACE_ON = ["localPort", "controllerPort", "mgmtPort", "mgmtHost", "brokerDir", "clusterId"] as const;

type BusInputs = LabEventsInputs & { plan: { lab: NonNullable<LabEventsInputs["plan"]["lab"]> } };

export const labEventBus: Handler<BusInputs, BusInputs> = {
    schema: z.object({
        plan: labPlan,
        ledgerSocket: z.string().startsWith("/", "an absolute path"),
        routingKey: z.string().optional(),
        sensorKeys: z.record(z.string(), z.string()).optional(),
    }),
    diff(olds, news) {
        const oldLab: Partial<BusInputs["plan"]["lab"]> = olds.plan?.lab ?? {};
        const replaces = BUS_REPLACE_ON.filter((k) => canonical(oldLab[k]) !== canonical(news.plan.lab[k]));
        return { changes: canonical(olds) !== canonical(news), replaces: replaces.map((k) => `plan.lab.${k}`), deleteBeforeReplace: true };
    },
    async create(i) {
        await (await eventBus()).labEventsUp(i);
        return { id: i.plan.lab.dir, outs: { ...i } };
    },
    async update(_id, _olds, news) {
        await (await eventBus()).labEventsUp(news);
        return { ...news };
    },
    async exists(_id, p) {
        return (await eventBus()).labEventsAlive(p.plan);
    },
    async delete(_id, p) {
        await (await eventBus()).labEventsDown(p.plan);
    },
};

// ---- Ledger ----

/** Ports, instance count or place changed: a new cluster. Shards or cadence: the same one, updated. */
const LEDGER_REPLACE_ON = ["instances", "lab"] as const;

type LedgerOutputs = LabLedgerInputs & { socket: string };

export const labLedger: Handler<LabLedgerInputs, LedgerOutputs> = {
    schema: z.object({
        plan: labPlan.extend({ instances: z.number().int().min(1) }),
        passwords: z.object({ ingest: z.string().min(16), auditor: z.string().min(16), replicator: z.string().min(16), redis: z.string().min(16) }),
        signingKey: z.string().includes("PRIVATE KEY", { message: "a PKCS#8 PEM private key" }),
        publicKey: z.string().includes("PUBLIC KEY", { message: "an SPKI PEM public key" }),
    }),
    diff(olds, news) {
        const replaces = LEDGER_REPLACE_ON.filter((k) => canonical(olds.plan?.[k]) !== canonical(news.plan[k]));
        return { changes: canonical({ ...olds, socket: undefined }) !== canonical(news), replaces: replaces.map((k) => `plan.${k}`), deleteBeforeReplace: true };
    },
    async create(i) {
        await (await ledger()).labLedgerUp(i);
        return { id: i.plan.lab!.dir, outs: { ...i, socket: i.plan.lab!.socket } };
    },
    async update(_id, _olds, news) {
        await (await ledger()).labLedgerUp(news);
        return { ...news, socket: news.plan.lab!.socket };
    },
    async exists(_id, p) {
        return (await ledger()).labLedgerAlive(p.plan, p.passwords);
    },
    async delete(_id, p) {
        await (await ledger()).labLedgerDown(p.plan, p.passwords);
    },
};

export const SERVICE_HANDLERS = {
    [RESOURCE_TYPES.labEventBusDaemons]: labEventBus,
    [RESOURCE_TYPES.labLedgerCluster]: labLedger,
};
