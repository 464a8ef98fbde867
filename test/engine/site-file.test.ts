// Engine layer: a site given as a file (`nublar:siteFile`, as sites of more than a few hundred
// nodes must be: Pulumi passes config in one environment variable, capped at 128 KiB). The real
// program, under the real engine, reads it from inside the project folder and refuses one outside.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { requireCommands } from "../helpers/prereq";
import { ROOT, TestProject } from "./project";

const project = new TestProject();
const park = parse(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.isla-nublar.yaml"), "utf8")).config["nublar:site"];
const outside = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-outside-"));

before(() => requireCommands("pulumi", "pulumi-language-nodejs"));
after(() => {
    project.remove();
    fs.rmSync(outside, { recursive: true, force: true });
});

test("a park from a site file inside the project previews: one deployment and one key per tunnel for each node", () => {
    // Its Kubernetes workloads rendered to a folder: no cluster is reachable from here.
    project.addStack("file", park, { siteFile: true, config: { "nublar:kubernetesRenderTo": path.join(project.work, "rendered") } });
    const r = project.pulumi(["preview", "--json"], "file");
    assert.equal(r.status, 0, r.output);
    const creates = (JSON.parse(r.stdout).steps as { op: string; urn: string }[]).filter((s) => s.op === "create").map((s) => s.urn.split("::")[2].split("$").pop());
    const count = (t: string) => creates.filter((c) => c === t).length;
    assert.equal(count("nublar:nixos:Deployment"), park.nodes.length);
    // The BFD key, a WireGuard key per tunnel, and the ledger cache's Redis password (its Kubernetes workloads).
    const cachePassword = park.kubernetes && park.kubernetes.ledger !== false ? 1 : 0;
    assert.equal(cachePassword, 1, "isla-nublar runs its ledger on Kubernetes");
    assert.equal(count("nublar:nixos:GeneratedKey"), 1 + park.nodes.length * park.providers.length + cachePassword, "the BFD key, a WireGuard key per tunnel, the cache's password");
});

test("a site file outside the project is refused, naming the key and the rule", () => {
    const file = path.join(outside, "site.yaml");
    fs.writeFileSync(file, stringify(park));
    fs.writeFileSync(project.stackFile("outside"), stringify({ config: { "nublar:siteFile": file } }));
    assert.equal(project.pulumi(["stack", "init", "--secrets-provider", "passphrase"], "outside").status, 0);
    const r = project.pulumi(["preview"], "outside");
    assert.notEqual(r.status, 0);
    assert.match(r.output, /nublar:siteFile = ".*site\.yaml": must be a file inside the project folder/);
});
