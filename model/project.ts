// Where the project lives on this machine: the one module that computes it. Everything that
// needs a path inside the clone (the lab's state, tools, the CLI entry, stacks) starts here.
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * The clone's root folder: the nearest one above this module holding package.json and
 * Pulumi.yaml. That is the parent of model/ in the sources, and the clone too for the provider
 * plugin's compiled copy (.tools/provider/js/model/), which reads the sources' data files.
 */
export const PROJECT_ROOT = findRoot(path.resolve(__dirname, ".."));

function findRoot(start: string): string {
    for (let dir = start; ; dir = path.dirname(dir)) {
        if (fs.existsSync(path.join(dir, "package.json")) && fs.existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
        if (path.dirname(dir) === dir) return start;
    }
}

/** A path inside the clone, from the root: `projectPath("stacks", "Pulumi.lab.yaml")`. */
export function projectPath(...parts: string[]): string {
    return path.join(PROJECT_ROOT, ...parts);
}
