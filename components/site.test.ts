// The Pulumi program under pulumi.runtime.setMocks: which resources a site
// registers, how they are parented, and that bad config creates nothing.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { loadSiteFromStackFile, stackFile } from "../model/site/load";
import { planLab } from "../model/network/lab-plan";
import { PROJECT_ROOT } from "../model/project";

const ROOT = PROJECT_ROOT;

interface Registered {
    type: string;
    name: string;
    inputs: Record<string, any>;
    parent?: string;
}
const registered: Registered[] = [];

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            registered.push({ type: args.type, name: args.name, inputs: args.inputs });
            // Dynamic resources compute these outputs; echo plausible values.
            const extra = args.type.endsWith("lab:SshKey") ? { publicKey: `ssh-ed25519 AAAA${args.name}` }
                : args.type.endsWith("nixos:GeneratedKey") ? { value: `SECRET-VALUE-${args.name}`, publicKey: `PUBLIC-${args.name}` }
                : args.type.endsWith("lab:Sshd") ? { pid: 4242 }
                : args.type.endsWith("nixos:Deployment") ? { generation: 1, digest: "0123456789abcdef" } : {};
            return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

function outputValue<T>(o: pulumi.Output<T>): Promise<T> {
    return new Promise((resolve) => o.apply(resolve));
}

