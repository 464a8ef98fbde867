// The lab's event pipeline as a Pulumi resource: one resource of nublar's provider that runs the KRaft broker
// and the pipeline daemon on this machine (lab/event-bus.ts). Parks and data centers get the bus
// from Strimzi instead (components/k8s/event-bus.ts).
import * as pulumi from "@pulumi/pulumi";
import type { LabEventsInputs } from "../../lab/event-bus";
import { SENSOR_KEYS_CONFIG, type EventsPlan, type SensorKeys } from "../../model/events/plan";
import { NublarResource } from "../resource";

type Inputs = Omit<LabEventsInputs, "plan"> & { plan: EventsPlan & { lab: NonNullable<EventsPlan["lab"]> } };

/** The broker and the pipeline daemon (provider/resources/services.ts). */
class LabEventBusDaemons extends NublarResource {
    constructor(name: string, args: { plan: Inputs["plan"]; ledgerSocket: pulumi.Input<string>; routingKey?: pulumi.Input<string>; sensorKeys?: pulumi.Input<SensorKeys> }, opts?: pulumi.CustomResourceOptions) {
        super("labEventBusDaemons", name, args, opts, { secretOutputs: ["routingKey", "sensorKeys"] });
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
