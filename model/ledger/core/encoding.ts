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
// a third party can recompute every hash from it (see runtime/ledger/README.md).
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
    /** prevHash || encoding, when it was just computed: lets the writer build COPY rows without re-encoding. */
    input?: Buffer;
}

export class EntryError extends Error {
    override name = "EntryError";
}

// crypto.hash (Node >= 20.12) is a one-shot digest, several times faster than createHash for
// small inputs; its string outputs are its fast path on Node 20, and latin1 maps one char to one
// byte, so the digest comes back as a Buffer without hex decoding.
const oneShot = (crypto as unknown as { hash?: (alg: string, data: Buffer, enc: string) => string }).hash;
export function sha256(data: Buffer): Buffer {
    return oneShot ? Buffer.from(oneShot("sha256", data, "latin1"), "latin1") : crypto.createHash("sha256").update(data).digest();
}
export function sha256Hex(data: Buffer): string {
    return oneShot ? oneShot("sha256", data, "hex") : crypto.createHash("sha256").update(data).digest("hex");
}
/** The digest as a latin1 string (one char per byte): the cheapest thing to compare in a hot loop. */
export function sha256Latin1(data: Buffer): string {
    return oneShot ? oneShot("sha256", data, "latin1") : crypto.createHash("sha256").update(data).digest().toString("latin1");
}

const TWO32 = 4294967296;
/** Writes a non-negative or negative integer below 2^53 as a big-endian 64-bit two's complement. */
export function writeInt64BE(buf: Buffer, value: number, offset: number): void {
    const hi = Math.floor(value / TWO32);
    buf.writeInt32BE(hi, offset);
    buf.writeUInt32BE(value - hi * TWO32, offset + 4);
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
    const srcLen = Buffer.byteLength(source, "utf8");
    const payLen = Buffer.byteLength(payload, "utf8");
    const buf = Buffer.allocUnsafe(HASH_BYTES + 8 + 8 + 4 + srcLen + 4 + payLen);
    prevHash.copy(buf, 0);
    let o = HASH_BYTES;
    writeInt64BE(buf, seq, o); o += 8;
    writeInt64BE(buf, timeUs, o); o += 8;
    buf.writeUInt32BE(srcLen, o); o += 4;
    buf.write(source, o, "utf8"); o += srcLen;
    buf.writeUInt32BE(payLen, o); o += 4;
    buf.write(payload, o, "utf8");
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
    const input = hashInput(prev.hash, seq, timeUs, source, payload);
    return { seq, timeUs, source, payload, prevHash: prev.hash, hash: sha256(input), input };
}

/** The head a new shard starts from: seq 0, hash = the genesis hash. */
export function genesisHead(shard: string): { seq: number; hash: Buffer } {
    return { seq: 0, hash: genesisHash(shard) };
}
