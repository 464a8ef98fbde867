// nublar-agent end to end, in namespaces with real daemons: FRR's bfdd on the provider
// routers, node-bfd in every agent, real kernel routes, and Nginx with the Lua balancer in
// front of two backends reached over different providers. Client load runs through Nginx
// while links are cut and agents restart; not one request may fail.
import { after, before, describe, test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { cutUplink, restoreUplink } from "../../lab/ops";
import { Park, requireParkTools, sh, testSite } from "./park";
import { DIAGNOSTICS } from "../../model/vocabulary";

const HOLD_DOWN_MS = 1500;

function ourRoutes(park: Park, node: string): string[] {
    return sh(["ip", "-n", park.netns(node), "-6", "route", "show", "proto", "199"]).trim().split("\n").filter(Boolean);
}

function linkSet(where: { netns: string; ifname: string }, state: "up" | "down"): number {
    sh(["ip", "-n", where.netns, "link", "set", where.ifname, state]);
    return Date.now();
}

/** The agent's nublar_bfd_detection_timeouts_total for one session, from GET /metrics on its socket (0 before the first). */
async function detectionTimeouts(park: Park, node: string, session: string): Promise<number> {
    const metrics: string = await park.agent(node, "/metrics");
    const line = metrics.split("\n").find((l) => l.startsWith(`nublar_bfd_detection_timeouts_total{session="${session}"}`));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

const allUp = (s: any) =>
    s.sessions.every((x: any) => x.bfd?.status === "up") &&
    s.routes.every((r: any) => r.installed) &&
    s.ingress.every((u: any) => u.members.every((m: any) => m.live));

describe("nublar-agent failover", { timeout: 180_000 }, () => {
    let park: Park;

    before(async () => {
        requireParkTools();
        park = new Park(testSite(`f${process.pid.toString(36).slice(-4)}`, {
            nodes: [
                { name: "gate", role: "edge", uplinks: ["provider-a", "provider-b"] },
                // Each backend has one uplink, so that cutting it removes the member.
                { name: "vc", uplinks: ["provider-a"] },
                { name: "cr", uplinks: ["provider-b"] },
            ],
            ingress: [{ name: "web", port: 8080, upstreams: ["vc", "cr"] }],
        }), { holdDownMs: HOLD_DOWN_MS });
        await park.up();
        await park.waitFor("gate", "every session Up, every route installed, both members live", allUp, 30_000);
    });

    after(async () => {
        await park?.close();
    });

    test("the agent installs what the plan says, marked with its protocol number, and nothing else", async () => {
        const state = await park.agent("gate", "/state");
        const kernel = ourRoutes(park, "gate");
        assert.equal(kernel.length, park.config("gate").routes.length, kernel.join("\n"));
        for (const r of park.config("gate").routes) {
            const dst = r.destination === "::/0" ? "default" : r.destination.replace("/128", "");
            assert.ok(kernel.some((k) => k.startsWith(`${dst} `) && k.includes(`via ${r.via} dev ${r.dev}`) && k.includes(`metric ${r.metric}`)), `${r.id} in\n${kernel.join("\n")}`);
        }
        assert.deepEqual(state.ingress[0].pushed.sort(), park.config("gate").ingress[0].members.map((m) => m.address).sort());
        // A route of someone else's (static) is left alone by the agent's reconcile.
        sh(["ip", "-n", park.netns("gate"), "-6", "route", "add", "2001:db8:ffff::/48", "via", park.config("gate").uplinks[0].gateway, "proto", "static"]);
        await new Promise((r) => setTimeout(r, 300));
        assert.match(sh(["ip", "-n", park.netns("gate"), "-6", "route", "show", "2001:db8:ffff::/48"]), /proto static/);
        const metrics = await park.agent("gate", "/metrics");
        assert.match(metrics, /nublar_bfd_session_up\{session="gw\/provider-a".*\} 1/);
    });

    test("cutting a backend's uplink under load: BFD Down, route withdrawn, member removed, no failed request; restored after the hold-down", async () => {
        await park.waitFor("gate", "everything Up before the cut", allUp, 20_000);
        const timeoutsBefore = await detectionTimeouts(park, "gate", "path/vc/provider-a");
        const load = park.load("gate", "http://[::1]:8080/", 200);
        await new Promise((r) => setTimeout(r, 1500));
        const cutAt = linkSet(park.uplink("vc", "provider-a"), "down");
        const cut = await park.waitFor("gate", "vc removed", (s) => {
            const m = s.ingress[0].members.find((x: any) => x.node === "vc");
            return !m.live && s.sessions.find((x: any) => x.id === "path/vc/provider-a").bfd.status !== "up";
        }, 10_000);
        assert.ok(!cut.routes.find((r: any) => r.id === "loopback/vc/provider-a").installed, "vc's route is withdrawn");
        // Gone from the kernel: only the ungated last-resort route to vc is left, below everything.
        const toVc = ourRoutes(park, "gate").filter((l) => l.startsWith(park.plan.nodes.find((n) => n.name === "vc")!.loopback + " "));
        assert.ok(toVc.length === 1 && / metric 4096\b/.test(toVc[0]), `routes to vc left: ${toVc.join("; ")}`);
        await new Promise((r) => setTimeout(r, 1000));

        const events = (await park.agent("gate", "/events?limit=500")).trim().split("\n").map((l: string) => JSON.parse(l)).filter((e: any) => e.at >= cutAt - 5);
        const down = events.find((e: any) => e.type === "bfd" && e.session === "path/vc/provider-a" && e.to === "down");
        const withdrawn = events.find((e: any) => e.type === "route" && e.event === "route-removed" && e.destination.startsWith(park.plan.nodes.find((n) => n.name === "vc")!.loopback));
        const pushed = events.find((e: any) => e.type === "nginx" && (e.removed ?? []).length > 0);
        assert.ok(down && withdrawn && pushed, `events after the cut: ${JSON.stringify(events)}`);
        assert.equal(down.diagnostic, DIAGNOSTICS.controlDetectionTimeExpired);
        assert.ok(down.at - cutAt < 1000, `BFD noticed the cut in ${down.at - cutAt} ms`);
        // ...and the agent counted it: the detection-timeout metric moved (it never did while the
        // agent compared node-bfd's diagnostic with a spelling node-bfd does not use).
        const timeoutsAfter = await detectionTimeouts(park, "gate", "path/vc/provider-a");
        assert.ok(timeoutsAfter > timeoutsBefore, `nublar_bfd_detection_timeouts_total{session="path/vc/provider-a"} went from ${timeoutsBefore} to ${timeoutsAfter} across a cut detected by timeout`);

        // Restore: the member returns, but not before the hold-down has passed since BFD came Up.
        linkSet(park.uplink("vc", "provider-a"), "up");
        const back = await park.waitFor("gate", "vc back", (s) => s.ingress[0].members.find((x: any) => x.node === "vc").live, 20_000);
        assert.ok(back.routes.find((r: any) => r.id === "loopback/vc/provider-a").installed);
        const later = (await park.agent("gate", "/events?limit=500")).trim().split("\n").map((l: string) => JSON.parse(l)).filter((e: any) => e.at > down.at);
        const readded = later.find((e: any) => e.type === "nginx" && (e.added ?? []).length > 0);
        // The Up that the re-add followed: the last one before it.
        const upAgain = later.filter((e: any) => e.type === "bfd" && e.session === "path/vc/provider-a" && e.to === "up" && readded && e.at <= readded.at).pop();
        assert.ok(upAgain && readded, JSON.stringify(later));
        assert.ok(readded.at - upAgain.at >= HOLD_DOWN_MS - 5, `re-added ${Math.round(readded.at - upAgain.at)} ms after Up; hold-down is ${HOLD_DOWN_MS} ms`);
        await new Promise((r) => setTimeout(r, 1000));

        const results = await load.stop();
        const failed = results.filter((r) => r.status !== 200);
        assert.ok(results.length > 500, `${results.length} requests`);
        if (failed.length) {
            const all = (await park.agent("gate", "/events?limit=2000")).trim().split("\n").map((l: string) => JSON.parse(l))
                .filter((e: any) => e.type === "bfd" || e.type === "nginx" || e.type === "error").map((e: any) => ({ ...e, at: Math.round(e.at - cutAt) }));
            assert.fail(`${failed.length} of ${results.length} requests failed, first at ${Math.round(failed[0].t - cutAt)} ms after the cut, last at ${Math.round(failed[failed.length - 1].t - cutAt)}: ${JSON.stringify(failed.slice(0, 3))}\nevents (ms after the cut): ${JSON.stringify(all, null, 0)}`);
        }
        // Between the removal being stored (at most its event's time) and the re-add being sent.
        const byVcAfterCut = results.filter((r) => r.by === "vc" && r.t > pushed.at + 5 && r.t < readded.requestedAt - 5);
        assert.deepEqual(byVcAfterCut, [], "no request went to vc between its removal and its return");
        assert.ok(results.some((r) => r.by === "vc" && r.t > readded.at + 5), "vc serves again");
    });

    test("silent loss on a backend's path (nothing answers, no ICMP): no failed request, and `nublar --check` says so", async () => {
        const { netns, ifname } = park.uplink("cr", "provider-b");
        await park.waitFor("gate", "everything Up before the cut", allUp, 20_000);
        const cli = (args: string[]) => spawnSync(process.execPath, [path.join(__dirname, "../../cli/nublar.js"), ...args, "--socket", park.paths("gate").agentSocket], { encoding: "utf8" });
        assert.equal(cli(["bfd", "peers", "--check"]).status, 0, cli(["bfd", "peers"]).stdout);
        const load = park.load("gate", "http://[::1]:8080/", 200);
        await new Promise((r) => setTimeout(r, 1000));
        cutUplink(netns, ifname, "silent");
        try {
            await park.waitFor("gate", "cr removed", (st) => !st.ingress[0].members.find((m: any) => m.node === "cr").live, 10_000);
            await new Promise((r) => setTimeout(r, 500));
            const peers = cli(["bfd", "peers", "--check"]);
            assert.equal(peers.status, 4, peers.stdout + peers.stderr);
            assert.match(peers.stdout, /path\/cr\/provider-b\s+path\s+\S+\s+\S+\s+(down|init)/);
            assert.equal(cli(["ingress", "--check"]).status, 4);
            const json = JSON.parse(cli(["bfd", "peers", "--json"]).stdout);
            assert.notEqual(json.find((p: any) => p.session === "path/cr/provider-b").status, "up");
        } finally {
            restoreUplink(netns, ifname);
        }
        await park.waitFor("gate", "cr back", allUp, 20_000);
        await new Promise((r) => setTimeout(r, 500));
        const results = await load.stop();
        assert.deepEqual(results.filter((r) => r.status !== 200), []);
        assert.equal(cli(["ingress", "--check"]).status, 0);
        const routes = cli(["routes"]);
        assert.match(routes.stdout, /DESTINATION\s+FROM\s+VIA/);
        assert.equal(cli(["bfd", "peers", "--bogus"]).status, 2);
    });

    test("restarting the edge's agent under load: no route flap, no failed request", async () => {
        await park.waitFor("gate", "everything Up before the restart", allUp, 20_000);
        const before = ourRoutes(park, "gate");
        const load = park.load("gate", "http://[::1]:8080/", 200);
        await new Promise((r) => setTimeout(r, 1000));
        let flapped = "";
        const watch = setInterval(() => {
            const now = ourRoutes(park, "gate");
            if (now.length < before.length) flapped ||= `routes dropped to ${now.length}:\n${now.join("\n")}`;
        }, 20);
        const stoppedAt = Date.now();
        try {
            park.stopAgent("gate");
            // While it is down, installed routes stay (fail-static).
            assert.deepEqual(ourRoutes(park, "gate"), before);
            park.startAgent("gate");
            await park.waitFor("gate", "all Up after restart", allUp, 30_000);
            await new Promise((r) => setTimeout(r, 1000));
        } finally {
            clearInterval(watch);
        }
        const results = await load.stop();
        if (flapped) {
            const ev = (await park.agent("gate", "/events?limit=300")).trim().split("\n").map((l: string) => JSON.parse(l))
                .filter((e: any) => e.at >= stoppedAt - 100).map((e: any) => ({ ...e, at: Math.round(e.at - stoppedAt) }));
            assert.fail(`${flapped}\nevents since the stop (ms):\n${ev.map((e: any) => JSON.stringify(e)).join("\n")}`);
        }
        assert.deepEqual(results.filter((r) => r.status !== 200), []);
        assert.ok(results.length > 300);
        // The peers saw AdminDown and kept their routes to gate (RFC 5882 §3.2).
        for (const peer of ["vc", "cr"]) {
            const ev = (await park.agent(peer, "/events?limit=1000")).trim().split("\n").map((l: string) => JSON.parse(l));
            const downs = ev.filter((e: any) => e.type === "bfd" && e.to === "down" && e.session.startsWith("path/gate/") && e.at >= stoppedAt);
            assert.ok(downs.length > 0 && downs.every((e: any) => e.remoteState === "admin-down"), JSON.stringify(downs));
        }
    });

    test("a killed agent leaves its routes and Nginx's members in place (fail-static)", async () => {
        const before = ourRoutes(park, "gate");
        park.stopAgent("gate", "SIGKILL");
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(ourRoutes(park, "gate"), before);
        assert.equal(sh(["ip", "netns", "exec", park.netns("gate"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://[::1]:8080/"]), "200");
        park.startAgent("gate");
        await park.waitFor("gate", "all Up after a crash", allUp, 30_000);
    });
});
