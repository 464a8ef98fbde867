// Applies a node's overlay plan (model/network/site-plan.ts) with VXLAN over IPv6, the lab's
// tunnel: this kernel has no WireGuard, ip6gre or ip6tnl. One VXLAN device per provider,
// over that provider's uplink; the peers are static flood entries (head-end replication), so
// no multicast is needed, and the remote MACs are learned from traffic.
//
// Idempotent, and gentle on a running node: a device that already matches the plan is left
// alone (re-creating it would take every tunnel's BFD session down), peers are added and
// removed one by one, and devices for providers no longer planned are deleted.
//
// `netns` undefined means "the namespace this process runs in": that is how the lab's deploy
// activates a node, over SSH into the node (components/nixos).
import { spawnSync } from "node:child_process";
import type { OverlayPlan } from "../model/network/site-plan";
import { HERE } from "./daemons";

export class OverlayError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "OverlayError";
    }
}

function cmd(netns: string | undefined, tool: "ip" | "bridge" | "sysctl", args: string[]): string[] {
    // HERE (daemons.ts): the namespace this process runs in, as for the lab's daemons.
    if (netns === HERE) netns = undefined;
    if (tool === "sysctl") return netns ? ["ip", "netns", "exec", netns, "sysctl", ...args] : ["sysctl", ...args];
    return netns ? [tool, "-n", netns, ...args] : [tool, ...args];
}

function run(netns: string | undefined, tool: "ip" | "bridge" | "sysctl", args: string[]): string {
    const c = cmd(netns, tool, args);
    const res = spawnSync(c[0], c.slice(1), { encoding: "utf8" });
    if (res.error || res.status !== 0) {
        throw new OverlayError(`overlay${netns && netns !== HERE ? ` in ${netns}` : ""}: '${c.join(" ")}' failed: ${(res.stderr || res.error?.message || "").trim()}`);
    }
    return res.stdout;
}

interface LinkInfo {
    ifname: string;
    address?: string;
    mtu: number;
    operstate: string;
    /** `local6` when the tunnel runs over IPv6, as ours do. */
    linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; local6?: string; port?: number; link?: string } };
}

function links(netns: string | undefined): LinkInfo[] {
    return JSON.parse(run(netns, "ip", ["-d", "-j", "link", "show"]) || "[]");
}

/** Bring the node's tunnels to the plan. `hub`: forward between spokes. */
export function applyOverlay(netns: string | undefined, overlays: OverlayPlan[], hub: boolean): void {
    for (const o of overlays) {
        if (o.transport !== "vxlan") throw new OverlayError(`overlay ${o.ifname}: the lab applies VXLAN tunnels only, not ${o.transport}`);
    }
    run(netns, "sysctl", ["-q", "-w", `net.ipv6.conf.all.forwarding=${hub ? 1 : 0}`]);
    const existing = links(netns);
    const planned = new Set(overlays.map((o) => o.ifname));
    for (const l of existing) {
        if (/^ov\d+$/.test(l.ifname) && !planned.has(l.ifname)) run(netns, "ip", ["link", "del", "dev", l.ifname]);
    }
    for (const o of overlays) {
        const have = existing.find((l) => l.ifname === o.ifname);
        const data = have?.linkinfo?.info_data;
        const matches = have?.linkinfo?.info_kind === "vxlan" && data?.id === o.vni && (data?.local6 ?? data?.local) === o.underlay.local && data?.port === o.port && have.address === o.mac;
        if (have && !matches) run(netns, "ip", ["link", "del", "dev", o.ifname]);
        if (!matches) {
            // A fixed MAC: a rebuilt node keeps it, so peers' cached neighbour entries stay valid.
            run(netns, "ip", ["link", "add", o.ifname, "address", o.mac, "type", "vxlan", "id", String(o.vni), "local", o.underlay.local, "dstport", String(o.port), "dev", o.underlay.ifname]);
        }
        run(netns, "ip", ["link", "set", "dev", o.ifname, "mtu", String(o.mtu), "up"]);
        run(netns, "ip", ["-6", "addr", "replace", `${o.address}/64`, "dev", o.ifname, "nodad"]);
        syncPeers(netns, o);
    }
}

/** The flood list: one all-zero FDB entry per peer endpoint. */
function syncPeers(netns: string | undefined, o: OverlayPlan): void {
    const fdb: { mac: string; dst?: string }[] = JSON.parse(run(netns, "bridge", ["-j", "fdb", "show", "dev", o.ifname]) || "[]");
    const have = new Set(fdb.filter((e) => e.mac === "00:00:00:00:00:00" && e.dst).map((e) => e.dst!));
    const want = new Set(o.peers.map((p) => p.endpoint));
    for (const dst of want) if (!have.has(dst)) run(netns, "bridge", ["fdb", "append", "00:00:00:00:00:00", "dev", o.ifname, "dst", dst]);
    for (const dst of have) if (!want.has(dst)) run(netns, "bridge", ["fdb", "del", "00:00:00:00:00:00", "dev", o.ifname, "dst", dst]);
}

/** Remove the node's tunnels (the lab's deploy, when a node leaves the site). */
export function removeOverlay(netns: string | undefined): void {
    for (const l of links(netns)) if (/^ov\d+$/.test(l.ifname)) run(netns, "ip", ["link", "del", "dev", l.ifname]);
}
