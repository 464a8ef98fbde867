// The agent API's /events?follow=1 under a hostile or stuck client: one that connects and never
// reads is dropped once its backlog passes FOLLOW_LIMITS.bufferedBytes (its response ends with a
// last line saying so), never buffered for without bound; a follower that reads gets everything;
// beyond FOLLOW_LIMITS.followers, 503.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { serveApi } from "./api";
import { EventLog, FOLLOW_LIMITS, type EventLogOptions } from "./events";
import type { Agent } from "./agent";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const heap = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
};
const MiB = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
const tick = () => new Promise((r) => setTimeout(r, 1));

async function agentApi(t: { after: (fn: () => unknown) => void }, opts: EventLogOptions = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-api-"));
    const socket = path.join(dir, "agent.sock");
    const events = new EventLog("gate", undefined, opts);
    // serveApi uses only the agent's events for /events.
    const server = await serveApi({ events } as unknown as Agent, socket);
    const conns = new Set<net.Socket>();
    server.on("connection", (s: net.Socket) => conns.add(s));
    t.after(async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        fs.rmSync(dir, { recursive: true, force: true });
    });
    return { socket, events, server, conns };
}

/** GET /events?follow=1 whose response is paused from the start: nothing is read until resume(). */
function follower(socket: string, query = "follow=1&limit=1") {
    return new Promise<{ res: http.IncomingMessage; status: number; body: () => Promise<string> }>((resolve, reject) => {
        const req = http.get({ socketPath: socket, path: `/events?${query}` }, (res) => {
            res.pause();
            resolve({
                res, status: res.statusCode!,
                body: () => new Promise((done) => {
                    let text = "";
                    res.setEncoding("utf8");
                    res.on("data", (c) => (text += c));
                    res.on("end", () => done(text));
                    res.on("aborted", () => done(text));
                    res.on("error", () => done(text));
                    res.resume();
                }),
            });
        });
        req.on("error", reject);
    });
}

const waitFor = async (what: string, cond: () => boolean, ms = 5000) => {
    const until = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
        await tick();
    }
};

test("a follower that never reads is dropped once FOLLOW_LIMITS.bufferedBytes wait for it, with a last line saying so; one that reads gets every event", async (t) => {
    const { socket, events, conns } = await agentApi(t, { follow: { graceMs: 60_000 } });
    const bound = 1 << 20; // FOLLOW_LIMITS.bufferedBytes, checked at the end
    events.emit("agent", { event: "start" }); // the one recent event each follower gets first
    const stuck = await follower(socket);
    // A follower that keeps reading.
    const good = await follower(socket);
    // It checks as it reads and keeps nothing, so that the heap measured is the agent's.
    let rest = "";
    let next = 0;
    let outOfOrder = 0;
    good.res.setEncoding("utf8");
    good.res.on("data", (c: string) => {
        const lines = (rest + c).split("\n");
        rest = lines.pop()!;
        for (const l of lines) if (JSON.parse(l).event === "flood" && JSON.parse(l).i !== next++) outOfOrder++;
    });
    good.res.resume();
    await new Promise((r) => setTimeout(r, 100));
    const before = heap();
    const N = 20_000;
    const pad = "x".repeat(1000);
    let peakBuffered = 0;
    let peakHeap = 0;
    for (let i = 0; i < N; i++) {
        events.emit("agent", { event: "flood", i, pad });
        if (i % 50 === 49) {
            for (const c of conns) peakBuffered = Math.max(peakBuffered, c.writableLength);
            if (i % 2000 === 1999) peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed + process.memoryUsage().external - before);
            await tick();
        }
    }
    const retained = heap() - before;
    const flood = N * (pad.length + 60);
    t.diagnostic(`flood ${MiB(flood)} of events; bound ${MiB(bound)} per follower; peak unsent in any connection ${peakBuffered} bytes; heap+external: peak ${MiB(peakHeap)} over the start (garbage included), ${MiB(retained)} retained after the flood (the ring of 2000 recent events is about 2 MiB of them)`);
    assert.ok(peakBuffered <= bound + 64 * 1024, `peak buffered ${peakBuffered} bytes, bound ${bound}`);
    assert.ok(retained < 4 << 20, `${MiB(retained)} still held after the flood`);
    assert.equal(events.followerCount, 1, "the stuck follower is gone, the reading one stays");
    assert.equal(FOLLOW_LIMITS.bufferedBytes, bound);

    // The stuck client reads at last: what it had been sent, then the last line, then the end.
    const lines = (await stuck.body()).trim().split("\n").map((l) => JSON.parse(l)).filter((e) => e.event !== "start");
    const last = lines[lines.length - 1];
    assert.deepEqual([last.type, last.step, last.node], ["error", "follow", "gate"]);
    assert.match(last.message, /follower dropped: more than 1048576 bytes of events waited unread; reconnect/);
    assert.ok(lines.length > 100 && lines.length < 2000, `${lines.length} lines before the drop`);
    assert.deepEqual(lines.slice(0, -1).map((e) => e.i), Array.from({ length: lines.length - 1 }, (_, k) => k), "in order, none skipped before the drop");

    await waitFor("the reading follower to catch up", () => next >= N);
    assert.deepEqual([next, outOfOrder], [N, 0], "the reading follower got every event, in order");
    good.res.destroy();
});

test("a dropped follower that does not take its last line within graceMs is cut; beyond FOLLOW_LIMITS.followers, 503 with Retry-After", async (t) => {
    const { socket, events, conns } = await agentApi(t, { follow: { followers: 3, bufferedBytes: 64 * 1024, graceMs: 200 } });
    events.emit("agent", { event: "start" });
    const stuck = await follower(socket);
    await waitFor("the follower", () => events.followerCount === 1);
    for (let i = 0; events.followerCount > 0; i++) {
        events.emit("agent", { event: "flood", i, pad: "y".repeat(1000) });
        if (i % 50 === 49) await tick();
        assert.ok(i < 10_000, "never dropped");
    }
    await waitFor("its connection to be cut", () => [...conns].every((c) => c.destroyed), 3000);
    stuck.res.destroy();

    const held = [await follower(socket), await follower(socket), await follower(socket)];
    await waitFor("three followers", () => events.followerCount === 3);
    const refused = await new Promise<http.IncomingMessage>((resolve) => http.get({ socketPath: socket, path: "/events?follow=1" }, resolve));
    assert.equal(refused.statusCode, 503);
    assert.equal(refused.headers["retry-after"], "5");
    refused.resume();
    // Recent events without following are not limited.
    const recent = await follower(socket, "limit=5");
    assert.equal(recent.status, 200);
    assert.equal((await recent.body()).trim().split("\n").length, 5);
    for (const h of held) h.res.destroy();
    await waitFor("followers to leave when their clients go", () => events.followerCount === 0);
});
