// Entry point of nublar-agent: `nublar agent --config FILE` runs this inside the node's
// network namespace. It logs one line per lifecycle step to stderr; events go to the
// event log named in the config.
import type { Server } from "node:http";
import { Agent } from "./agent";
import { serveApi } from "./api";
import { readAgentConfig } from "../../model/network/agent-config";

export async function runAgent(configFile: string, opts: { bfdNiceness?: number; bfdRealtimePriority?: number } = {}): Promise<void> {
    const log = (line: string) => process.stderr.write(`nublar-agent: ${line}\n`);
    const config = readAgentConfig(configFile);
    const agent = await Agent.start(config, {
        log,
        bfdNiceness: opts.bfdNiceness,
        bfdRealtimePriority: opts.bfdRealtimePriority,
        onFatal: (err) => {
            log(`fatal: BFD worker died (${err.stack ?? err.message}); exiting, installed routes stay`);
            process.exit(1);
        },
    });
    let server: Server | undefined;
    try {
        server = await serveApi(agent, config.paths.socket);
    } catch (err) {
        await agent.stop();
        throw new Error(`cannot listen on ${config.paths.socket}: ${(err as Error).message}`);
    }
    log(`state API on ${config.paths.socket}; BFD thread: ${(await agent.state()).bfdWorker.priority}`);
    const publisher = config.eventBus ? startPublisher(config, agent, log) : undefined;
    let stopping = false;
    const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log(`${signal}: taking sessions administratively down; installed routes stay`);
        server?.close();
        server?.closeAllConnections();
        await agent.stop();
        // The stop events too, if the bus takes them quickly; otherwise they wait in the event log.
        await publisher?.close(2000);
        process.exit(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
}

/** How often the agent reports each session's receive gaps (path-latency events). */
const LATENCY_SAMPLE_MS = 5000;

/**
 * Publishes the event log to the bus (runtime/agent/outbox.ts): polled, and kicked by every new event so
 * a BFD change is on the bus within milliseconds. Loaded only when configured.
 */
function startPublisher(config: ReturnType<typeof readAgentConfig>, agent: Agent, log: (l: string) => void) {
    const bus = config.eventBus!;
    const { eventProducer } = require("../events/kafka") as typeof import("../events/kafka");
    const { Outbox } = require("./outbox") as typeof import("./outbox");
    const producer = eventProducer({ brokers: bus.brokers, clientId: `agent-${config.node}` });
    let lastError = "";
    const outbox = new Outbox({
        site: config.site, node: config.node, file: config.paths.events, stateFile: bus.stateFile, producer,
        // One line per new kind of failure: a broker outage must not flood the log.
        log: (m) => {
            if (m !== lastError) log(m);
            lastError = m;
        },
    });
    outbox.start(500);
    agent.events.follow(() => outbox.kick());
    // Telemetry, not state: each session's longest BFD receive gap every few seconds, sent
    // straight to the bus (best effort: a sample lost in an outage is not worth an outbox).
    const { messageOf } = require("../events/kafka") as typeof import("../events/kafka");
    const { latencySamples } = require("./outbox") as typeof import("./outbox");
    let sampling = false;
    let windowStart = performance.now();
    const sampler = setInterval(async () => {
        if (sampling) return;
        sampling = true;
        try {
            const now = performance.now();
            const events = latencySamples(config.site, config.node, await agent.rxGaps(), now - windowStart);
            windowStart = now;
            if (events.length) await producer.send({ messages: events.map(messageOf) });
        } catch {
            // The outbox logs bus outages; a lost sample is fine.
        } finally {
            sampling = false;
        }
    }, LATENCY_SAMPLE_MS);
    sampler.unref();
    log(`publishing events to ${bus.brokers.join(", ")} (acks=all, idempotent)`);
    return {
        async close(timeoutMs: number) {
            clearInterval(sampler);
            outbox.stop();
            await Promise.race([outbox.flush(), new Promise((r) => setTimeout(r, timeoutMs))]);
            await producer.close().catch(() => undefined);
        },
    };
}
