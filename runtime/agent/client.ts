// How the CLI reaches a node's agent API: its unix socket, either locally (`--socket`) or on
// a node over SSH (`--node`), where the socket is forwarded through the SSH connection
// (direct-streamlocal, as `ssh -L` does) after the host key matched the pinned one.
// Nodes are found in the stack's outputs (`pulumi stack output nodes`), lab or real.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { Client } from "ssh2";
import { UserFacingError } from "../../model/errors";
import { engineEnv, PULUMI_BIN, pulumiProjectDir } from "../pulumi-engine";

/** What the stack says about reaching a node's agent. */
export interface NodeAccess {
    host: string;
    port: number;
    user: string;
    /** The pinned host key, "ssh-ed25519 AAAA...". */
    hostKey: string;
    /** Private key to log in with; else the SSH agent (SSH_AUTH_SOCK) is used. */
    identityFile?: string;
    /**
     * A new machine may still be booting (an EC2 node): a deploy's first connection retries an
     * unreachable node for this long. Absent: one try.
     */
    reachableWithinMs?: number;
    agentSocket: string;
}

/** The node could not be reached: exit code 3. */
export class UnreachableError extends UserFacingError { readonly kind = "unreachable"; }
/** The node answered with another host key than the pinned one: never accepted (a deploy waits out a booting image's own key, then fails with this). */
export class HostKeyMismatchError extends UnreachableError {}
/** A usage or lookup problem the user can fix: exit code 1. */
export class ClientError extends UserFacingError { readonly kind = "user"; }

export type Target = { socket: string } | { node: string; access: NodeAccess };

/** Read the stack's outputs through the project's engine, as `pulumi stack output nodes` would. */
export function stackNodes(stack: string): Record<string, { access?: NodeAccess }> {
    if (!fs.existsSync(PULUMI_BIN)) throw new ClientError(`no Pulumi engine at ${PULUMI_BIN}; run: npm run setup`);
    const env = { ...process.env, ...engineEnv(stack) };
    const cwd = pulumiProjectDir();
    const r = spawnSync(PULUMI_BIN, ["stack", "output", "nodes", "--json", "--stack", stack], { cwd, env, encoding: "utf8" });
    if (r.status !== 0) {
        const msg = (r.stderr || r.stdout).trim().split("\n").filter((l) => l.trim()).pop() ?? "";
        throw new ClientError(`cannot read the outputs of stack '${stack}' (is it up? \`npm run lab\` for the lab): ${msg}`);
    }
    try {
        return JSON.parse(r.stdout);
    } catch {
        throw new ClientError(`stack '${stack}' has no 'nodes' output; run \`pulumi up --stack ${stack}\``);
    }
}

export function resolveTarget(opts: { node?: string; socket?: string; stack: string }): Target {
    if (opts.socket) return { socket: opts.socket };
    if (!opts.node) {
        const local = "/run/nublar/agent.sock";
        if (fs.existsSync(local)) return { socket: local };
        throw new ClientError("which node? give --node NAME (found through the stack's outputs), or --socket PATH on the node itself");
    }
    const nodes = stackNodes(opts.stack);
    const n = nodes[opts.node];
    if (!n) throw new ClientError(`stack '${opts.stack}' has no node '${opts.node}'; nodes are: ${Object.keys(nodes).join(", ")}`);
    if (!n.access) throw new ClientError(`stack '${opts.stack}' does not say how to reach node '${opts.node}'s agent; run \`pulumi up --stack ${opts.stack}\``);
    return { node: opts.node, access: n.access };
}

/** Does the presented host key equal the pinned one? (Never trust on first use.) */
export function hostKeyMatches(pinned: string, presented: Buffer): boolean {
    const blob = pinned.trim().split(/\s+/)[1];
    return !!blob && Buffer.from(blob, "base64").equals(presented);
}

/** "node 'gate' (root@[2001:db8::1]:22)", for messages. */
export function describeNode(node: string, access: Pick<NodeAccess, "user" | "host" | "port">): string {
    return `node '${node}' (${access.user}@${access.host.includes(":") ? `[${access.host}]` : access.host}:${access.port})`;
}

/**
 * An SSH connection to a node whose host key matches the pinned one (never trust on first
 * use). The deploys (components/nixos) use it too.
 */