test("a lab site builds one LabPark whose resources follow the plan", async () => {
    const { Site } = await import("./site");
    const model = loadSiteFromStackFile(stackFile(ROOT, "lab"));
    const plan = planLab(model);
    registered.length = 0;
    const site = new Site("lab", { site: model, stateRoot: "/tmp/nublar-unit" });
    const nodes = await outputValue(site.nodes);
    await outputValue(site.urn);
    assert.deepEqual(await outputValue(site.generations), Object.fromEntries(plan.nodes.map((n) => [n.name, 1])));

    const count = (t: string) => registered.filter((r) => r.type === `nublar:lab:${t}`).length;
    assert.equal(registered.filter((r) => r.type === "nublar:site:Site").length, 1);
    assert.equal(registered.filter((r) => r.type === "nublar:lab:LabPark").length, 1);
    // The nublar-sla policies read the site description from the site component's inputs.
    assert.deepEqual(registered.find((r) => r.type === "nublar:site:Site")!.inputs.site, JSON.parse(JSON.stringify(model)));
    // ... and trust the lab ledger's passwords and signing key to be secret (policy/rules/secrets.ts).
    const ledger = registered.find((r) => r.type === "nublar:lab:LedgerCluster")!;
    for (const slot of ["passwords", "signingKey"]) {
        assert.equal(ledger.inputs[slot]["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270", `${slot} marked secret`);
    }
    // The lab's Kubernetes node has a namespace and a management link of its own.
    const kube = plan.kube ? 1 : 0;
    assert.ok(kube, "the lab site has kubernetes");
    assert.equal(count("Netns"), plan.nodes.length + plan.routers.length + kube);
    assert.equal(count("Veth"), plan.nodes.reduce((n, node) => n + 1 + node.uplinks.length, 0) + kube);
    assert.equal(count("KubeCluster"), kube);
    // Its workloads go through the Kubernetes provider that reaches it, with the lab's images.
    const lamp = registered.find((r) => r.type === "kubernetes:apps/v1:Deployment" && r.name === model.kubernetes!.lamp[0].name)!;
    assert.match(lamp.inputs.spec.template.spec.containers[0].image, /^nublar\.local\/lamp@sha256:[0-9a-f]{64}$/);
    assert.equal(count("Sshd"), plan.nodes.length);
    assert.equal(count("SshKey"), plan.nodes.length + 1, "one host key per node, one client key");
    assert.equal(count("Bridge"), 1);

    // The outputs say how to reach every node, with its pinned key.
    assert.deepEqual(Object.keys(nodes).sort(), plan.nodes.map((n) => n.name).sort());
    for (const node of plan.nodes) {
        const n = nodes[node.name] as any;
        assert.equal(n.managementAddress, node.mgmt.address);
        assert.match(n.ssh, new RegExp(`^ssh -F /tmp/nublar-unit/lab/lab/client/ssh_config ${node.name}$`));
        assert.match(n.hostKey, /^ssh-ed25519 /);
        assert.deepEqual(n.uplinks.map((u: any) => u.address), node.uplinks.map((u) => u.address));
    }

    // sshd listens on the node's management and uplink addresses and nothing else.
    const sshd = registered.find((r) => r.type.endsWith("lab:Sshd") && r.inputs.netns === plan.nodes[0].netns)!;
    assert.deepEqual(sshd.inputs.listen, [plan.nodes[0].mgmt.address, ...plan.nodes[0].uplinks.map((u) => u.address)]);

    // Each node's system is deployed over SSH with the lab activation; the overlay goes with it.
    const deployments = registered.filter((r) => r.type === "nublar:nixos:Deployment");
    assert.deepEqual(deployments.map((d) => d.inputs.node).sort(), plan.nodes.map((n) => n.name).sort());
    for (const d of deployments) {
        const node = plan.nodes.find((n) => n.name === d.inputs.node)!;
        assert.equal(d.inputs.activation.kind, "lab");
        assert.equal(d.inputs.machine, `${node.netns}/sshd:4242`);
        assert.deepEqual(JSON.parse(d.inputs.files["overlay.json"]).overlays, node.overlays);
        assert.equal(JSON.parse(d.inputs.files["agent.json"]).pathAuth.keyFile, "/run/keys/nublar-bfd.key");
    }
});

test("a park site registers no lab resources, deploys every node over SSH with its pinned key, and reports its endpoints", async () => {
    const { Site } = await import("./site");
    const model = loadSiteFromStackFile(stackFile(ROOT, "isla-nublar"));
    registered.length = 0;
    const site = new Site("isla-nublar", { site: model, stateRoot: "/tmp/nublar-unit" });
    const nodes = await outputValue(site.nodes);
    await outputValue(site.urn);
    await outputValue(site.generations);
    assert.ok(!registered.some((r) => r.type.includes("lab:")));
    const deployments = registered.filter((r) => r.type === "nublar:nixos:Deployment");
    assert.equal(deployments.length, model.nodes.length);
    for (const d of deployments) {
        const node = model.nodes.find((n) => n.name === d.inputs.node)!;
        assert.equal(d.inputs.access.hostKey, node.ssh!.hostKey, "deploys check the pinned key");
        assert.equal(d.inputs.activation.kind, "nixos");
        assert.ok(d.inputs.files["configuration.nix"] && d.inputs.files["agent.json"]);
        // Secrets travel only in `secrets`, never in the rendered files.
        assert.ok(!JSON.stringify(d.inputs.files).includes("SECRET-VALUE"), "no secret in the bundle");
        // The engine receives them marked secret (encrypted in state, [secret] in output).
        const secrets = d.inputs.secrets;
        assert.equal(secrets["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270", "marked secret");
        assert.ok(Object.keys(secrets.value).includes("nublar-bfd.key"));
    }
    // WireGuard: one generated key pair per node and tunnel; public keys are rendered, private ones are not.
    const wgKeys = registered.filter((r) => r.type.endsWith("nixos:GeneratedKey") && r.inputs.kind === "wireguard");
    assert.equal(wgKeys.length, model.nodes.reduce((n, node) => n + node.uplinks.length, 0));
    assert.ok(deployments.some((d) => JSON.stringify(d.inputs.files).includes("PUBLIC-")));
    assert.equal((nodes.gate as any).hostKey, model.nodes[0].ssh!.hostKey);
    assert.equal((nodes.gate as any).ssh, "ssh -p 22 root@2001:db8:1100:10::2");
});

test("deploy waves: the canary alone first, then groups of maxParallel", async () => {
    const { deployWaves } = await import("./nixos/site-deploy");
    const model = loadSiteFromStackFile(stackFile(ROOT, "isla-nublar"));
    const names = model.nodes.map((n) => n.name);
    assert.equal(names.length, 5);
    assert.deepEqual(deployWaves({ ...model, deploy: { ...model.deploy, canary: true, maxParallel: 2 } }), [[names[0]], names.slice(1, 3), names.slice(3)]);
    assert.deepEqual(deployWaves({ ...model, deploy: { ...model.deploy, canary: false, maxParallel: 2 } }), [names.slice(0, 2), names.slice(2, 4), names.slice(4)]);
    assert.deepEqual(deployWaves({ ...model, deploy: { ...model.deploy, canary: names[2], maxParallel: 5 } }), [[names[2]], [...names.slice(0, 2), ...names.slice(3)]]);
});
