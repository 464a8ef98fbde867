// Where signed checkpoints are published outside the database, so that someone who controls the
// database cannot quietly rewrite history and re-sign nothing. Each checkpoint travels with its
// leaves (the entry hashes its Merkle root covers), which lets verify name the exact entry that
// was rewritten and lets anyone build inclusion proofs without the database.
//   - LakeDirectorySink: the data lake as a folder (the lab). Files are written once, never
//     replaced, and left read-only; in production the lake is S3 with Object Lock in compliance
//     mode (components/, the Kubernetes/AWS issue), which makes that guarantee real.
//   - The event bus sink arrives with the Kafka issue; sinks are a list, so it slots in beside.
import * as fs from "node:fs";
import * as path from "node:path";
import type { SignedCheckpoint } from "../../model/ledger/core/checkpoint";

export interface PublishedCheckpoint {
    signed: SignedCheckpoint;
    /** Entry hashes from checkpoint.from to checkpoint.seq (hex). */
    leaves: string[];
}

export interface CheckpointSink {
    readonly name: string;
    has(shard: string, seq: number): Promise<boolean>;
    publish(shard: string, cp: PublishedCheckpoint): Promise<void>;
}

export class LakeDirectorySink implements CheckpointSink {
    readonly name: string;

    constructor(readonly root: string) {
        this.name = `lake:${root}`;
    }

    dir(shard: string): string {
        return path.join(this.root, "ledger", shard, "checkpoints");
    }

    file(shard: string, seq: number): string {
        return path.join(this.dir(shard), `${String(seq).padStart(16, "0")}.json`);
    }

    async has(shard: string, seq: number): Promise<boolean> {
        return fs.existsSync(this.file(shard, seq));
    }

    async publish(shard: string, cp: PublishedCheckpoint): Promise<void> {
        const file = this.file(shard, cp.signed.checkpoint.seq);
        await fs.promises.mkdir(path.dirname(file), { recursive: true });
        const body = `${JSON.stringify(cp)}\n`;
        const tmp = `${file}.${process.pid}.tmp`;
        await fs.promises.writeFile(tmp, body, { mode: 0o444 });
        try {
            // link() fails if the name exists: a published checkpoint is never replaced.
            await fs.promises.link(tmp, file);
        } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
            const existing = await fs.promises.readFile(file, "utf8");
            if (existing !== body) throw new Error(`${file} already holds a different checkpoint; refusing to replace it`);
        } finally {
            await fs.promises.rm(tmp, { force: true });
        }
    }

    /** Every checkpoint published for a shard, in seq order; unreadable files are reported, not skipped silently. */
    read(shard: string): { checkpoints: PublishedCheckpoint[]; problems: string[] } {
        const dir = this.dir(shard);
        const problems: string[] = [];
        if (!fs.existsSync(dir)) return { checkpoints: [], problems };
        const checkpoints: PublishedCheckpoint[] = [];
        for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".json")).sort()) {
            try {
                const cp = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as PublishedCheckpoint;
                if (!cp?.signed?.checkpoint || !Array.isArray(cp.leaves)) throw new Error("not a published checkpoint");
                checkpoints.push(cp);
            } catch (err) {
                problems.push(`${path.join(dir, f)}: ${(err as Error).message}`);
            }
        }
        return { checkpoints, problems };
    }
}
