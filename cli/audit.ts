// `nublar audit`: the signed report auditors read, and its verification.
//   nublar audit --stack X [--out DIR] [--key FILE]   preview with the nublar-sla pack, write the report
//   nublar audit verify report.json [--public-key F]  check signatures and hashes
//   nublar audit schema                               print report.json's JSON Schema
// Exit codes. audit: 0 pass, 1 fail (mandatory findings; the report is written), 2 usage,
// 3 the preview could not run. verify: 0 valid and signed by the pinned key, 1 invalid,
// 2 usage, 4 intact but the signer is not pinned (no --public-key).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Command, Option } from "commander";
import { generateSigningKey, loadPrivateKey } from "../model/ledger/core/checkpoint";
import type { LedgerPlan } from "../model/ledger/plan";
import type { Site } from "../model/site/model";
import { PULUMI_BIN, pulumiProjectDir } from "../runtime/pulumi-engine";

export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
export const EXIT_PREVIEW = 3;
export const EXIT_UNPINNED = 4;

export interface AuditCliContext {
    stateRoot(): string;
    /** The site's ledger plan, when it has an `audit` shard. */
    ledgerFor(site: Site): LedgerPlan | undefined;
    /** Where the site's event bus is (its brokers), when it has one. */
    busFor?(site: Site): string[] | undefined;
}

function fail(code: number, message: string): void {
    process.stderr.write(`nublar audit: ${message}\n`);
    process.exitCode = code;
}

