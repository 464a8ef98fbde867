// The lab's Kafka broker: one JVM running kafka.Kafka in KRaft combined mode (broker and
// controller in one process, node 1), from the jars scripts/setup resolves from Maven Central
// into .tools/kafka/<version>/libs. Like the lab's other daemons (lab/daemons.ts) it
// runs detached with a pid file in its own folder, and we only ever signal a PID whose command
// line names that folder's server.properties, so a recycled PID is never ours to kill.
//
// Everything listens on IPv6 (the lab is IPv6-only). Settings suit one small machine: replication
// factor 1 everywhere, one partition for the internal topics, few threads. Durability rests on the
// page cache (Kafka's default: no fsync per message); acks=all still means "written by the one
// replica", which is all a one-node lab can promise.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { daemonPid } from "./daemons";
import { PROJECT_ROOT } from "../model/project";

/** The Kafka release the lab runs. scripts/setup pins the same version (KAFKA_VERSION there). */
export const KAFKA_VERSION = "4.4.0";

const PROJECT_DIR = PROJECT_ROOT;
/** node.id of the one combined broker/controller. */
export const BROKER_NODE_ID = 1;
const CONTROLLER_LISTENER = "CONTROLLER";
const READY_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 20_000;

export interface BrokerListener {
    /** Listener name, e.g. LOCAL or MGMT: upper case, and not CONTROLLER (taken by the quorum). */
    name: string;
    /** An address of this machine (or the namespace the broker runs in), e.g. "::1". */
    host: string;
    port: number;
}

export interface BrokerLayout {
    /** Folder for everything the broker keeps: config, pid file, logs, data (dir/data). */
    dir: string;
    /**
     * The cluster id: 16 bytes, base64url without padding (22 characters), as Kafka's Uuid.
     * It comes from the caller so it stays stable across restarts (see clusterIdFor).
     */
    clusterId: string;
    /** Client listeners, all PLAINTEXT, advertised as they are. The first carries inter-broker traffic. */
    listeners: BrokerListener[];
    /** The KRaft controller listener's port, on ::1. */
    controllerPort: number;
    /** JVM heap in MB (-Xmx). Default 512. */
    heapMb?: number;
}

/** A stable cluster id derived from a name (e.g. the stack's), so callers need not store one. */
export function clusterIdFor(name: string): string {
    return createHash("sha256").update(`nublar kafka cluster ${name}`).digest().subarray(0, 16).toString("base64url");
}

// ---- files ----

const configFile = (l: BrokerLayout) => path.join(l.dir, "server.properties");
const pidFile = (l: BrokerLayout) => path.join(l.dir, "broker.pid");
const dataDir = (l: BrokerLayout) => path.join(l.dir, "data");
/** Kafka's own log (log4j2): what to read when the broker misbehaves. */
export const brokerLogFile = (l: BrokerLayout) => path.join(l.dir, "broker.log");
/** The JVM's stdout and stderr: crashes and errors before log4j2 is up land here. */
const stdoutFile = (l: BrokerLayout) => path.join(l.dir, "broker.out");
const log4jFile = (l: BrokerLayout) => path.join(l.dir, "log4j2.xml");

/**
 * The classpath of the installed Kafka jars (a Java wildcard, which keeps the command line
 * short). Throws, naming scripts/setup, when they are missing or only half installed.
 */
export function kafkaClasspath(): string {
    const tools = process.env.NUBLAR_TOOLS ?? path.join(PROJECT_DIR, ".tools");
    const home = path.join(tools, "kafka", KAFKA_VERSION);
    let marker = "";
    try {
        marker = fs.readFileSync(path.join(home, ".installed"), "utf8");
    } catch {
        // reported below
    }
    // The marker is written only after a complete install; without it libs/ may be partial.
    if (!marker.startsWith(`${KAFKA_VERSION} `) || !fs.existsSync(path.join(home, "libs", `kafka_2.13-${KAFKA_VERSION}.jar`))) {
        throw new Error(`Kafka ${KAFKA_VERSION}'s jars are not installed in ${path.join(home, "libs")}; run scripts/setup (it resolves them from Maven Central)`);
    }
    return path.join(home, "libs", "*");
}

