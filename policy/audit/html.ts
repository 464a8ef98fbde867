// report.html: the audit report for a person in a browser. One self-contained file (no scripts,
// no external assets): the summary first, then every finding by rule and by resource, the SLA
// estimate with its inputs, every rule of the pack, and how to verify the signatures.
import { percent } from "../availability";
import type { Finding, UnsealedReport } from "./report";

const esc = (s: unknown) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const STYLE = `
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2327; background: #f6f7f7; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #dcdcde; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
section { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; padding: 16px 20px; margin: 16px 0; }
#summary { border-width: 2px; }
.verdict { display: inline-block; font-weight: 700; font-size: 20px; padding: 4px 14px; border-radius: 4px; color: #fff; }
.pass { background: #00813c; } .fail { background: #b32d2e; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.card { border: 1px solid #dcdcde; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; } th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f0f0f1; font-weight: 600; }
.lvl { font-size: 12px; font-weight: 700; padding: 1px 6px; border-radius: 3px; color: #fff; white-space: nowrap; }
.mandatory { background: #b32d2e; } .advisory, .warning { background: #996800; } .remediate { background: #2271b1; } .ok { background: #00813c; }
code, .mono { font-family: ui-monospace, monospace; font-size: 13px; word-break: break-all; }
.muted { color: #646970; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; } dt { color: #646970; }
`;

/** A coloured label: `cls` picks the colour (an enforcement level, or `ok`), `text` what it says. */
function badge(cls: string, text = cls): string {
    return `<span class="lvl ${esc(cls)}">${esc(text)}</span>`;
}

function resourceLabel(f: Finding): string {
    return f.resource ? `${esc(f.resource.type)} <b>${esc(f.resource.name)}</b>` : "<span class=\"muted\">the stack</span>";
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
    const m = new Map<string, T[]>();
    for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
    return m;
}

