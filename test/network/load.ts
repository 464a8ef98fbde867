// Client load for failover tests and benchmarks: GET `url` at a fixed rate (open loop, so a
// slow answer never hides the requests that would have followed), over keep-alive
// connections, printing one JSON line per finished request: {t, ms, status, by, error}.
// Stops when stdin closes, after the requests in flight finish.
//   load.ts URL RATE_PER_SECOND [--fresh]
// --fresh: a new connection per request, as most clients of a Kubernetes Service make (a Service
// balances connections, not requests; a kept-alive one stays on a pod that is going away).
import * as http from "node:http";

const [url, rateText, mode] = process.argv.slice(2);
const rate = Number(rateText);
if (!url || !(rate > 0) || (mode !== undefined && mode !== "--fresh")) {
    process.stderr.write("usage: load.ts URL RATE_PER_SECOND [--fresh]\n");
    process.exit(2);
}
const agent = new http.Agent({ keepAlive: mode !== "--fresh", maxSockets: 64 });
let inFlight = 0;
let stopping = false;

function one(): void {
    const t = performance.timeOrigin + performance.now();
    inFlight++;
    const finish = (status: number, by?: string, error?: string) => {
        inFlight--;
        process.stdout.write(`${JSON.stringify({ t, ms: Math.round((performance.timeOrigin + performance.now() - t) * 100) / 100, status, by, error })}\n`);
        if (stopping && inFlight === 0) process.exit(0);
    };
    const req = http.get(url, { agent, timeout: 5000 }, (res) => {
        res.resume();
        res.on("end", () => finish(res.statusCode ?? 0, res.headers["x-served-by"] as string | undefined));
        res.on("error", (err) => finish(0, undefined, err.message));
    });
    req.on("timeout", () => req.destroy(new Error("timeout after 5 s")));
    req.on("error", (err) => finish(0, undefined, err.message));
}

const period = 1000 / rate;
const start = performance.now();
let sent = 0;
// Catch up on late timer ticks, so the rate holds on a busy machine.
const timer = setInterval(() => {
    const due = Math.floor((performance.now() - start) / period);
    while (sent < due) {
        sent++;
        one();
    }
}, Math.max(1, Math.floor(period)));
process.stdin.resume();
process.stdin.on("end", () => {
    stopping = true;
    clearInterval(timer);
    if (inFlight === 0) process.exit(0);
});
