// `nublar bus ...` and `nublar dashboard`: the event pipeline as engineers use it. Everything
// heavy (the Kafka client, avsc) is loaded only by the command that needs it.
import { Command, InvalidArgumentError, Option } from "commander";
import { UserFacingError } from "../model/errors";
import type { EventsPlan } from "../model/events/plan";
import type { Site } from "../model/site/model";

export interface EventsCliContext {
    siteFor(stack: string): Site;
    /** The stack's events plan, lab layout included for lab stacks; undefined when the site has no pipeline. */
    planFor(stack: string): EventsPlan | undefined;
}

export class EventsUserError extends UserFacingError { readonly kind = "user"; }
export class EventsUnreachable extends UserFacingError { readonly kind = "unreachable"; }

const lazy = {
    kafka: () => require("../runtime/events/kafka") as typeof import("../runtime/events/kafka"),
    schema: () => require("../model/events/schema") as typeof import("../model/events/schema"),
    lab: () => require("../lab/event-bus") as typeof import("../lab/event-bus"),
    pipeline: () => require("../runtime/events/pipeline") as typeof import("../runtime/events/pipeline"),
    topics: () => require("../model/events/topics") as typeof import("../model/events/topics"),
};

const stackOpt = () => new Option("-s, --stack <name>", "stack name (a file stacks/Pulumi.<name>.yaml)").default("lab");
const jsonOpt = () => new Option("--json", "machine-readable output");

function planOf(ctx: EventsCliContext, stack: string): EventsPlan {
    const plan = ctx.planFor(stack);
    if (!plan) throw new EventsUserError(`stack ${stack} has the event pipeline switched off (events.enabled: false)`);
    if (!plan.brokers.length) throw new EventsUserError(`stack ${stack} names no brokers (events.brokers)`);
    return plan;
}

function labOf(ctx: EventsCliContext, stack: string): EventsPlan & { lab: NonNullable<EventsPlan["lab"]> } {
    const plan = planOf(ctx, stack);
    if (!plan.lab) throw new EventsUserError(`stack ${stack} is not a lab: its pipeline does not run on this machine`);
    return plan as EventsPlan & { lab: NonNullable<EventsPlan["lab"]> };
}

const positiveInt = (v: string) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("must be a non-negative integer");
    return n;
};

function describe(e: import("../model/events/schema").NublarEvent): string {
    const t = new Date(e.time / 1000).toISOString();
    const p = e.payload as unknown as Record<string, unknown>;
    const body = e.type === "bfd-change" ? `${p.node} ${p.session} ${p.from} -> ${p.to} (${p.diagnostic})`
        : e.type === "sensor-reading" ? `${p.sensor} ${p.kind}=${p.value}${p.unit ? ` ${p.unit}` : ""} seq ${p.seq}`
        : e.type === "route-change" ? `${p.node} ${p.event} ${p.route}`
        : e.type === "ingress-change" ? `${p.node} ${p.upstream} members [${(p.members as string[]).join(" ")}]`
        : e.type === "alert" ? `${p.action} ${p.severity} ${p.summary}`
        : JSON.stringify(p);
    return `${t}  ${e.type.padEnd(14)} ${body}`;
}

/**
 * A sensor's key for `bus send`: --key-file (mode 0600, like an ssh key), else NUBLAR_SENSOR_KEY,
 * else, on a lab stack, the lab's pipeline config (mode 0600, this user's). Never an argument.
 */
function sensorKeyFor(sensor: string, keyFile: string | undefined, plan: EventsPlan): string | undefined {
    const { SENSOR_KEY } = require("../model/events/plan") as typeof import("../model/events/plan");
    const checked = (key: string, from: string) => {
        if (!SENSOR_KEY.test(key)) throw new EventsUserError(`the sensor key in ${from} is not 64 hex digits (openssl rand -hex 32)`);
        return key;
    };
    if (keyFile) {
        const fs = require("node:fs") as typeof import("node:fs");
        let st: import("node:fs").Stats;
        try {
            st = fs.statSync(keyFile);
        } catch (err) {
            throw new EventsUserError(`cannot read the key file ${keyFile}: ${(err as Error).message}`);
        }
        if (st.mode & 0o077) throw new EventsUserError(`the key file ${keyFile} can be read by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it`);
        return checked(fs.readFileSync(keyFile, "utf8").trim(), keyFile);
    }
    const env = process.env.NUBLAR_SENSOR_KEY;
    if (env) return checked(env.trim(), "NUBLAR_SENSOR_KEY");
    if (!plan.lab) return undefined;
    const fs = require("node:fs") as typeof import("node:fs");
    if (!fs.existsSync(plan.lab.configFile)) return undefined;
    const keys = lazy.pipeline().readPipelineConfig(plan.lab.configFile).gateway.sensorKeys[sensor];
    const key = Array.isArray(keys) ? keys[keys.length - 1] : keys;
    return key && checked(key, plan.lab.configFile);
}

