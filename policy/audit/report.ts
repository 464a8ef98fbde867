// The audit report: what the nublar-sla pack found on one stack's preview, with the SLA
// estimate and everything needed to trust it later. This zod schema is the one definition of
// report.json; report.schema.json is generated from it (`nublar audit schema`) for auditors'
// tools, and a test keeps the two in step.
import canonicalize from "canonicalize";
import { z } from "zod";
import { sha256Hex } from "../../model/ledger/core/encoding";

export const REPORT_FORMAT = "nublar-audit/1";

const Rate = z.object({ perYear: z.number(), repairHours: z.number() });

export const Finding = z.strictObject({
    policy: z.string(),
    policyPack: z.string(),
    policyPackVersion: z.string(),
    /** The engine says `warning` for advisory findings; reports say `advisory`, as the pack does. */
    enforcementLevel: z.enum(["advisory", "mandatory", "remediate"]),
    severity: z.enum(["low", "medium", "high", "critical"]).nullable(),
    /** The resource the finding is about; null for a stack-wide finding without one. */
    resourceUrn: z.string().nullable(),
    resource: z.strictObject({ type: z.string(), name: z.string() }).nullable(),
    message: z.string(),
});

export const PolicySummary = z.strictObject({
    name: z.string(),
    description: z.string(),
    enforcementLevel: z.string(),
    severity: z.string().nullable(),
    remediationSteps: z.string().nullable(),
    findings: z.number().int().min(0),
});

const Group = z.strictObject({
    name: z.string(),
    description: z.string(),
    members: z.array(z.strictObject({ name: z.string(), failureDomain: z.string().optional(), perYear: z.number(), repairHours: z.number() })),
    failureDomains: z.number().int(),
    allDown: z.number(),
    failoverGap: z.number(),
    unavailability: z.number(),
});

export const SlaEstimate = z.strictObject({
    site: z.string(),
    target: z.number(),
    availability: z.number(),
    unavailability: z.number(),
    downtimeSecondsPerYear: z.number(),
    allowedSecondsPerYear: z.number(),
    meets: z.boolean(),
    inputs: z.strictObject({
        failureRates: z.strictObject({ node: Rate, provider: Rate, failureDomain: Rate }),
        detectionMs: z.number(),
        reactionMs: z.number(),
        failoverMs: z.number(),
        detection: z.strictObject({ worstMs: z.number(), worst: z.strictObject({ node: z.string(), session: z.string() }).optional(), sessions: z.number().int() }),
    }),
    groups: z.array(Group),
    ledgerWrites: z.strictObject({ instances: z.number().int(), needUp: z.number().int(), unavailability: z.number() }),
    weakest: z.string(),
});

export const Integrity = z.strictObject({
    /** SHA-256 of the report's RFC 8785 canonical JSON without this `integrity` member. */
    contentSha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** SHA-256 of report.html as written beside it. */
    htmlSha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export const AuditReport = z.strictObject({
    format: z.literal(REPORT_FORMAT),
    id: z.string().uuid(),
    generatedAt: z.string().datetime(),
    project: z.string(),
    stack: z.string(),
    site: z.strictObject({ name: z.string(), kind: z.string(), availabilityTarget: z.number(), failoverBudgetMs: z.number() }).nullable(),
    program: z.strictObject({ commit: z.string().nullable(), dirty: z.boolean() }),
    pack: z.strictObject({ name: z.string(), version: z.string() }),
    engine: z.strictObject({ pulumi: z.string() }),
    /** `fail` when any mandatory finding was reported (the preview was blocked). */
    verdict: z.enum(["pass", "fail"]),
    summary: z.strictObject({
        policies: z.number().int(),
        findings: z.number().int(),
        mandatory: z.number().int(),
        advisory: z.number().int(),
        resourcesWithFindings: z.number().int(),
        resourcesPreviewed: z.number().int(),
    }),
    policies: z.array(PolicySummary),
    findings: z.array(Finding),
    sla: SlaEstimate.nullable(),
    preview: z.strictObject({ ok: z.boolean(), error: z.string().nullable(), changes: z.record(z.string(), z.number()) }),
    integrity: Integrity,
});

export type AuditReport = z.infer<typeof AuditReport>;
export type Finding = z.infer<typeof Finding>;
export type UnsealedReport = Omit<AuditReport, "integrity">;

/** The content hash: canonical JSON (RFC 8785) of everything but `integrity`. */
export function contentHash(report: UnsealedReport | AuditReport): string {
    const { integrity: _, ...content } = report as AuditReport;
    return sha256Hex(Buffer.from(canonicalize(content) ?? "", "utf8"));
}

/** JSON Schema (draft 2020-12) of report.json, from the zod schema above. */
export function reportJsonSchema(): Record<string, unknown> {
    return {
        $id: "https://nublar.example/schemas/audit-report-1.json",
        title: "nublar audit report",
        description: "report.json written by `nublar audit`; signed with ed25519 in report.json.sig (policy/README.md).",
        ...z.toJSONSchema(AuditReport, { target: "draft-2020-12" }),
    };
}

/** Parse report.json's text, naming what is wrong when it is not a report. */
export function parseReport(text: string): AuditReport {
    let raw: unknown;
    try {
        raw = JSON.parse(text);
    } catch (err) {
        throw new Error(`not JSON: ${(err as Error).message}`);
    }
    const r = AuditReport.safeParse(raw);
    if (!r.success) throw new Error(`not a ${REPORT_FORMAT} report: ${r.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ")}`);
    return r.data;
}
