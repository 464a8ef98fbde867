// Client for Nginx's local control endpoint (see nginx-conf.ts): it sets each upstream's
// live members in a shared dict that `balancer_by_lua` reads, so no reload is ever needed.
// Every request carries the control token (balancer.lua refuses any other with 401).
import * as http from "node:http";

export interface UpstreamSets {
    /** Changes on every Nginx start (not on reloads): the sets were lost, push them again. */
    bootId: string;
    generation: number;
    upstreams: Record<string, string[]>;
}

export class NginxControl {
    constructor(readonly socket: string, private readonly token: string, private readonly timeoutMs = 1000) {}

    async get(): Promise<UpstreamSets> {
        const raw = JSON.parse(await this.request("GET", "/upstreams"));
        const upstreams: Record<string, string[]> = {};
        for (const [name, u] of Object.entries(raw.upstreams ?? {})) upstreams[name] = (u as { members: string[] }).members ?? [];
        return { bootId: raw.boot_id, generation: raw.generation, upstreams };
    }

    /** Replace one upstream's member set; resolves once Nginx has stored it. */
    async put(upstream: string, members: string[]): Promise<number> {
        const res = JSON.parse(await this.request("PUT", `/upstreams/${encodeURIComponent(upstream)}`, JSON.stringify({ members })));
        return res.version;
    }

    private request(method: string, path: string, body?: string): Promise<string> {
        return new Promise((resolve, reject) => {
            const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${this.token}` };
            if (body) Object.assign(headers, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
            const req = http.request({ socketPath: this.socket, method, path, timeout: this.timeoutMs, headers }, (res) => {
                let text = "";
                res.setEncoding("utf8");
                res.on("data", (c) => (text += c));
                res.on("end", () => {
                    if (res.statusCode === 200) resolve(text);
                    else reject(new Error(`nginx control ${method} ${path}: HTTP ${res.statusCode}: ${text.trim()}`));
                });
            });
            req.on("timeout", () => req.destroy(new Error(`nginx control ${this.socket}: no answer within ${this.timeoutMs} ms`)));
            req.on("error", (err) => reject(new Error(`nginx control ${this.socket}: ${err.message}`)));
            req.end(body);
        });
    }
}
