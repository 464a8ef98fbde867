// scripts/images/oci.py, the OCI image writer of the lab's images (lab/images.ts reads its output): what containerd's import
// reads (the index's names, the blobs' digests, the config's diff_ids), and that the same
// input gives the same manifest digest (pods pin images by it).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { projectPath } from "../model/project";

const OCI = projectPath("scripts", "images", "oci.py");
const sha256 = (b: Buffer) => "sha256:" + crypto.createHash("sha256").update(b).digest("hex");

/** The members of an uncompressed tar (ustar/pax headers; pax records skipped), by name. */
function untar(buf: Buffer): Map<string, Buffer> {
    const files = new Map<string, Buffer>();
    let paxPath: string | undefined;
    for (let off = 0; off + 512 <= buf.length && buf[off] !== 0;) {
        const field = (o: number, n: number) => buf.subarray(off + o, off + o + n).toString("utf8").replace(/\0.*$/s, "");
        const size = parseInt(field(124, 12).trim() || "0", 8);
        const type = field(156, 1);
        const prefix = field(345, 155);
        const body = buf.subarray(off + 512, off + 512 + size);
        if (type === "x") paxPath = /\d+ path=([^\n]*)\n/.exec(body.toString("utf8"))?.[1];
        else {
            files.set(paxPath ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100)), body);
            paxPath = undefined;
        }
        off += 512 + Math.ceil(size / 512) * 512;
    }
    return files;
}

function build(work: string, out: string): string {
    const env = { ...process.env, SOURCE_DATE_EPOCH: "1735689600" };
    execFileSync("python3", [OCI, "layer", path.join(work, "root"), path.join(work, "layer.tar")], { env });
    return execFileSync("python3", [OCI, "image", "--name", "demo", "--layer", path.join(work, "layer.tar"), "--config", path.join(work, "config.json"), "--out", out], { env, stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
}

test("oci.py: an OCI layout containerd imports by name and by digest, the same bytes from the same input", () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-oci-"));
    try {
        fs.mkdirSync(path.join(work, "root", "usr", "bin"), { recursive: true });
        fs.writeFileSync(path.join(work, "root", "usr", "bin", "demo"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
        fs.writeFileSync(path.join(work, "config.json"), JSON.stringify({ Entrypoint: ["/usr/bin/demo"], User: "65534:65534" }));
        const digest = build(work, path.join(work, "a.oci.tar"));
        assert.match(digest, /^sha256:[0-9a-f]{64}$/);
        // Later files get newer mtimes; the clamp and the fixed owners keep the result the same.
        fs.utimesSync(path.join(work, "root", "usr", "bin", "demo"), new Date(), new Date());
        assert.equal(build(work, path.join(work, "b.oci.tar")), digest);
        assert.deepEqual(fs.readFileSync(path.join(work, "a.oci.tar")), fs.readFileSync(path.join(work, "b.oci.tar")));

        const layout = untar(fs.readFileSync(path.join(work, "a.oci.tar")));
        const blob = (d: string) => {
            const b = layout.get(`blobs/sha256/${d.slice("sha256:".length)}`);
            assert.ok(b, `blob ${d}`);
            assert.equal(sha256(b), d, "a blob's name is its digest");
            return b;
        };
        assert.deepEqual(JSON.parse(layout.get("oci-layout")!.toString()), { imageLayoutVersion: "1.0.0" });
        const index = JSON.parse(layout.get("index.json")!.toString());
        assert.deepEqual(index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations["io.containerd.image.name"]),
            ["nublar.local/demo:lab", `nublar.local/demo@${digest}`]);
        assert.equal(index.manifests[0].annotations["org.opencontainers.image.ref.name"], "lab");
        const manifest = JSON.parse(blob(digest).toString());
        const config = JSON.parse(blob(manifest.config.digest).toString());
        assert.equal(config.architecture, "amd64");
        assert.equal(config.os, "linux");
        assert.deepEqual(config.config, { Entrypoint: ["/usr/bin/demo"], User: "65534:65534" });
        const gz = blob(manifest.layers[0].digest);
        assert.equal(manifest.layers[0].mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
        assert.equal(gz.readUInt32LE(4), 0, "no timestamp in the gzip header");
        const layer = zlib.gunzipSync(gz);
        assert.deepEqual(config.rootfs.diff_ids, [sha256(layer)], "diff_id: the digest of the uncompressed layer");
        assert.deepEqual([...untar(layer).keys()], ["usr/", "usr/bin/", "usr/bin/demo"]);
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
});

test("oci.py: refuses a config key the image config does not have", () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-oci-"));
    try {
        fs.mkdirSync(path.join(work, "root"));
        fs.writeFileSync(path.join(work, "config.json"), JSON.stringify({ Entrypoint: ["/x"], Healthcheck: {} }));
        assert.throws(() => build(work, path.join(work, "a.oci.tar")), /Command failed/);
        assert.equal(fs.existsSync(path.join(work, "a.oci.tar")), false);
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
});
