// The network engineer's commands, in the spirit of vtysh and birdc:
//   nublar bfd peers [--brief|--counters]   nublar routes   nublar ingress   nublar events
// Each asks one node's agent (--node NAME through the stack's outputs, or --socket PATH).
// Exit codes: 0 fine; 1 a problem to fix (bad stack, unknown node); 2 bad arguments;
// 3 the node or its agent cannot be reached; 4 --check found something not Up.
import { Command, InvalidArgumentError, Option } from "commander";
import type { AgentState } from "../runtime/agent/agent";
import { agentGet, agentJson, resolveTarget, type Target } from "../runtime/agent/client";
import { isRouteEvent, ROUTE_EVENTS, type BfdState } from "../model/vocabulary";

export const EXIT_UNREACHABLE = 3;
export const EXIT_CHECK_FAILED = 4;

const useColor = () => !!process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);
const green = paint(32);
const red = paint(31);
const yellow = paint(33);
const dim = paint(2);

/** BFD states (model/vocabulary.ts, as the agent spells them) and the other words these commands print, by meaning. */
const GOOD: readonly string[] = ["up" satisfies BfdState, "installed", "live", "use"];
const BAD: readonly string[] = ["down" satisfies BfdState, "admin-down" satisfies BfdState, "withdrawn", "dead", "withdraw"];

/** Color by meaning; widths are computed on the plain text so columns stay aligned. */
function colorState(s: string): string {
    if (GOOD.includes(s)) return green(s);
    if (BAD.includes(s)) return red(s);
    return yellow(s);
}

function table(rows: string[][], color: (col: number, cell: string) => string = (_c, s) => s): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    return rows.map((r, ri) => r.map((c, i) => {
        const padded = (c ?? "").padEnd(i === r.length - 1 ? 0 : widths[i]);
        return ri === 0 ? dim(padded) : padded.replace(c, color(i, c));
    }).join("  ").trimEnd()).join("\n");
}

function duration(seconds: number | undefined): string {
    if (seconds === undefined) return "-";
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return d ? `${d}d${h}h` : h ? `${h}h${m}m` : m ? `${m}m${s}s` : `${s}s`;
}

interface CommonOpts {
    node?: string;
    socket?: string;
    stack: string;
    json?: boolean;
    check?: boolean;
}

function common(cmd: Command, check = true): Command {
    cmd.addOption(new Option("-n, --node <name>", "ask this node's agent, reached over SSH with its pinned host key (found through the stack's outputs)"))
        .addOption(new Option("--socket <path>", "ask the agent at this unix socket (on the node itself)"))
        .addOption(new Option("-s, --stack <name>", "stack whose outputs name the nodes").default("lab"))
        .addOption(new Option("--json", "machine-readable output (see README: \"nublar CLI JSON\")"));
    if (check) cmd.addOption(new Option("--check", `exit with code ${EXIT_CHECK_FAILED} if anything shown is not up`));
    return cmd;
}

async function state(opts: CommonOpts): Promise<{ target: Target; state: AgentState }> {
    const target = resolveTarget(opts);
    return { target, state: await agentJson<AgentState>(target, "/state") };
}

/** One peer as `nublar bfd peers --json` prints it: FRR's `show bfd peers json` fields plus ours. */
export function peerJson(s: AgentState["sessions"][number]) {
    const { bfd, ...meta } = s;
    return {
        session: meta.id, kind: meta.kind, provider: meta.provider, "peer-node": meta.peerNode ?? null,
        ...(bfd ?? { status: "unknown" }),
        peer: meta.peer, local: meta.local, interface: meta.interface ?? null, multihop: meta.multihop,
    };
}

