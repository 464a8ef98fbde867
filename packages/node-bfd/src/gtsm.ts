// GTSM for single-hop BFD (RFC 5881 §5): accept packets to port 3784 only with a hop limit
// (TTL) of 255, i.e. sent from a directly connected neighbour. Node's dgram cannot read a
// received packet's hop limit, so the kernel enforces it with an nftables table:
//
// - `gtsmRuleset()` renders the shared table `inet nublar_bfd_gtsm`, which the nublar agent
//   and its NixOS module install in the node's network namespace;
// - `Gtsm` (used by the service's worker) makes sure such a rule covers the single-hop port
//   before the first single-hop session listens: it uses the shared table when that is in
//   place, and otherwise installs a table of its own, which lives exactly as long as the
//   service (an nftables "owner" table, held by an `nft -i` child process: the kernel
//   removes it when that process's netlink socket closes, on stop and on a crash alike).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";

export const GTSM_TABLE = "nublar_bfd_gtsm";
/** Tables node-bfd installs for itself are named this, then the process id and a random tag. */
export const GTSM_OWN_TABLE_PREFIX = "node_bfd_gtsm_";

/** How a BfdService enforces GTSM on single-hop sessions (ServiceOptions.gtsm). */
export type GtsmMode = "nftables" | "off-i-understand";
export const GTSM_MODES: readonly GtsmMode[] = ["nftables", "off-i-understand"];

/** Where GTSM stands, as reported in snapshots. */
export interface GtsmStatus {
    mode: GtsmMode;
    /** The nftables table that enforces it ("inet <name>"), once a single-hop session needed it. */
    table?: string;
    /** Whether node-bfd installed that table (and it goes with the service), or found it in place (the agent's). */
    owned?: boolean;
    /** Why the last attempt to enforce it failed (single-hop sessions are refused meanwhile). */
    error?: string;
}

/** A single-hop session was refused because GTSM cannot be enforced here. */
export class BfdGtsmError extends Error {
    override name = "BfdGtsmError";
}

/** An nftables ruleset (for `nft -f -`) that drops single-hop BFD not sent with hop limit 255. */
export function gtsmRuleset(port = 3784): string {
    return [
        `table inet ${GTSM_TABLE} {`,
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        ...gtsmRules(port).map((r) => `    ${r}`),
        "  }",
        "}",
        "",
    ].join("\n");
}

function gtsmRules(port: number): string[] {
    return [
        `meta nfproto ipv6 udp dport ${port} ip6 hoplimit != 255 counter drop`,
        `meta nfproto ipv4 udp dport ${port} ip ttl != 255 counter drop`,
    ];
}

/**
 * `nft -i` input that creates node-bfd's own table, owned by that nft process, with the drop
 * rules for `port`: one line, so one transaction.
 */
export function ownTableCommands(table: string, port: number): string {
    return [
        `add table inet ${table} { flags owner; }`,
        `add chain inet ${table} input { type filter hook input priority filter; policy accept; }`,
        ...gtsmRules(port).map((r) => `add rule inet ${table} input ${r}`),
    ].join("; ") + "\n";
}

type Json = any;

/**
 * Whether a table, as listed by `nft -j list table inet NAME`, drops UDP to `port` that arrives
 * with a hop limit (IPv6) or TTL (IPv4) other than 255: a rule in an input hook chain that
 * matches nothing but those (a counter and `meta nfproto` aside) and drops, with no rule before
 * it in that chain that could end the chain's evaluation first. Anything else does not count.
 */
export function gtsmCoverage(listing: Json, port: number): { ipv6: boolean; ipv4: boolean } {
    const items: Json[] = Array.isArray(listing?.nftables) ? listing.nftables : [];
    const inputChains = new Set(items.filter((i) => i.chain?.hook === "input" && i.chain?.type === "filter").map((i) => `${i.chain.table}/${i.chain.name}`));
    const found = { ipv6: false, ipv4: false };
    const ended = new Set<string>();
    for (const item of items) {
        const rule = item.rule;
        const chain = rule && `${rule.table}/${rule.chain}`;
        if (!rule || !inputChains.has(chain) || ended.has(chain)) continue;
        const kind = dropRule(rule.expr, port);
        if (kind) found[kind] = true;
        else if ((rule.expr as Json[] | undefined)?.some((e) => VERDICTS.some((v) => v in e))) ended.add(chain);
    }
    return found;
}

