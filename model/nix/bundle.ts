// A node's bundle, as a deployment carries it. Most of a bundle is this release of nublar's own
// files (the NixOS modules, Nginx's Lua balancer: 45 of a lab node's 60 KB), the same for every
// node. A deployment's inputs are kept in the Pulumi state, so they hold only the node's own
// files and the names and digest of the release files it uses; the deployer takes those from
// the release it runs (the same checkout as the program), and refuses a release whose files
// differ from what the program planned.
import { createHash } from "node:crypto";
import { releaseFiles } from "./render";

/** What identifies a bundle (or a node's secrets): the same files give the same digest. */
export function bundleDigest(files: Record<string, string>): string {
    const h = createHash("sha256");
    for (const k of Object.keys(files).sort()) h.update(`${k}\0${files[k]}\0`);
    return h.digest("hex").slice(0, 16);
}

export interface PackedBundle {
    /** The node's own files (its config, agent.json, nginx.conf, ...): path -> content. */
    own: Record<string, string>;
    /** The release's files it uses, by path, and their digest. */
    release: { files: string[]; digest: string };
}

export class ReleaseMismatchError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ReleaseMismatchError";
    }
}

function pick(files: Record<string, string>, names: string[]): Record<string, string> {
    return Object.fromEntries(names.map((n) => [n, files[n]]));
}

/** Split a bundle into the node's own files and the release files it uses unchanged. */
export function packBundle(files: Record<string, string>): PackedBundle {
    const release = releaseFiles();
    const shared = Object.keys(files).filter((n) => release[n] !== undefined && release[n] === files[n]).sort();
    const own = Object.fromEntries(Object.entries(files).filter(([n]) => !shared.includes(n)));
    return { own, release: { files: shared, digest: bundleDigest(pick(release, shared)) } };
}

/** The whole bundle again, with the release files from this checkout: they must be the ones packed. */
export function unpackBundle(p: PackedBundle): Record<string, string> {
    const release = releaseFiles();
    const missing = p.release.files.filter((n) => release[n] === undefined);
    const files = pick(release, p.release.files);
    if (missing.length || bundleDigest(files) !== p.release.digest) {
        throw new ReleaseMismatchError(`the bundle was planned with nublar release files (${p.release.files.length}, digest ${p.release.digest}) that this checkout does not have` +
            `${missing.length ? ` (missing: ${missing.join(", ")})` : ` (its digest: ${bundleDigest(files)})`}: ` +
            "the program and the provider plugin come from different nublar checkouts; run scripts/setup in the program's checkout");
    }
    return { ...files, ...p.own };
}
