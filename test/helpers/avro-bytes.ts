// Hand-built Avro bytes for the tests of bounded decoding (model/events/schema-bounds.test.ts,
// test/events/poison.test.ts): the envelope's header and fields, written by hand so that a test
// can claim lengths and counts no encoder would write.

/** An Avro long (zigzag varint), exact for any value up to 2^63 (BigInt). */
export function avroLong(v: bigint | number): Buffer {
    let z = BigInt(v) >= 0n ? BigInt(v) * 2n : -BigInt(v) * 2n - 1n;
    const out: number[] = [];
    do {
        let b = Number(z & 0x7fn);
        z >>= 7n;
        if (z) b |= 0x80;
        out.push(b);
    } while (z);
    return Buffer.from(out);
}

/** An Avro string: its byte length, then its UTF-8 bytes. */
export const avroString = (s: string) => Buffer.concat([avroLong(Buffer.byteLength(s)), Buffer.from(s)]);

/** The two bytes every envelope starts with (model/events/schema.ts). */
export const ENVELOPE_HEADER = Buffer.from([0x00, 0x01]);

/** The envelope up to its payload's union branch: id, site, source, time, branch index. */
export function envelopeHead(branch: number, id = "x/123", time = 1_795_400_000_000_000): Buffer {
    return Buffer.concat([ENVELOPE_HEADER, avroString(id), avroString("lab"), avroString("a/b"), avroLong(time), avroLong(branch)]);
}

/** The review's message: 41 bytes, an ingress-change whose members list claims 2e8 items, followed by nothing. */
export const POISON_41 = Buffer.concat([envelopeHead(3), avroString("gate"), avroString("web"), avroString("m"), avroLong(2e8)]);
