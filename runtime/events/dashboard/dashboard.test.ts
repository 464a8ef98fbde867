// The live dashboard end to end: the server on loopback with the lab site, its security
// checks, its WebSocket protocol (snapshot, batched deltas, a snapshot for a client that fell
// behind), and the page in headless Debian Chromium updating within a second of an event.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { WebSocket } from "ws";
import { loadSiteFromStackFile } from "../../../model/site/load";
import { nowUs, type EventType, type NublarEvent, type PayloadTypes } from "../../../model/events/schema";
import { DIAGNOSTICS, type BfdStateSymbol, type RouteEvent } from "../../../model/vocabulary";
import { derivedAlertKey, type DashboardView } from "./model";
import { startDashboard, type Dashboard } from "./server";
import { projectPath } from "../../../model/project";

const CHROMIUM = process.env.NUBLAR_CHROMIUM ?? "/usr/bin/chromium";
const OUTPUT = process.env.NUBLAR_TEST_OUTPUT ? path.join(process.env.NUBLAR_TEST_OUTPUT, "dashboard") : path.join(os.tmpdir(), "test-output", "dashboard");
// The project's own site parser (model/site/load.ts: yaml + the zod schema), on the lab's stack file.
const site = loadSiteFromStackFile(projectPath("stacks", "Pulumi.lab.yaml"));

let n = 0;
function ev<T extends EventType>(type: T, payload: PayloadTypes[T]): NublarEvent {
    const node = (payload as { node?: string }).node;
    return { id: `dash-${process.pid}-${++n}`, site: "lab", source: node ? `agent/${node}` : "test", time: nowUs(), type, payload } as NublarEvent;
}
const bfd = (node: string, session: string, from: BfdStateSymbol, to: BfdStateSymbol) =>
    ev("bfd-change", { node, session, peer: "2001:db8::1", from, to, diagnostic: to === "Down" ? DIAGNOSTICS.controlDetectionTimeExpired : DIAGNOSTICS.noDiagnostic, remoteState: to === "Down" ? null : to, seq: n });

async function started(t: { after: (fn: () => unknown) => void }, opts: Partial<Parameters<typeof startDashboard>[0]> = {}): Promise<Dashboard> {
    const d = await startDashboard({ site, ...opts });
    t.after(() => d.close());
    return d;
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
        http.get(url, { headers }, (res) => {
            let body = "";
            res.setEncoding("utf8").on("data", (c) => (body += c)).on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        }).on("error", reject);
    });
}

/** Opens a WebSocket and collects its messages; resolves once open (or rejects with the HTTP status it was refused with). */
function connect(d: Dashboard, origin: string | null = d.url.replace(/\/$/, "")): Promise<{ ws: WebSocket; messages: any[]; next: (pred: (m: any) => boolean, ms?: number) => Promise<any> }> {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(`${d.url.replace(/^http/, "ws")}ws`, origin ? { origin } : {});
        const messages: any[] = [];
        const waiters: { pred: (m: any) => boolean; resolve: (m: any) => void }[] = [];
        ws.on("message", (data) => {
            const m = JSON.parse(String(data));
            messages.push(m);
            for (const w of [...waiters]) if (w.pred(m)) waiters.splice(waiters.indexOf(w), 1), w.resolve(m);
        });
        ws.on("unexpected-response", (_req, res) => reject(Object.assign(new Error(`refused: ${res.statusCode}`), { status: res.statusCode })));
        ws.on("error", reject);
        ws.on("open", () => resolve({
            ws, messages,
            next: (pred, ms = 2000) => new Promise((res, rej) => {
                const found = messages.find(pred);
                if (found) return res(found);
                const timer = setTimeout(() => rej(new Error(`no matching message in ${ms} ms (got ${messages.length})`)), ms);
                waiters.push({ pred, resolve: (m) => (clearTimeout(timer), res(m)) });
            }),
        }));
    });
}

test("refuses to listen on anything but loopback, with a clear error", async () => {
    for (const host of ["::", "0.0.0.0", "2001:db8::1", "192.0.2.1", "example.com"]) {
        await assert.rejects(startDashboard({ site, host }), (err: Error) => {
            assert.match(err.message, new RegExp(`refusing to listen on '${host.replace(/\./g, "\\.")}'.*loopback only`));
            assert.match(err.message, /ssh -L/);
            return true;
        });
    }
});

