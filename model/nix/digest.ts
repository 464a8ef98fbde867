// What identifies a node's bundle (or its secrets): the same files give the same digest. The
// deployer records it in each generation; the provider's diff compares it, since the state keeps
// no bundle and no secret.
import { createHash } from "node:crypto";

export function bundleDigest(files: Record<string, string>): string {
    const h = createHash("sha256");
    for (const k of Object.keys(files).sort()) h.update(`${k}\0${files[k]}\0`);
    return h.digest("hex").slice(0, 16);
}
