// Reads a shard's entries fast: `COPY (SELECT ...) TO STDOUT (FORMAT binary)` streams the stored
// fields as length-prefixed binary, which is close to the unicorn/1 encoding already, so each row's
// hash input is rebuilt with a few buffer copies and no text parsing. This is what lets verify
// keep up with PostgreSQL itself. Appends go the other way with COPY FROM, built from the hash
// input the writer just computed. Format: PostgreSQL docs, "COPY ... Binary Format".
import type { VerifyRow } from "../../../model/ledger/core/verify";
import { HASH_BYTES, hashInput, writeInt64BE, type LedgerEntry } from "../../../model/ledger/core/encoding";

export const ENTRY_COPY_COLUMNS = "seq, time, source, payload, prev_hash, hash";
const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
/** timestamptz counts microseconds from 2000-01-01; unicorn/1 from 1970-01-01. */
const PG_EPOCH_US = 946_684_800_000_000;
const PG_EPOCH_HI = Math.floor(PG_EPOCH_US / 4294967296);
const PG_EPOCH_LO = PG_EPOCH_US - PG_EPOCH_HI * 4294967296;

export class CopyFormatError extends Error {
    override name = "CopyFormatError";
}

/** Incremental parser: feed chunks in order; rows come out as complete tuples arrive. */
export class EntryRowParser {
    private rest: Buffer | undefined;
    private headerDone = false;
    private finished = false;
    rows = 0;

    constructor(private readonly onRow: (row: VerifyRow) => void) {}

    push(chunk: Buffer): void {
        let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
        this.rest = undefined;
        let o = 0;
        if (!this.headerDone) {
            if (buf.length < 19) { this.rest = buf; return; }
            if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new CopyFormatError("not a PostgreSQL binary COPY stream");
            const ext = buf.readUInt32BE(15);
            if (buf.length < 19 + ext) { this.rest = buf; return; }
            o = 19 + ext;
            this.headerDone = true;
        }
        const n = buf.length;
        while (o + 2 <= n) {
            const fields = buf.readInt16BE(o);
            if (fields === -1) { this.finished = true; o += 2; break; }
            if (fields !== 6) throw new CopyFormatError(`expected 6 columns (${ENTRY_COPY_COLUMNS}), got ${fields}`);
            // Fixed-size fields first (seq, time), then source and payload (variable), then the
            // two hashes; stop if the tuple is not all here yet. Plain locals and no BigInt: this
            // loop runs once per entry.
            const seqAt = o + 2;
            const timeAt = seqAt + 12;
            const srcAt = timeAt + 12;
            if (srcAt + 4 > n) break;
            const srcLen = buf.readInt32BE(srcAt);
            const payAt = srcAt + 4 + srcLen;
            if (srcLen < 0 || payAt + 4 > n) { if (srcLen < 0) throw new CopyFormatError("source is NULL"); break; }
            const payLen = buf.readInt32BE(payAt);
            const prevAt = payAt + 4 + payLen;
            if (payLen < 0) throw new CopyFormatError("payload is NULL");
            const hashAt = prevAt + 36;
            const end = hashAt + 36;
            if (end > n) break;
            if (buf.readInt32BE(seqAt) !== 8 || buf.readInt32BE(timeAt) !== 8 || buf.readInt32BE(prevAt) !== HASH_BYTES || buf.readInt32BE(hashAt) !== HASH_BYTES) {
                throw new CopyFormatError("unexpected column sizes (seq, time must be 8 bytes; hashes 32)");
            }
            const seq = buf.readUInt32BE(seqAt + 4) * 4294967296 + buf.readUInt32BE(seqAt + 8);
            // input = prev || seq || unix time || source (len-prefixed) || payload (len-prefixed)
            const input = Buffer.allocUnsafe(HASH_BYTES + 16 + (prevAt - srcAt));
            buf.copy(input, 0, prevAt + 4, prevAt + 4 + HASH_BYTES);
            buf.copy(input, HASH_BYTES, seqAt + 4, seqAt + 12);
            // PostgreSQL's microseconds since 2000 plus the epoch offset, as two 32-bit halves.
            let lo = buf.readUInt32BE(timeAt + 8) + PG_EPOCH_LO;
            let hi = buf.readInt32BE(timeAt + 4) + PG_EPOCH_HI;
            if (lo >= 4294967296) { lo -= 4294967296; hi += 1; }
            input.writeInt32BE(hi, HASH_BYTES + 8);
            input.writeUInt32BE(lo, HASH_BYTES + 12);
            buf.copy(input, HASH_BYTES + 16, srcAt, prevAt);
            const hash = buf.subarray(hashAt + 4, end);
            o = end;
            this.rows++;
            this.onRow({ seq, input, hash });
        }
        if (o < n && !this.finished) this.rest = buf.subarray(o);
    }

    end(): void {
        if (!this.finished) throw new CopyFormatError("the COPY stream ended before its trailer");
    }
}

export const ENTRY_INSERT_COLUMNS = "seq, time, source, payload, prev_hash, hash, idem_key";
const HEADER = Buffer.concat([SIGNATURE, Buffer.alloc(8)]); // flags 0, no header extension
const TRAILER = Buffer.from([0xff, 0xff]);

/** One binary COPY FROM payload holding `entries` (columns ENTRY_INSERT_COLUMNS). */
export function encodeCopyBatch(entries: readonly (LedgerEntry & { key?: string | null })[]): Buffer {
    const inputs = entries.map((e) => e.input ?? hashInput(e.prevHash, e.seq, e.timeUs, e.source, e.payload));
    const keys = entries.map((e) => (e.key ? Buffer.from(e.key, "utf8") : null));
    let size = HEADER.length + TRAILER.length;
    for (let i = 0; i < entries.length; i++) {
        // count + seq + time + (source and payload with their lengths) + prev + hash + key
        size += 2 + 12 + 12 + (inputs[i].length - HASH_BYTES - 16) + 36 + 36 + 4 + (keys[i]?.length ?? 0);
    }
    const out = Buffer.allocUnsafe(size);
    HEADER.copy(out, 0);
    let o = HEADER.length;
    for (let i = 0; i < entries.length; i++) {
        const e = entries[i], input = inputs[i], key = keys[i];
        o = out.writeInt16BE(7, o);
        o = out.writeInt32BE(8, o);
        o += input.copy(out, o, HASH_BYTES, HASH_BYTES + 8);
        o = out.writeInt32BE(8, o);
        writeInt64BE(out, e.timeUs - PG_EPOCH_US, o);
        o += 8;
        o += input.copy(out, o, HASH_BYTES + 16);
        o = out.writeInt32BE(HASH_BYTES, o);
        o += e.prevHash.copy(out, o);
        o = out.writeInt32BE(HASH_BYTES, o);
        o += e.hash.copy(out, o);
        if (key) {
            o = out.writeInt32BE(key.length, o);
            o += key.copy(out, o);
        } else {
            o = out.writeInt32BE(-1, o);
        }
    }
    TRAILER.copy(out, o);
    return out;
}