export function registerEventsCommands(program: Command, ctx: EventsCliContext): void {
    const events = program.command("bus").description("the event bus: sensor readings, BFD/route/ingress changes, deploys, audits, alerts (events/)");

    events.command("serve")
        .description("run the pipeline daemon: sensor gateway and the ledger, lake and alert consumers (the lab starts it)")
        .requiredOption("-c, --config <file>", "pipeline config (JSON, mode 0600)")
        .addOption(new Option("--only <parts>", "comma-separated subset: gateway, ledger, lake, alerts"))
        .action(async (opts: { config: string; only?: string }) => {
            const { readPipelineConfig, runPipeline, SINKS } = lazy.pipeline();
            const parts = opts.only ? opts.only.split(",").map((s) => s.trim()) : [...SINKS];
            const unknown = parts.filter((p) => !(SINKS as readonly string[]).includes(p));
            if (unknown.length) throw new EventsUserError(`--only: unknown part(s) ${unknown.join(", ")} (expected ${SINKS.join(", ")})`);
            const log = (m: string) => process.stderr.write(`${new Date().toISOString()} nublar-events: ${m}\n`);
            const p = await runPipeline(readPipelineConfig(opts.config), parts as typeof SINKS[number][], log);
            log(`running: ${parts.join(", ")}`);
            const stop = async (sig: string) => {
                log(`${sig}: stopping (uncommitted batches are read again on the next start)`);
                await p.close();
                process.exit(0);
            };
            process.on("SIGTERM", () => void stop("SIGTERM"));
            process.on("SIGINT", () => void stop("SIGINT"));
            await new Promise(() => undefined);
        });

    events.command("status")
        .description("the lab pipeline's state: broker, gateway, consumers (delivered, dead-lettered, retries), lake files")
        .addOption(stackOpt()).addOption(jsonOpt())
        .action(async (opts: { stack: string; json?: boolean }) => {
            const plan = labOf(ctx, opts.stack);
            const l = lazy.lab();
            const { brokerPid } = require("../lab/kafka-broker") as typeof import("../lab/kafka-broker");
            const broker = brokerPid(l.brokerLayout(plan));
            const pid = l.pipelinePid(plan);
            let stats: Record<string, unknown> | undefined;
            if (pid) stats = await l.pipelineRequest(l.pipelineSocket(plan), "/stats").catch(() => undefined);
            const out = { broker: broker ? { pid: broker, brokers: plan.brokers, agentBrokers: plan.agentBrokers } : null, pipeline: pid ? { pid, ...stats } : null };
            if (opts.json) return void process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
            const lines = [
                `broker    ${broker ? `running (pid ${broker}) on ${plan.brokers.join(", ")}; agents use ${plan.agentBrokers.join(", ")}` : "NOT running (start the lab: npm run lab)"}`,
                `pipeline  ${pid ? `running (pid ${pid})` : "NOT running"}`,
            ];
            const s = stats as { gateway?: Record<string, number>; consumers?: Record<string, Record<string, number>>; lake?: Record<string, number>; ledger?: Record<string, number> } | undefined;
            if (s?.gateway) lines.push(`gateway   ${plan.gateway.listen.map((h) => `http://[${h}]:${plan.gateway.port}/v1/readings`).join(" ")}: ${s.gateway.accepted} accepted, ${s.gateway.rejected} rejected, ${s.gateway.refused} refused, ${s.gateway.unauthorized ?? 0} unauthorized, ${s.gateway.forbiddenOrigin ?? 0} from web pages, ${s.gateway.dropped ?? 0} connections dropped, ${s.gateway.busErrors} bus errors`);
            for (const [name, c] of Object.entries(s?.consumers ?? {})) lines.push(`${name.padEnd(9)} ${c.delivered} delivered in ${c.batches} batches, ${c.deadLettered} dead-lettered, ${c.retries} retries`);
            if (s?.ledger) lines.push(`ledger    ${s.ledger.appended} appended, ${s.ledger.duplicates} duplicates dropped by key`);
            if (s?.lake) lines.push(`lake      ${s.lake.files} files, ${s.lake.written} events written, ${s.lake.skipped} re-read and ${s.lake.resends} resent events already there (${plan.lab.lakeDir})`);
            process.stdout.write(`${lines.join("\n")}\n`);
            if (!broker || !pid) process.exitCode = 3;
        });

    events.command("send")
        .description("send one sensor reading to the sensor gateway, as a sensor would (HTTP POST, signed with the sensor's key)")
        .requiredOption("--sensor <id>", "the sensor's id").requiredOption("--kind <kind>", "what it measures, e.g. temperature")
        .requiredOption("--value <number>", "the reading").option("--unit <unit>", "unit", "")
        .addOption(new Option("--seq <n>", "the sensor's sequence number (default: now in ms)").argParser(positiveInt))
        .addOption(new Option("--key-file <file>", "the sensor's key (64 hex digits), in a file of mode 0600; or NUBLAR_SENSOR_KEY; a lab stack's own keys by default"))
        .addOption(new Option("--gateway <url>", "gateway URL (default: the stack's, on ::1)"))
        .addOption(stackOpt()).addOption(jsonOpt())
        .action(async (opts: { sensor: string; kind: string; value: string; unit: string; seq?: number; keyFile?: string; gateway?: string; stack: string; json?: boolean }) => {
            const plan = planOf(ctx, opts.stack);
            const url = opts.gateway ?? `http://[::1]:${plan.gateway.port}/v1/readings`;
            const reading = { sensor: opts.sensor, kind: opts.kind, value: Number(opts.value), unit: opts.unit, seq: opts.seq ?? Date.now() };
            const body = JSON.stringify(reading);
            // Never from the command line (ps and shell history would show it).
            const key = sensorKeyFor(opts.sensor, opts.keyFile, plan);
            const { signReadings } = require("../runtime/events/gateway") as typeof import("../runtime/events/gateway");
            const headers = key ? signReadings(key, opts.sensor, body) : { "content-type": "application/json" };
            let res: Response;
            try {
                res = await fetch(url, { method: "POST", headers, body });
            } catch (err) {
                throw new EventsUnreachable(`cannot reach the sensor gateway at ${url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
            }
            const answer = await res.json() as Record<string, unknown>;
            if (opts.json) process.stdout.write(`${JSON.stringify({ status: res.status, ...answer }, null, 2)}\n`);
            else if (res.status === 202) process.stdout.write(`accepted: ${(answer.ids as string[]).join(", ")}\n`);
            else process.stdout.write(`refused (${res.status}): ${JSON.stringify(answer.rejected ?? answer.error)}\n`);
            if (res.status === 401 && !key) process.stderr.write(`nublar: sent unsigned: no key for ${opts.sensor} (--key-file, NUBLAR_SENSOR_KEY, or nublar:sensorKeys on a lab stack)\n`);
            if (res.status !== 202) process.exitCode = 1;
        });

    events.command("tail")
        .description("print events from the bus as they arrive (decoded; --from-beginning for history)")
        .addOption(stackOpt())
        .addOption(new Option("--topic <name...>", "topics (default: all)"))
        .option("--from-beginning", "start at the oldest event kept")
        .addOption(new Option("--limit <n>", "stop after n events").argParser(positiveInt))
        .addOption(jsonOpt())
        .action(async (opts: { stack: string; topic?: string[]; fromBeginning?: boolean; limit?: number; json?: boolean }) => {
            const plan = planOf(ctx, opts.stack);
            const { TOPICS, DEAD_LETTER_TOPIC } = lazy.topics();
            const topics = opts.topic ?? [...Object.values(TOPICS).map((t) => t.name)];
            const bad = topics.filter((t) => ![...Object.values(TOPICS).map((x) => x.name), DEAD_LETTER_TOPIC].includes(t));
            if (bad.length) throw new EventsUserError(`unknown topic(s) ${bad.join(", ")}; topics: ${Object.values(TOPICS).map((t) => t.name).join(", ")}, ${DEAD_LETTER_TOPIC}`);
            const { eventConsumer } = lazy.kafka();
            const { decodeEvent } = lazy.schema();
            const groupId = `nublar-tail-${process.pid}-${Date.now()}`;
            const consumer = eventConsumer({ brokers: plan.brokers, clientId: "nublar-tail", groupId, timeoutMs: 5000 });
            let stream;
            try {
                stream = await consumer.consume({ topics, mode: opts.fromBeginning ? "earliest" : "latest", autocommit: false });
            } catch (err) {
                await Promise.resolve(consumer.close(true)).catch(() => undefined);
                throw new EventsUnreachable(`cannot consume from ${plan.brokers.join(", ")}: ${(err as Error).message}`);
            }
            let n = 0;
            const done = async () => {
                await stream.close().catch(() => undefined);
                await Promise.resolve(consumer.close(true)).catch(() => undefined);
            };
            process.on("SIGINT", () => void done().then(() => process.exit(0)));
            for await (const m of stream) {
                if (m.topic === DEAD_LETTER_TOPIC) {
                    const reason = m.headers.get("nublar-reason");
                    process.stdout.write(opts.json ? `${JSON.stringify({ deadLetter: true, reason, origin: m.headers.get("nublar-origin"), value: m.value.toString("utf8") })}\n` : `DEAD-LETTER ${m.headers.get("nublar-origin")}: ${reason}\n`);
                } else {
                    const v = decodeEvent(m.value);
                    process.stdout.write(opts.json ? `${JSON.stringify(v.ok ? v.event : { invalid: v.reason })}\n` : v.ok ? `${describe(v.event)}\n` : `INVALID ${m.topic}/${m.partition}@${m.offset}: ${v.reason}\n`);
                }
                if (opts.limit && ++n >= opts.limit) break;
            }
            await done();
        });

    events.command("replay")
        .description("re-read a sink's topics from the start: the lab pipeline restarts with the group's offsets reset (the ledger drops what it has by key)")
        .addOption(new Option("--sink <name>", "which consumer group").choices(["ledger", "lake"]).makeOptionMandatory())
        .addOption(stackOpt())
        .action(async (opts: { sink: string; stack: string }) => {
            const plan = labOf(ctx, opts.stack);
            const l = lazy.lab();
            const { readPipelineConfig } = lazy.pipeline();
            const cfg = readPipelineConfig(plan.lab.configFile);
            const pid = l.pipelinePid(plan);
            if (pid) {
                // Kafka refuses to reset a group with live members: stop the pipeline first.
                process.kill(pid, "SIGTERM");
                for (let i = 0; i < 200 && l.pipelinePid(plan); i++) await new Promise((r) => setTimeout(r, 50));
            }
            await lazy.kafka().resetGroup({ brokers: plan.brokers, clientId: "nublar-replay" }, `nublar-${opts.sink}`);
            await l.startPipeline({ plan, ledgerSocket: cfg.ledgerSocket, routingKey: cfg.alerts.routingKey, sensorKeys: cfg.gateway.sensorKeys });
            process.stdout.write(`nublar-${opts.sink} reset to the start of its topics; the pipeline is replaying (nublar bus status)\n`);
        });

    program.command("dashboard")
        .description("the live dashboard: topology with BFD sessions by state, routes and ingress per node, the event stream, alerts (on ::1)")
        .addOption(stackOpt())
        .addOption(new Option("--port <n>", "port on ::1 (default: the site's events.dashboardPort; 0 = any)").argParser(positiveInt))
        .action(async (opts: { stack: string; port?: number }) => {
            const site = ctx.siteFor(opts.stack);
            const plan = planOf(ctx, opts.stack);
            const { startDashboard } = require("../runtime/events/dashboard/server") as typeof import("../runtime/events/dashboard/server");
            const { runConsumer } = require("../runtime/events/consume") as typeof import("../runtime/events/consume");
            const { TOPICS } = lazy.topics();
            // Small batches and short fetch waits: a session going Down should be on the page at once.
            const dash = await startDashboard({ site, host: "::1", port: opts.port ?? plan.dashboardPort, batchMs: 20 });
            // A group of its own, new each run, from the oldest event kept: the page starts from
            // the park's history, then follows it live.
            const groupId = `nublar-dashboard-${process.pid}-${Date.now()}`;
            const log = (m: string) => process.stderr.write(`nublar dashboard: ${m}\n`);
            let consumer: Awaited<ReturnType<typeof runConsumer>>;
            try {
                consumer = await runConsumer({
                    bus: { brokers: plan.brokers, clientId: "nublar-dashboard", timeoutMs: 5000 }, groupId, topics: [TOPICS.network.name, TOPICS.telemetry.name, TOPICS.alerts.name], maxWaitMs: 20,
                    handle: async (batch) => batch.forEach((d) => dash.publish(d.event)), log,
                });
            } catch (err) {
                await dash.close();
                throw new EventsUnreachable(`cannot read the event bus at ${plan.brokers.join(", ")}: ${(err as Error).message} (is the lab up? npm run lab)`);
            }
            process.stdout.write(`dashboard for ${site.name}: ${dash.url}\n(from another machine: ssh -L ${new URL(dash.url).port}:[::1]:${new URL(dash.url).port} <this host>)\n`);
            const stop = async () => {
                await consumer.close();
                await lazy.kafka().resetGroup({ brokers: plan.brokers, clientId: "nublar-dashboard" }, groupId, 2000).catch(() => undefined);
                await dash.close();
                process.exit(0);
            };
            process.on("SIGINT", () => void stop());
            process.on("SIGTERM", () => void stop());
            await new Promise(() => undefined);
        });

    events.command("schema")
        .description("print the event envelope's Avro schema (JSON), for consumers in other languages")
        .action(() => {
            const { ENVELOPE_SCHEMA_V1, SCHEMA_VERSION, MAGIC } = lazy.schema();
            process.stdout.write(`${JSON.stringify({ wire: { magic: MAGIC, version: SCHEMA_VERSION, then: "Avro binary of the schema below" }, schema: ENVELOPE_SCHEMA_V1 }, null, 2)}\n`);
        });
}
