// The nublar Pulumi program: one Site per stack, built from the stack's
// `nublar:site` config. The config is validated before any resource exists.
// Pulumi's SDK takes a stack trace for every promise it makes and every resource, and the
// source-map-support that ts-node installs maps each frame through source maps: 31% of the
// program's CPU in a 1,000-node preview, which a preview is bound by (bench/README.md). V8's own
// traces (positions in the transpiled code) make that preview 30% faster. NUBLAR_SOURCE_MAPS=1
// keeps the mapped ones, for debugging the program.
if (process.env.NUBLAR_SOURCE_MAPS !== "1") (Error as { prepareStackTrace?: unknown }).prepareStackTrace = undefined;
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { Site } from "./components/site";
import { siteFromConfig, SiteConfigError } from "./model/site/load";
import type { Site as SiteModel } from "./model/site/model";
import { PROJECT_ROOT } from "./model/project";
import { pulumiProjectDir } from "./runtime/pulumi-engine";

const stateRoot = process.env.NUBLAR_STATE_DIR ?? path.join(PROJECT_ROOT, ".nublar");

function loadSite(): SiteModel {
    try {
        const config = new pulumi.Config("nublar");
        // The Pulumi.yaml folder: this clone, or NUBLAR_PROJECT_DIR (runtime/pulumi-engine.ts).
        // (pulumi.runtime.getRootDirectory() needs a newer language host than the one built here,
        // scripts/engine/README.md; with this one it returns the placeholder "rootDirectory", and
        // every nublar:siteFile was refused. The program runs in main's folder, not the project's.)
        const projectDir = process.env.PULUMI_NODEJS_ROOT_DIRECTORY || pulumiProjectDir();
        return siteFromConfig({ site: config.getObject("site"), siteFile: config.get("siteFile") }, projectDir, `stack '${pulumi.getStack()}'`);
    } catch (err) {
        // RunError prints the message alone, without a stack trace: the problem is the config.
        if (err instanceof SiteConfigError) throw new pulumi.RunError(err.message);
        throw err;
    }
}

/** The program's commit, recorded in each node's system profile (absent outside a git checkout). */
function revision(): string | undefined {
    const r = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: PROJECT_ROOT, encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : undefined;
}

const model = loadSite();
const site = new Site(model.name, { site: model, stateRoot, revision: revision() });

export const siteName = model.name;
export const kind = model.kind;
export const nodes = site.nodes;
/** One line per node: the command that reaches it. */
export const ssh = site.nodes.apply((all) => Object.fromEntries(Object.entries(all).map(([name, n]) => [name, n.ssh])));
export const sshConfig = site.sshConfigFile;
/** The generation each node runs, as deployed by this stack. */
export const generations = site.generations;
/** The Unicorn ledger (lab): shards, endpoints, config and the checkpoint public key file. */
export const ledger = site.ledger;
/** The event pipeline (lab): brokers, the sensor gateway's URLs, topics and the lake folder. */
export const events = site.events;
// The lab's Kubernetes cluster (sites with `kubernetes`): its API and admin kubeconfig's file.
export const kube = site.kube;
