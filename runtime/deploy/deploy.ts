// One node's deploy over SSH, the same for NixOS and lab nodes (the Activation differs):
//   1. connect, checking the host key against the pinned one (never trust on first use);
//   2. upload the rendered bundle as a new generation;
//   3. deliver secrets to /run/keys on the node, through stdin (never argv, never logs);
//   4. activate, which leaves a watchdog on the node;
//   5. confirm: the node must be reachable again over a NEW connection, and its BFD sessions
//      Up within the deadline: every uplink gateway, and every session that was Up before the
//      deploy (a first deploy cannot wait for peers that are not deployed yet, but a deploy
//      must not lose a path that worked); then tell the watchdog to stand down;
//   6. otherwise roll back (or, if the node cannot be reached, let its watchdog do it), wait
//      until the old generation is back with its sessions Up, and fail with what was seen.
import * as path from "node:path";
import type { Client } from "ssh2";
import { agentGetOver, connectPinned, describeNode, HostKeyMismatchError, UnreachableError, type NodeAccess } from "../agent/client";
import { sh, type Activation, type DeployMode } from "../../model/nix/activation";
import { bundleDigest } from "../../model/nix/bundle";

export interface DeployTarget {
    node: string;
    access: Omit<NodeAccess, "agentSocket">;
    /** The agent's API socket on the node (its config's `paths.socket`). */
    agentSocket: string;
}

export interface DeployRequest {
    target: DeployTarget;
    activation: Activation;
    mode: DeployMode;
    /** The bundle: relative path -> content. */
    files: Record<string, string>;
    /** Secret name -> content, written to <keysDir>/<name> mode 0600. */
    secrets: Record<string, string>;
    confirmTimeoutMs: number;
    /** Progress lines; never given a secret. */
    log?: (line: string) => void;
}

export interface DeployResult {
    generation: number;
    digest: string;
    /** Time from activation to confirmation. */
    confirmedInMs?: number;
    sessions: number;
}

export class DeployError extends Error {
    constructor(message: string, readonly rolledBack: boolean) {
        super(message);
        this.name = "DeployError";
    }
}

export { bundleDigest };

interface ExecResult {
    code: number;
    stdout: string;
    stderr: string;
}

export function exec(conn: Client, command: string, stdin?: string, timeoutMs = 120_000): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
        conn.exec(command, (err, stream) => {
            if (err) return reject(err);
            let stdout = "";
            let stderr = "";
            const timer = setTimeout(() => {
                stream.close();
                reject(new Error(`no answer within ${timeoutMs / 1000} s`));
            }, timeoutMs);
            stream.on("data", (d: Buffer) => (stdout += d.toString()));
            stream.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            stream.on("close", (code: number | null) => {
                clearTimeout(timer);
                resolve({ code: code ?? 255, stdout, stderr });
            });
            if (stdin !== undefined) stream.end(stdin);
            else stream.end();
        });
    });
}

/** Run one command on a node over a pinned SSH connection (refresh and removal use it). */
export async function execOnNode(node: string, access: DeployTarget["access"], command: string, timeoutMs = 60_000): Promise<ExecResult> {
    const conn = await connectPinned(access, describeNode(node, access), 8000);
    try {
        return await exec(conn, command, undefined, timeoutMs);
    } finally {
        conn.end();
    }
}

/**
 * The shell command that writes one secret, read from stdin, for generation `gen`. Secrets
 * belong to the generation, so that a rollback brings the old keys back too:
 * <keysDir>/nublar-generations/<n>/<name>, linked to <keysDir>/<name> at switch time. Each is
 * root's alone (0600, in 0700 folders): no service reads it there. The agent gets a private
 * copy as a credential (systemd's LoadCredential=, the lab's startAgent), which only its own
 * user can read.
 */
export function installSecretCommand(keysDir: string, gen: number, name: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith(".")) throw new Error(`secret name '${name}' is not a plain file name`);
    const dir = `${keysDir}/nublar-generations/${gen}`;
    const file = `${dir}/${name}`;
    return `umask 077 && mkdir -p ${sh(dir)} && chmod 0700 ${sh(`${keysDir}/nublar-generations`)} ${sh(dir)} && cat > ${sh(`${file}.new`)} && chmod 0600 ${sh(`${file}.new`)} && mv ${sh(`${file}.new`)} ${sh(file)}`;
}

async function mustExec(conn: Client, where: string, what: string, command: string, stdin?: string): Promise<string> {
    const r = await exec(conn, command, stdin);
    if (r.code !== 0) throw new Error(`${where}: ${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-5).join(" | ")}`);
    return r.stdout;
}

