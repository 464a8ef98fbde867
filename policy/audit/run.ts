// `nublar audit`: preview a stack with the nublar-sla pack through the Automation API, collect
// every policy event, and write the signed report (report.json, report.html and their .sig).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import type { Site } from "../../model/site/model";
import { estimateAvailability } from "../availability";
import { PACK_NAME, policies } from "../policies";
import { renderReportHtml } from "./html";
import { contentHash, REPORT_FORMAT, type AuditReport, type Finding, type UnsealedReport } from "./report";
import { signBytes } from "./sign";
import { engineEnv, PROJECT_DIR, PULUMI_BIN } from "../../runtime/pulumi-engine";
import { keyId } from "../../model/ledger/core/checkpoint";
import { sha256Hex } from "../../model/ledger/core/encoding";
import { projectPath } from "../../model/project";

export const POLICY_DIR = projectPath("policy");
const SITE_TYPE = "nublar:site:Site";

/** The preview could not run at all (no such stack, a program or engine error): exit code 3. */
export class PreviewError extends Error {}

export interface PreviewOutcome {
    findings: Finding[];
    site?: Site;
    resources: number;
    changes: Record<string, number>;
    ok: boolean;
    error: string | null;
    pulumiVersion: string;
}

function splitUrn(urn: string): { type: string; name: string } | null {
    const parts = urn.split("::");
    if (parts.length < 4) return null;
    const types = parts[2].split("$");
    return { type: types[types.length - 1], name: parts.slice(3).join("::") };
}

const policyByName = new Map(policies.map((p) => [p.name, p]));

/** A policy event as a finding. The engine prefixes the message with the policy's description. */
export function findingOf(e: { policyName: string; policyPackName: string; policyPackVersion: string; enforcementLevel: string; resourceUrn?: string; message: string }): Finding {
    const p = policyByName.get(e.policyName);
    let message = e.message.trim();
    if (p && message.startsWith(p.description)) message = message.slice(p.description.length).trim();
    const level = e.enforcementLevel === "warning" ? "advisory" : e.enforcementLevel;
    return {
        policy: e.policyName,
        policyPack: e.policyPackName,
        policyPackVersion: e.policyPackVersion,
        enforcementLevel: (["advisory", "mandatory", "remediate"].includes(level) ? level : "advisory") as Finding["enforcementLevel"],
        severity: p?.severity ?? null,
        resourceUrn: e.resourceUrn || null,
        resource: e.resourceUrn ? splitUrn(e.resourceUrn) : null,
        message,
    };
}

/** Preview `stack` of the project in `projectDir` with the pack, through the Automation API. */
export async function previewWithPack(stack: string, projectDir: string, progress: (line: string) => void): Promise<PreviewOutcome> {
    const auto = require("@pulumi/pulumi/automation") as typeof import("@pulumi/pulumi/automation");
    // PulumiCommand wants the folder whose bin/ holds the CLI: this repository's build.
    const pulumiCommand = await auto.PulumiCommand.get({ root: path.dirname(path.dirname(PULUMI_BIN)), skipVersionCheck: true });
    const envVars = engineEnv(stack);
    let ws: import("@pulumi/pulumi/automation").Stack;
    try {
        ws = await auto.LocalWorkspace.selectStack({ stackName: stack, workDir: projectDir }, { pulumiCommand, envVars });
    } catch (err) {
        const msg = err instanceof auto.StackNotFoundError
            ? `stack '${stack}' does not exist in ${projectDir}; create it first: pulumi stack init ${stack}`
            : `cannot select stack '${stack}': ${lastLine(err)}`;
        throw new PreviewError(msg);
    }
    const findings: Finding[] = [];
    let site: Site | undefined;
    let resources = 0;
    const errors: string[] = [];
    let changes: Record<string, number> = {};
    const onEvent = (e: EngineEvent) => {
        if (e.policyEvent) findings.push(findingOf(e.policyEvent));
        const meta = e.resourcePreEvent?.metadata;
        if (meta) {
            resources++;
            if (resources % 20 === 0) progress(`  ${resources} resources previewed`);
            if (meta.type === SITE_TYPE && meta.new?.inputs?.site) site = meta.new.inputs.site as Site;
        }
        if (e.diagnosticEvent?.severity === "error") errors.push(e.diagnosticEvent.message.trim());
        if (e.summaryEvent) changes = Object.fromEntries(Object.entries(e.summaryEvent.resourceChanges ?? {}).map(([k, v]) => [k, Number(v)]));
    };
    let ok = true;
    let error: string | null = null;
    try {
        await ws.preview({ policyPacks: [POLICY_DIR], onEvent, color: "never" });
    } catch (err) {
        ok = false;
        const mandatory = findings.some((f) => f.enforcementLevel === "mandatory");
        // Blocked by the pack is this report's subject; anything else means there is nothing to report on.
        if (!mandatory) throw new PreviewError(`the preview of '${stack}' failed: ${errors.filter((m) => m !== "preview failed").join("; ") || lastLine(err)}`);
        error = "blocked by mandatory policy findings";
    }
    return { findings, site, resources, changes, ok, error, pulumiVersion: ws.workspace.pulumiVersion };
}