const VERDICTS = ["accept", "drop", "reject", "return", "jump", "goto", "queue"];

function dropRule(expr: Json[] | undefined, port: number): "ipv6" | "ipv4" | undefined {
    if (!Array.isArray(expr) || !expr.some((e) => e && "drop" in e)) return undefined;
    let dport = false;
    let kind: "ipv6" | "ipv4" | undefined;
    for (const e of expr) {
        if (e.counter !== undefined || "drop" in e) continue;
        const m = e.match;
        if (!m) return undefined;
        const field = m.left?.payload ? `${m.left.payload.protocol}.${m.left.payload.field}` : m.left?.meta ? `meta.${m.left.meta.key}` : "";
        if (field === "udp.dport" && m.op === "==" && m.right === port) dport = true;
        else if (field === "ip6.hoplimit" && m.op === "!=" && m.right === 255) kind = "ipv6";
        else if (field === "ip.ttl" && m.op === "!=" && m.right === 255) kind = "ipv4";
        else if (field === "meta.nfproto" && m.op === "==" && ["ipv6", "ipv4"].includes(m.right)) continue;
        else return undefined;
    }
    return dport ? kind : undefined;
}

/** What to tell a caller whose single-hop session cannot be protected. */
export function gtsmRefusal(sessionId: string, reason: string): string {
    return `single-hop session '${sessionId}' refused: node-bfd cannot enforce GTSM (RFC 5881 §5: single-hop BFD is accepted only ` +
        `with hop limit 255, so that a sender off the link cannot take a session down) in this network namespace: ${reason}. ` +
        "node-bfd enforces it with an nftables table, which needs the nft command (nftables) and CAP_NET_ADMIN here; " +
        "or install gtsmRuleset() in the namespace before adding sessions. To run single-hop sessions without it, " +
        "start the service with { gtsm: \"off-i-understand\" }";
}

/** Runs `nft` (async: the worker's timers keep running meanwhile). */
export type NftRunner = (args: string[]) => Promise<{ ok: true; stdout: string } | { ok: false; error: string; noSuchTable?: boolean }>;

const runNft: NftRunner = (args) => new Promise((resolve) => {
    execFile("nft", args, { encoding: "utf8", timeout: 10_000 }, (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout });
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return resolve({ ok: false, error: NFT_MISSING });
        const text = (stderr || err.message).trim().split("\n")[0];
        resolve({ ok: false, error: explain(text), noSuchTable: /No such file or directory/.test(text) });
    });
});

const NFT_MISSING = "the nft command was not found (install nftables)";

function explain(nftError: string): string {
    const text = `nft: ${nftError.replace(/^Error:\s*/, "")}`;
    return /Operation not permitted/.test(nftError) ? `${text} (CAP_NET_ADMIN is needed)` : text;
}

/**
 * GTSM enforcement for one BfdService's single-hop port, in the process's network namespace.
 * `ensure` is called before a single-hop session's receive socket is bound: it resolves once
 * the kernel drops packets to that port with a hop limit other than 255, and throws a
 * BfdGtsmError otherwise. A failure is not remembered: the next session tries again.
 */
export class Gtsm {
    private enforced?: { table: string; owned: boolean };
    private pending?: Promise<void>;
    /** `nft -i`, owner of our own table while it runs. */
    private holder?: ChildProcess;
    private holderErrors = "";
    private lastError?: string;
    private closed = false;

    constructor(readonly mode: GtsmMode, readonly port: number, private readonly nft: NftRunner = runNft, private readonly nftCommand = "nft") {}

    status(): GtsmStatus {
        if (this.mode === "off-i-understand") return { mode: this.mode };
        return {
            mode: this.mode,
            ...(this.enforced ? { table: `inet ${this.enforced.table}`, owned: this.enforced.owned } : {}),
            ...(this.lastError ? { error: this.lastError } : {}),
        };
    }

    async ensure(sessionId: string): Promise<void> {
        if (this.mode === "off-i-understand" || this.enforced) return;
        this.pending ??= this.enforce().finally(() => {
            this.pending = undefined;
        });
        try {
            await this.pending;
        } catch (err) {
            throw new BfdGtsmError(gtsmRefusal(sessionId, (err as Error).message));
        }
    }