export function registerNetworkCommands(program: Command): void {
    const bfd = program.command("bfd").description("BFD sessions of a node's agent (like vtysh's `show bfd peers`)");
    common(bfd.command("peers"))
        .description("every BFD session: state, timers, diagnostics")
        .addOption(new Option("--brief", "one short line per session").conflicts("counters"))
        .addOption(new Option("--counters", "packet and transition counters"))
        .action(async (opts: CommonOpts & { brief?: boolean; counters?: boolean }) => {
            const { state: st } = await state(opts);
            const peers = st.sessions.map(peerJson);
            if (opts.json) {
                process.stdout.write(`${JSON.stringify(peers, null, 2)}\n`);
            } else {
                const status = (p: any) => p.status as string;
                let rows: string[][];
                if (opts.brief) {
                    rows = [["SESSION", "PEER", "STATUS"], ...peers.map((p: any) => [p.session, p.peer, status(p)])];
                } else if (opts.counters) {
                    rows = [["SESSION", "STATUS", "PKT IN", "PKT OUT", "UPS", "DOWNS", "DROPS"], ...peers.map((p: any) => [
                        p.session, status(p), String(p.counters?.["control-packet-input"] ?? "-"), String(p.counters?.["control-packet-output"] ?? "-"),
                        String(p.counters?.["session-up"] ?? "-"), String(p.counters?.["session-down"] ?? "-"),
                        Object.entries(p.counters?.drops ?? {}).map(([k, v]) => `${k}=${v}`).join(",") || "0"])];
                } else {
                    rows = [["SESSION", "KIND", "PEER", "LOCAL", "STATUS", "FOR", "DIAG", "TX/RX ms", "DETECT ms"], ...peers.map((p: any) => [
                        p.session, `${p.kind}${p.multihop ? "/mh" : ""}`, p.peer, p.local, status(p), duration(p.uptime ?? p.downtime),
                        p.diagnostic ?? "-", p["transmit-interval"] !== undefined ? `${p["transmit-interval"]}/${p["receive-interval"]}` : "-",
                        p["detection-timeout"] !== undefined ? String(p["detection-timeout"]) : "-"])];
                }
                const statusCol = rows[0].indexOf("STATUS");
                process.stdout.write(`${dim(`node ${st.node} (site ${st.site})`)}\n${table(rows, (c, s) => (c === statusCol ? colorState(s) : s))}\n`);
            }
            if (opts.check && peers.some((p: any) => p.status !== "up")) process.exitCode = EXIT_CHECK_FAILED;
        });

    common(program.command("routes"))
        .description("every route the agent manages: where it goes, the path it uses, whether it is installed, and why")
        .action(async (opts: CommonOpts) => {
            const { state: st } = await state(opts);
            if (opts.json) {
                process.stdout.write(`${JSON.stringify(st.routes, null, 2)}\n`);
            } else {
                const rows = [["DESTINATION", "FROM", "VIA", "DEV", "METRIC", "STATE", "SESSION", "WHY"], ...st.routes.map((r) => [
                    r.destination === "::/0" ? "default" : r.destination, r.source ?? "-", r.via, r.dev, String(r.metric),
                    r.installed ? "installed" : r.decision === "keep" ? "kept" : "withdrawn", r.session ?? "-", `${r.reason}; ${r.why}`])];
                process.stdout.write(`${dim(`node ${st.node} (site ${st.site}), loopback ${st.loopback}`)}\n${table(rows, (c, s) => (c === 5 ? colorState(s) : s))}\n`);
            }
            if (opts.check && st.routes.some((r) => !r.installed)) process.exitCode = EXIT_CHECK_FAILED;
        });

    common(program.command("ingress"))
        .description("every Nginx upstream on the node, with its members and their state")
        .action(async (opts: CommonOpts) => {
            const { state: st } = await state(opts);
            if (opts.json) {
                process.stdout.write(`${JSON.stringify(st.ingress, null, 2)}\n`);
            } else if (st.ingress.length === 0) {
                process.stdout.write(`node ${st.node} serves no ingress (Nginx runs on edge nodes)\n`);
            } else {
                const rows = [["UPSTREAM", "PORT", "MEMBER", "ADDRESS", "STATE", "WHY"], ...st.ingress.flatMap((u) => u.members.map((m) => [
                    u.name, String(u.port), m.node, m.address, m.live ? "live" : "dead", m.why]))];
                process.stdout.write(`${dim(`node ${st.node} (site ${st.site})`)}\n${table(rows, (c, s) => (c === 4 ? colorState(s) : s))}\n`);
            }
            if (opts.check && st.ingress.some((u) => u.members.some((m) => !m.live))) process.exitCode = EXIT_CHECK_FAILED;
        });

    common(program.command("events"), false)
        .description("the agent's events: BFD state changes, route changes, Nginx pushes, errors")
        .addOption(new Option("-f, --follow", "keep printing new events as they happen (Ctrl-C to stop)"))
        .addOption(new Option("--limit <n>", "how many recent events to show first").default("50").argParser((v) => {
            const n = Number(v);
            if (!Number.isInteger(n) || n < 0 || n > 2000) throw new InvalidArgumentError("must be a whole number from 0 to 2000");
            return String(n);
        }))
        .action(async (opts: CommonOpts & { follow?: boolean; limit: string }) => {
            const target = resolveTarget(opts);
            const { res, close } = await agentGet(target, `/events?limit=${opts.limit}${opts.follow ? "&follow=1" : ""}`, opts.follow ? 24 * 3600_000 : 8000);
            process.on("SIGINT", () => {
                close();
                process.exit(0);
            });
            let buf = "";
            res.setEncoding("utf8");
            for await (const chunk of res) {
                buf += chunk;
                let nl: number;
                while ((nl = buf.indexOf("\n")) >= 0) {
                    const line = buf.slice(0, nl);
                    buf = buf.slice(nl + 1);
                    if (line.trim()) process.stdout.write(`${opts.json ? line : formatEvent(JSON.parse(line))}\n`);
                }
            }
            close();
        });
}

export function formatEvent(e: Record<string, any>): string {
    const t = new Date(e.at).toISOString().replace("T", " ").replace("Z", "");
    const { at: _at, seq: _seq, node, type, ...rest } = e;
    let what: string;
    switch (type) {
        case "bfd":
            what = `${rest.session} ${rest.from} -> ${colorState(rest.to)} (${rest.diagnostic}${rest.remoteState === ("admin-down" satisfies BfdState) ? ", peer admin-down" : ""})`;
            break;
        case "route":
            what = `${isRouteEvent(rest.event) && ROUTE_EVENTS[rest.event] === "installed" ? green("+") : red("-")} ${rest.destination === "::/0" ? "default" : rest.destination}${rest.source ? ` from ${rest.source}` : ""} metric ${rest.metric}${rest.dev ? ` dev ${rest.dev}` : ""}`;
            break;
        case "nginx":
            what = rest.event === "connections-aborted"
                ? `${rest.upstream}: aborted ${rest.count} connection(s) to ${rest.member}`
                : `${rest.upstream}: members ${JSON.stringify(rest.members)}${rest.removed?.length ? red(` -${rest.removed.join(",")}`) : ""}${rest.added?.length ? green(` +${rest.added.join(",")}`) : ""}`;
            break;
        case "error":
            what = red(`${rest.step}: ${rest.message}`);
            break;
        default:
            what = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    }
    return `${dim(t)} ${node} ${type.padEnd(7)} ${what}`;
}
