// Talking to the ingest service over its unix socket: one small JSON-over-HTTP request, for the
// CLI and for the lab's readiness check.
import * as http from "node:http";

export function serviceRequest(socket: string, method: string, urlPath: string, body?: unknown, timeoutMs = 30_000): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
        const text = body === undefined ? undefined : JSON.stringify(body);
        const req = http.request({ socketPath: socket, method, path: urlPath, timeout: timeoutMs, headers: text ? { "content-type": "application/json", "content-length": Buffer.byteLength(text) } : {} }, (res) => {
            let data = "";
            res.on("data", (c) => (data += c));
            res.on("end", () => {
                try {
                    resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) });
                } catch {
                    reject(new Error(`the ledger service answered ${res.statusCode} with non-JSON: ${data.slice(0, 200)}`));
                }
            });
        });
        req.on("timeout", () => req.destroy(new Error(`no answer from the ledger service at ${socket} within ${timeoutMs / 1000} s`)));
        req.on("error", reject);
        req.end(text);
    });
}