test("serves the page, its modules and the snapshot under a strict CSP; refuses a foreign Host header", async (t) => {
    const d = await started(t);
    assert.match(d.url, /^http:\/\/\[::1\]:\d+\/$/);
    const page = await get(d.url);
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    const csp = String(page.headers["content-security-policy"]);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]{44}'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.equal(page.headers["x-content-type-options"], "nosniff");
    for (const [url, type] of [["app.js", "text/javascript"], ["style.css", "text/css"], ["vendor/preact.js", "text/javascript"], ["vendor/preact-hooks.js", "text/javascript"], ["vendor/htm.js", "text/javascript"]]) {
        const r = await get(d.url + url);
        assert.equal(r.status, 200, url);
        assert.equal(r.headers["content-type"], `${type}; charset=utf-8`, url);
        assert.ok(r.body.length > 100, url);
    }
    // The vendored modules are the ESM builds: they import each other by the import map's names.
    assert.match((await get(`${d.url}vendor/preact-hooks.js`)).body, /from"preact"/);
    assert.match(page.body, /"preact": "\/vendor\/preact.js"/);
    const view = JSON.parse((await get(`${d.url}api/view`)).body) as DashboardView;
    assert.equal(view.site, "lab");
    assert.equal(Object.keys(view.sessions).length, 18);
    assert.equal((await get(`${d.url}nope`)).status, 404);
    assert.equal((await get(`${d.url}../package.json`)).status, 404);
    // A DNS-rebinding page reaches the port under its own name: refused.
    const port = new URL(d.url).port;
    assert.equal((await get(`${d.url}api/view`, { Host: `evil.example:${port}` })).status, 421);
    assert.equal((await get(`${d.url}api/view`, { Host: `localhost.evil.example:${port}` })).status, 421);
    // Through an SSH tunnel the browser names its own local port: still loopback, still served.
    assert.equal((await get(`${d.url}api/view`, { Host: "localhost:8080" })).status, 200);
});

test("WebSocket: a foreign Origin is refused; the page's own gets the snapshot, then deltas batched within 50 ms", async (t) => {
    const d = await started(t);
    await assert.rejects(connect(d, "http://evil.example"), (e: { status?: number }) => e.status === 403);
    await assert.rejects(connect(d, `http://localhost:${new URL(d.url).port}.evil.example`), (e: { status?: number }) => e.status === 403);
    await assert.rejects(connect(d, null), (e: { status?: number }) => e.status === 403);
    assert.equal(d.clients(), 0);

    const c = await connect(d);
    t.after(() => c.ws.terminate());
    const snap = await c.next((m) => m.type === "snapshot");
    assert.equal(snap.view.counts.Unknown, 18);
    assert.equal(d.clients(), 1);
    // A flap storm: 1,000 events at once reach the browser as one or two messages.
    const before = c.messages.length;
    for (let i = 0; i < 1000; i++) d.publish(bfd("gate", "path/control-room/provider-a", i % 2 ? "Down" : "Up", i % 2 ? "Up" : "Down"));
    const last = await c.next((m) => m.type === "delta" && m.delta.stats?.applied === 1000);
    const deltas = c.messages.slice(before);
    assert.ok(deltas.length <= 2, `${deltas.length} messages for 1,000 events`);
    assert.equal(last.delta.sessions["gate path/control-room/provider-a"].state, "Up");
    assert.equal(last.delta.sessions["gate path/control-room/provider-a"].transitions, 1000);
    assert.equal(deltas.flatMap((m) => m.delta.events ?? []).length, 200, "the stream part is bounded");
    // Spaced events are not held back: each goes out on its own, at most batchMs after the previous.
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) {
        const e = bfd("gate", "gw/provider-b", "Up", "Down");
        d.publish(e);
        await c.next((m) => m.type === "delta" && m.delta.events?.some((x: { id: string }) => x.id === e.id));
    }
    assert.ok(performance.now() - t0 < 500);
});

test("a client that stops reading is sent a fresh snapshot when it drains, not an unbounded queue", async (t) => {
    const d = await started(t, { batchMs: 2, maxBufferedBytes: 64 * 1024 });
    const c = await connect(d);
    t.after(() => c.ws.terminate());
    await c.next((m) => m.type === "snapshot");
    // Stop reading: the kernel's buffers fill, then the server's.
    (c.ws as unknown as { _socket: import("node:net").Socket })._socket.pause();
    const deadline = Date.now() + 20_000;
    let i = 0;
    while (d.stats().lagging === 0) {
        assert.ok(Date.now() < deadline, `the client never counted as lagging (${JSON.stringify(d.stats())})`);
        for (let k = 0; k < 200; k++) d.publish(ev("alert", { dedupKey: `k${i++ % 500}`, action: "trigger", severity: "warning", class: "flap-storm", summary: "s".repeat(500), node: "gate", session: null, details: "d".repeat(1500) }));
        await new Promise((r) => setTimeout(r, 3));
    }
    const sentWhileLagging = d.stats().deltas;
    for (let k = 0; k < 50; k++) {
        d.publish(ev("alert", { dedupKey: `late${k}`, action: "trigger", severity: "info", class: "x", summary: "", node: "gate", session: null, details: "" }));
        await new Promise((r) => setTimeout(r, 3));
    }
    assert.equal(d.stats().deltas, sentWhileLagging, "no deltas are queued for a lagging client");
    const snapshots = d.stats().snapshots;
    (c.ws as unknown as { _socket: import("node:net").Socket })._socket.resume();
    const fresh = await c.next((m) => m.type === "snapshot" && m.view.alerts.late49, 10_000);
    assert.equal(d.stats().snapshots, snapshots + 1);
    assert.deepEqual(fresh.view, JSON.parse(JSON.stringify(d.view())));
    assert.equal(d.stats().lagging, 0);
});

