// The agent's event log on disk, and how a reader follows it across rotations.
//
// The writer (EventLog, ./events.ts) appends JSON lines to FILE. Once FILE would pass its size
// bound it rotates: FILE.<keep> is deleted, FILE.<i> is renamed FILE.<i+1> (highest first), FILE
// is renamed FILE.1, and a new FILE is started. So FILE is the newest, FILE.1 the one before it,
// and so on; a file is never written again once renamed, and only ever moves to a higher index.
//
// A reader (the agent's outbox, ./outbox.ts; the ledger's collector, runtime/ledger/collect.ts)
// keeps a TailPosition: which file it is in and how far. A file is known by its inode and its
// first bytes (its head: the start of its first line, an event with its time and seq), not by its
// name, which changes under it. Each read:
//   - finds the file it is in, under whichever name it has now (FILE, FILE.1, ...);
//   - reads what is new there, whole lines only (a rotated file is finished: a last line without
//     a newline, from a write cut short, is returned as it is);
//   - once a rotated file is read to its end, moves to the file after it (the one just below it,
//     FILE.<i-1>, or FILE), from its start.
// A new reader (no saved position) starts from the oldest file kept; a bare {offset} saved
// before rotation existed is taken as FILE's.
// So across any number of rotations each line is returned once and in order, as long as the
// reader is not so far behind that its file was deleted; then it starts again from the oldest
// file kept, and says so (events in between are lost, those kept may be read again: both readers'
// ids and keys make that harmless).
import * as crypto from "node:crypto";
import * as fs from "node:fs";

/** How many rotated files a reader looks for (FILE.1 to FILE.<MAX_ROTATED>); the writer keeps at most this many. */
export const MAX_ROTATED = 9;
/** How much of a file's first line identifies it. */
const HEAD_BYTES = 128;

/** FILE for index 0, FILE.<i> for a rotated one. */
export function rotatedPath(file: string, index: number): string {
    return index === 0 ? file : `${file}.${index}`;
}

/** Where a reader is: how far into which file. Without ino (a position saved before rotation existed, or none yet), it is FILE's. */
export interface TailPosition {
    offset: number;
    ino?: number;
    /** The file's head, base64 (empty while the file was empty). */
    head?: string;
}

export interface TailChunk {
    /** Whole lines, the newline of the last one included (or not, for the cut-short last line of a rotated file). */
    data: Buffer;
    /** The file's name when it was read, and the offset in it where `data` starts (for messages). */
    path: string;
    start: number;
    /** Short and stable for the life of the file (a hash of its head): with `start`, names a line uniquely across rotations. */
    fileId: string;
    /** The position after `data`: what to save once `data` is taken care of. */
    next: TailPosition;
}

interface Opened {
    index: number;
    path: string;
    /** Open for reading: what is read is this file, whatever its name has become since. */
    fd: number;
    ino: number;
    size: number;
    head: Buffer;
}

/** A file's head: its first line, at most HEAD_BYTES of it (stable once that much is written). */
function headOf(fd: number, size: number): Buffer {
    const buf = Buffer.alloc(Math.min(size, HEAD_BYTES));
    const n = buf.length ? fs.readSync(fd, buf, 0, buf.length, 0) : 0;
    const nl = buf.subarray(0, n).indexOf(0x0a);
    return buf.subarray(0, nl >= 0 ? nl + 1 : n);
}

/** Opens FILE or FILE.<index>, if it is there; the caller closes it (`done`). */
function identify(file: string, index: number): Opened | undefined {
    const p = rotatedPath(file, index);
    let fd: number;
    try {
        fd = fs.openSync(p, "r");
    } catch {
        return undefined;
    }
    try {
        const st = fs.fstatSync(fd);
        return { index, path: p, fd, ino: st.ino, size: st.size, head: headOf(fd, st.size) };
    } catch (err) {
        fs.closeSync(fd);
        throw err;
    }
}

function done(...files: (Opened | undefined)[]): void {
    for (const f of files) if (f) fs.closeSync(f.fd);
}

/** Is `o` the file `pos` names? Same inode, and its head starts with the head the position saw (a file's start never changes). */
function isAt(o: Opened, pos: TailPosition): boolean {
    if (o.ino !== pos.ino) return false;
    const head = Buffer.from(pos.head ?? "", "base64");
    return o.head.subarray(0, head.length).equals(head);
}

const positionIn = (o: Opened, offset: number): TailPosition => ({ offset, ino: o.ino, head: o.head.toString("base64") });
const fileIdOf = (o: Opened) => crypto.createHash("sha256").update(o.head).digest("hex").slice(0, 12);

/** Reads the agent's event log from a saved position, following rotations. One instance per reader and file. */
export class EventFileTail {
    private pos: TailPosition;

    constructor(readonly file: string, position: TailPosition = { offset: 0 }, private readonly log: (m: string) => void = () => undefined) {
        this.pos = { ...position, offset: Number.isSafeInteger(position.offset) && position.offset > 0 ? position.offset : 0 };
    }

    /** The position to save (after the last chunk committed). */
    get position(): TailPosition {
        return { ...this.pos };
    }

    /** Takes a chunk as done: the next read starts after it. */
    commit(chunk: TailChunk): void {
        this.pos = chunk.next;
    }

