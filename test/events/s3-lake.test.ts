// The lake's S3 writer (runtime/events/s3-lake.ts) against a real S3-compatible store: Versity's S3
// gateway (versitygw, built by setup from the Go module proxy) over a POSIX folder, on ::1. The
// same exactly-once checks as the folder's: whole files, a re-read batch skipped by offset, a
// resend dropped by id after a restart, and the files readable back.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import type { Delivered } from "../../runtime/events/consume";
import { lakeSink, readAvroFile } from "../../runtime/events/lake-sink";
import { S3Lake } from "../../runtime/events/s3-lake";
import type { NublarEvent } from "../../model/events/schema";
import { freePort } from "../helpers/ports";
import { waitFor } from "./fixture";

const BIN = path.resolve(__dirname, "..", "..", ".tools", "bin", "versitygw");
const skip = fs.existsSync(BIN) ? undefined : `no versitygw at ${BIN}: run scripts/setup`;
const ACCESS = "nublar-test";
const SECRET = "nublar-test-secret-key";
let dir: string;
let gw: ChildProcess | undefined;
let endpoint: string;
const stores: S3Lake[] = [];

const T0 = Date.UTC(2026, 10, 23, 9, 0, 0) * 1000;
function reading(seq: number): NublarEvent {
    return { id: `sensor/s1/${seq}`, site: "lab", source: "sensor-gateway", time: T0 + seq * 1000, type: "sensor-reading", payload: { sensor: "s1", kind: "temperature", value: seq, unit: "C", seq, receivedAt: T0 + seq * 1000, address: "::1" } };
}
const at = (offset: number, seq = offset): Delivered => ({ event: reading(seq), topic: "nublar.sensors", partition: 0, offset: BigInt(offset) });
const client = { region: "us-east-1", credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET } };
function lake() {
    const s = new S3Lake({ bucket: "lake", prefix: "park/", client: { ...client, endpoint, forcePathStyle: true } });
    stores.push(s);
    return s;
}

describe("the lake on an S3-compatible store", { skip }, () => {
    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-s3-"));
        fs.mkdirSync(path.join(dir, "data"));
        const port = await freePort();
        endpoint = `http://[::1]:${port}`;
        const log = fs.openSync(path.join(dir, "versitygw.log"), "a");
        gw = spawn(BIN, ["--access", ACCESS, "--secret", SECRET, "--port", `[::1]:${port}`, "posix", path.join(dir, "data")], { stdio: ["ignore", log, log] });
        fs.closeSync(log);
        const s3 = new S3Client({ ...client, endpoint, forcePathStyle: true });
        try {
            await waitFor("versitygw to answer", async () => {
                if (gw!.exitCode !== null) throw new Error(`versitygw exited: ${fs.readFileSync(path.join(dir, "versitygw.log"), "utf8").slice(-500)}`);
                await s3.send(new CreateBucketCommand({ Bucket: "lake" }));
                return true;
            }, 30_000, 200);
        } finally {
            s3.destroy();
        }
    });

    after(async () => {
        for (const s of stores) s.close();
        if (gw && gw.exitCode === null) {
            gw.kill("SIGTERM");
            await new Promise((r) => gw!.once("exit", r));
        }
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test("files are written whole under the prefix, a re-read batch adds nothing, a resend after a restart is dropped, and they read back", async () => {
        const first = lakeSink(lake());
        await first.handle([at(0), at(1), at(2)]);
        // A crash before the commit: a new sink (no memory) gets 0-2 again, a resend of seq 1, and more.
        const second = lakeSink(lake());
        await second.handle([at(0), at(1), at(2), at(3, 1), at(4)]);
        assert.equal(second.stats.skipped, 3, "offsets the lake holds");
        assert.equal(second.stats.resends, 1, "the resend, known from the files");
        const store = lake();
        const keys = await store.list("events/");
        assert.equal(keys.length, 2);
        assert.ok(keys.every((k) => /^events\/nublar\.sensors\/date=2026-11-23\/hour=09\/nublar\.sensors\+0\+\d{20}\+\d{20}\.avro$/.test(k)), keys.join(" "));
        const ids = (await Promise.all(keys.map(async (k) => readAvroFile(await store.get(k))))).flat().map((e) => e.id).sort();
        assert.deepEqual(ids, ["sensor/s1/0", "sensor/s1/1", "sensor/s1/2", "sensor/s1/4"]);
        // On disk, under the bucket and the prefix: the store really holds them.
        const onDisk = (fs.readdirSync(path.join(dir, "data", "lake"), { recursive: true }) as string[]).filter((f) => f.endsWith(".avro"));
        assert.equal(onDisk.length, 2);
        assert.ok(onDisk.every((f) => f.startsWith(`park${path.sep}events`)));
    });

    test("writing a file that is already there changes nothing", async () => {
        const store = lake();
        const [key] = await store.list("events/");
        const before = await store.get(key);
        await store.put(key, Buffer.from("not what was there"));
        const afterBytes = await store.get(key);
        // If-None-Match: * makes the store refuse it (412), which the writer takes as "already there".
        assert.ok(afterBytes.equals(before), "the object is unchanged");
    });
});