    /** Remove our own table, if we have one: end the nft process that owns it, and wait for it to go. */
    async close(): Promise<void> {
        this.closed = true;
        await this.pending?.catch(() => undefined);
        const h = this.holder;
        this.holder = undefined;
        this.enforced = undefined;
        if (h) await endHolder(h);
    }

    private async enforce(): Promise<void> {
        try {
            if (this.closed) throw new Error("the service is stopping");
            // The shared table (the agent's, or the NixOS module's): use it, and never touch it.
            const shared = await this.nft(["-j", "list", "table", "inet", GTSM_TABLE]);
            if (shared.ok && covers(shared.stdout, this.port)) {
                this.enforced = { table: GTSM_TABLE, owned: false };
            } else if (!shared.ok && !shared.noSuchTable) {
                throw new Error(shared.error);
            } else {
                this.enforced = { table: await this.installOwn(), owned: true };
            }
            this.lastError = undefined;
        } catch (err) {
            this.lastError = (err as Error).message;
            throw err;
        }
    }

    /**
     * Our own table, created by and owned by a long-lived `nft -i`. It does not take the shared
     * table's name: only an owner table's owner may change it, so the agent or the NixOS module
     * could no longer replace the shared table.
     */
    private async installOwn(): Promise<string> {
        const table = `${GTSM_OWN_TABLE_PREFIX}${process.pid}_${randomBytes(3).toString("hex")}`;
        const h = this.startHolder();
        h.stdin!.write(ownTableCommands(table, this.port));
        // nft -i goes on after an error: watch its stderr, and look for the table with another nft.
        const deadline = Date.now() + 5_000;
        try {
            for (;;) {
                if (this.holderErrors) throw new Error(this.holderErrors === NFT_MISSING ? NFT_MISSING : explain(lastLine(this.holderErrors)));
                if (this.holder !== h) throw new Error("the nft process exited");
                // The chain, not the table: nft 1.0.6 prints an owner table's flags as garbage in JSON.
                const listed = await this.nft(["-j", "list", "chain", "inet", table, "input"]);
                if (listed.ok && covers(listed.stdout, this.port)) return table;
                if (!listed.ok && !listed.noSuchTable) throw new Error(listed.error);
                if (Date.now() > deadline) throw new Error(`nft did not install table inet ${table} within 5 s`);
                await new Promise((r) => setTimeout(r, 10));
            }
        } catch (err) {
            if (this.holder === h) this.holder = undefined;
            await endHolder(h);
            throw err;
        }
    }

    private startHolder(): ChildProcess {
        this.holderErrors = "";
        const h = spawn(this.nftCommand, ["-i"], { stdio: ["pipe", "ignore", "pipe"] });
        this.holder = h;
        h.stdin!.on("error", () => undefined);
        h.stderr!.setEncoding("utf8");
        h.stderr!.on("data", (d: string) => {
            if (this.holder === h) this.holderErrors += d;
        });
        h.on("error", (err: NodeJS.ErrnoException) => {
            if (this.holder === h) this.holderErrors = err.code === "ENOENT" ? NFT_MISSING : `${err.message}\n`;
        });
        h.on("exit", (code, signal) => {
            if (this.holder !== h) return;
            // Killed from outside: our table went with it. Install it again at once.
            this.holder = undefined;
            this.enforced = undefined;
            this.lastError = `the nft process holding node-bfd's GTSM table exited (${signal ?? `code ${code}`}); installing it again`;
            if (!this.closed) void this.ensure("(reinstall)").catch(() => undefined);
        });
        return h;
    }
}

/** End an `nft -i` we started (EOF on its input), and wait until it has gone, and with it its table. */
async function endHolder(h: ChildProcess): Promise<void> {
    if (h.exitCode !== null || h.signalCode !== null || h.pid === undefined) return;
    const exited = new Promise<void>((resolve) => h.once("exit", () => resolve()));
    h.stdin?.end();
    const t = setTimeout(() => h.kill("SIGKILL"), 2_000);
    await exited;
    clearTimeout(t);
}

function covers(json: string, port: number): boolean {
    try {
        const c = gtsmCoverage(JSON.parse(json), port);
        return c.ipv6 && c.ipv4;
    } catch {
        return false;
    }
}

function lastLine(text: string): string {
    const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
    return lines.find((l) => l.startsWith("Error")) ?? lines[lines.length - 1] ?? "";
}
