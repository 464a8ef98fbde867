// The Unicorn ledger's entry encoding and hash chain (format "unicorn/1"). Pure: no I/O.
//
//   encoding(e) = seq      u64 big-endian
//              || time     i64 big-endian, microseconds since the Unix epoch (UTC)
//              || source   u32 big-endian byte length, then UTF-8
//              || payload  u32 big-endian byte length, then UTF-8 of the RFC 8785 canonical JSON
//   hash(e)     = SHA-256(hash(previous entry) || encoding(e))
//   previous of the first entry = SHA-256("unicorn/1 genesis\0" || shard name)
//
// Length-prefixed fields make the encoding injective (no two entries encode alike), and the
// seq inside it means a reordered row no longer matches its hash. The genesis binds a chain to
// its shard, so entries cannot be moved between shards either. This is the whole definition:
// a third party can recompute every hash from it (see ledger/README.md).
import * as crypto from "node:crypto";
import canonicalize from "canonicalize";

export const FORMAT = "unicorn/1";
export const HASH_BYTES = 32;
/** Largest payload accepted, in bytes of canonical JSON. Bigger readings belong in the data lake. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_SOURCE_BYTES = 256;

export interface LedgerEntry {
    seq: number;
    /** Microseconds since the Unix epoch (what PostgreSQL's timestamptz holds). */
    timeUs: number;
    source: string;
    /** RFC 8785 canonical JSON: exactly the bytes that were hashed. */
    payload: string;
    prevHash: Buffer;
    hash: Buffer;
}

export class EntryError extends Error {
    override name = "EntryError";
}

// crypto.hash (Node >= 20.12) is a one-shot digest about 3x faster than createHash for small
// inputs; hex output is its fast path on Node 20, so we decode the hex ourselves.
const oneShot = (crypto as unknown as { hash?: (alg: string, data: Buffer, enc: string) => string }).hash;
export function sha256(data: Buffer): Buffer {
    return oneShot ? Buffer.from(oneShot("sha256", data, "hex"), "hex") : crypto.createHash("sha256").update(data).digest();
}
export function sha256Hex(data: Buffer): string {
    return oneShot ? oneShot("sha256", data, "hex") : crypto.createHash("sha256").update(data).digest("hex");
}

export function genesisHash(shard: string): Buffer {
    return sha256(Buffer.from(`${FORMAT} genesis\0${shard}`, "utf8"));
}

/**
 * The payload as RFC 8785 canonical JSON. Anything that is not plain JSON data (undefined, a
 * function, a BigInt, NaN) is refused rather than silently changed.
 */
export function canonicalPayload(value: unknown): string {
    let text: string | undefined;
    try {
        text = canonicalize(value);
    } catch (err) {
        throw new EntryError(`payload is not JSON data: ${(err as Error).message}`);
    }
    if (text === undefined) throw new EntryError("payload is not JSON data (undefined)");
    if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES) {
        throw new EntryError(`payload is ${Buffer.byteLength(text)} bytes of canonical JSON; the limit is ${MAX_PAYLOAD_BYTES}`);
    }
    return text;
}

/** prevHash || encoding(entry): the exact bytes whose SHA-256 is the entry's hash. */
export function hashInput(prevHash: Buffer, seq: number, timeUs: number, source: string, payload: string): Buffer {
    const src = Buffer.from(source, "utf8");
    const pay = Buffer.from(payload, "utf8");
    const buf = Buffer.allocUnsafe(HASH_BYTES + 8 + 8 + 4 + src.length + 4 + pay.length);
    prevHash.copy(buf, 0);
    let o = HASH_BYTES;
    buf.writeBigUInt64BE(BigInt(seq), o); o += 8;
    buf.writeBigInt64BE(BigInt(timeUs), o); o += 8;
    buf.writeUInt32BE(src.length, o); o += 4;
    src.copy(buf, o); o += src.length;
    buf.writeUInt32BE(pay.length, o); o += 4;
    pay.copy(buf, o);
    return buf;
}

export function entryHash(prevHash: Buffer, seq: number, timeUs: number, source: string, payload: string): Buffer {
    return sha256(hashInput(prevHash, seq, timeUs, source, payload));
}

/** Checks the fields a caller gives before they are hashed or stored. */
export function checkSource(source: unknown): string {
    if (typeof source !== "string" || source.length === 0) throw new EntryError("source must be a non-empty string");
    if (Buffer.byteLength(source) > MAX_SOURCE_BYTES) throw new EntryError(`source is longer than ${MAX_SOURCE_BYTES} bytes`);
    if (/[\u0000-\u001f]/.test(source)) throw new EntryError("source contains control characters");
    return source;
}

/** Extends a chain: the next entry after `prev`, with its hash. */
export function chainEntry(prev: { seq: number; hash: Buffer }, timeUs: number, source: string, payload: string): LedgerEntry {
    const seq = prev.seq + 1;
    return { seq, timeUs, source, payload, prevHash: prev.hash, hash: entryHash(prev.hash, seq, timeUs, source, payload) };
}

/** The head a new shard starts from: seq 0, hash = the genesis hash. */
export function genesisHead(shard: string): { seq: number; hash: Buffer } {
    return { seq: 0, hash: genesisHash(shard) };
}