async function upload(conn: Client, dir: string, files: Record<string, string>): Promise<void> {
    const dirs = new Set(Object.keys(files).map((f) => path.posix.dirname(path.posix.join(dir, f))));
    const r = await exec(conn, `umask 022 && mkdir -p ${[...dirs].map(sh).join(" ")}`);
    if (r.code !== 0) throw new Error(`cannot create ${dir}: ${r.stderr.trim()}`);
    const sftp = await new Promise<import("ssh2").SFTPWrapper>((resolve, reject) => conn.sftp((err, s) => (err ? reject(err) : resolve(s))));
    try {
        for (const [rel, content] of Object.entries(files)) {
            await new Promise<void>((resolve, reject) => sftp.writeFile(path.posix.join(dir, rel), content, { mode: 0o644 }, (err) => (err ? reject(err) : resolve())));
        }
    } finally {
        sftp.end();
    }
}

interface SessionView {
    id: string;
    kind?: string;
    bfd?: { status?: string; diagnostic?: string };
}

/** The agent's sessions, read through its socket over an open SSH connection. */
async function readSessions(conn: Client, target: DeployTarget, where: string): Promise<SessionView[]> {
    const res = await agentGetOver(conn, target.agentSocket, "/state", where, 5000);
    let body = "";
    res.setEncoding("utf8");
    for await (const chunk of res) body += chunk;
    return JSON.parse(body).sessions as SessionView[];
}

/** Sessions that must be Up to confirm: gateways, and those that were Up before the deploy. */
type Required = (s: SessionView) => boolean;
const notUp = (sessions: SessionView[], required: Required = () => true) => sessions.filter((s) => required(s) && s.bfd?.status !== "up");
const describeSessions = (sessions: SessionView[]) =>
    sessions.map((s) => `${s.id} (${s.bfd?.status ?? "unknown"}${s.bfd?.diagnostic && s.bfd.diagnostic !== "ok" ? `: ${s.bfd.diagnostic}` : ""})`).join(", ");

/**
 * Poll until the node is reachable and its required sessions are Up, or the deadline passes.
 * One connection, opened after activation (the deploy's own connection proves nothing about
 * the new network config), and opened again whenever it fails.
 */
async function waitHealthy(target: DeployTarget, where: string, deadline: number, required: Required): Promise<{ ok: boolean; sessions?: SessionView[]; problem?: string; atMs: number }> {
    let conn: Client | undefined;
    let last: { sessions?: SessionView[]; problem?: string } = {};
    try {
        for (;;) {
            try {
                conn ??= await connectPinned(target.access, where, 5000);
                last = { sessions: await readSessions(conn, target, where) };
            } catch (err) {
                last = { problem: (err as Error).message };
                conn?.end();
                conn = undefined;
            }
            if (last.sessions && last.sessions.length > 0 && notUp(last.sessions, required).length === 0) return { ok: true, ...last, atMs: Date.now() };
            if (Date.now() >= deadline) return { ok: false, ...last, atMs: Date.now() };
            await new Promise((r) => setTimeout(r, 500));
        }
    } finally {
        conn?.end();
    }
}

/**
 * The first connection of a deploy. A new machine may still be booting (an EC2 node), so an
 * unreachable node is retried for `access.reachableWithinMs`. So is a wrong host key within
 * that window (a booting image's sshd may answer with its own key for a moment, before the
 * pinned one is installed): the wrong key is never accepted, only waited out. Without a
 * window, both fail at once.
 */
export async function connectWhenUp(access: DeployTarget["access"], where: string, log: (line: string) => void, retryEveryMs = 5000): Promise<Client> {
    const deadline = Date.now() + (access.reachableWithinMs ?? 0);
    let last = "";
    for (;;) {
        try {
            return await connectPinned(access, where, 15_000);
        } catch (err) {
            if (!(err instanceof UnreachableError) || Date.now() + retryEveryMs > deadline) throw err;
            // One line per kind of failure, so that a wrong key after an unreachable spell shows.
            const kind = err instanceof HostKeyMismatchError ? "key" : "unreachable";
            if (kind !== last) log(`${where}: ${err.message}; retrying every ${retryEveryMs / 1000} s for up to ${Math.round((deadline - Date.now()) / 1000)} s while it boots`);
            last = kind;
            await new Promise((r) => setTimeout(r, retryEveryMs));
        }
    }
}

