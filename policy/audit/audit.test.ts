// The audit report: built from policy events as the engine sends them, valid against its
// published JSON Schema, signed, and verified: any one byte changed in report.json or
// report.html is rejected, and so is another signer.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import Ajv2020 from "ajv/dist/2020";
import { loadSiteFromStackFile } from "../../model/site/load";
import { bfdDetectionWithinBudget } from "../rules/network";
import { centos7EndOfLife } from "../rules/lamp";
import { renderReportHtml } from "./html";
import { AuditReport, contentHash, reportJsonSchema } from "./report";
import { buildReport, findingOf, writeReport, type PreviewOutcome } from "./run";
import { verifyReport } from "./sign";
import { PROJECT_ROOT } from "../../model/project";

const ROOT = PROJECT_ROOT;
const lab = loadSiteFromStackFile(path.join(ROOT, "stacks", "Pulumi.lab.yaml"));
const URN = "urn:pulumi:lab::nublar::nublar:site:Site::lab";

/** What a preview of a violating stack gives: one mandatory and one advisory finding. */
function outcome(): PreviewOutcome {
    return {
        findings: [
            // The engine prefixes the message with the policy's description, and says "warning" for advisory.
            findingOf({ policyName: bfdDetectionWithinBudget.name, policyPackName: "nublar-sla", policyPackVersion: "1.0.0", enforcementLevel: "mandatory", resourceUrn: URN, message: `${bfdDetectionWithinBudget.description}\n3 BFD session(s) cannot fail over within 50 ms <script>alert(1)</script>` }),
            findingOf({ policyName: centos7EndOfLife.name, policyPackName: "nublar-sla", policyPackVersion: "1.0.0", enforcementLevel: "warning", resourceUrn: "urn:pulumi:lab::nublar::kubernetes:apps/v1:Deployment::visitor-web", message: "CentOS 7 is end of life" }),
        ],
        site: lab,
        resources: 47,
        changes: { create: 47 },
        ok: false,
        error: "blocked by mandatory policy findings",
        pulumiVersion: "v3.259.0",
    };
}

