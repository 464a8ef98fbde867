// Where the project lives on this machine: the one module that computes it. Everything that
// needs a path inside the clone (the lab's state, tools, the CLI entry, stacks) starts here.
import * as path from "node:path";

/** The clone's root folder (the one holding package.json and Pulumi.yaml). */
export const PROJECT_ROOT = path.resolve(__dirname, "..");

/** A path inside the clone, from the root: `projectPath("stacks", "Pulumi.lab.yaml")`. */
export function projectPath(...parts: string[]): string {
    return path.join(PROJECT_ROOT, ...parts);
}
