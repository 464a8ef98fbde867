// The lab cluster's container images (scripts/images/build): built from Debian packages by
// scripts/setup, since no registry can be reached, and imported into the node's containerd
// from their OCI archives. Pods refer to them by digest, as the parks' do.
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { PINNED_IMAGE } from "../model/site/model";
import { projectPath } from "../model/project";

/** One image: its digest reference, and the OCI archive to import it from (absolute). */
export interface LabImage {
    ref: string;
    tar: string;
}

export interface LabImages {
    /** The pod sandbox (catatonit -P): containerd's sandbox_image. */
    pause: LabImage;
    /** images/lab-lamp: the stand-in for images/centos7-lamp. */
    lamp: LabImage;
    /** The LAMP pod's caching Nginx sidecar (components/k8s/lamp.ts). */
    cacheProxy: LabImage;
    /** sigs.k8s.io/metrics-server, for the HPA's CPU metrics. */
    metricsServer: LabImage;
    /** The ledger's PostgreSQL for CloudNativePG (Debian's postgresql-15 as uid 26), `name:<major>@sha256:...`. */
    postgres: LabImage;
    /** The ledger's cache tier: Debian's Redis as uid 999. */
    redis: LabImage;
    /** CloudNativePG's operator (and the instance manager it copies into PostgreSQL's pods). */
    cnpg: LabImage;
    /** The cluster's DNS: CoreDNS with the kubernetes plugin. */
    coredns: LabImage;
    /** CloudNativePG's release manifest from the operator's Go module (releases/cnpg-<version>.yaml), absolute. */
    cnpgManifest: string;
}

const IMAGE_KEYS = ["pause", "lamp", "cacheProxy", "metricsServer", "postgres", "redis", "cnpg", "coredns"] as const;

const Entry = z.strictObject({
    ref: z.string().regex(PINNED_IMAGE, "must be pinned by digest: nublar.local/<name>@sha256:<64 hex digits>"),
    // A file name beside images.json: the folder is moved whole between builds and caches.
    tar: z.string().regex(/^[A-Za-z0-9._-]+\.oci\.tar$/, "must be a file name beside images.json, ending in .oci.tar"),
    name: z.string().min(1),
});
const ImagesFile = z.object({
    ...Object.fromEntries(IMAGE_KEYS.map((k) => [k, Entry])) as Record<(typeof IMAGE_KEYS)[number], typeof Entry>,
    cnpgManifest: z.string().regex(/^cnpg-[0-9.]+\.yaml$/, "must be a file name beside images.json: cnpg-<version>.yaml"),
});

/** Reads and checks `dir`/images.json (default .tools/images, linked by scripts/setup). */
export function labImages(dir: string = projectPath(".tools", "images")): LabImages {
    const file = path.join(dir, "images.json");
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`the lab's container images are not built: ${file} is missing (run scripts/setup)`);
        throw e;
    }
    let json: unknown;
    try {
        json = JSON.parse(text);
    } catch (e) {
        throw new Error(`${file} is not JSON (${(e as Error).message}); rebuild it with scripts/setup`);
    }
    const parsed = ImagesFile.safeParse(json);
    if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ");
        throw new Error(`${file} is not a valid image list (${problems}); rebuild it with scripts/setup`);
    }
    const entry = (key: (typeof IMAGE_KEYS)[number]): LabImage => {
        const { ref, tar } = parsed.data[key];
        const abs = path.join(dir, tar);
        if (!fs.existsSync(abs)) throw new Error(`${file}: ${key}'s archive ${abs} is missing (run scripts/setup)`);
        return { ref, tar: abs };
    };
    const cnpgManifest = path.join(dir, parsed.data.cnpgManifest);
    if (!fs.existsSync(cnpgManifest)) throw new Error(`${file}: CloudNativePG's manifest ${cnpgManifest} is missing (run scripts/setup)`);
    return { ...(Object.fromEntries(IMAGE_KEYS.map((k) => [k, entry(k)])) as Record<(typeof IMAGE_KEYS)[number], LabImage>), cnpgManifest };
}
