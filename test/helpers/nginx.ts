// `nginx -t` on a config, in a scratch prefix of its own: Debian's Nginx checks what we render.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** `edit` may point the config's paths into the scratch folder it is given. */
export function nginxTest(conf: string, edit: (conf: string, dir: string) => string = (c) => c): { status: number | null; output: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-nginx-t-"));
    try {
        fs.mkdirSync(path.join(dir, "logs"));
        fs.mkdirSync(path.join(dir, "temp")); // the daemon starters create it too
        fs.writeFileSync(path.join(dir, "nginx.conf"), edit(conf, dir));
        const r = spawnSync("nginx", ["-t", "-p", dir, "-c", path.join(dir, "nginx.conf")], { encoding: "utf8" });
        return { status: r.status, output: `${r.stdout}${r.stderr}` };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