export async function deploy(req: DeployRequest): Promise<DeployResult> {
    const { target, activation } = req;
    const where = describeNode(target.node, target.access);
    const log = req.log ?? (() => {});
    const conn = await connectWhenUp(target.access, where, log);
    let gen = 0;
    const digest = bundleDigest(req.files);
    let activatedAt = 0;
    // No agent yet (a first deploy): nothing was Up before.
    const before = await readSessions(conn, target, where).catch(() => [] as SessionView[]);
    const upBefore = new Set(before.filter((s) => s.bfd?.status === "up").map((s) => s.id));
    const required: Required = (s) => s.kind === "gateway" || upBefore.has(s.id);
    try {
        const status = JSON.parse(await mustExec(conn, where, "reading its generations", activation.statusCmd())) as { current: number | null; generations: number[] };
        gen = Math.max(0, ...status.generations) + 1;
        const files = { ...req.files, ...activation.extraFiles(gen, req.mode) };
        files["nublar-digest"] = `${digest}\n`;
        const dir = `${activation.root}/generations/${gen}`;
        log(`${target.node}: uploading generation ${gen} (${Object.keys(files).length} files, digest ${digest})`);
        await upload(conn, dir, files);

        for (const [name, content] of Object.entries(req.secrets)) {
            await mustExec(conn, where, `installing secret ${name}`, installSecretCommand(activation.keysDir, gen, name), content);
        }

        const watchdogS = Math.ceil(req.confirmTimeoutMs / 1000) + 30;
        log(`${target.node}: activating generation ${gen} (${activation.kind}, ${req.mode}; rolls back on its own after ${watchdogS} s unless confirmed)`);
        activatedAt = Date.now();
        const switched = await exec(conn, activation.switchCmd(gen, req.mode, watchdogS), undefined, req.confirmTimeoutMs + 120_000).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message }));
        if (!activation.changesRunningSystem(req.mode)) {
            if (switched.code !== 0) throw new DeployError(`${where}: ${req.mode} of generation ${gen} failed: ${switched.stderr.trim()}`, false);
            return { generation: gen, digest, sessions: 0 };
        }
        if (switched.code !== 0) {
            log(`${target.node}: activation failed (exit ${switched.code}); rolling back`);
            await rollbackAndVerify(req, where, gen, required, `activation failed (exit ${switched.code}): ${(switched.stderr || switched.stdout).trim().split("\n").slice(-5).join(" | ")}`);
        }
    } finally {
        conn.end();
    }

    // Confirm over a new connection: the old one proves nothing about the new network config.
    const deadline = activatedAt + req.confirmTimeoutMs;
    log(`${target.node}: waiting up to ${Math.round(req.confirmTimeoutMs / 1000)} s for the node to be reachable with every BFD session Up`);
    const health = await waitHealthy(target, where, deadline, required);
    if (!health.ok) {
        const why = health.sessions
            ? `within ${Math.round(req.confirmTimeoutMs / 1000)} s of activation, ${notUp(health.sessions, required).length} BFD sessions that must be Up were not: ${describeSessions(notUp(health.sessions, required))}`
            : `the node was not reachable within ${Math.round(req.confirmTimeoutMs / 1000)} s of activation: ${health.problem}`;
        log(`${target.node}: ${why}; rolling back`);
        await rollbackAndVerify(req, where, gen, required, why);
    }
    const confirmConn = await connectPinned(target.access, where, 15_000);
    try {
        await mustExec(confirmConn, where, `confirming generation ${gen}`, activation.confirmCmd(gen));
    } finally {
        confirmConn.end();
    }
    const up = health.sessions!.filter((s) => s.bfd?.status === "up").length;
    log(`${target.node}: generation ${gen} confirmed after ${health.atMs - activatedAt} ms (${up} of ${health.sessions!.length} sessions Up)`);
    return { generation: gen, digest, confirmedInMs: health.atMs - activatedAt, sessions: up };
}

/** Roll back generation `gen`, wait for the node to be healthy on the old one, then throw. */
async function rollbackAndVerify(req: DeployRequest, where: string, gen: number, required: Required, why: string): Promise<never> {
    const { target, activation } = req;
    let how: string;
    try {
        const conn = await connectPinned(target.access, where, 10_000);
        try {
            const r = await exec(conn, activation.rollbackCmd(gen), undefined, 180_000);
            if (r.code !== 0) throw new Error(`exit ${r.code}: ${(r.stderr || r.stdout).trim()}`);
            // The lab says what runs now; null means there was no earlier generation.
            const running = /"running":\s*null/.test(r.stdout);
            if (running) {
                throw new DeployError(`${where}: generation ${gen} was not confirmed: ${why}. It was the node's first generation, so there was nothing to go back to: the deploy stopped its system.`, true);
            }
            how = "It was rolled back by the deploy.";
        } finally {
            conn.end();
        }
    } catch (err) {
        if (err instanceof DeployError) throw err;
        // Cut off, most likely by the new generation itself: the node's watchdog rolls it back.
        how = `The deploy could not roll it back (${(err as Error).message}), so the node's watchdog does.`;
    }
    const watchdogS = Math.ceil(req.confirmTimeoutMs / 1000) + 30;
    const after = await waitHealthy(target, where, Date.now() + (watchdogS + 60) * 1000, required);
    const state = after.ok
        ? `It runs the previous generation again, reachable, with its BFD sessions Up (${after.sessions!.filter((s) => s.bfd?.status === "up").length} of ${after.sessions!.length}).`
        : `After the rollback the node is still not healthy: ${after.sessions ? describeSessions(notUp(after.sessions, required)) : after.problem}. Look at it now.`;
    throw new DeployError(`${where}: generation ${gen} was not confirmed: ${why}. ${how} ${state}`, true);
}