export async function connectPinned(access: Omit<NodeAccess, "agentSocket">, where: string, timeoutMs = 8000): Promise<Client> {
    const conn = new Client();
    await new Promise<void>((resolve, reject) => {
        let keyMismatch = false;
        conn.on("ready", () => resolve());
        conn.on("error", (err) => {
            // ssh2 only ends the socket: a peer that never closes would keep it half open.
            conn.destroy();
            reject(keyMismatch
            ? new HostKeyMismatchError(`${where} presented a host key that does not match the pinned one; refusing to connect`)
            : new UnreachableError(`cannot reach ${where}: ${err.message}`));
        });
        let privateKey: Buffer | undefined;
        if (access.identityFile) {
            try {
                privateKey = fs.readFileSync(access.identityFile);
            } catch (err) {
                reject(new ClientError(`cannot read the SSH key ${access.identityFile}: ${(err as Error).message}`));
                return;
            }
        }
        conn.connect({
            host: access.host, port: access.port, username: access.user, privateKey, agent: privateKey ? undefined : process.env.SSH_AUTH_SOCK,
            readyTimeout: timeoutMs,
            hostVerifier: (key: Buffer) => {
                if (hostKeyMatches(access.hostKey, key)) return true;
                keyMismatch = true;
                return false;
            },
        });
    });
    return conn;
}

/** GET over an open SSH connection, through the agent's forwarded unix socket. */
export async function agentGetOver(conn: Client, agentSocket: string, what: string, where: string, timeoutMs = 8000): Promise<http.IncomingMessage> {
    const stream = await new Promise<import("ssh2").ClientChannel>((resolve, reject) => {
        conn.openssh_forwardOutStreamLocal(agentSocket, (err, s) => (err
            ? reject(new UnreachableError(`${where}: no agent at ${agentSocket} (${err.message}); is nublar-agent running?`))
            : resolve(s)));
    });
    // Node's HTTP client calls these on its socket; an SSH channel does not have them.
    const socketLike = Object.assign(stream, { setTimeout: () => socketLike, setNoDelay: () => socketLike, setKeepAlive: () => socketLike });
    return httpGet({ createConnection: () => socketLike as any }, what, timeoutMs, `the agent on ${where}`);
}

export interface AgentResponse {
    res: http.IncomingMessage;
    close(): void;
}

/** GET `what` from the agent's API. */
export async function agentGet(target: Target, what: string, timeoutMs = 8000): Promise<AgentResponse> {
    if ("socket" in target) {
        const res = await httpGet({ socketPath: target.socket }, what, timeoutMs, `the agent socket ${target.socket}`);
        return { res, close: () => res.destroy() };
    }
    const { access } = target;
    const where = describeNode(target.node, access);
    const conn = await connectPinned(access, where, timeoutMs);
    const res = await agentGetOver(conn, access.agentSocket, what, where, timeoutMs).catch((err) => {
        conn.end();
        throw err;
    });
    res.on("close", () => conn.end());
    return { res, close: () => { res.destroy(); conn.end(); } };
}

function httpGet(base: http.RequestOptions, what: string, timeoutMs: number, where: string): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
        const req = http.request({ ...base, path: what, headers: { host: "nublar-agent" } }, (res) => {
            if (res.statusCode !== 200) {
                let body = "";
                res.on("data", (c) => (body += c));
                res.on("end", () => reject(new ClientError(`${where} answered HTTP ${res.statusCode}: ${body.trim()}`)));
                return;
            }
            resolve(res);
        });
        // Our own timer: an SSH channel is not a net.Socket and has no setTimeout.
        const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
        req.on("response", () => clearTimeout(timer));
        req.on("error", (err) => {
            clearTimeout(timer);
            reject(new UnreachableError(`cannot reach ${where}: ${err.message}`));
        });
        req.end();
    });
}

export async function agentJson<T>(target: Target, what: string): Promise<T> {
    const { res, close } = await agentGet(target, what);
    let body = "";
    res.setEncoding("utf8");
    for await (const chunk of res) body += chunk;
    close();
    try {
        return JSON.parse(body) as T;
    } catch {
        throw new ClientError(`the agent's answer to ${what} is not JSON`);
    }
}