// Page-side conditions. They run in the page, so they must be self-contained (and this file is
// compiled without the DOM's types; the page's CSP forbids the string form, which is eval).
type PageDoc = {
    querySelector(s: string): { textContent: string | null } | null;
    querySelectorAll(s: string): ArrayLike<{ getAttribute(n: string): string | null }>;
};
const countsAre = (counts: Record<string, number>) => (page: Page) =>
    page.waitForFunction((want) => Object.entries(want).every(([state, n]) =>
        (globalThis as unknown as { document: PageDoc }).document.querySelector(`[data-count="${state}"] b`)?.textContent === String(n)), counts, { timeout: 2000 });
const allInState = (page: Page, selector: string, state: string) =>
    page.waitForFunction(([sel, st]) => {
        const els = Array.from((globalThis as unknown as { document: PageDoc }).document.querySelectorAll(sel));
        return els.length > 0 && els.every((el) => el.getAttribute("data-state") === st);
    }, [selector, state] as const, { timeout: 1000, polling: "raf" });

function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

test("the page in headless Chromium: live topology, a Down session within 1 s, the stream and the alerts; nothing loaded from elsewhere", async (t) => {
    if (!fs.existsSync(CHROMIUM)) {
        t.skip(`no Chromium at ${CHROMIUM}: install Debian's chromium package (npm run setup), or point NUBLAR_CHROMIUM at one`);
        return;
    }
    const d = await started(t);
    const origin = d.url.replace(/\/$/, "");
    let browser: Browser | undefined;
    t.after(() => browser?.close());
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const urls: string[] = [];
    const problems: string[] = [];
    page.on("request", (r) => urls.push(r.url()));
    page.on("websocket", (w) => urls.push(w.url()));
    page.on("console", (m) => m.type() === "error" && problems.push(`${m.text()} ${m.location().url}`));
    page.on("pageerror", (e) => problems.push(e.message));

    await page.goto(d.url);
    await page.waitForSelector('[data-connection="live"]', { timeout: 5000 });
    assert.equal(d.clients(), 1);
    assert.equal(await page.locator("h1").innerText(), "lab");
    assert.equal(await page.locator('[data-session][data-state="Unknown"]').count(), 18 + 6, "18 chips and 6 uplink lines, all Unknown");

    // Every session Up.
    const v = d.view();
    for (const name of v.nodeOrder) for (const id of [...v.nodes[name].gateways, ...v.nodes[name].paths]) d.publish(bfd(name, id, "Down", "Up"));
    await countsAre({ Up: 18 })(page);
    assert.equal(await page.locator('[data-session][data-state="Up"]').count(), 24);

    /** Publishes e and measures how long until every element of that session shows `state`. */
    const timed = async (e: NublarEvent & { type: "bfd-change" }) => {
        const sel = `[data-node="${e.payload.node}"][data-session="${e.payload.session}"]`;
        const t0 = performance.now();
        d.publish(e);
        await allInState(page, sel, e.payload.to);
        return performance.now() - t0;
    };

    // One gateway session Down: shown within a second, in the stream, and as an alert.
    const down = bfd("gate", "gw/provider-a", "Up", "Down") as NublarEvent & { type: "bfd-change" };
    const first = await timed(down);
    assert.ok(first < 1000, `Down shown after ${first.toFixed(1)} ms`);
    assert.equal(await page.locator('[data-node="gate"][data-session="gw/provider-a"]').count(), 2, "its uplink line and its chip");
    const row = page.locator(`[data-event-id="${down.id}"]`);
    const rowText = await row.innerText();
    assert.ok(rowText.includes(`gw/provider-a Up → Down (${DIAGNOSTICS.controlDetectionTimeExpired})`), rowText);
    assert.equal(await page.locator("[data-event-id]").first().getAttribute("data-event-id"), down.id, "newest first");
    const alert = page.locator(`[data-alert="${derivedAlertKey("gate", "gw/provider-a")}"]`);
    await alert.waitFor({ timeout: 1000 });
    assert.match(await alert.innerText(), /error[\s\S]*gate: BFD session gw\/provider-a is Down/i);
    assert.equal(await page.locator('[data-count="Down"] b').innerText(), "1");

    // A few more flaps, for the latency figure; each after a pause of more than the 50 ms batch
    // window, so that it measures one event's way to the screen, not the batching.
    const latencies = [first];
    for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 80));
        const s = "path/visitor-center/provider-b";
        latencies.push(await timed(bfd("gate", s, i % 2 ? "Down" : "Up", i % 2 ? "Up" : "Down") as NublarEvent & { type: "bfd-change" }));
    }
    assert.ok(latencies.every((l) => l < 1000));
    console.log(`page update latency, publish to DOM (ms): ${latencies.map((l) => l.toFixed(1)).join(", ")}; median ${median(latencies).toFixed(1)}`);

    // The bus's own alert, routes, ingress and path latency fill the rest of the page.
    d.publish(ev("alert", { dedupKey: "session-down/gate/gw/provider-a", action: "trigger", severity: "critical", class: "session-down", summary: "gate lost its uplink to provider-a", node: "gate", session: "gw/provider-a", details: "" }));
    d.publish(ev("alert", { dedupKey: "flap/visitor-center", action: "trigger", severity: "warning", class: "flap-storm", summary: "path/gate/provider-b flapped 6 times in 60 s", node: "visitor-center", session: "path/gate/provider-b", details: "" }));
    for (const [node, event, route] of [["gate", "route-added", "default/provider-a"], ["gate", "route-added", "default/provider-b"], ["gate", "route-removed", "default/provider-a"], ["gate", "route-removed", "default-from/provider-a"], ["visitor-center", "route-added", "loopbacks/gate/provider-a"]] satisfies [string, RouteEvent, string][]) {
        d.publish(ev("route-change", { node, event, route, prefix: route.startsWith("default") ? "::/0" : null, via: "fe80::1", metric: 100, reason: null, seq: n }));
    }
    const members = d.view().nodes.gate.ingress[0].configured;
    d.publish(ev("ingress-change", { node: "gate", upstream: "visitor-web", event: "members", members: [members[1].address], added: [], removed: [members[0].address], seq: n }));
    for (const [node, session, rtt] of [["gate", "path/visitor-center/provider-a", 0.31], ["gate", "path/control-room/provider-a", 0.27], ["visitor-center", "path/gate/provider-a", 0.33]] as const) {
        d.publish(ev("path-latency", { node, session, peer: "x", rttMs: rtt, maxGapMs: 12, detectionMs: 90, windowMs: 1000 }));
    }
    await page.locator('[data-alert="session-down/gate/gw/provider-a"]').waitFor({ timeout: 1000 });
    assert.equal(await alert.count(), 0, "the bus's session-down alert replaces the dashboard's own");
    await page.waitForSelector('[data-upstream="visitor-web"] [data-member="visitor-center"][data-live="out"]', { timeout: 1000 });
    assert.equal(await page.locator('[data-node-card="gate"] [data-route-count="withdrawn"]').innerText(), "2");

    fs.mkdirSync(OUTPUT, { recursive: true });
    const shot = path.join(OUTPUT, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    assert.deepEqual(problems, [], "no errors, no CSP violations");

    // Auto-reconnect: the server goes away, the page says so, and catches up when it is back.
    const port = Number(new URL(d.url).port);
    await d.close();
    await page.waitForSelector('[data-connection="offline"]', { timeout: 2000 });
    assert.match(await page.locator("[data-connection]").innerText(), /Disconnected, retrying/);
    const again = await started(t, { port });
    await page.waitForSelector('[data-connection="live"]', { timeout: 10_000 });
    await countsAre({ Up: 0, Other: 18 })(page);
    assert.equal(again.clients(), 1);

    // Nothing but the dashboard's own origin was ever asked for, and the CSP blocked nothing.
    assert.ok(urls.length >= 7, urls.join(" "));
    const foreign = urls.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith(`${origin.replace(/^http/, "ws")}/`));
    assert.deepEqual(foreign, []);
    // While the server was away, Chromium logs each failed reconnection attempt; nothing else.
    assert.deepEqual(problems.filter((p) => !/^WebSocket connection to '[^']+' failed/.test(p)), []);
});
