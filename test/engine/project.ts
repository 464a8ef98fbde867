// A Pulumi project of a test's (or a benchmark's) own whose program is this repository's: same
// code, separate stacks, state, Pulumi home and nublar state folder, removed by `remove()`.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { after, before } from "node:test";
import { parse, stringify } from "yaml";
import { cleanLab } from "../../lab/inspect";
import { labImages } from "../../lab/images";
import { netnsExists } from "../../lab/ops";
import { requireRoot } from "../helpers/prereq";
import { engineEnv, PROJECT_DIR } from "../../runtime/pulumi-engine";

export const ROOT = PROJECT_DIR;
const PASSPHRASE = "engine-test";

export interface RunResult {
    status: number | null;
    stdout: string;
    stderr: string;
    output: string;
}

export class TestProject {
    readonly work = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-engine-"));
    /** NUBLAR_STATE_DIR for the program and the CLI: lab files, audit keys. */
    readonly stateDir = path.join(this.work, "files");

    /** `main`: the program's folder (another checkout of nublar, for an upgrade test); this one by default. */
    constructor(main = ROOT) {
        fs.mkdirSync(path.join(this.work, "stacks"));
        fs.mkdirSync(path.join(this.work, "state"));
        this.setMain(main);
        // nublar's provider plugin, into this project's own Pulumi home (scripts/setup built it).
        const home = path.join(this.work, "pulumi-home");
        const r = spawnSync(path.join(ROOT, "scripts", "build-provider"), ["--install-only", "--pulumi-home", home], { encoding: "utf8", env: { ...process.env, ...engineEnv(""), PULUMI_HOME: home } });
        assert.equal(r.status, 0, `installing the nublar provider plugin into ${home}:\n${r.stderr}`);
    }

    /**
     * Point the project at a program (a checkout of nublar): the next `pulumi` run uses it.
     * `typescript: false` for a plain-JS program (the benchmarks' synthetic ones).
     */
    setMain(main: string, opts: { typescript?: boolean } = {}): void {
        fs.writeFileSync(path.join(this.work, "Pulumi.yaml"), stringify({
            name: "nublar",
            runtime: { name: "nodejs", options: { typescript: opts.typescript ?? true } },
            main,
            stackConfigDir: "stacks",
            backend: { url: `file://${path.join(this.work, "state")}` },
        }));
    }

    env(): NodeJS.ProcessEnv {
        // The CLI's engine settings (runtime/pulumi-engine.ts), with this project's own home and state.
        const env: NodeJS.ProcessEnv = {
            ...process.env,
            ...engineEnv(""),
            PULUMI_HOME: path.join(this.work, "pulumi-home"),
            PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
            NUBLAR_STATE_DIR: this.stateDir,
            NUBLAR_PROJECT_DIR: this.work,
        };
        delete env.PULUMI_BACKEND_URL; // the project names its own backend
        return env;
    }

    stackFile(stack: string): string {
        return path.join(this.work, "stacks", `Pulumi.${stack}.yaml`);
    }

    /**
     * Write a stack whose `nublar:site` is `site`, and create it. `siteFile`: put the site in a
     * YAML file of its own (`nublar:siteFile`), as large sites must: Pulumi passes config to the
     * program in one environment variable, which Linux caps at 128 KiB.
     */
    addStack(stack: string, site: unknown, opts: { siteFile?: boolean; config?: Record<string, unknown> } = {}): void {
        let config: Record<string, unknown> = { "nublar:site": site };
        if (opts.siteFile) {
            const file = path.join(this.work, `${stack}-site.yaml`);
            fs.writeFileSync(file, stringify(site));
            config = { "nublar:siteFile": file };
        }
        fs.writeFileSync(this.stackFile(stack), stringify({ config: { ...config, ...opts.config } }));
        const r = this.pulumi(["stack", "init", "--secrets-provider", "passphrase"], stack);
        assert.equal(r.status, 0, `stack init ${stack}:\n${r.output}`);
    }

