// Tests never skip silently: a missing prerequisite fails the test with a message
// that says what is missing and how to get it.
import { spawnSync } from "node:child_process";

const HOW = "run scripts/setup (it installs everything the tests need)";

export function requireRoot(layer: string): void {
    if (process.getuid?.() !== 0) {
        throw new Error(`the ${layer} tests create network namespaces and must run as root (e.g. sudo npm test)`);
    }
}

export function requireCommands(...commands: string[]): void {
    const missing = commands.filter((c) => spawnSync("sh", ["-c", `command -v ${c}`]).status !== 0);
    if (missing.length) throw new Error(`missing on PATH: ${missing.join(", ")}; ${HOW}`);
}
