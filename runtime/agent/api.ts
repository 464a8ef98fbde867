// The agent's local API, on a unix socket only (never a TCP port):
//   GET /state                 sessions, routes, ingress and uplinks (AgentState, as JSON)
//   GET /metrics               Prometheus text
//   GET /events?limit=N        recent events, JSON lines
//   GET /events?follow=1       recent events, then new ones as they happen (JSON lines); at most
//                              16 followers (503 beyond), and a follower that leaves 1 MiB
//                              unread is dropped rather than buffered for
import * as fs from "node:fs";
import * as http from "node:http";
import type { Agent } from "./agent";

export async function serveApi(agent: Agent, socket: string): Promise<http.Server> {
    const server = http.createServer((req, res) => {
        handle(agent, req, res).catch((err) => {
            if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
            res.end(`${(err as Error).message}\n`);
        });
    });
    // A stale socket from a killed agent would make listen fail with EADDRINUSE.
    try {
        fs.unlinkSync(socket);
    } catch {
        // not there
    }
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(socket, () => resolve());
    });
    fs.chmodSync(socket, 0o660);
    return server;
}

async function handle(agent: Agent, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://agent");
    if (req.method !== "GET") {
        res.writeHead(405, { "content-type": "text/plain" });
        return void res.end("only GET\n");
    }
    switch (url.pathname) {
        case "/state": {
            const body = JSON.stringify(await agent.state());
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end(body);
        }
        case "/metrics": {
            const body = await agent.metrics.registry.metrics();
            res.writeHead(200, { "content-type": agent.metrics.registry.contentType });
            return void res.end(body);
        }
        case "/events": {
            const limit = Math.min(2000, Math.max(0, Number(url.searchParams.get("limit") ?? 100) || 0));
            const follow = url.searchParams.get("follow") === "1";
            // Following is bounded (runtime/agent/events.ts FOLLOW_LIMITS): so many followers at
            // once, and one that stops reading is dropped once its backlog passes the bound.
            const bounds = agent.events.followLimits;
            if (follow && agent.events.followerCount >= bounds.followers) {
                res.writeHead(503, { "content-type": "text/plain", "retry-after": "5" });
                return void res.end(`${agent.events.followerCount} followers already, the most the agent serves; try again later\n`);
            }
            res.writeHead(200, { "content-type": "application/x-ndjson" });
            for (const e of agent.events.recent(limit)) res.write(`${JSON.stringify(e)}\n`);
            if (!follow) return void res.end();
            res.flushHeaders(); // a follower knows at once that it follows, even before an event
            let behind = false;
            res.on("drain", () => (behind = false));
            const stop = agent.events.follow((e) => {
                if (behind && res.writableLength > bounds.bufferedBytes) {
                    // It stopped reading: end it with a last line saying so, rather than queue more.
                    stop();
                    const message = `follower dropped: more than ${bounds.bufferedBytes} bytes of events waited unread; reconnect to follow again (GET /events?limit=N for what was missed)`;
                    res.end(`${JSON.stringify({ at: e.at, seq: 0, node: agent.events.node, type: "error", step: "follow", message })}\n`);
                    // A client that never reads would hold even that: cut it if it is not taken soon.
                    const cut = setTimeout(() => res.destroy(), bounds.graceMs).unref();
                    res.on("finish", () => clearTimeout(cut));
                    return;
                }
                if (!res.write(`${JSON.stringify(e)}\n`)) behind = true;
            });
            req.on("close", stop);
            res.on("close", stop);
            return;
        }
        default:
            res.writeHead(404, { "content-type": "text/plain" });
            res.end("try /state, /metrics or /events\n");
    }
}