/** Host as it goes in a listener URL: IPv6 addresses in brackets. */
const urlHost = (host: string) => (host.includes(":") ? `[${host}]` : host);

function validate(l: BrokerLayout): void {
    if (!/^[A-Za-z0-9_-]{22}$/.test(l.clusterId)) throw new Error(`cluster id '${l.clusterId}' is not 16 bytes of base64url (22 characters)`);
    if (!l.listeners.length) throw new Error("a broker needs at least one listener");
    const names = new Set<string>();
    const ports = new Set<number>([l.controllerPort]);
    for (const x of l.listeners) {
        if (!/^[A-Z][A-Z0-9_]*$/.test(x.name) || x.name === CONTROLLER_LISTENER) throw new Error(`listener name '${x.name}' must be upper case and not ${CONTROLLER_LISTENER}`);
        if (names.has(x.name)) throw new Error(`listener '${x.name}' appears twice`);
        names.add(x.name);
        // Two listeners cannot share a port on one host; on different hosts they could, but we keep it simple.
        if (ports.has(x.port)) throw new Error(`port ${x.port} is used twice in the broker's listeners`);
        ports.add(x.port);
    }
}

/** server.properties for the layout; its path is the marker that identifies the process. */
export function renderServerProperties(l: BrokerLayout): string {
    const listeners = l.listeners.map((x) => `${x.name}://${urlHost(x.host)}:${x.port}`).join(",");
    const controller = `[::1]:${l.controllerPort}`;
    const protocols = [...l.listeners.map((x) => x.name), CONTROLLER_LISTENER].map((n) => `${n}:PLAINTEXT`).join(",");
    return [
        "# Written by nublar (lab/kafka-broker.ts): the lab's single-node Kafka broker, KRaft combined mode.",
        "process.roles=broker,controller",
        `node.id=${BROKER_NODE_ID}`,
        // A dynamic quorum of one voter, formatted with --standalone (see formatBroker).
        `controller.quorum.bootstrap.servers=${controller}`,
        `controller.listener.names=${CONTROLLER_LISTENER}`,
        `listeners=${listeners},${CONTROLLER_LISTENER}://${controller}`,
        // Clients are told exactly the addresses they connect to.
        `advertised.listeners=${listeners}`,
        `listener.security.protocol.map=${protocols}`,
        `inter.broker.listener.name=${l.listeners[0].name}`,
        `log.dirs=${dataDir(l)}`,
        // One node: every replication factor and ISR minimum is 1.
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        // The internal topics default to 50 partitions each; creating and loading those on first
        // use costs seconds on a 2-vCPU machine, and a lab has a handful of groups.
        "offsets.topic.num.partitions=1",
        "transaction.state.log.num.partitions=1",
        "share.coordinator.state.topic.num.partitions=1",
        // Topics are declared, never created by a typo in a producer.
        "auto.create.topics.enable=false",
        "num.partitions=1",
        // A consumer group starts consuming as soon as its first member joins.
        "group.initial.rebalance.delay.ms=0",
        // Small machine: few threads. No log.flush.* settings: Kafka's default leaves fsync to the
        // OS (no forced fsync per message), which keeps produce latency low; the KRaft metadata
        // log still syncs its own writes.
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=2",
        "num.recovery.threads.per.data.dir=1",
        "log.cleaner.threads=1",
        // Register and unfence sooner after start (default 2 s between heartbeats).
        "broker.heartbeat.interval.ms=500",
        "",
    ].join("\n");
}

const xmlAttr = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * log4j2 config: Kafka's log to dir/broker.log; the request and state-change chatter only at WARN.
 * log4j2's own shutdown hook is off: it raced Kafka's, closing the log before the broker had
 * logged its shutdown. The file appender flushes every line, so nothing is lost without it.
 */