    pulumi(args: string[], stack: string, timeoutMs = 300_000): RunResult {
        const res = spawnSync("pulumi", [...args, "--stack", stack, "--non-interactive"], { cwd: this.work, env: this.env(), encoding: "utf8", timeout: timeoutMs, maxBuffer: 1 << 28 });
        return { status: res.status, stdout: res.stdout ?? "", stderr: res.stderr ?? "", output: `${res.stdout}\n${res.stderr}` };
    }

    /** The `nublar` CLI, reading this project's stacks. */
    nublar(args: string[], timeoutMs = 60_000): RunResult {
        const res = spawnSync(process.execPath, [path.join(ROOT, "cli", "nublar.js"), ...args], { env: this.env(), encoding: "utf8", timeout: timeoutMs });
        return { status: res.status, stdout: res.stdout ?? "", stderr: res.stderr ?? "", output: `${res.stdout}\n${res.stderr}` };
    }

    remove(): void {
        fs.rmSync(this.work, { recursive: true, force: true });
    }
}

/**
 * The committed lab site, made a test's own: its tag (namespaces, links), management prefix and
 * ports (`slot`, e.g. the process id), so that it never meets a lab the user runs.
 */
export function engineLabSite(tag: string, slot: number, opts: { kubernetes?: boolean } = {}) {
    const site = parse(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.lab.yaml"), "utf8")).config["nublar:site"];
    // The lab's Kubernetes cluster only where a test is about it (test/engine/kube.test.ts): it
    // takes a minute and a gigabyte, and an older commit's program refuses the setting.
    if (!opts.kubernetes) delete site.kubernetes;
    site.lab = { ...site.lab, tag, managementPrefix: "fd6e:626c:656e::/64" };
    // A restarted agent's path sessions come back in 5-10 s (RFC 5880 §6.8.1 replay window); a
    // broken deploy should fail the test's `up` in less than the default minute.
    site.deploy = { ...site.deploy, confirmTimeoutMs: 20_000 };
    // 100 ms x 3 rather than the lab's 20 ms x 3: on this shared 2-vCPU machine a CPU burst (a
    // deploy, a compile) can flap 60 ms sessions, and the tests count failed requests through a
    // deploy. The network tests do the same (test/network/park.ts); the benchmark runs 10 ms x 3.
    site.sla = { ...site.sla, failoverBudgetMs: 1000 };
    const n = slot % 500;
    // The ledger on ports of its own (not the user's lab's), checkpointing often enough to see.
    site.ledger = { labBasePort: 27000 + n * 8, checkpoint: { entries: 50, ms: 1000 } };
    // The event bus too: its broker, gateway and dashboard ports of its own.
    site.events = { labBasePort: 23000 + n * 8, gatewayPort: 23004 + n * 8, dashboardPort: 23005 + n * 8 };
    return site;
}

/**
 * The hooks of a test of the kube-program fixture (the lab's cluster and the site's workloads):
 * before, the prerequisites said by name and the stack added; after, even when a test failed,
 * `pulumi destroy` while the cluster's namespace is there, then the lab's leftovers and the project.
 */
export function kubeFixtureHooks(project: TestProject, stack: string, site: unknown, tag: string, netns: string, destroy: () => unknown): void {
    before(() => {
        requireRoot("engine");
        for (const f of [path.join(ROOT, ".tools", "kube", "bin", "kubectl"), path.join(ROOT, ".tools", "kube", "bin", "kubelet"), path.join(ROOT, ".tools", "pulumi-kubernetes", "pulumi-resource-kubernetes")]) {
            assert.ok(fs.existsSync(f), `${f} is missing: run scripts/setup`);
        }
        labImages(); // says what is missing, if anything
        project.addStack(stack, site);
    });
    after(() => {
        if (netnsExists(netns)) destroy();
        cleanLab(tag, project.stateDir);
        project.remove();
    });
}
