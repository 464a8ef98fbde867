import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { labImages } from "./images";

const digest = (c: string) => "sha256:" + c.repeat(64);

/** A temp folder laid out as scripts/images/build leaves it; `edit` changes images.json first. */
function imagesDir(edit: (j: Record<string, Record<string, string>>) => void = () => {}): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-images-"));
    const json: Record<string, Record<string, string> | string> & Record<string, Record<string, string>> = {};
    for (const [key, name, c, tag] of [["pause", "pause", "a", ""], ["lamp", "lamp", "b", ""], ["cacheProxy", "cache-proxy", "c", ""], ["metricsServer", "metrics-server", "d", ""],
        ["postgres", "postgres", "e", ":15"], ["redis", "redis", "1", ""], ["cnpg", "cnpg", "f", ""], ["coredns", "coredns", "0", ""]]) {
        json[key] = { ref: `nublar.local/${name}${tag}@${digest(c)}`, tar: `${name}.oci.tar`, name: `nublar.local/${name}:${tag.slice(1) || "lab"}` };
        fs.writeFileSync(path.join(dir, `${name}.oci.tar`), "");
    }
    (json as Record<string, unknown>).cnpgManifest = "cnpg-1.25.0.yaml";
    fs.writeFileSync(path.join(dir, "cnpg-1.25.0.yaml"), "");
    edit(json);
    fs.writeFileSync(path.join(dir, "images.json"), JSON.stringify(json));
    return dir;
}

test("labImages: the digest references, and the archives as absolute paths beside images.json", () => {
    const dir = imagesDir();
    try {
        const images = labImages(dir);
        assert.deepEqual(images.pause, { ref: `nublar.local/pause@${digest("a")}`, tar: path.join(dir, "pause.oci.tar") });
        assert.equal(images.lamp.ref, `nublar.local/lamp@${digest("b")}`);
        assert.equal(images.cacheProxy.tar, path.join(dir, "cache-proxy.oci.tar"));
        assert.equal(images.metricsServer.ref, `nublar.local/metrics-server@${digest("d")}`);
        // PostgreSQL's keeps its tag: CloudNativePG reads the major version from it.
        assert.equal(images.postgres.ref, `nublar.local/postgres:15@${digest("e")}`);
        assert.equal(images.cnpgManifest, path.join(dir, "cnpg-1.25.0.yaml"));
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("labImages: a missing build says to run scripts/setup", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-images-"));
    try {
        assert.throws(() => labImages(dir), /images\.json is missing \(run scripts\/setup\)/);
        fs.writeFileSync(path.join(dir, "images.json"), "{");
        assert.throws(() => labImages(dir), /is not JSON/);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("labImages: refuses a tag instead of a digest, a missing image, a path outside the folder, a missing archive", () => {
    const cases: [(j: Record<string, Record<string, string>>) => void, RegExp][] = [
        [(j) => { j.lamp.ref = "nublar.local/lamp:lab"; }, /lamp\.ref: must be pinned by digest/],
        [(j) => { delete j.cacheProxy; }, /cacheProxy: /],
        [(j) => { j.pause.tar = "../pause.oci.tar"; }, /pause\.tar: must be a file name beside images\.json/],
        [(j) => { j.pause.tar = "other.oci.tar"; }, /pause's archive .*other\.oci\.tar is missing/],
        [(j) => { (j as Record<string, unknown>).cnpgManifest = "../cnpg.yaml"; }, /cnpgManifest: must be a file name beside images\.json/],
        [(j) => { (j as Record<string, unknown>).cnpgManifest = "cnpg-9.9.9.yaml"; }, /CloudNativePG's manifest .*cnpg-9\.9\.9\.yaml is missing/],
    ];
    for (const [edit, error] of cases) {
        const dir = imagesDir(edit);
        try {
            assert.throws(() => labImages(dir), error);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }
});