function written() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-audit-"));
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
    const w = writeReport(buildReport("lab", ROOT, outcome()), dir, privateKey);
    return { dir, w, pem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

test("findings keep the engine's facts, without the description prefix, with the pack's level names", () => {
    const [mandatory, advisory] = outcome().findings;
    assert.equal(mandatory.message, "3 BFD session(s) cannot fail over within 50 ms <script>alert(1)</script>");
    assert.deepEqual(mandatory.resource, { type: "nublar:site:Site", name: "lab" });
    assert.equal(mandatory.severity, "critical");
    assert.equal(advisory.enforcementLevel, "advisory");
    assert.deepEqual(advisory.resource, { type: "kubernetes:apps/v1:Deployment", name: "visitor-web" });
});

test("report.json matches its published JSON Schema, and the committed schema is the current one", () => {
    const { dir, w } = written();
    try {
        const schema = reportJsonSchema();
        const committed = JSON.parse(fs.readFileSync(path.join(__dirname, "report.schema.json"), "utf8"));
        assert.deepEqual(committed, JSON.parse(JSON.stringify(schema)), "policy/audit/report.schema.json is stale: nublar audit schema > policy/audit/report.schema.json");
        const ajv = new Ajv2020({ allErrors: true, strict: false });
        ajv.addFormat("uuid", /^[0-9a-f-]{36}$/i).addFormat("date-time", (s: string) => !Number.isNaN(Date.parse(s)));
        const validate = ajv.compile(committed);
        const report = JSON.parse(fs.readFileSync(path.join(dir, "report.json"), "utf8")) as Record<string, unknown>;
        assert.ok(validate(report), JSON.stringify(validate.errors));
        assert.ok(!validate({ ...report, verdict: "maybe" }), "the schema refuses a bad verdict");
        const { findings: _, ...noFindings } = report;
        assert.ok(!validate(noFindings), "the schema requires findings");
        // What the report says.
        assert.equal(w.report.verdict, "fail");
        assert.deepEqual([w.report.summary.mandatory, w.report.summary.advisory, w.report.summary.resourcesWithFindings], [1, 1, 2]);
        assert.equal(w.report.policies.find((p) => p.name === "bfd-detection-within-budget")!.findings, 1);
        assert.equal(w.report.sla!.weakest, "edge");
        assert.equal(w.report.integrity.contentSha256, contentHash(w.report));
        assert.ok(AuditReport.safeParse(report).success);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("verify: valid with the pinned key, only 'unpinned' without one, invalid with another signer's key", () => {
    const { dir, pem } = written();
    try {
        const file = path.join(dir, "report.json");
        assert.equal(verifyReport(file, pem).status, "valid");
        assert.equal(verifyReport(file).status, "unpinned");
        // The page signed by someone else, unpinned: the two files must share a signer.
        const html = path.join(dir, "report.html");
        const { privateKey: otherKey } = crypto.generateKeyPairSync("ed25519");
        const original = fs.readFileSync(`${html}.sig`);
        const { signBytes } = require("./sign") as typeof import("./sign");
        fs.writeFileSync(`${html}.sig`, JSON.stringify(signBytes(html, fs.readFileSync(html), otherKey)));
        assert.match(verifyReport(file).checks.find((c) => c.file === "report.html")!.problem ?? "", /report\.html was signed by key [0-9a-f]+, report\.json by/);
        fs.writeFileSync(`${html}.sig`, original);
        // A missing page is not a valid report: report.json names it.
        fs.renameSync(html, `${html}.away`);
        assert.equal(verifyReport(file, pem).status, "invalid");
        fs.renameSync(`${html}.away`, html);
        const other = crypto.generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
        const r = verifyReport(file, other);
        assert.equal(r.status, "invalid");
        assert.match(r.checks[0].problem ?? "", /signed by key [0-9a-f]{16}, not by the pinned key/);
        // A signature re-made by someone else over an edited report fails against the pinned key.
        fs.unlinkSync(`${file}.sig`);
        assert.equal(verifyReport(file, pem).status, "invalid");
        assert.match(verifyReport(file, pem).checks[0].problem ?? "", /report\.json\.sig: missing/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("verify rejects report.json or report.html with any one byte changed", () => {
    const { dir, pem } = written();
    try {
        for (const name of ["report.json", "report.html"]) {
            const file = path.join(dir, name);
            const original = fs.readFileSync(file);
            // Every 97th byte and the first and last: each changed alone, then put back.
            const offsets = [0, original.length - 1, ...Array.from({ length: Math.floor(original.length / 97) }, (_, i) => i * 97 + 13)];
            for (const at of offsets) {
                const bytes = Buffer.from(original);
                bytes[at] = bytes[at] === 0x20 ? 0x21 : 0x20;
                fs.writeFileSync(file, bytes);
                const r = verifyReport(path.join(dir, "report.json"), pem);
                assert.equal(r.status, "invalid", `${name} byte ${at} changed`);
            }
            fs.writeFileSync(file, original);
            assert.equal(verifyReport(path.join(dir, "report.json"), pem).status, "valid");
        }
        // The edit the signature cannot see unless the hash is checked: a re-signed, edited report.
        const { privateKey } = crypto.generateKeyPairSync("ed25519");
        const report = JSON.parse(fs.readFileSync(path.join(dir, "report.json"), "utf8"));
        report.verdict = "pass";
        const bytes = Buffer.from(JSON.stringify(report));
        fs.writeFileSync(path.join(dir, "report.json"), bytes);
        const { signBytes } = require("./sign") as typeof import("./sign");
        fs.writeFileSync(path.join(dir, "report.json.sig"), JSON.stringify(signBytes("report.json", bytes, privateKey)));
        const r = verifyReport(path.join(dir, "report.json"));
        assert.equal(r.status, "invalid");
        assert.match(r.checks.find((c) => c.file.endsWith("content hash"))!.problem ?? "", /its content was edited/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("the HTML puts the summary first, groups findings by rule and resource, and escapes what it shows", () => {
    const report = buildReport("lab", ROOT, outcome());
    const html = renderReportHtml(report, contentHash(report));
    const at = (id: string) => html.indexOf(`id="${id}"`);
    assert.ok(at("summary") > 0 && at("summary") < at("by-rule") && at("by-rule") < at("by-resource") && at("by-resource") < at("sla") && at("sla") < at("rules"));
    assert.ok(!html.includes("<script>alert(1)</script>") && html.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert.match(html, /id="verdict">FAIL</);
    assert.match(html, /visitor-web/);
    assert.ok(!/<script|src=|href="http/.test(html), "self-contained, no scripts");
});

test("nublar audit verify and schema, as an auditor runs them: exit 0 valid, 4 signer not pinned, 1 tampered, 2 usage", () => {
    const { dir, pem } = written();
    const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "cli", "nublar.js"), "audit", ...args], { encoding: "utf8" });
    try {
        const pub = path.join(dir, "signer.pub");
        fs.writeFileSync(pub, pem);
        const report = path.join(dir, "report.json");
        const valid = cli("verify", report, "--public-key", pub);
        assert.equal(valid.status, 0, valid.stderr);
        assert.match(valid.stdout, /^VALID/);
        assert.equal(cli("verify", report).status, 4);
        const json = JSON.parse(cli("verify", report, "--json").stdout);
        assert.equal(json.status, "unpinned");
        fs.appendFileSync(path.join(dir, "report.html"), " ");
        const tampered = cli("verify", report, "--public-key", pub);
        assert.equal(tampered.status, 1);
        assert.match(tampered.stdout, /FAIL report\.html: report\.html is not the one this report names/);
        assert.equal(cli("verify", path.join(dir, "missing.json")).status, 2);
        assert.equal(cli("verify").status, 2);
        assert.deepEqual(JSON.parse(cli("schema").stdout), JSON.parse(fs.readFileSync(path.join(__dirname, "report.schema.json"), "utf8")));
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
