// The nublar dashboard: preact + htm, plain ES modules, no build. The server (../server.ts)
// sends a snapshot of the view (../model.ts) over /ws, then deltas; this page mirrors them.
// Every session element carries data-node, data-session and data-state, and shows its state
// as text as well as colour.
import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

const html = htm.bind(h);
const STREAM_LIMIT = 200;

/** Mirrors applyDelta in ../model.ts. */
function applyDelta(view, d) {
    const alerts = { ...view.alerts };
    for (const [k, a] of Object.entries(d.alerts ?? {})) {
        if (a) alerts[k] = a;
        else delete alerts[k];
    }
    return {
        ...view,
        sessions: d.sessions ? { ...view.sessions, ...d.sessions } : view.sessions,
        nodes: d.nodes ? { ...view.nodes, ...d.nodes } : view.nodes,
        alerts,
        events: d.events ? [...view.events, ...d.events].slice(-STREAM_LIMIT) : view.events,
        counts: d.counts ?? view.counts,
        stats: d.stats ?? view.stats,
    };
}

/** The view, kept live over a WebSocket that reconnects with backoff (0.5 s doubling to 5 s). */
function useDashboard() {
    const [view, setView] = useState(null);
    const [conn, setConn] = useState({ state: "connecting" });
    useEffect(() => {
        let ws;
        let timer;
        let attempt = 0;
        let stopped = false;
        const connect = () => {
            setConn({ state: "connecting" });
            ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
            ws.onopen = () => {
                attempt = 0;
                setConn({ state: "live" });
            };
            ws.onmessage = (m) => {
                const msg = JSON.parse(m.data);
                if (msg.type === "snapshot") setView(msg.view);
                else if (msg.type === "delta") setView((v) => (v ? applyDelta(v, msg.delta) : v));
            };
            ws.onclose = () => {
                if (stopped) return;
                const delay = Math.min(5000, 500 * 2 ** attempt++);
                setConn({ state: "offline", retryAt: Date.now() + delay });
                timer = setTimeout(connect, delay);
            };
        };
        connect();
        return () => {
            stopped = true;
            clearTimeout(timer);
            ws?.close();
        };
    }, []);
    return [view, conn];
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
/** µs since the epoch, as local wall-clock time with milliseconds. */
function clock(us) {
    const d = new Date(us / 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
const iso = (us) => new Date(us / 1000).toISOString();
const stateClass = (s) => `st-${s}`;
const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1));

function Connection({ conn }) {
    const [, tick] = useState(0);
    useEffect(() => {
        if (conn.state !== "offline") return undefined;
        const t = setInterval(() => tick((n) => n + 1), 500);
        return () => clearInterval(t);
    }, [conn]);
    const text = conn.state === "live" ? "Live"
        : conn.state === "connecting" ? "Connecting…"
        : `Disconnected, retrying in ${Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000))} s`;
    return html`<span class="conn conn-${conn.state}" data-connection=${conn.state} role="status"><span class="dot" aria-hidden="true"></span>${text}</span>`;
}

function Header({ view, conn }) {
    const c = view?.counts ?? {};
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    const count = (label, n, cls, key) => html`<span class="count ${cls}" data-count=${key}><b>${n}</b> ${label}</span>`;
    return html`<header class="top">
        <div class="title">
            <span class="brand">nublar</span>
            <h1>${view ? view.site : "…"}</h1>
            ${view && html`<span class="kind">${view.kind}</span>`}
        </div>
        ${view && html`<div class="counts" aria-label="BFD sessions">
            <span class="counts-label">${total} BFD sessions</span>
            ${count("Up", c.Up, "st-Up", "Up")}
            ${count("Down", c.Down, "st-Down", "Down")}
            ${c.Init > 0 && count("Init", c.Init, "st-Init", "Init")}
            ${c.AdminDown + c.Unknown > 0 && count("unknown or admin down", c.AdminDown + c.Unknown, "st-Unknown", "Other")}
        </div>`}
        <${Connection} conn=${conn} />
    </header>`;
}

// Topology geometry, in SVG units.
const NW = 176, NH = 66, GAP = 16, PAD = 14, DGAP = 28, PW = 184, PH = 48, PY = 8, DY = 150, NY = DY + 34;

function layout(view) {
    const domains = [];
    let x = 0;
    for (const d of view.failureDomains) {
        const inner = d.nodes.length * NW + (d.nodes.length - 1) * GAP;
        // Wide enough for its label too (about 7 units a character at 11 px, upper case).
        const w = Math.max(inner, `failure domain ${d.name}`.length * 7.2) + 2 * PAD;
        const x0 = x + (w - inner) / 2;
        domains.push({ ...d, x, w, nodes: d.nodes.map((n, i) => ({ name: n, x: x0 + i * (NW + GAP), y: NY })) });
        x += w + DGAP;
    }
    const width = Math.max(x - DGAP, view.providers.length * (PW + 40));
    const shift = (width - (x - DGAP)) / 2;
    for (const d of domains) {
        d.x += shift;
        for (const n of d.nodes) n.x += shift;
    }
    const providers = view.providers.map((p, i) => ({ ...p, x: ((i + 0.5) * width) / view.providers.length - PW / 2, y: PY }));
    return { width, height: NY + NH + 34, domains, providers, nodeAt: new Map(domains.flatMap((d) => d.nodes.map((n) => [n.name, n]))) };
}

function nodeHealth(view, node) {
    const states = [...node.gateways, ...node.paths].map((id) => view.sessions[`${node.name} ${id}`]?.state ?? "Unknown");
    const up = states.filter((s) => s === "Up").length;
    const worst = states.includes("Down") ? "Down" : states.includes("Init") ? "Init" : up === states.length && up > 0 ? "Up" : "Unknown";
    return { up, total: states.length, worst };
}

function Topology({ view }) {
    const g = layout(view);
    const labels = view.nodeOrder.length <= 12;
    // Uplinks: one line per node x provider, from the provider's box to the node's, in the
    // colour (and dash, and label) of that uplink's gateway session.
    const byProvider = new Map(view.providers.map((p) => [p.name, []]));
    for (const name of view.nodeOrder) {
        for (const id of view.nodes[name].gateways) {
            const s = view.sessions[`${name} ${id}`];
            if (s && byProvider.has(s.provider)) byProvider.get(s.provider).push(s);
        }
    }
    const lines = [];
    for (const [pi, p] of g.providers.entries()) {
        const list = byProvider.get(p.name);
        const step = Math.min(10, (PW - 24) / Math.max(1, list.length));
        list.forEach((s, j) => {
            const n = g.nodeAt.get(s.node);
            if (!n) return;
            const slots = view.providers.length;
            const x1 = p.x + PW / 2 + (j - (list.length - 1) / 2) * step, y1 = p.y + PH;
            const x2 = n.x + (NW * (pi + 1)) / (slots + 1), y2 = n.y;
            // The state label sits just above the node's box, where this node's lines are apart.
            const ly = y2 - 14, lx = x1 + ((x2 - x1) * (ly - y1)) / (y2 - y1);
            lines.push({ s, x1, y1, x2, y2, lx, ly });
        });
    }
    return html`<svg class="topology" viewBox="0 0 ${g.width} ${g.height}" role="img" aria-labelledby="topo-title">
        <title id="topo-title">Topology of ${view.site}: providers, nodes by failure domain, and each uplink's gateway session state</title>
        ${g.domains.map((d) => html`<g class="domain" data-domain=${d.name}>
            <rect x=${d.x} y=${DY} width=${d.w} height=${g.height - DY - 2} rx="10" />
            <text x=${d.x + d.w / 2} y=${g.height - 12} text-anchor="middle" class="domain-label">failure domain ${d.name}</text>
        </g>`)}
        ${lines.map((l) => html`<g class="uplink ${stateClass(l.s.state)}" data-node=${l.s.node} data-session=${l.s.id} data-state=${l.s.state}>
            <title>${l.s.node} uplink to ${l.s.provider} (${l.s.id}): ${l.s.state}</title>
            <line x1=${l.x1} y1=${l.y1} x2=${l.x2} y2=${l.y2} />
            ${labels && html`<text class="link-label" x=${l.lx} y=${l.ly + 4} text-anchor="middle">${l.s.state}</text>`}
        </g>`)}
        ${g.providers.map((p) => html`<g class="provider" data-provider=${p.name}>
            <rect x=${p.x} y=${p.y} width=${PW} height=${PH} rx="8" />
            <text x=${p.x + PW / 2} y=${p.y + 20} text-anchor="middle" class="name">${p.name}</text>
            <text x=${p.x + PW / 2} y=${p.y + 37} text-anchor="middle" class="sub">${p.prefix}</text>
        </g>`)}
        ${g.domains.flatMap((d) => d.nodes).map((pos) => {
            const n = view.nodes[pos.name];
            const hl = nodeHealth(view, n);
            return html`<g class="node ${stateClass(hl.worst)}" data-node-box=${n.name}>
                <title>${n.name}: ${hl.up} of ${hl.total} sessions Up</title>
                <rect x=${pos.x} y=${pos.y} width=${NW} height=${NH} rx="8" />
                <text x=${pos.x + 12} y=${pos.y + 22} class="name">${n.name}</text>
                <text x=${pos.x + 12} y=${pos.y + 39} class="sub">${n.role}${n.hub ? " · hub" : ""}</text>
                <text x=${pos.x + 12} y=${pos.y + 55} class="sub health">${hl.up}/${hl.total} sessions Up</text>
            </g>`;
        })}
    </svg>`;
}

/** Every session state, in the model's order: the keys of its counts (SESSION_STATES in ../model.ts). */
function Legend({ view }) {
    return html`<ul class="legend" aria-label="Legend">
        ${Object.keys(view.counts).map((s) => html`<li class=${stateClass(s)}><span class="swatch" aria-hidden="true"></span>${s}</li>`)}
    </ul>`;
}

function SessionChip({ s }) {
    const label = s.kind === "gateway" ? s.provider : `${s.peer} · ${s.provider}`;
    const latency = s.rttMs !== null || s.maxGapMs !== null;
    const title = [`${s.id}: ${s.state}`, s.remoteState && `remote ${s.remoteState}`, s.diagnostic && `diagnostic ${s.diagnostic}`,
        s.since && `since ${iso(s.since)}`, `${s.transitions} transitions`,
        latency && `rtt ${ms(s.rttMs)} ms, max gap ${ms(s.maxGapMs)} of ${ms(s.detectionMs)} ms`, !s.planned && "not in the site plan"].filter(Boolean).join("\n");
    return html`<li class="chip ${stateClass(s.state)}" data-node=${s.node} data-session=${s.id} data-state=${s.state} title=${title}>
        <span class="chip-label">${label}</span>
        <span class="chip-state">${s.state}</span>
        ${latency && html`<span class="chip-rtt">${ms(s.rttMs)} ms</span>`}
    </li>`;
}

function NodeCard({ view, node }) {
    const sessions = (ids) => ids.map((id) => view.sessions[`${node.name} ${id}`]).filter(Boolean);
    const r = node.routes;
    return html`<article class="card node-card" data-node-card=${node.name}>
        <header>
            <h3>${node.name}</h3>
            <span class="tag">${node.role}</span>
            ${node.hub && html`<span class="tag">hub</span>`}
            <span class="muted">${node.failureDomain}</span>
        </header>
        <div class="kv"><span class="k">loopback</span><code>${node.loopback}</code></div>
        <h4>Uplinks</h4>
        <ul class="chips">${sessions(node.gateways).map((s) => html`<${SessionChip} key=${s.id} s=${s} />`)}</ul>
        <h4>Paths</h4>
        ${node.paths.length ? html`<ul class="chips">${sessions(node.paths).map((s) => html`<${SessionChip} key=${s.id} s=${s} />`)}</ul>` : html`<p class="muted">none</p>`}
        <h4>Routes</h4>
        <p class="routes" data-routes=${node.name}>
            <span><b data-route-count="installed">${r.installed}</b> installed</span>
            <span><b data-route-count="withdrawn">${r.withdrawn}</b> withdrawn</span>
            <span class="muted">${r.planned} planned · ${r.changes} changes</span>
        </p>
        ${r.recent.length > 0 && html`<ul class="recent">
            ${[...r.recent].reverse().slice(0, 4).map((e) => html`<li class="route-${e.outcome}"
                    title=${[`${e.event} ${e.route}`, e.prefix, e.via && `via ${e.via}`, e.metric !== null && `metric ${e.metric}`, e.reason].filter(Boolean).join("\n")}>
                <time datetime=${iso(e.time)}>${clock(e.time)}</time>
                <span class="outcome">${e.event}</span>
                <span class="route">${e.route}</span>
            </li>`)}
        </ul>`}
        ${node.ingress.length > 0 && html`<h4>Ingress</h4>
            ${node.ingress.map((u) => html`<div class="upstream" data-upstream=${u.upstream}>
                <div class="kv"><span class="k">${u.upstream}${u.port ? `:${u.port}` : ""}</span>
                    <span class="muted" title=${u.event ? `last change: ${u.event} at ${iso(u.time)}` : ""}>${u.members === null ? "no report yet" : `${u.live.length} of ${u.configured.length} live`}</span></div>
                <ul class="chips">
                    ${u.configured.map((m) => {
                        const st = u.live === null ? "Unknown" : u.live.includes(m.node) ? "Up" : "Down";
                        const word = st === "Up" ? "live" : st === "Down" ? "out" : "unknown";
                        return html`<li class="chip ${stateClass(st)}" data-member=${m.node} data-live=${word} title=${m.address}>
                            <span class="chip-label">${m.node}</span><span class="chip-state">${word}</span></li>`;
                    })}
                    ${(u.members ?? []).filter((m) => !u.configured.some((c) => c.node === m || c.address === m)).map((m) => html`<li class="chip st-Up" data-member=${m} data-live="live">
                        <span class="chip-label">${m}</span><span class="chip-state">live</span></li>`)}
                </ul>
            </div>`)}`}
    </article>`;
}

const SEVERITY = { critical: 0, error: 1, warning: 2, info: 3 };

function Alerts({ view }) {
    const list = Object.values(view.alerts).sort((a, b) => SEVERITY[a.severity] - SEVERITY[b.severity] || b.updated - a.updated);
    return html`<section class="card alerts" aria-labelledby="alerts-title">
        <h2 id="alerts-title">Open alerts <span class="badge" data-alert-count=${list.length}>${list.length}</span></h2>
        ${list.length === 0 ? html`<p class="muted empty">No open alerts.</p>` : html`<ul>
            ${list.map((a) => html`<li class="alert sev-${a.severity}" data-alert=${a.dedupKey} data-severity=${a.severity} data-derived=${String(a.derived)}>
                <div class="alert-head">
                    <span class="sev">${a.severity}</span>
                    <span class="alert-class">${a.class}</span>
                    <time datetime=${iso(a.since)} title="since ${iso(a.since)}">${clock(a.since)}</time>
                </div>
                <div class="alert-summary">${a.summary}</div>
                <div class="muted small">${a.node}${a.session ? ` · ${a.session}` : ""}${a.derived ? " · from BFD state" : a.triggers > 1 ? ` · ${a.triggers} triggers` : ""}</div>
            </li>`)}
        </ul>`}
    </section>`;
}

function Stream({ view }) {
    const list = [...view.events].reverse();
    return html`<section class="card stream" aria-labelledby="stream-title">
        <h2 id="stream-title">Event stream <span class="muted small">newest first, last ${STREAM_LIMIT}</span></h2>
        ${list.length === 0 ? html`<p class="muted empty">Waiting for events…</p>` : html`<ol>
            ${list.map((e) => html`<li key=${e.id} class="ev tone-${e.tone}" data-event-id=${e.id} data-event-type=${e.type}>
                <time datetime=${iso(e.time)}>${clock(e.time)}</time>
                <span class="ev-type">${e.type}</span>
                <span class="ev-node">${e.node ?? e.source}</span>
                <span class="ev-text">${e.text}</span>
            </li>`)}
        </ol>`}
    </section>`;
}

function App() {
    const [view, conn] = useDashboard();
    if (!view) {
        return html`<${Header} view=${null} conn=${conn} /><main class="layout"><p class="loading">Waiting for the first snapshot…</p></main>`;
    }
    return html`<${Header} view=${view} conn=${conn} />
        <main class="layout">
            <div class="main-col">
                <section class="card" aria-labelledby="topo-h">
                    <h2 id="topo-h">Topology <span class="muted small">${view.description ?? ""}</span></h2>
                    <${Topology} view=${view} />
                    <${Legend} view=${view} />
                </section>
                <div class="nodes">
                    ${view.nodeOrder.map((n) => html`<${NodeCard} key=${n} view=${view} node=${view.nodes[n]} />`)}
                </div>
            </div>
            <aside class="side-col">
                <${Alerts} view=${view} />
                <${Stream} view=${view} />
            </aside>
        </main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the static "Loading…" text
render(html`<${App} />`, root);