function renderLog4j2(l: BrokerLayout): string {
    return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by nublar (lab/kafka-broker.ts). -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <File name="broker" fileName="${xmlAttr(brokerLogFile(l))}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="broker"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="warn"/>
  </Loggers>
</Configuration>
`;
}

function writeConfigs(l: BrokerLayout): void {
    fs.mkdirSync(l.dir, { recursive: true });
    fs.writeFileSync(configFile(l), renderServerProperties(l));
    fs.writeFileSync(log4jFile(l), renderLog4j2(l));
}

function jvmArgs(l: BrokerLayout): string[] {
    return [
        `-Xmx${l.heapMb ?? 512}m`,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        // Resolve names to IPv6 first: the lab has no IPv4.
        "-Djava.net.preferIPv6Addresses=true",
        `-Dlog4j2.configurationFile=${log4jFile(l)}`,
        `-Dkafka.logs.dir=${l.dir}`,
        "-cp",
        kafkaClasspath(),
    ];
}

const java = () => (process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, "bin", "java") : "java");

function tail(file: string, lines = 20): string {
    try {
        return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}

/** cluster.id in dir/data/meta.properties, or undefined when the storage is not formatted. */
function formattedClusterId(l: BrokerLayout): string | undefined {
    let text: string;
    try {
        text = fs.readFileSync(path.join(dataDir(l), "meta.properties"), "utf8");
    } catch {
        return undefined;
    }
    return /^cluster\.id=(.*)$/m.exec(text)?.[1]?.trim() ?? "";
}

/**
 * Formats the broker's storage (kafka.tools.StorageTool format --standalone: a KRaft quorum of
 * this one controller). Skips storage already formatted for the same cluster id; refuses, without
 * touching it, storage formatted for another.
 */
export async function formatBroker(l: BrokerLayout): Promise<void> {
    validate(l);
    const existing = formattedClusterId(l);
    if (existing === l.clusterId) return;
    if (existing !== undefined) {
        throw new Error(`the Kafka storage in ${dataDir(l)} is formatted for cluster '${existing}', not '${l.clusterId}'; use that cluster id, or remove the folder to start empty`);
    }
    writeConfigs(l);
    // The quorum's one voter is named explicitly rather than with --standalone: StorageTool
    // 4.4.0 builds the standalone voter string as "1@::1:port:dir" without brackets around an
    // IPv6 host, then fails to parse it ("Failed to parse port in dynamic voter string").
    // The directory id is the metadata log folder's own id, which format writes into it.
    const voter = `${BROKER_NODE_ID}@[::1]:${l.controllerPort}:${randomBytes(16).toString("base64url")}`;
    // "--opt=value": a base64url id may start with "-", which would read as an option.
    const cmd = [java(), ...jvmArgs(l), "kafka.tools.StorageTool", "format", `--config=${configFile(l)}`, `--cluster-id=${l.clusterId}`, `--initial-controllers=${voter}`];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
        const child = spawn(cmd[0], cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
        let output = "";
        child.stdout.on("data", (b: Buffer) => (output += b));
        child.stderr.on("data", (b: Buffer) => (output += b));
        child.on("error", (e) => reject(new Error(`cannot run ${cmd[0]} (${e.message}); run scripts/setup, which installs Java`)));
        child.on("close", (code) => resolve({ code, output }));
    });
    if (code !== 0) throw new Error(`formatting Kafka storage in ${dataDir(l)} failed (exit ${code}):\n${output.trim()}`);
}

function daemon(l: BrokerLayout) {
    return { dir: l.dir, marker: configFile(l) };
}

/** The broker's PID if it runs (pid file checked against /proc and the config path in its command line). */
export function brokerPid(l: BrokerLayout): number | undefined {
    return daemonPid(daemon(l), pidFile(l));
}

/** Whether a metadata request on one listener lists this broker there (it is then registered and unfenced). */
async function listenerReady(x: BrokerListener): Promise<boolean> {
    // Loaded here, not at the top: brokerPid and stopBroker (nublar lab clean) need no Kafka client.
    const { Admin } = await import("@platformatic/kafka");
    // host/port as an object: the client splits "host:port" strings on the first colon.
    const admin = new Admin({ clientId: "nublar-broker-probe", bootstrapBrokers: [{ host: x.host, port: x.port }], retries: 0, timeout: 2000 });
    try {
        const md = await admin.metadata({ topics: [] });
        const self = md.brokers.get(BROKER_NODE_ID);
        return self?.port === x.port;
    } catch {
        return false;
    } finally {
        await admin.close().catch(() => undefined);
    }
}

/**
 * Starts the broker (formatting its storage first if needed) and resolves with its PID once it
 * answers metadata requests on every listener. Idempotent: a running broker is returned as it is,
 * after the same readiness check; one running with a different config is an error (stop it first).
 * On failure the process it started is killed and the error quotes the end of the broker's log.
 */
export async function startBroker(l: BrokerLayout, progress: (m: string) => void = () => undefined): Promise<number> {
    validate(l);
    const running = brokerPid(l);
    if (running !== undefined) {
        if (fs.readFileSync(configFile(l), "utf8") !== renderServerProperties(l)) {
            throw new Error(`a Kafka broker (pid ${running}) already runs in ${l.dir} with another config; stop it first`);
        }
        await waitReady(l, running, progress);
        return running;
    }
    kafkaClasspath(); // fails early, before formatting, with the setup hint
    if (formattedClusterId(l) === undefined) progress(`formatting Kafka storage in ${dataDir(l)} for cluster ${l.clusterId}`);
    await formatBroker(l);
    writeConfigs(l);
    const out = fs.openSync(stdoutFile(l), "a");
    const cmd = [java(), ...jvmArgs(l), "kafka.Kafka", configFile(l)];
    const child = spawn(cmd[0], cmd.slice(1), { cwd: l.dir, detached: true, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    child.unref();
    if (child.pid === undefined) throw new Error(`cannot run ${cmd[0]} (${(await spawnError).message}); run scripts/setup, which installs Java`);
    fs.writeFileSync(pidFile(l), `${child.pid}\n`);
    progress(`Kafka ${KAFKA_VERSION} broker started, pid ${child.pid}; waiting for its listeners`);
    try {
        await waitReady(l, child.pid, progress);
    } catch (e) {
        await stopBroker(l, 0);
        (e as Error).message = `${(e as Error).message}\n(the broker this call started was killed)`;
        throw e;
    }
    return child.pid;
}

async function waitReady(l: BrokerLayout, pid: number, progress: (m: string) => void): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const pending = new Set(l.listeners);
    const logs = () => `Log ${brokerLogFile(l)}:\n${tail(brokerLogFile(l))}\nJVM output ${stdoutFile(l)}:\n${tail(stdoutFile(l), 10)}`;
    while (pending.size) {
        if (brokerPid(l) !== pid) throw new Error(`the Kafka broker (pid ${pid}) exited while starting. ${logs()}`);
        for (const x of [...pending]) {
            if (await listenerReady(x)) {
                pending.delete(x);
                progress(`Kafka listener ${x.name} ready on ${urlHost(x.host)}:${x.port}`);
            }
        }
        if (!pending.size) return;
        if (Date.now() > deadline) {
            throw new Error(`the Kafka broker (pid ${pid}) was not ready after ${READY_TIMEOUT_MS / 1000} s on ${[...pending].map((x) => x.name).join(", ")}. ${logs()}`);
        }
        await sleep(250);
    }
}

/**
 * Stops the broker: SIGTERM (a controlled shutdown), then SIGKILL if it still runs after
 * graceMs (default 20 s). Resolves once the process is gone; returns what it stopped.
 */
export async function stopBroker(l: BrokerLayout, graceMs = STOP_GRACE_MS): Promise<string[]> {
    const pid = brokerPid(l);
    if (pid === undefined) return [];
    const stopped = [`kafka broker pid ${pid}`];
    // It may exit between the check and the signal: ESRCH then only means it is gone.
    const signal = (sig: NodeJS.Signals) => {
        try {
            process.kill(pid, sig);
        } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
        }
    };
    if (graceMs > 0) {
        signal("SIGTERM");
        const deadline = Date.now() + graceMs;
        while (Date.now() < deadline && brokerPid(l) === pid) await sleep(50);
    }
    if (brokerPid(l) === pid) {
        signal("SIGKILL");
        stopped[0] += graceMs > 0 ? ` (killed after ${graceMs / 1000} s)` : " (killed)";
        while (brokerPid(l) === pid) await sleep(20);
    }
    fs.rmSync(pidFile(l), { force: true });
    return stopped;
}
