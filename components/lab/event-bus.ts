// The lab's event pipeline as a Pulumi resource: one dynamic resource that runs the KRaft broker
// and the pipeline daemon on this machine (lab/event-bus.ts). Parks and data centers get the bus
// from Strimzi instead (components/k8s/event-bus.ts).
import * as pulumi from "@pulumi/pulumi";
import type { LabEventsInputs } from "../../lab/event-bus";
import { SENSOR_KEYS_CONFIG, type EventsPlan, type SensorKeys } from "../../model/events/plan";

// Plain strings, so Pulumi's closure serializer captures them by value (see providers.ts).
const LAB_MODULE = require.resolve("../../lab/event-bus");
const TSX_HOOK = require.resolve("tsx/cjs");

function lab(): typeof import("../../lab/event-bus") {
    require(TSX_HOOK);
    return require(LAB_MODULE);
}

type Inputs = Omit<LabEventsInputs, "plan"> & { plan: EventsPlan & { lab: NonNullable<EventsPlan["lab"]> } };

/** Ports or place changed: a new broker. Topics, gateway, alerts: the same one, the pipeline restarted. */
const REPLACE_ON = ["localPort", "controllerPort", "mgmtPort", "mgmtHost", "brokerDir", "clusterId"] as const;

const eventBusProvider: pulumi.dynamic.ResourceProvider<Inputs, Inputs> = {
    async create(inputs) {
        await lab().labEventsUp({ ...inputs, plan: inputs.plan });
        return { id: inputs.plan.lab.dir, outs: inputs };
    },
    async update(_id, _olds, news) {
        await lab().labEventsUp({ ...news, plan: news.plan });
        return { outs: news };
    },
    async delete(_id, props) {
        await lab().labEventsDown(props.plan);
    },
    async read(id, props) {
        return props && lab().labEventsAlive(props.plan) ? { id, props } : { id: "", props };
    },
    async diff(_id, olds, news) {
        const replaces = REPLACE_ON.filter((k) => JSON.stringify(olds.plan?.lab?.[k]) !== JSON.stringify(news.plan.lab[k]));
        return { changes: JSON.stringify(olds) !== JSON.stringify(news), replaces: replaces.map((k) => `plan.lab.${k}`), deleteBeforeReplace: true };
    },
};

class LabEventBusDaemons extends pulumi.dynamic.Resource {
    constructor(name: string, args: { plan: Inputs["plan"]; ledgerSocket: pulumi.Input<string>; routingKey?: pulumi.Input<string>; sensorKeys?: pulumi.Input<SensorKeys> }, opts?: pulumi.CustomResourceOptions) {
        super(eventBusProvider, name, args, { ...opts, additionalSecretOutputs: ["routingKey", "sensorKeys"] }, "lab", "EventBus");
    }
}

export interface LabEventBusArgs {
    plan: EventsPlan;
    ledgerSocket: pulumi.Input<string>;
}

export class LabEventBus extends pulumi.ComponentResource {
    /** Where things are, for the stack's outputs and `nublar events` (no secrets). */
    readonly info: pulumi.Output<Record<string, unknown>>;

    constructor(name: string, args: LabEventBusArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:EventBus", name, {}, opts);
        const l = args.plan.lab;
        if (!l) throw new Error("LabEventBus needs a plan with a lab layout");
        // PagerDuty's routing key is a secret: in state encrypted, on disk only in the 0600 config.
        const config = new pulumi.Config("nublar");
        const routingKey = config.getSecret("pagerDutyRoutingKey");
        // So are the sensors' keys (`pulumi config set --secret --path 'nublar:sensorKeys["fence-07"]'`):
        // the gateway refuses every reading of a sensor without one.
        const sensorKeys = config.getSecretObject<SensorKeys>(SENSOR_KEYS_CONFIG);
        const daemons = new LabEventBusDaemons(`${name}-daemons`, { plan: { ...args.plan, lab: l }, ledgerSocket: args.ledgerSocket, routingKey, sensorKeys }, { parent: this });
        this.info = daemons.urn.apply((): Record<string, unknown> => ({
            brokers: args.plan.brokers,
            agentBrokers: args.plan.agentBrokers,
            gateway: args.plan.gateway.listen.map((h) => `http://[${h}]:${args.plan.gateway.port}/v1/readings`),
            topics: args.plan.topics.map((t) => t.name),
            lake: l.lakeDir,
            dashboard: `nublar dashboard (http://[::1]:${args.plan.dashboardPort}/)`,
        }));
        this.registerOutputs({ info: this.info });
    }
}
