// Detached ed25519 signatures for report.json and report.html (report.json.sig, report.html.sig),
// and the checks `nublar audit verify` makes: each signature over the exact bytes, the report's
// content hash, the HTML's hash as the report records it, and who signed.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { keyId, loadPublicKey } from "../../model/ledger/core/checkpoint";
import { sha256Hex } from "../../model/ledger/core/encoding";
import { contentHash, parseReport, type AuditReport } from "./report";

export const SIGNATURE_FORMAT = "nublar-audit-signature/1";

export const Signature = z.strictObject({
    format: z.literal(SIGNATURE_FORMAT),
    algorithm: z.literal("ed25519"),
    /** The file signed, by name (it sits beside the signature). */
    file: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    keyId: z.string(),
    /** The signer's public key (SPKI PEM): enough to check the bytes, not to trust the signer. */
    publicKey: z.string(),
    signature: z.string(),
});
export type Signature = z.infer<typeof Signature>;

export function signBytes(file: string, bytes: Buffer, privateKey: crypto.KeyObject): Signature {
    const publicKey = crypto.createPublicKey(privateKey);
    return {
        format: SIGNATURE_FORMAT,
        algorithm: "ed25519",
        file: path.basename(file),
        sha256: sha256Hex(bytes),
        keyId: keyId(publicKey),
        publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
        signature: crypto.sign(null, bytes, privateKey).toString("base64"),
    };
}

export interface FileCheck {
    file: string;
    ok: boolean;
    problem?: string;
}

export interface VerifyResult {
    /** `valid`: intact and signed by the pinned key; `unpinned`: intact, but no key was given to say who signed; `invalid`. */
    status: "valid" | "unpinned" | "invalid";
    report?: Pick<AuditReport, "id" | "stack" | "generatedAt" | "verdict" | "pack" | "program">;
    keyId?: string;
    checks: FileCheck[];
}

function readSignature(file: string): Signature {
    let raw: unknown;
    try {
        raw = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (err) {
        throw new Error(`${path.basename(file)}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : `not JSON: ${(err as Error).message}`}`);
    }
    const r = Signature.safeParse(raw);
    if (!r.success) throw new Error(`${path.basename(file)}: not a ${SIGNATURE_FORMAT} signature (${r.error.issues[0].path.join(".")}: ${r.error.issues[0].message})`);
    return r.data;
}

/** Checks one signed file; a problem when it does not hold. Never throws. */
function checkSigned(file: string, bytes: Buffer, pinned?: crypto.KeyObject): { problem?: string; keyId?: string } {
    let sig: Signature;
    try {
        sig = readSignature(`${file}.sig`);
    } catch (err) {
        return { problem: (err as Error).message };
    }
    if (sig.file !== path.basename(file)) return { problem: `${path.basename(file)}.sig signs '${sig.file}', not this file` };
    if (sig.sha256 !== sha256Hex(bytes)) return { problem: `${path.basename(file)} changed since it was signed (sha256 ${sha256Hex(bytes).slice(0, 16)}..., signed ${sig.sha256.slice(0, 16)}...)`, keyId: sig.keyId };
    let key: crypto.KeyObject;
    try {
        key = pinned ?? loadPublicKey(sig.publicKey, "audit signing key");
    } catch (err) {
        return { problem: `${path.basename(file)}.sig: ${(err as Error).message}` };
    }
    if (keyId(key) !== sig.keyId) return { problem: `${path.basename(file)} was signed by key ${sig.keyId}, not by the pinned key ${keyId(key)}`, keyId: sig.keyId };
    let ok = false;
    try {
        ok = crypto.verify(null, bytes, key, Buffer.from(sig.signature, "base64"));
    } catch (err) {
        return { problem: `${path.basename(file)}.sig cannot be checked: ${(err as Error).message}` };
    }
    return ok ? { keyId: sig.keyId } : { problem: `bad signature on ${path.basename(file)}: altered, or not signed by key ${sig.keyId}`, keyId: sig.keyId };
}

/**
 * Verify report.json (and report.html beside it, which the report's integrity names). With a
 * pinned public key the signer is proven; without one, the files are only proven consistent
 * with the key the signature carries.
 */
export function verifyReport(reportFile: string, pinnedPublicKeyPem?: string): VerifyResult {
    const checks: FileCheck[] = [];
    const pinned = pinnedPublicKeyPem === undefined ? undefined : loadPublicKey(pinnedPublicKeyPem, "pinned audit key");
    let bytes: Buffer;
    try {
        bytes = fs.readFileSync(reportFile);
    } catch (err) {
        return { status: "invalid", checks: [{ file: reportFile, ok: false, problem: `cannot read: ${(err as Error).message}` }] };
    }
    const sig = checkSigned(reportFile, bytes, pinned);
    checks.push({ file: path.basename(reportFile), ok: !sig.problem, problem: sig.problem });
    let report: AuditReport | undefined;
    try {
        report = parseReport(bytes.toString("utf8"));
        const hash = contentHash(report);
        checks.push(hash === report.integrity.contentSha256
            ? { file: `${path.basename(reportFile)} content hash`, ok: true }
            : { file: `${path.basename(reportFile)} content hash`, ok: false, problem: `content hash is ${hash.slice(0, 16)}..., the report records ${report.integrity.contentSha256.slice(0, 16)}...: its content was edited` });
    } catch (err) {
        checks.push({ file: path.basename(reportFile), ok: false, problem: (err as Error).message });
    }
    const html = path.join(path.dirname(reportFile), "report.html");
    if (report && fs.existsSync(html)) {
        const htmlBytes = fs.readFileSync(html);
        const h = sha256Hex(htmlBytes);
        if (h !== report.integrity.htmlSha256) checks.push({ file: "report.html", ok: false, problem: `report.html is not the one this report names (sha256 ${h.slice(0, 16)}..., recorded ${report.integrity.htmlSha256.slice(0, 16)}...)` });
        else {
            const hs = checkSigned(html, htmlBytes, pinned);
            // Unpinned, the two files must at least carry one signer.
            const mixed = !hs.problem && sig.keyId && hs.keyId !== sig.keyId ? `report.html was signed by key ${hs.keyId}, report.json by ${sig.keyId}` : undefined;
            checks.push({ file: "report.html", ok: !hs.problem && !mixed, problem: hs.problem ?? mixed });
        }
    } else if (report) {
        checks.push({ file: "report.html", ok: false, problem: "missing: the report names its page (integrity.htmlSha256); keep report.html beside report.json" });
    }
    const ok = checks.every((c) => c.ok);
    return {
        status: !ok ? "invalid" : pinned ? "valid" : "unpinned",
        report: report && { id: report.id, stack: report.stack, generatedAt: report.generatedAt, verdict: report.verdict, pack: report.pack, program: report.program },
        keyId: sig.keyId,
        checks,
    };
}
