// Renders the Nginx config for a node's ingress: one server per service port, every service
// balanced by balancer.lua over the members the agent pushes (no reloads), and a control
// server on a unix socket. Pure: the same ingress map gives the same file.
//
// The control server trusts no one for being able to reach its socket (Nginx makes unix
// sockets 0666; only the socket's folder keeps others out): every request must carry the
// control token, a secret read once by balancer.init() from `controlTokenFile` (in the master
// process, before the workers fork) and compared in constant time.
import * as path from "node:path";
import type { AgentUpstream } from "./agent-config";
import { projectPath } from "../project";

/** Debian 12's packages: nginx, libnginx-mod-http-lua (with ndk), lua-resty-core, lua-cjson. */
const MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"];
export const LUA_DIR = projectPath("model", "network", "nginx");

export interface NginxConfInput {
    upstreams: AgentUpstream[];
    /** The control endpoint's unix socket (the agent's `paths.nginxControl`). */
    controlSocket: string;
    /**
     * The file Nginx reads the control token from, at start and on every reload (default:
     * defaultControlTokenFile(controlSocket), where the lab's startNginx writes it; NixOS passes
     * its credential, model/nix/render.ts NIXOS_PATHS.nginxControlTokenCredential).
     */
    controlTokenFile?: string;
    /** Addresses to listen on for clients, e.g. ["[::]"]. */
    listen?: string[];
    workers?: number;
    connectTimeoutMs?: number;
    /** Buffer the access log (default); benchmarks read it right away. */
    accessLogBuffered?: boolean;
    /**
     * Members fixed in the config with Nginx's passive health checks instead of the Lua
     * balancer: the benchmark's baseline, never what nublar deploys.
     */
    passive?: { maxFails: number; failTimeoutS: number };
    /** Where balancer.lua is (default: this repository's copy; NixOS nodes get it in their bundle). */
    luaDir?: string;
    /** Dynamic modules to load (default: Debian's lua and ndk; NixOS builds them into its Nginx). */
    modules?: string[];
}

/** Where the control token lives when nothing else is said: beside the control socket. */
export function defaultControlTokenFile(controlSocket: string): string {
    return path.posix.join(path.posix.dirname(controlSocket), "control.token");
}

/** A Lua string literal for a file path (no control characters: a path has none). */
function luaString(s: string): string {
    if (/[\x00-\x1f\x7f]/.test(s)) throw new Error(`cannot write ${JSON.stringify(s)} into nginx.conf: it holds control characters`);
    return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function renderNginxConf(input: NginxConfInput): string {
    const listen = input.listen ?? ["[::]"];
    const tokenFile = input.controlTokenFile ?? defaultControlTokenFile(input.controlSocket);
    const byPort = new Map<number, AgentUpstream[]>();
    for (const u of input.upstreams) byPort.set(u.port, [...(byPort.get(u.port) ?? []), u]);
    const servers = [...byPort.entries()].map(([port, ups]) => {
        // Several services on one port are told apart by Host; the first is the default.
        return ups.map((u, i) => [
            "    server {",
            ...listen.map((a) => `        listen ${a}:${port}${i === 0 ? " default_server" : ""};`),
            `        server_name ${u.name};`,
            `        set $nublar_upstream ${u.name};`,
            "        location / {",
            ...(input.passive ? [] : ["            access_by_lua_block { balancer.access() }"]),
            "            proxy_pass http://nublar_balancer;",
            "        }",
            "    }",
        ].join("\n")).join("\n");
    });
    return [
        "# Written by nublar from the site plan; do not edit. Members change at run time through",
        "# the control socket (nublar-agent), never by reloading.",
        ...(input.modules ?? MODULES).map((m) => `load_module ${m};`),
        `worker_processes ${input.workers ?? 2};`,
        "pid nginx.pid;",
        "error_log logs/error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "    client_body_temp_path temp/client_body;",
        "    proxy_temp_path temp/proxy;",
        "    fastcgi_temp_path temp/fastcgi;",
        "    uwsgi_temp_path temp/uwsgi;",
        "    scgi_temp_path temp/scgi;",
        "    # Which members each request tried ($upstream_addr lists retries), and when it ended.",
        "    log_format nublar '$msec $request_time $status \"$upstream_addr\" \"$upstream_status\" $remote_addr \"$request\"';",
        `    access_log logs/access.log nublar${input.accessLogBuffered === false ? "" : " buffer=64k flush=1s"};`,
        `    lua_package_path "${input.luaDir ?? LUA_DIR}/?.lua;;";`,
        "    lua_shared_dict dynups 1m;",
        "    lua_shared_dict dynups_fail 1m;",
        // The control token is read here, in the master (as root in the lab, before the workers
        // drop to their user): a missing or empty file stops Nginx from starting at all.
        `    init_by_lua_block { balancer = require "balancer"; balancer.init(${luaString(tokenFile)}) }`,
        "    init_worker_by_lua_block { balancer.init_worker() }",
        ...(input.passive ? [
            "    upstream nublar_balancer {",
            ...input.upstreams.flatMap((u) => u.members.map((m) => `        server ${m.address} max_fails=${input.passive!.maxFails} fail_timeout=${input.passive!.failTimeoutS}s;`)),
            "        keepalive 64;",
            "    }",
        ] : [
            "    upstream nublar_balancer {",
            "        server [100::1];  # placeholder in the discard prefix (RFC 6666): balancer_by_lua always sets the peer",
            "        balancer_by_lua_block { balancer.balance() }",
            "        keepalive 64;",
            "        keepalive_timeout 30s;",
            "    }",
        ]),
        "    proxy_http_version 1.1;",
        "    proxy_set_header Connection \"\";",
        "    proxy_set_header Host $host;",
        `    proxy_connect_timeout ${input.connectTimeoutMs ?? 200}ms;`,
        "    # A request in flight to a member that dies is retried on another.",
        "    proxy_next_upstream error timeout http_502 http_503;",
        "    proxy_next_upstream_tries 3;",
        "    proxy_next_upstream_timeout 2s;",
        ...servers,
        // The control endpoint: a unix socket in a folder only the agent and Nginx reach, and
        // every request must carry the control token (balancer.control).
        "    server {",
        `        listen unix:${input.controlSocket};`,
        "        access_log off;",
        "        client_max_body_size 64k;",
        "        client_body_buffer_size 64k;",
        "        location / { content_by_lua_block { balancer.control() } }",
        "    }",
        "}",
        "",
    ].join("\n");
}
