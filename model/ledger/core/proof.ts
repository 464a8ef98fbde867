// Inclusion proofs a third party checks offline: one entry, the sibling hashes up to a signed
// checkpoint's Merkle root, and that checkpoint. Checking needs the entry's fields, SHA-256 and
// ed25519 (and the shard's public key, obtained out of band): see ledger/README.md.
import type { KeyObject } from "node:crypto";
import { FORMAT, entryHash, genesisHash } from "./encoding";
import { checkpointProblem, type SignedCheckpoint } from "./checkpoint";
import { verifyInclusion } from "./merkle";

export interface InclusionProof {
    format: typeof FORMAT;
    kind: "inclusion";
    shard: string;
    entry: { seq: number; timeUs: number; time: string; source: string; payload: string; prevHash: string; hash: string };
    /** Index of the entry among the checkpoint's leaves (seq - checkpoint.from), and their count. */
    leafIndex: number;
    treeSize: number;
    /** RFC 9162 inclusion path, leaf first (hex). */
    path: string[];
    checkpoint: SignedCheckpoint;
    /** The signer's public key (SPKI PEM), for convenience: pin the one you trust with --public-key. */
    publicKey: string;
}

export interface ProofCheck {
    ok: boolean;
    problems: string[];
}

/** Checks everything a proof claims. Never throws: malformed proofs get problems, not crashes. */
export function checkProof(proof: unknown, publicKey: KeyObject): ProofCheck {
    const problems: string[] = [];
    const p = proof as InclusionProof;
    try {
        if (!p || p.kind !== "inclusion" || p.format !== FORMAT) return { ok: false, problems: [`not a ${FORMAT} inclusion proof`] };
        const e = p.entry;
        const cp = p.checkpoint?.checkpoint;
        const sig = checkpointProblem(p.checkpoint, publicKey);
        if (sig) problems.push(`checkpoint: ${sig}`);
        if (cp && cp.shard !== p.shard) problems.push(`checkpoint is for shard ${cp.shard}, the proof for ${p.shard}`);
        if (!e || !Number.isSafeInteger(e.seq) || !Number.isSafeInteger(e.timeUs) || typeof e.source !== "string" || typeof e.payload !== "string") {
            problems.push("entry is malformed (needs seq, timeUs, source, payload, prevHash, hash)");
            return { ok: false, problems };
        }
        const prev = Buffer.from(String(e.prevHash), "hex");
        if (prev.length !== 32) problems.push("entry.prevHash is not 32 bytes of hex");
        const hash = entryHash(prev, e.seq, e.timeUs, e.source, e.payload);
        if (hash.toString("hex") !== e.hash) problems.push(`entry ${e.seq} does not hash to ${e.hash}: its fields were changed`);
        if (e.seq === 1 && !prev.equals(genesisHash(p.shard))) problems.push("entry 1's prev hash is not the shard's genesis hash");
        if (cp) {
            if (e.seq < cp.from || e.seq > cp.seq) problems.push(`entry ${e.seq} is outside the checkpoint's range ${cp.from}..${cp.seq}`);
            if (p.leafIndex !== e.seq - cp.from || p.treeSize !== cp.seq - cp.from + 1) problems.push("leafIndex/treeSize do not match the entry and checkpoint");
            const path = (Array.isArray(p.path) ? p.path : []).map((h) => Buffer.from(String(h), "hex"));
            if (!verifyInclusion(p.leafIndex, p.treeSize, hash, path, Buffer.from(cp.root, "hex"))) {
                problems.push(`the inclusion path does not lead from entry ${e.seq} to the checkpoint's root ${cp.root}`);
            }
        }
    } catch (err) {
        problems.push(`malformed proof: ${(err as Error).message}`);
    }
    return { ok: problems.length === 0, problems };
}
