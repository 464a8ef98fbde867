// bench/events: end-to-end event latency, from a sensor reading to the ledger-acknowledged entry,
// through the lab's pipeline: the sensor gateway (HTTP), a real KRaft broker from the Kafka jars
// (acks=all, idempotent producer), the ledger consumer, and a real ledger (PostgreSQL primary +
// 2 standbys with ANY 1 quorum commit, Redis, the ingest service), all on ::1, started fresh.
// The pipeline runs as one process, as in the lab (gateway, ledger and lake consumers).
//
//   1. Open loop at R readings/s (1k, 10k, 50k): every millisecond the generator POSTs the readings
//      due in it (at 10k/s, 10 per request), each stamped with its scheduled time, so a stall is
//      charged to every reading that waited (no coordinated omission). Latency = the ledger's
//      acknowledgement - the reading's scheduled time, as the pipeline records it.
//      The peer, in the same round: the same readings POSTed straight to the ledger's ingest
//      service (no gateway, no bus) at the same rate. ratio = pipeline / direct.
//   2. Sustained throughput: closed loop, 4 senders POSTing 1000 readings at a time to the
//      gateway for S s; readings per second acknowledged by the ledger.
// Each cell runs --rounds times (3), the pipeline and its peer interleaved; medians are reported.
// Usage: node --import tsx bench/events.ts [--seconds S] [--rounds N] [--rates 1000,10000,50000]
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { percentile, summary, writeResult } from "./machine";
import { getJson, PipelineProcess, signedHeaders, startTestBroker, startTestLedger, stopTestBroker, testPipelineConfig } from "../test/events/fixture";
import type { PipelineConfig } from "../runtime/events/pipeline";

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : def;
};
const SECONDS = Number(arg("seconds", "10"));
const ROUNDS = Number(arg("rounds", "3"));
const RATES = arg("rates", "1000,10000,50000").split(",").map(Number);
/** What the pipeline process runs (the lab runs all of these, and the alerts). */
const PARTS = arg("parts", "gateway,ledger,lake");
const THROUGHPUT = !args.includes("--no-throughput");
/** The results file's name (results/<name>.json). */
const NAME = arg("name", "events");
const TARGET_P99_MS = 12;
const log = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
/** POST JSON; to the gateway, signed as the one sensor whose readings the body holds (`sign`). */
function postJson(opts: { port?: number; socketPath?: string; path: string; sign?: string }, body: unknown): Promise<{ status: number; text: string }> {
    const data = JSON.stringify(body);
    const signed = opts.sign ? signedHeaders(benchConfig!, opts.sign, data) : {};
    return new Promise((resolve, reject) => {
        const req = http.request({ host: opts.port ? "::1" : undefined, port: opts.port, socketPath: opts.socketPath, path: opts.path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...signed } }, (res) => {
            let text = "";
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on("error", reject);
        req.end(data);
    });
}

let seq = 0;
let batches = 0;
/** Sensors the readings come from, each with its own key (the gateway checks every request's signature). */
const SENSORS = 256;
let benchConfig: PipelineConfig | undefined;
const nowMs = () => performance.timeOrigin + performance.now();

/** Open loop: the readings due in each 1 ms tick, in one request; resolves when all are answered. */
async function openLoop(rate: number, send: (readings: { sensor: string; kind: string; value: number; unit: string; seq: number; time: number }[], scheduled: number[]) => Promise<void>): Promise<{ sent: number; lagMs: number }> {
    const start = nowMs();
    const end = start + SECONDS * 1000;
    let sent = 0;
    const pending: Promise<void>[] = [];
    let maxLag = 0;
    while (nowMs() < end) {
        const due = Math.floor(((nowMs() - start) / 1000) * rate);
        if (due > sent) {
            const readings = [];
            const scheduled = [];
            // A request carries one sensor's readings (it is signed with that sensor's key).
            const sensor = `bench-${batches++ % SENSORS}`;
            for (; sent < due; sent++) {
                const t = start + (sent / rate) * 1000;
                scheduled.push(t);
                const n = seq++;
                readings.push({ sensor, kind: "temperature", value: 20 + (n % 100) / 10, unit: "C", seq: n, time: t });
            }
            maxLag = Math.max(maxLag, nowMs() - scheduled[0]);
            pending.push(send(readings, scheduled));
        }
        await new Promise((r) => setImmediate(r));
        if (nowMs() - start > (sent / rate) * 1000 + 1) continue;
        await sleep(1);
    }
    await Promise.all(pending);
    return { sent, lagMs: maxLag };
}

async function main() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-bench-events-"));
    log("starting a KRaft broker and a ledger (PostgreSQL primary + 2 standbys, Redis) on ::1");
    const [broker, ledger] = await Promise.all([startTestBroker(), startTestLedger()]);
    const sensors = Array.from({ length: SENSORS }, (_, i) => [`bench-${i}`, `bulk-${i}`]).flat();
    const cfg = await testPipelineConfig(broker, ledger.socket, dir, sensors);
    benchConfig = cfg;
    const configFile = path.join(dir, "pipeline.json");
    fs.writeFileSync(configFile, JSON.stringify({ ...cfg, lakeLingerMs: 5000 }), { mode: 0o600 });
    // "a|b": separate processes (the first holds the gateway, the last the ledger consumer's stats).
    const groups = PARTS.split("|");
    const others = groups.slice(0, -1).map((g, i) => {
        const f = path.join(dir, `pipeline-${i}.json`);
        fs.writeFileSync(f, JSON.stringify({ ...cfg, lakeLingerMs: 5000, socket: path.join(dir, `p${i}.sock`) }), { mode: 0o600 });
        return new PipelineProcess(f, g, path.join(dir, `p${i}.sock`));
    });
    const pipeline = new PipelineProcess(configFile, groups[groups.length - 1], cfg.socket);
    const gatewayPort = cfg.gateway.listen[0].port;
    const results: Record<string, unknown>[] = [];
    type Round = { pipeline: ReturnType<typeof summary>; fromGatewayReceipt: ReturnType<typeof summary>; direct: ReturnType<typeof summary>; ratioP50: number; ratioP99: number; refused: number; lagMs: number };
    const throughput: Record<string, unknown>[] = [];
    try {
        for (const o of others) await o.start();
        await pipeline.start();
        // Warm up: JIT, connections, the first topic metadata.
        await openLoop(1000, async (readings) => void (await postJson({ port: gatewayPort, path: "/v1/readings", sign: readings[0].sensor }, readings)));
        await sleep(2000);

        for (const rate of RATES) {
            const rounds: Round[] = [];
            for (let round = 0; round < ROUNDS; round++) {
                // The pipeline.
                const from = (await getJson(cfg.socket, "/latency?from=999999999999", 60_000)).count as number;
                let refused = 0;
                const run = await openLoop(rate, async (readings) => {
                    const r = await postJson({ port: gatewayPort, path: "/v1/readings", sign: readings[0].sensor }, readings);
                    if (r.status !== 202) refused += readings.length;
                });
                // Wait until the ledger acknowledged every reading sent.
                const deadline = Date.now() + 120_000;
                // Poll the cheap counter, then fetch the samples once.
                while (((await getJson(cfg.socket, "/stats", 60_000)).ledger.latencySamples as number) - from < run.sent - refused && Date.now() < deadline) await sleep(200);
                const lat: { count: number; fromSensorUs: number[]; fromReceiptUs: number[] } = await getJson(cfg.socket, `/latency?from=${from}`, 60_000);
                const pipe = lat.fromSensorUs.map((us) => us / 1000);
                const receipt = summary(lat.fromReceiptUs.map((us) => us / 1000));
                // The peer: straight into the ledger's ingest service, the same readings, the same rate.
                const direct: number[] = [];
                await openLoop(rate, async (readings, scheduled) => {
                    const entries = readings.map((r) => ({ source: "bench-direct", key: `direct/${r.sensor}/${r.seq}`, time: r.time, payload: { type: "sensor-reading", ...r } }));
                    const res = await postJson({ socketPath: ledger.socket, path: "/v1/shards/habitat/entries" }, { entries });
                    const acked = nowMs();
                    if (res.status !== 200) throw new Error(`the ledger refused the direct batch: ${res.text.slice(0, 200)}`);
                    for (const t of scheduled) direct.push(acked - t);
                });
                const p = summary(pipe);
                const d = summary(direct);
                rounds.push({ pipeline: p, fromGatewayReceipt: receipt, direct: d, ratioP50: Math.round((p.p50 / d.p50) * 100) / 100, ratioP99: Math.round((p.p99 / d.p99) * 100) / 100, refused, lagMs: Math.round(run.lagMs * 10) / 10 });
                const timings = (await getJson(cfg.socket, "/stats", 60_000)).timingsMs;
                log(`  timings: ${JSON.stringify(timings)}`);
                log(`${rate}/s round ${round + 1}: pipeline p50 ${p.p50} p99 ${p.p99} ms (from the gateway's receipt: p50 ${receipt.p50} p99 ${receipt.p99}; ${p.n} readings${refused ? `, ${refused} refused` : ""}); direct p50 ${d.p50} p99 ${d.p99} ms; generator lag max ${run.lagMs.toFixed(1)} ms`);
                await sleep(1000);
            }
            const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
            results.push({
                ratePerSecond: rate,
                pipelineP50Ms: med(rounds.map((r) => r.pipeline.p50)),
                pipelineP99Ms: med(rounds.map((r) => r.pipeline.p99)),
                directP50Ms: med(rounds.map((r) => r.direct.p50)),
                directP99Ms: med(rounds.map((r) => r.direct.p99)),
                ratioP50: med(rounds.map((r) => r.ratioP50)),
                ratioP99: med(rounds.map((r) => r.ratioP99)),
                meetsTarget: rate === 10_000 ? med(rounds.map((r) => r.pipeline.p99)) <= TARGET_P99_MS : undefined,
                rounds,
            });
        }

        // Sustained throughput through the broker: closed loop, 4 senders of 1000 readings.
        for (let round = 0; THROUGHPUT && round < ROUNDS; round++) {
            const before = (await getJson(cfg.socket, "/stats", 60_000)).ledger.appended as number;
            const t0 = Date.now();
            const end = t0 + SECONDS * 1000;
            let sent = 0;
            await Promise.all(Array.from({ length: 4 }, async () => {
                while (Date.now() < end) {
                    const sensor = `bulk-${batches++ % SENSORS}`;
                    const batch = Array.from({ length: 1000 }, () => {
                        const n = seq++;
                        return { sensor, kind: "temperature", value: n % 100, seq: n };
                    });
                    const r = await postJson({ port: gatewayPort, path: "/v1/readings", sign: sensor }, batch);
                    if (r.status === 202) sent += batch.length;
                }
            }));
            const acceptedPerSecond = Math.round(sent / ((Date.now() - t0) / 1000));
            let appended = (await getJson(cfg.socket, "/stats", 60_000)).ledger.appended as number;
            while (appended - before < sent) {
                await sleep(200);
                appended = (await getJson(cfg.socket, "/stats", 60_000)).ledger.appended as number;
            }
            const ledgeredPerSecond = Math.round(sent / ((Date.now() - t0) / 1000));
            throughput.push({ round: round + 1, acceptedPerSecond, ledgeredPerSecond, readings: sent });
            log(`throughput round ${round + 1}: gateway accepted ${acceptedPerSecond}/s; all ${sent} in the ledger at ${ledgeredPerSecond}/s overall`);
        }
    } finally {
        await pipeline.stop();
        for (const o of others) await o.stop();
        await ledger.close();
        await stopTestBroker(broker);
        fs.rmSync(dir, { recursive: true, force: true });
    }
    const file = writeResult(NAME, {
        what: "sensor reading -> gateway (HTTP) -> Kafka (acks=all) -> ledger consumer -> ledger ack (quorum commit); peer: the same readings straight into the ledger",
        seconds: SECONDS, rounds: ROUNDS, targetP99MsAt10k: TARGET_P99_MS,
        latency: results, throughput,
    });
    log(`results: ${file}`);
    for (const r of results) log(`${r.ratePerSecond}/s: pipeline p50 ${r.pipelineP50Ms} / p99 ${r.pipelineP99Ms} ms; direct p50 ${r.directP50Ms} / p99 ${r.directP99Ms} ms; ratio p50 ${r.ratioP50} p99 ${r.ratioP99}${r.meetsTarget === undefined ? "" : r.meetsTarget ? " (meets the 12 ms p99 target)" : " (MISSES the 12 ms p99 target)"}`);
}

main().catch((err) => {
    process.stderr.write(`bench events: ${err.stack ?? err}\n`);
    process.exit(1);
});