    /**
     * The next whole lines after the position, at most maxBytes (a single longer line is cut at
     * maxBytes), or undefined when there is nothing new. Does not move the position, except past
     * a rotated file already read to its end (nothing is skipped by that).
     */
    read(maxBytes: number): TailChunk | undefined {
        for (let attempt = 0; attempt < 2 * MAX_ROTATED + 4; attempt++) {
            const at = this.locate();
            if (at === "missing") return undefined;
            if (at === "retry") continue;
            const { file: o, newer } = at;
            try {
                if (o.size < this.pos.offset) {
                    // Same file, shorter: truncated in place. Start over (ids and keys make a re-read harmless).
                    this.log(`${o.path} is shorter than the ${this.pos.offset} bytes already read: reading it again from the start`);
                    this.pos = positionIn(o, 0);
                }
                if (o.size > this.pos.offset) return this.readFrom(o, maxBytes); // undefined: a line still being written
                if (o.index === 0) return undefined; // at the end of the newest file
                // A rotated file read to its end: on to the one after it, from its start.
                if (newer) this.pos = positionIn(newer, 0);
                // else the new FILE is not there yet (the writer is between its rename and its open): look again
            } finally {
                done(o, newer);
            }
        }
        return undefined;
    }

    private readFrom(o: Opened, maxBytes: number): TailChunk | undefined {
        const length = Math.min(o.size - this.pos.offset, maxBytes);
        const buf = Buffer.alloc(length);
        const n = fs.readSync(o.fd, buf, 0, length, this.pos.offset);
        let end = buf.subarray(0, n).lastIndexOf(0x0a) + 1;
        if (end === 0) {
            if (n === maxBytes) end = n; // one line longer than a whole read: cut, so a reader never stalls on it
            else if (o.index > 0 && this.pos.offset + n === o.size) end = n; // a finished file's cut-short last line
            else return undefined;
        }
        return { data: buf.subarray(0, end), path: o.path, start: this.pos.offset, fileId: fileIdOf(o), next: positionIn(o, this.pos.offset + end) };
    }

    /**
     * The file the position is in, under its current name, and the file after it (the one a
     * rotation made next, at the index below), both open; the caller closes them.
     */
    private locate(): { file: Opened; newer?: Opened } | "missing" | "retry" {
        const current = identify(this.file, 0);
        if (this.pos.ino === undefined) {
            if (this.pos.offset === 0) {
                // A new reader: from the start of the oldest file kept.
                for (let i = MAX_ROTATED; i >= 1; i--) {
                    const o = identify(this.file, i);
                    if (!o) continue;
                    done(current, o);
                    this.pos = positionIn(o, 0);
                    return "retry";
                }
            }
            // Only FILE (nothing rotated yet), or a position saved before rotation existed: FILE's.
            if (!current || current.size === 0) {
                done(current);
                return "missing";
            }
            this.pos = positionIn(current, this.pos.offset);
            return { file: current };
        }
        if (current && isAt(current, this.pos)) {
            if (current.head.length > Buffer.from(this.pos.head ?? "", "base64").length) this.pos = positionIn(current, this.pos.offset);
            return { file: current };
        }
        done(current);
        // Rotated away: look for it from FILE.1 up. Files only move up, and a rotation renames the
        // highest first, so a file is found at its old index or at a higher one later in the scan.
        for (let i = 1; i <= MAX_ROTATED; i++) {
            const o = identify(this.file, i);
            if (!o) continue;
            if (!isAt(o, this.pos)) {
                done(o);
                continue;
            }
            const newer = identify(this.file, i - 1);
            // Still at index i once i-1 is open: then i-1 is the file after it (a rotation renames
            // i to i+1 before i-1 to i), not one rotated in since.
            const again = identify(this.file, i);
            const still = !!again && isAt(again, this.pos);
            done(again);
            if (!still) {
                done(o, newer);
                return "retry";
            }
            if (newer && newer.ino === o.ino) {
                done(newer);
                return { file: o };
            }
            return { file: o, newer };
        }
        // Deleted: the reader fell more than a whole rotation window behind (or the files were replaced).
        let oldest: Opened | undefined;
        for (let i = MAX_ROTATED; i >= 0 && !oldest; i--) oldest = identify(this.file, i);
        if (!oldest) return "missing";
        done(oldest);
        this.log(`${this.file}: the file at offset ${this.pos.offset} is no longer there (rotated out before it was read); continuing from the oldest kept, ${oldest.path}: events in between may be lost`);
        this.pos = positionIn(oldest, 0);
        return "retry";
    }
}

/** The lines of a chunk, each with its offset in its file; blank lines are left out. */
export function linesOf(chunk: TailChunk): { text: string; offset: number }[] {
    const out: { text: string; offset: number }[] = [];
    let at = chunk.start;
    let from = 0;
    while (from < chunk.data.length) {
        const nl = chunk.data.indexOf(0x0a, from);
        const to = nl < 0 ? chunk.data.length : nl;
        const text = chunk.data.subarray(from, to).toString("utf8");
        if (text.trim()) out.push({ text, offset: at });
        at += to - from + 1;
        from = to + 1;
    }
    return out;
}
