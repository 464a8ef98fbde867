// Network layer: the overlay. Traffic between node loopbacks travels inside the VXLAN tunnels
// (the provider routers do not even know the loopbacks), spokes reach each other through a
// hub, and a ping between two loopbacks keeps going when the uplink under its primary tunnel
// goes silent. Built with test/network/park.ts (real namespaces, FRR, agents), no Pulumi.
import { after, before, describe, test } from "node:test";
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cutUplink, restoreUplink } from "../../lab/ops";
import { applyOverlay } from "../../lab/overlay";
import { Park, requireParkTools, sh, testSite } from "./park";

const allUp = (s: any) => s.sessions.every((x: any) => x.bfd?.status === "up") && s.routes.every((r: any) => r.installed);

describe("the overlay", { timeout: 180_000 }, () => {
    let park: Park;
    const loopback = (node: string) => park.plan.nodes.find((n) => n.name === node)!.loopback;
    const ping = (from: string, to: string) => spawnPing(park.netns(from), loopback(from), loopback(to), 3, 0.2);

    before(async () => {
        requireParkTools();
        park = new Park(testSite(`o${process.pid.toString(36).slice(-4)}`, {
            nodes: [
                { name: "gate", role: "edge", uplinks: ["provider-a", "provider-b"] },
                { name: "cr", role: "core", uplinks: ["provider-a", "provider-b"] },
                { name: "vc", uplinks: ["provider-a", "provider-b"] },
                { name: "aviary", uplinks: ["provider-a", "provider-b"] },
            ],
        }));
        await park.up();
        for (const n of ["gate", "cr", "vc", "aviary"]) await park.waitFor(n, "every session Up and route installed", allUp, 30_000);
    });

    after(async () => {
        await park?.close();
    });

    test("loopback to loopback goes through a tunnel; the providers know no loopback", async () => {
        const got = await ping("vc", "cr");
        assert.equal(got.received, got.sent, got.output);
        const route = sh(["ip", "-n", park.netns("vc"), "-6", "route", "get", loopback("cr"), "from", loopback("vc")]);
        assert.match(route, / dev ov\d /, route);
        for (const r of park.plan.routers) {
            const table = sh(["ip", "-n", r.netns, "-6", "route", "show"]);
            assert.ok(!table.includes(park.plan.nodes[0].loopback.split("::")[0] + "::"), `router ${r.provider} has no loopback route:\n${table}`);
        }
    });

    test("applying the same overlay again changes nothing (a redeploy must not flap the tunnels)", async () => {
        const node = park.plan.nodes.find((n) => n.name === "cr")!;
        const ifindexes = () => JSON.parse(sh(["ip", "-n", node.netns, "-j", "link", "show"])).filter((l: any) => /^ov\d$/.test(l.ifname)).map((l: any) => `${l.ifname}:${l.ifindex}`);
        const before = ifindexes();
        applyOverlay(node.netns, node.overlays, node.hub);
        assert.deepEqual(ifindexes(), before);
        const events = (await park.agent("cr", "/events?limit=50")).trim().split("\n").map((l: string) => JSON.parse(l));
        assert.ok(!events.some((e: any) => e.type === "agent" && e.event === "link-down"), "no tunnel went down");
    });

    test("spokes reach each other through a hub", async () => {
        // vc and aviary are both spokes: no tunnel between them, only through gate or cr.
        assert.ok(!park.config("vc").sessions.some((s) => s.peerNode === "aviary"));
        const got = await ping("vc", "aviary");
        assert.equal(got.received, got.sent, got.output);
        // The next hop is a hub's address on a tunnel.
        const route = sh(["ip", "-n", park.netns("vc"), "-6", "route", "get", loopback("aviary"), "from", loopback("vc")]);
        const hubs = park.plan.nodes.filter((n) => n.hub).flatMap((n) => n.overlays.map((o) => o.address));
        assert.ok(hubs.some((a) => route.includes(` via ${a} dev ov`)), `${route} goes through one of ${hubs.join(", ")}`);
    });

    test("a ping between two loopbacks survives its uplink going silent", async (t) => {
        // The uplink under vc's primary tunnel to cr.
        const state = await park.agent("vc", "/state");
        const primary = state.routes.find((r: any) => r.id.startsWith("loopback/cr/") && r.metric === 100).id.split("/")[2];
        const { netns, ifname } = park.uplink("vc", primary);
        const run = spawnPing(park.netns("vc"), loopback("vc"), loopback("cr"), 250, 0.02); // 5 s
        await new Promise((r) => setTimeout(r, 1000));
        cutUplink(netns, ifname, "silent");
        let got: Awaited<typeof run>;
        try {
            got = await run;
        } finally {
            restoreUplink(netns, ifname);
        }
        const lost = got.sent - got.received;
        t.diagnostic(`${lost} of ${got.sent} pings (every 20 ms) lost across the cut`);
        // Detection is 3 x 100 ms here, then the route change: well under a second of pings.
        assert.ok(got.sent >= 200, got.output);
        assert.ok(lost < 50, `${lost} of ${got.sent} pings lost:\n${got.output}`);
        assert.ok(got.lastSeqs.every((ok) => ok), `the last pings, after the failover, all came back:\n${got.output}`);
        const after = sh(["ip", "-n", park.netns("vc"), "-6", "route", "get", loopback("cr"), "from", loopback("vc")]);
        assert.match(after, / dev ov\d /);
        await park.waitFor("vc", "back after the restore", allUp, 30_000);
    });
});

/** ping -6 from a loopback; how many came back, and whether the last 20 did. */
function spawnPing(netns: string, from: string, to: string, count: number, intervalS: number): Promise<{ sent: number; received: number; lastSeqs: boolean[]; output: string }> {
    return new Promise((resolve) => {
        const p = spawn("ip", ["netns", "exec", netns, "ping", "-6", "-n", "-c", String(count), "-i", String(intervalS), "-W", "1", "-I", from, to]);
        let output = "";
        p.stdout.on("data", (d) => (output += d));
        p.stderr.on("data", (d) => (output += d));
        p.on("close", () => {
            const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
            const seqs = new Set([...output.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1])));
            const sent = m ? Number(m[1]) : 0;
            const lastSeqs = Array.from({ length: Math.min(20, sent) }, (_, i) => seqs.has(sent - i));
            resolve({ sent, received: m ? Number(m[2]) : 0, lastSeqs, output: output.split("\n").slice(-4).join("\n") });
        });
    });
}
