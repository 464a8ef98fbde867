// How the CLI runs this repository's Pulumi engine: its own CLI build, plugins, state and the
// policy pack's runtime shim, whatever the user's shell has (scripts/env.sh sets the same).
import * as path from "node:path";
import { PROJECT_ROOT } from "../model/project";

export const PROJECT_DIR = PROJECT_ROOT;
export const PULUMI_BIN = path.join(PROJECT_DIR, ".tools", "bin", "pulumi");

/** NUBLAR_PROJECT_DIR: a Pulumi project folder other than this repository's (tests use their own). */
export function pulumiProjectDir(): string {
    return process.env.NUBLAR_PROJECT_DIR ?? PROJECT_DIR;
}

export function engineEnv(stack: string): Record<string, string> {
    const env: Record<string, string> = {
        PATH: [path.join(PROJECT_DIR, ".tools", "bin"), path.join(PROJECT_DIR, "policy", "bin"), process.env.PATH ?? ""].join(":"),
        PULUMI_HOME: process.env.PULUMI_HOME ?? path.join(PROJECT_DIR, ".nublar", "pulumi-home"),
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    };
    // The lab's passphrase is public on purpose (README, "The lab"); other stacks bring their own.
    const passphrase = process.env.PULUMI_CONFIG_PASSPHRASE ?? (stack === "lab" ? "nublar-lab" : undefined);
    if (passphrase !== undefined) env.PULUMI_CONFIG_PASSPHRASE = passphrase;
    return env;
}