export function renderReportHtml(r: UnsealedReport, contentSha256: string): string {
    const s = r.summary;
    const sla = r.sla;
    const byRule = groupBy(r.findings, (f) => f.policy);
    const byResource = groupBy(r.findings, (f) => f.resourceUrn ?? "(stack)");
    const policy = new Map(r.policies.map((p) => [p.name, p]));
    const out: string[] = [];
    out.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`);
    out.push(`<title>nublar audit: ${esc(r.stack)}: ${r.verdict === "pass" ? "PASS" : "FAIL"}</title><style>${STYLE}</style></head><body><main>`);

    // ---- summary ----
    out.push(`<section id="summary"><h1>Audit of stack <code>${esc(r.stack)}</code></h1>`);
    out.push(`<p><span class="verdict ${r.verdict}" id="verdict">${r.verdict === "pass" ? "PASS" : "FAIL"}</span> `);
    out.push(r.verdict === "pass" ? "No mandatory rule is broken: the pack lets this stack be deployed." : `${s.mandatory} mandatory finding(s): the pack blocks <code>pulumi preview</code> and <code>pulumi up</code> of this stack.`);
    out.push(`</p><div class="cards">`);
    out.push(`<div class="card"><b>${s.mandatory}</b>mandatory</div><div class="card"><b>${s.advisory}</b>advisory</div>`);
    out.push(`<div class="card"><b>${s.policies - byRule.size}/${s.policies}</b>rules without findings</div>`);
    out.push(`<div class="card"><b>${s.resourcesWithFindings}/${s.resourcesPreviewed}</b>resources with findings</div>`);
    if (sla) out.push(`<div class="card" id="sla-headline"><b>${esc(percent(sla.availability))}</b>estimated availability (target ${esc(percent(sla.target))}) ${sla.meets ? badge("ok", "meets") : badge("mandatory", "misses")}</div>`);
    out.push(`</div><dl>`);
    if (r.site) out.push(`<dt>Site</dt><dd>${esc(r.site.name)} (${esc(r.site.kind)}), failover budget ${r.site.failoverBudgetMs} ms</dd>`);
    out.push(`<dt>Program</dt><dd><code>${esc(r.program.commit ?? "not a git checkout")}</code>${r.program.dirty ? " <b>with uncommitted changes</b>" : ""}</dd>`);
    out.push(`<dt>Policy pack</dt><dd>${esc(r.pack.name)} ${esc(r.pack.version)}</dd><dt>Engine</dt><dd>pulumi ${esc(r.engine.pulumi)}</dd>`);
    out.push(`<dt>Generated</dt><dd>${esc(r.generatedAt)}</dd><dt>Report id</dt><dd><code>${esc(r.id)}</code></dd>`);
    if (!r.preview.ok && r.preview.error) out.push(`<dt>Preview</dt><dd>${esc(r.preview.error)}</dd>`);
    out.push(`</dl></section>`);

    // ---- findings by rule ----
    out.push(`<section id="by-rule"><h2>Findings by rule</h2>`);
    if (!r.findings.length) out.push(`<p>No findings.</p>`);
    for (const [name, fs] of byRule) {
        const p = policy.get(name);
        out.push(`<h3>${badge(fs[0].enforcementLevel)} ${esc(name)} <span class="muted">${esc(p?.severity ?? "")}</span></h3>`);
        if (p) out.push(`<p>${esc(p.description)}</p>`);
        out.push(`<table><tr><th>Resource</th><th>Finding</th></tr>`);
        for (const f of fs) out.push(`<tr><td>${resourceLabel(f)}</td><td>${esc(f.message)}</td></tr>`);
        out.push(`</table>`);
        if (p?.remediationSteps) out.push(`<p><b>Remediation:</b> ${esc(p.remediationSteps)}</p>`);
    }
    out.push(`</section>`);

    // ---- findings by resource ----
    out.push(`<section id="by-resource"><h2>Findings by resource</h2>`);
    if (!r.findings.length) out.push(`<p>No findings.</p>`);
    for (const [urn, fs] of byResource) {
        out.push(`<h3>${resourceLabel(fs[0])}</h3><p class="mono muted">${esc(urn)}</p><table><tr><th>Rule</th><th>Level</th><th>Finding</th></tr>`);
        for (const f of fs) out.push(`<tr><td>${esc(f.policy)}</td><td>${badge(f.enforcementLevel)}</td><td>${esc(f.message)}</td></tr>`);
        out.push(`</table>`);
    }
    out.push(`</section>`);

    // ---- SLA estimate ----
    out.push(`<section id="sla"><h2>SLA estimate</h2>`);
    if (!sla) out.push(`<p>No site component was previewed, so there is no estimate.</p>`);
    else {
        out.push(`<p>Estimated availability <b>${esc(percent(sla.availability))}</b> (${sla.downtimeSecondsPerYear.toFixed(1)} s of downtime a year) against a target of <b>${esc(percent(sla.target))}</b> (${sla.allowedSecondsPerYear.toFixed(1)} s a year): <b>${sla.meets ? "meets it" : "misses it"}</b>. Weakest group: <b>${esc(sla.weakest)}</b>. The model and its assumptions: policy/README.md, "The availability model".</p>`);
        out.push(`<table><tr><th>Group</th><th>Members (failure domain)</th><th>Domains</th><th>All down at once</th><th>Failover gaps</th><th>Unavailability</th></tr>`);
        for (const g of sla.groups) {
            out.push(`<tr><td><b>${esc(g.name)}</b><br><span class="muted">${esc(g.description)}</span></td><td>${g.members.map((m) => `${esc(m.name)}${m.failureDomain ? ` (${esc(m.failureDomain)})` : ""}`).join(", ") || "<b>none</b>"}</td><td>${g.failureDomains}</td><td>${g.allDown.toExponential(2)}</td><td>${g.failoverGap.toExponential(2)}</td><td><b>${g.unavailability.toExponential(2)}</b></td></tr>`);
        }
        out.push(`</table><h3>Inputs</h3><table><tr><th>Input</th><th>Value</th></tr>`);
        const rates = sla.inputs.failureRates;
        for (const [k, v] of Object.entries(rates)) out.push(`<tr><td>${esc(k)} failures</td><td>${v.perYear} a year, ${v.repairHours} h to repair</td></tr>`);
        const worst = sla.inputs.detection.worst;
        out.push(`<tr><td>BFD detection (slowest of ${sla.inputs.detection.sessions} sessions, negotiated)</td><td>${sla.inputs.detectionMs} ms${worst ? ` (${esc(worst.node)} ${esc(worst.session)})` : ""}</td></tr>`);
        out.push(`<tr><td>Agent reaction after detection</td><td>${sla.inputs.reactionMs} ms</td></tr><tr><td>Failover time</td><td>${sla.inputs.failoverMs} ms</td></tr>`);
        out.push(`<tr><td>Ledger writes (not counted: agents buffer events)</td><td>${sla.ledgerWrites.instances} instances, ${sla.ledgerWrites.needUp} needed up; unavailable ${sla.ledgerWrites.unavailability.toExponential(2)}</td></tr></table>`);
    }
    out.push(`</section>`);

    // ---- every rule ----
    out.push(`<section id="rules"><h2>Every rule of ${esc(r.pack.name)} ${esc(r.pack.version)}</h2><table><tr><th>Rule</th><th>Level</th><th>Severity</th><th>Findings</th><th>What it checks</th></tr>`);
    for (const p of r.policies) out.push(`<tr><td>${esc(p.name)}</td><td>${badge(p.enforcementLevel)}</td><td>${esc(p.severity ?? "")}</td><td>${p.findings ? `<b>${p.findings}</b>` : badge("ok", "none")}</td><td>${esc(p.description)}</td></tr>`);
    out.push(`</table></section>`);

    // ---- how to trust it ----
    out.push(`<section id="integrity"><h2>Verifying this report</h2><p>report.json and this page are signed with ed25519 (report.json.sig, report.html.sig). report.json records this page's SHA-256, and its own content hash is <code>${esc(contentSha256)}</code>. Check both with:</p>`);
    out.push(`<p><code>nublar audit verify report.json --public-key &lt;the auditor's copy of the signing key&gt;</code></p></section>`);
    out.push(`</main></body></html>\n`);
    return out.join("\n");
}
