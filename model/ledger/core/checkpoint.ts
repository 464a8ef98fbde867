// Signed checkpoints: every N entries or T seconds the shard's writer commits to its head and to
// the Merkle root of the entries since the previous checkpoint, and signs that with ed25519.
// Checkpoints chain to each other (prev = digest of the previous one), so a deleted or replaced
// checkpoint shows too. Pure, apart from node:crypto.
import * as crypto from "node:crypto";
import canonicalize from "canonicalize";
import { FORMAT, sha256Hex } from "./encoding";

export interface Checkpoint {
    format: typeof FORMAT;
    shard: string;
    /** First seq covered by `root`. */
    from: number;
    /** Last seq covered: the head at the time of the checkpoint. */
    seq: number;
    /** Hash of entry `seq` (hex). */
    head: string;
    /** RFC 9162 Merkle root over the entry hashes from..seq (hex). */
    root: string;
    /** Digest of the previous checkpoint of this shard (hex), or null for the first. */
    prev: string | null;
    /** ISO 8601, when it was signed. */
    time: string;
    /** First 16 hex digits of SHA-256 of the signer's public key (SPKI DER). */
    key: string;
}

export interface SignedCheckpoint {
    checkpoint: Checkpoint;
    /** ed25519 over the RFC 8785 canonical JSON of `checkpoint`, base64. */
    signature: string;
}

export class CheckpointError extends Error {
    override name = "CheckpointError";
}

export function checkpointBytes(cp: Checkpoint): Buffer {
    return Buffer.from(canonicalize(cp) as string, "utf8");
}

/** What the next checkpoint's `prev` holds: SHA-256 of this one's canonical bytes (hex). */
export function checkpointDigest(cp: Checkpoint): string {
    return sha256Hex(checkpointBytes(cp));
}

export function keyId(publicKey: crypto.KeyObject): string {
    return sha256Hex(publicKey.export({ type: "spki", format: "der" })).slice(0, 16);
}

export function signCheckpoint(cp: Omit<Checkpoint, "key" | "format">, privateKey: crypto.KeyObject): SignedCheckpoint {
    const checkpoint: Checkpoint = { format: FORMAT, ...cp, key: keyId(crypto.createPublicKey(privateKey)) };
    const signature = crypto.sign(null, checkpointBytes(checkpoint), privateKey).toString("base64");
    return { checkpoint, signature };
}

/** Checks shape and signature; a reason when it is not valid, else undefined. Never throws. */
export function checkpointProblem(signed: unknown, publicKey: crypto.KeyObject): string | undefined {
    const s = signed as SignedCheckpoint;
    const cp = s?.checkpoint;
    if (!cp || typeof s.signature !== "string") return "not a signed checkpoint (needs checkpoint and signature)";
    if (cp.format !== FORMAT) return `unknown format ${JSON.stringify(cp.format)} (expected ${FORMAT})`;
    for (const k of ["from", "seq"] as const) if (!Number.isSafeInteger(cp[k]) || cp[k] < 1) return `${k} is not a positive integer`;
    if (cp.from > cp.seq) return `from (${cp.from}) is after seq (${cp.seq})`;
    for (const k of ["head", "root"] as const) if (typeof cp[k] !== "string" || !/^[0-9a-f]{64}$/.test(cp[k])) return `${k} is not a SHA-256 hex digest`;
    if (cp.key !== keyId(publicKey)) return `signed with key ${cp.key}, not with the given public key ${keyId(publicKey)}`;
    let ok = false;
    try {
        ok = crypto.verify(null, checkpointBytes(cp), publicKey, Buffer.from(s.signature, "base64"));
    } catch (err) {
        return `signature cannot be checked: ${(err as Error).message}`;
    }
    return ok ? undefined : "bad signature: the checkpoint was altered or signed by another key";
}

export function generateSigningKey(): { privateKey: crypto.KeyObject; publicKey: crypto.KeyObject } {
    return crypto.generateKeyPairSync("ed25519");
}

/** An ed25519 private key from PKCS#8 PEM; `what` names it in errors (audit reports sign with these too). */
export function loadPrivateKey(pem: string, what = "checkpoint signing key"): crypto.KeyObject {
    let key: crypto.KeyObject;
    try {
        key = crypto.createPrivateKey(pem);
    } catch (err) {
        throw new CheckpointError(`the ${what} is not a private key (expected an ed25519 PKCS#8 PEM): ${(err as Error).message}`);
    }
    if (key.asymmetricKeyType !== "ed25519") throw new CheckpointError(`the ${what} must be ed25519, not ${key.asymmetricKeyType}`);
    return key;
}

export function loadPublicKey(pem: string, what = "checkpoint key"): crypto.KeyObject {
    let key: crypto.KeyObject;
    try {
        key = crypto.createPublicKey(pem);
    } catch (err) {
        throw new CheckpointError(`not a public key (expected an ed25519 PEM): ${(err as Error).message}`);
    }
    if (key.asymmetricKeyType !== "ed25519") throw new CheckpointError(`the ${what} must be ed25519, not ${key.asymmetricKeyType}`);
    return key;
}
