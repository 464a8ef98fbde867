// Bringing the lab's event pipeline up and down: the KRaft broker (lab/kafka-broker.ts) on ::1 and on
// the management bridge (where the nodes' agents reach it), the topics, and the pipeline daemon.
// Idempotent, like the ledger's (lab/ledger/up.ts): `pulumi up --refresh` restarts what is missing.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { daemonPid, startNublarDaemon } from "./daemons";
import { brokerPid, formatBroker, startBroker, stopBroker, type BrokerLayout } from "./kafka-broker";
import { sensorKeysProblems, type EventsPlan, type SensorKeys } from "../model/events/plan";
import type { PipelineConfig } from "../runtime/events/pipeline";


export interface LabEventsInputs {
    plan: EventsPlan;
    /** The ledger ingest service's socket (model/ledger/plan.ts). */
    ledgerSocket: string;
    /** PagerDuty routing key (a Pulumi secret), if alerts should leave the machine. */
    routingKey?: string;
    /** Each sensor's HMAC key (`nublar:sensorKeys`, a Pulumi secret): only ever in the 0600 config file. */
    sensorKeys?: SensorKeys;
}

function lab(plan: EventsPlan) {
    if (!plan.lab) throw new Error("the events plan has no lab layout (only lab sites run the bus on this machine)");
    return plan.lab;
}

export function brokerLayout(plan: EventsPlan): BrokerLayout {
    const l = lab(plan);
    return {
        dir: l.brokerDir,
        clusterId: l.clusterId,
        listeners: [{ name: "LOCAL", host: "::1", port: l.localPort }, { name: "MGMT", host: l.mgmtHost, port: l.mgmtPort }],
        controllerPort: l.controllerPort,
        heapMb: 512,
    };
}

export const pipelineSocket = (plan: EventsPlan) => path.join(lab(plan).dir, "pipeline.sock");

export function pipelineConfig(inputs: LabEventsInputs): PipelineConfig {
    const { plan } = inputs;
    const l = lab(plan);
    const problems = sensorKeysProblems(inputs.sensorKeys);
    if (problems.length) throw new Error(`nublar:sensorKeys: ${problems.join("; ")}`);
    return {
        site: plan.site,
        brokers: plan.brokers,
        topics: plan.topics,
        gateway: { listen: plan.gateway.listen.map((host) => ({ host, port: plan.gateway.port })), allow: plan.gateway.allow, sensorKeys: inputs.sensorKeys ?? {} },
        ledgerSocket: inputs.ledgerSocket,
        lakeDir: l.lakeDir,
        alerts: { url: plan.alertsUrl, routingKey: inputs.routingKey },
        socket: pipelineSocket(plan),
    };
}

export const pipelineDaemon = (plan: EventsPlan) => ({ dir: lab(plan).dir, marker: lab(plan).configFile });

export function pipelinePid(plan: EventsPlan): number | undefined {
    return daemonPid(pipelineDaemon(plan), lab(plan).pidFile);
}

/** GET on the pipeline's stats socket. */
export function pipelineRequest(socket: string, urlPath: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
        const req = http.get({ socketPath: socket, path: urlPath, timeout: timeoutMs }, (res) => {
            let data = "";
            res.on("data", (c) => (data += c));
            res.on("end", () => {
                try {
                    resolve(JSON.parse(data));
                } catch {
                    reject(new Error(`the pipeline answered with non-JSON: ${data.slice(0, 200)}`));
                }
            });
        });
        req.on("timeout", () => req.destroy(new Error(`no answer from the pipeline at ${socket}`)));
        req.on("error", reject);
    });
}

async function stopPid(pid: number, alive: () => number | undefined, graceMs = 10_000): Promise<void> {
    process.kill(pid, "SIGTERM");
    for (let waited = 0; waited < graceMs && alive(); waited += 50) await new Promise((r) => setTimeout(r, 50));
    if (alive()) process.kill(pid, "SIGKILL");
}

/**
 * Writes a file that holds secrets (the sensor keys, the PagerDuty routing key): created 0600
 * under a temporary name, then renamed over the old one, so it is never readable by others, not
 * even for a moment, and whatever mode an older file had does not carry over.
 */
export function writePrivateFile(file: string, text: string): void {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    const fd = fs.openSync(tmp, "wx", 0o600);
    try {
        fs.fchmodSync(fd, 0o600); // whatever the umask
        fs.writeFileSync(fd, text);
        fs.fsyncSync(fd);
    } finally {
        fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
}

export async function startPipeline(inputs: LabEventsInputs, progress: (m: string) => void = () => undefined): Promise<number> {
    const { plan } = inputs;
    const l = lab(plan);
    const old = pipelinePid(plan);
    if (old) await stopPid(old, () => pipelinePid(plan)); // a config change takes a restart
    writePrivateFile(l.configFile, JSON.stringify(pipelineConfig(inputs), null, 2));
    progress("starting the event pipeline (sensor gateway, ledger, lake and alert consumers)");
    return startNublarDaemon({
        what: "the event pipeline", args: ["bus", "serve", "--config", l.configFile], logFile: l.logFile, pidFile: l.pidFile,
        alive: () => !!pipelinePid(plan), ready: () => pipelineRequest(pipelineSocket(plan), "/stats", 1000), timeoutMs: 60_000,
    });
}

export async function labEventsUp(inputs: LabEventsInputs, progress: (m: string) => void = () => undefined): Promise<void> {
    const l = lab(inputs.plan);
    fs.mkdirSync(l.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(l.lakeDir, { recursive: true });
    const broker = brokerLayout(inputs.plan);
    await formatBroker(broker);
    await startBroker(broker, progress);
    await startPipeline(inputs, progress);
}

export async function labEventsDown(plan: EventsPlan, keepData = false): Promise<string[]> {
    const stopped = stopLabEventsProcesses(plan);
    await stopBroker(brokerLayout(plan));
    if (!keepData) fs.rmSync(lab(plan).dir, { recursive: true, force: true });
    return stopped;
}

/** Stops the pipeline daemon (not the broker) by its pid file, checked against its command line. */
export function stopLabEventsProcesses(plan: EventsPlan): string[] {
    const pid = pipelinePid(plan);
    if (!pid) return [];
    process.kill(pid, "SIGKILL");
    return [`event pipeline pid ${pid}`];
}

export function labEventsAlive(plan: EventsPlan): boolean {
    return !!pipelinePid(plan) && !!brokerPid(brokerLayout(plan));
}