/** The signing key: --key, or this machine's audit key under .nublar/audit, made on first use. */
function signingKey(file: string | undefined, stateRoot: string, say: (l: string) => void): { key: crypto.KeyObject; publicKeyFile?: string } {
    if (file) return { key: loadPrivateKey(fs.readFileSync(file, "utf8"), `audit signing key ${file}`) };
    const dir = path.join(stateRoot, "audit");
    const keyFile = path.join(dir, "signing.key");
    const pubFile = path.join(dir, "signing.pub");
    if (!fs.existsSync(keyFile)) {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        const pair = generateSigningKey();
        fs.writeFileSync(keyFile, pair.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
        fs.writeFileSync(pubFile, pair.publicKey.export({ type: "spki", format: "pem" }), { mode: 0o644 });
        say(`generated this machine's audit signing key: ${keyFile} (give auditors ${pubFile})`);
    }
    return { key: loadPrivateKey(fs.readFileSync(keyFile, "utf8"), `audit signing key ${keyFile}`), publicKeyFile: pubFile };
}

function stamp(d: Date): string {
    return d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

export function registerAuditCommands(program: Command, ctx: AuditCliContext): void {
    const audit = program.command("audit")
        .description("preview a stack with the nublar-sla policy pack and write a signed report (report.json, report.html)")
        .addOption(new Option("-s, --stack <name>", "the stack to audit").default("lab"))
        .addOption(new Option("-o, --out <dir>", "where to write the report (default: .nublar/audit/reports/<stack>-<time>)"))
        .addOption(new Option("--key <file>", "ed25519 signing key, PKCS#8 PEM (default: this machine's, made on first use)"))
        .addOption(new Option("--ledger-socket <path>", "append to the ledger's audit shard through this ingest socket (default: the lab's)"))
        .addOption(new Option("--no-ledger", "do not append the report to the ledger"))
        .addOption(new Option("--json", "print the outcome as JSON"))
        // `audit verify --json`: the subcommand's own --json, not audit's.
        .enablePositionalOptions()
        .action(async (opts: { stack: string; out?: string; key?: string; ledgerSocket?: string; ledger: boolean; json?: boolean }) => {
            const { previewWithPack, buildReport, writeReport, PreviewError, packVersion } = require("../policy/audit/run") as typeof import("../policy/audit/run");
            const { percent } = require("../policy/availability") as typeof import("../policy/availability");
            const say = (line: string) => process.stderr.write(`${line}\n`);
            let key: ReturnType<typeof signingKey>;
            try {
                key = signingKey(opts.key, ctx.stateRoot(), say);
            } catch (err) {
                return fail(EXIT_USAGE, (err as Error).message);
            }
            if (!fs.existsSync(PULUMI_BIN)) return fail(EXIT_PREVIEW, `no Pulumi engine at ${PULUMI_BIN}; run: npm run setup`);
            const projectDir = pulumiProjectDir();
            say(`==> previewing stack '${opts.stack}' with the nublar-sla ${packVersion()} policy pack`);
            const started = Date.now();
            let outcome;
            try {
                outcome = await previewWithPack(opts.stack, projectDir, say);
            } catch (err) {
                if (err instanceof PreviewError) return fail(EXIT_PREVIEW, err.message);
                throw err;
            }
            const now = new Date();
            const unsealed = buildReport(opts.stack, projectDir, outcome, now);
            const dir = path.resolve(opts.out ?? path.join(ctx.stateRoot(), "audit", "reports", `${opts.stack}-${stamp(now)}`));
            let written;
            try {
                written = writeReport(unsealed, dir, key.key);
            } catch (err) {
                return fail(EXIT_USAGE, `cannot write the report to ${dir}: ${(err as Error).message}`);
            }
            const r = written.report;
            say(`==> previewed ${r.summary.resourcesPreviewed} resources in ${((Date.now() - started) / 1000).toFixed(1)} s: ${r.summary.mandatory} mandatory, ${r.summary.advisory} advisory finding(s)`);

            // The ledger: one entry per finished report in the `audit` shard, keyed by the report's id.
            let ledger: { appended: boolean; shard?: string; seq?: number; reason?: string } = { appended: false, reason: "--no-ledger" };
            if (opts.ledger) ledger = await appendToLedger(ctx, outcome.site, opts.ledgerSocket, r, written.keyId);
            // The bus: an audit-result event for the lake and the dashboards (best effort).
            const bus = await publishAudit(ctx, outcome.site, r);
            const result = {
                verdict: r.verdict, stack: r.stack, report: path.join(dir, "report.json"), html: path.join(dir, "report.html"),
                keyId: written.keyId, publicKeyFile: key.publicKeyFile, summary: r.summary,
                sla: r.sla && { availability: r.sla.availability, target: r.sla.target, meets: r.sla.meets, weakest: r.sla.weakest }, ledger, bus,
            };
            if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
            else {
                const lines = [
                    `${r.verdict === "pass" ? "PASS" : "FAIL"}  stack ${r.stack}: ${r.summary.mandatory} mandatory, ${r.summary.advisory} advisory finding(s) from ${r.summary.policies} rules`,
                    ...r.findings.map((f) => `  [${f.enforcementLevel}] ${f.policy}  ${f.resource ? `${f.resource.type} ${f.resource.name}` : "(stack)"}: ${f.message}`),
                    r.sla ? `SLA   estimated ${percent(r.sla.availability)} against ${percent(r.sla.target)}: ${r.sla.meets ? "meets" : "misses"} (weakest: ${r.sla.weakest})` : "SLA   no site component previewed",
                    `report ${result.report}`,
                    `       ${result.html}`,
                    `signed with key ${written.keyId}${key.publicKeyFile ? ` (public key ${key.publicKeyFile})` : ""}`,
                    ledger.appended ? `ledger ${ledger.shard} #${ledger.seq}` : `ledger not appended: ${ledger.reason}`,
                    bus.published ? "bus    published to nublar.audits" : `bus    not published: ${bus.reason}`,
                ];
                process.stdout.write(`${lines.join("\n")}\n`);
            }
            if (r.verdict === "fail") process.exitCode = EXIT_FAIL;
        });

    audit.command("verify")
        .description("check a report's signatures (report.json.sig, report.html.sig) and content hashes")
        .argument("<report.json>", "the report to check; report.html beside it is checked too")
        .addOption(new Option("--public-key <file>", "the signer's public key (SPKI PEM) as the auditor holds it"))
        .addOption(new Option("--json", "print the result as JSON"))
        .action((file: string, opts: { publicKey?: string; json?: boolean }) => {
            const { verifyReport } = require("../policy/audit/sign") as typeof import("../policy/audit/sign");
            let pem: string | undefined;
            if (opts.publicKey) {
                try {
                    pem = fs.readFileSync(opts.publicKey, "utf8");
                } catch (err) {
                    return fail(EXIT_USAGE, `cannot read --public-key: ${(err as Error).message}`);
                }
            }
            if (!fs.existsSync(file)) return fail(EXIT_USAGE, `no such file: ${file}`);
            let result;
            try {
                result = verifyReport(file, pem);
            } catch (err) {
                return fail(EXIT_USAGE, (err as Error).message);
            }
            if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
            else {
                const head = result.status === "valid" ? `VALID  signed by the pinned key ${result.keyId}`
                    : result.status === "unpinned" ? `INTACT but not proven: consistent with key ${result.keyId}, which the report carries itself; pass --public-key to check who signed`
                        : "INVALID";
                const lines = [head];
                if (result.report) lines.push(`  report ${result.report.id}: stack ${result.report.stack}, ${result.report.generatedAt}, verdict ${result.report.verdict}, ${result.report.pack.name} ${result.report.pack.version}, commit ${result.report.program.commit ?? "unknown"}`);
                for (const c of result.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.file}${c.problem ? `: ${c.problem}` : ""}`);
                process.stdout.write(`${lines.join("\n")}\n`);
            }
            process.exitCode = result.status === "valid" ? 0 : result.status === "unpinned" ? EXIT_UNPINNED : EXIT_FAIL;
        });

    audit.command("schema")
        .description("print the JSON Schema of report.json")
        .action(() => {
            const { reportJsonSchema } = require("../policy/audit/report") as typeof import("../policy/audit/report");
            process.stdout.write(`${JSON.stringify(reportJsonSchema(), null, 2)}\n`);
        });
}

/** Publishes the report's outcome as an `audit-result` event, when the site has an event bus. */
async function publishAudit(ctx: AuditCliContext, site: Site | undefined, r: import("../policy/audit/report").AuditReport): Promise<{ published: boolean; reason?: string }> {
    const brokers = site && ctx.busFor?.(site);
    if (!site || !brokers?.length) return { published: false, reason: site ? `site ${site.name} has no event bus` : "no site component was previewed" };
    const { publishOnce } = require("../runtime/events/kafka") as typeof import("../runtime/events/kafka");
    const time = Date.parse(r.generatedAt) * 1000;
    const res = await publishOnce(brokers, "nublar-audit", [{
        id: `audit-report/${r.id}`, site: site.name, source: "nublar-audit", time, type: "audit-result",
        payload: { stack: r.stack, reportId: r.id, verdict: r.verdict, contentSha256: r.integrity.contentSha256, findings: r.summary.findings, mandatory: r.summary.mandatory, estimatedAvailability: r.sla?.availability ?? null },
    }], 5000);
    return res.ok ? { published: true } : { published: false, reason: `the event bus did not take it (${res.error})` };
}

/** The site as the preview saw it decides where its ledger is (or --ledger-socket does). */
async function appendToLedger(ctx: AuditCliContext, site: Site | undefined, socketOpt: string | undefined, r: import("../policy/audit/report").AuditReport, keyId: string) {
    const shard = "audit";
    const plan = socketOpt || !site ? undefined : ctx.ledgerFor(site);
    if (!socketOpt && !plan) return { appended: false, reason: site ? `site ${site.name} has no '${shard}' ledger shard` : "no site component was previewed" };
    const socket = socketOpt ?? plan?.lab?.socket;
    if (!socket) return { appended: false, reason: `site ${site?.name}'s ledger runs on CloudNativePG; pass --ledger-socket to its ingest service` };
    if (!fs.existsSync(socket)) return { appended: false, reason: `the ledger's ingest socket ${socket} is not there (is the lab up? npm run lab)` };
    const { serviceRequest } = require("../runtime/ledger/service-client") as typeof import("../runtime/ledger/service-client");
    const payload = {
        kind: "audit-report", report: r.id, stack: r.stack, site: r.site?.name ?? null, generatedAt: r.generatedAt, verdict: r.verdict,
        findings: { mandatory: r.summary.mandatory, advisory: r.summary.advisory }, commit: r.program.commit, pack: r.pack,
        contentSha256: r.integrity.contentSha256, htmlSha256: r.integrity.htmlSha256, keyId,
    };
    try {
        const res = await serviceRequest(socket, "POST", `/v1/shards/${shard}/entries`, { entries: [{ source: "nublar-audit", key: `audit-report/${r.id}`, payload, time: r.generatedAt }] });
        if (res.status !== 200) return { appended: false, reason: `the ledger refused it (${res.status}): ${JSON.stringify(res.body.error ?? res.body)}` };
        const [entry] = res.body.results as { seq: number }[];
        return { appended: true, shard, seq: entry.seq };
    } catch (err) {
        return { appended: false, reason: `the ledger is not reachable: ${(err as Error).message}` };
    }
}
