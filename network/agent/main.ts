// Entry point of nublar-agent: `nublar agent --config FILE` runs this inside the node's
// network namespace. It logs one line per lifecycle step to stderr; events go to the
// event log named in the config.
import type { Server } from "node:http";
import { Agent } from "./agent";
import { serveApi } from "./api";
import { readAgentConfig } from "./config";

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
    let stopping = false;
    const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log(`${signal}: taking sessions administratively down; installed routes stay`);
        server?.close();
        server?.closeAllConnections();
        await agent.stop();
        process.exit(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
}
