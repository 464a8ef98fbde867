// The alert consumer through a real broker: BFD changes published on the network topic become
// PagerDuty Events v2 calls to a webhook (a local receiver on ::1) and alert events on the
// alerts topic; a session that stays Down pages once, and resolves when it comes back.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { BrokerLayout } from "../../lab/kafka-broker";
import { eventConsumer, eventProducer, publishEvents, type EventProducer } from "../../runtime/events/kafka";
import { decodeEvent, nowUs, type NublarEvent } from "../../model/events/schema";
import { TOPICS } from "../../model/events/topics";
import { DIAGNOSTICS } from "../../model/vocabulary";
import { missingKafka, PipelineProcess, startTestBroker, stopTestBroker, testPipelineConfig, waitFor } from "./fixture";

const skip = missingKafka();
const ROUTING_KEY = "R0UT1NGKEY-not-for-logs";
let broker: BrokerLayout | undefined;
let dir: string;
let alerts: PipelineProcess;
let producer: EventProducer;
let webhook: http.Server;
const calls: Record<string, any>[] = [];

let seq = 0;
function bfd(session: string, from: string, to: string): NublarEvent {
    seq++;
    return { id: `agent/gate/test/${seq}`, site: "lab", source: "agent/gate", time: nowUs(), type: "bfd-change", payload: { node: "gate", session, peer: "2001:db8:a:1::1", from: from as never, to: to as never, diagnostic: to === "Down" ? DIAGNOSTICS.controlDetectionTimeExpired : DIAGNOSTICS.noDiagnostic, remoteState: null, seq } };
}

describe("alerts through the bus", { skip }, () => {
    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-alerts-"));
        webhook = http.createServer((req, res) => {
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                calls.push(JSON.parse(body));
                res.writeHead(202, { "content-type": "application/json" }).end('{"status":"success"}');
            });
        });
        await new Promise<void>((r) => webhook.listen(0, "::1", () => r()));
        broker = await startTestBroker();
        const cfg = await testPipelineConfig(broker, "/nonexistent", dir);
        const configFile = path.join(dir, "pipeline.json");
        const url = `http://[::1]:${(webhook.address() as { port: number }).port}/v2/enqueue`;
        fs.writeFileSync(configFile, JSON.stringify({ ...cfg, alerts: { url, routingKey: ROUTING_KEY } }), { mode: 0o600 });
        alerts = new PipelineProcess(configFile, "alerts", cfg.socket);
        await alerts.start();
        producer = eventProducer({ brokers: cfg.brokers, clientId: "alerts-test" });
        // The consumer starts at the end of the topic: wait until it has joined and holds a position.
        await new Promise((r) => setTimeout(r, 3000));
    });

    after(async () => {
        await producer?.close().catch(() => undefined);
        await alerts?.stop();
        await stopTestBroker(broker);
        await new Promise((r) => webhook?.close(() => r(undefined)));
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test("a gateway session that stays Down pages once (critical), on the webhook and the alerts topic; Up again resolves it", async () => {
        await publishEvents(producer, [bfd("gw/provider-a", "Init", "Up"), bfd("gw/provider-a", "Up", "Down")]);
        const trigger = await waitFor("the PagerDuty trigger", () => calls.find((c) => c.event_action === "trigger"), 30_000);
        assert.equal(trigger.routing_key, ROUTING_KEY);
        assert.equal(trigger.client, "nublar");
        assert.equal(trigger.payload.severity, "critical");
        assert.equal(trigger.payload.source, "gate");
        assert.equal(trigger.payload.class, "session-down");
        assert.match(trigger.dedup_key, /gate\/gw\/provider-a\/session-down/);
        assert.ok(!Number.isNaN(Date.parse(trigger.payload.timestamp)));
        // Still Down a while later: no second page for the same condition.
        await new Promise((r) => setTimeout(r, 2500));
        assert.equal(calls.filter((c) => c.event_action === "trigger").length, 1, "deduplicated");
        await publishEvents(producer, [bfd("gw/provider-a", "Down", "Up")]);
        const resolve = await waitFor("the resolve", () => calls.find((c) => c.event_action === "resolve"), 30_000);
        assert.equal(resolve.dedup_key, trigger.dedup_key);

        // The same alerts are on the bus, for the dashboard and the lake.
        const consumer = eventConsumer({ brokers: [`[::1]:${broker!.listeners[0].port}`], clientId: "alerts-test-read", groupId: `alerts-test-${process.pid}` });
        const stream = await consumer.consume({ topics: [TOPICS.alerts.name], mode: "earliest", autocommit: false });
        const seen: NublarEvent[] = [];
        stream.on("data", (m) => {
            const v = decodeEvent(m.value);
            if (v.ok) seen.push(v.event);
        });
        try {
            await waitFor("trigger and resolve on nublar.alerts", () => (seen.length >= 2 ? true : undefined), 30_000);
        } finally {
            await stream.close();
            await consumer.close(true);
        }
        assert.deepEqual(seen.map((e) => e.type === "alert" && e.payload.action), ["trigger", "resolve"]);
        assert.ok(!fs.readFileSync(alerts.logFile, "utf8").includes(ROUTING_KEY), "the routing key is never logged");
    });
});