function lastLine(err: unknown): string {
    const text = String((err as { stderr?: string }).stderr || (err as Error).message || err);
    return text.trim().split("\n").filter((l) => l.trim()).slice(-2).join(" ");
}

function gitState(dir: string): { commit: string | null; dirty: boolean } {
    const rev = spawnSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" });
    if (rev.status !== 0) return { commit: null, dirty: false };
    const status = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: dir, encoding: "utf8" });
    return { commit: rev.stdout.trim(), dirty: status.stdout.trim() !== "" };
}

export function packVersion(): string {
    return (JSON.parse(fs.readFileSync(path.join(POLICY_DIR, "package.json"), "utf8")) as { version: string }).version;
}

export function buildReport(stack: string, projectDir: string, outcome: PreviewOutcome, now = new Date()): UnsealedReport {
    const findings = [...outcome.findings].sort((a, b) => a.policy.localeCompare(b.policy) || (a.resourceUrn ?? "").localeCompare(b.resourceUrn ?? ""));
    const counts = new Map<string, number>();
    for (const f of findings) counts.set(f.policy, (counts.get(f.policy) ?? 0) + 1);
    const mandatory = findings.filter((f) => f.enforcementLevel === "mandatory").length;
    const estimate = outcome.site ? estimateAvailability(outcome.site) : undefined;
    return {
        format: REPORT_FORMAT,
        id: crypto.randomUUID(),
        generatedAt: now.toISOString(),
        project: path.basename(projectDir),
        stack,
        site: outcome.site ? { name: outcome.site.name, kind: outcome.site.kind, availabilityTarget: outcome.site.sla.availability, failoverBudgetMs: outcome.site.sla.failoverBudgetMs } : null,
        // The program is this repository (test projects point their `main` here too).
        program: gitState(PROJECT_DIR),
        pack: { name: PACK_NAME, version: packVersion() },
        engine: { pulumi: outcome.pulumiVersion },
        verdict: mandatory ? "fail" : "pass",
        summary: {
            policies: policies.length,
            findings: findings.length,
            mandatory,
            advisory: findings.length - mandatory,
            resourcesWithFindings: new Set(findings.map((f) => f.resourceUrn ?? "(stack)")).size,
            resourcesPreviewed: outcome.resources,
        },
        policies: policies.map((p) => ({
            name: p.name, description: p.description, enforcementLevel: p.enforcementLevel ?? "mandatory",
            severity: p.severity ?? null, remediationSteps: p.remediationSteps ?? null, findings: counts.get(p.name) ?? 0,
        })),
        findings,
        // JSON round trip: the estimate's optional members drop out exactly as they will in report.json.
        sla: estimate ? JSON.parse(JSON.stringify(estimate)) : null,
        preview: { ok: outcome.ok, error: outcome.error, changes: outcome.changes },
    };
}

export interface WrittenReport {
    dir: string;
    report: AuditReport;
    files: string[];
    keyId: string;
}

/** Seal (hashes), write and sign the report: report.json, report.html and a .sig for each. */
export function writeReport(unsealed: UnsealedReport, dir: string, privateKey: crypto.KeyObject): WrittenReport {
    fs.mkdirSync(dir, { recursive: true });
    const content = contentHash(unsealed);
    const html = Buffer.from(renderReportHtml(unsealed, content), "utf8");
    const report: AuditReport = { ...unsealed, integrity: { contentSha256: content, htmlSha256: sha256Hex(html) } };
    const json = Buffer.from(`${JSON.stringify(report, null, 2)}\n`, "utf8");
    const files: string[] = [];
    for (const [name, bytes] of [["report.json", json], ["report.html", html]] as const) {
        const file = path.join(dir, name);
        fs.writeFileSync(file, bytes);
        const sig = signBytes(file, bytes, privateKey);
        fs.writeFileSync(`${file}.sig`, `${JSON.stringify(sig, null, 2)}\n`);
        files.push(file, `${file}.sig`);
    }
    return { dir, report, files, keyId: keyId(crypto.createPublicKey(privateKey)) };
}
