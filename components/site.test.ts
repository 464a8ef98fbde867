// The Pulumi program under pulumi.runtime.setMocks: which resources a site
// registers, how they are parented, and that bad config creates nothing.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { loadSiteFromStackFile, stackFile } from "../site/load";
import { planLab } from "../network/lab-plan";

const ROOT = path.resolve(__dirname, "..");

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
            const extra = args.type.endsWith("lab:SshKey") ? { publicKey: `ssh-ed25519 AAAA${args.name}` } : {};
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

    const count = (t: string) => registered.filter((r) => r.type === `pulumi-nodejs:dynamic/lab:${t}`).length;
    assert.equal(registered.filter((r) => r.type === "nublar:site:Site").length, 1);
    assert.equal(registered.filter((r) => r.type === "nublar:lab:LabPark").length, 1);
    assert.equal(count("Netns"), plan.nodes.length + plan.routers.length);
    assert.equal(count("Veth"), plan.nodes.reduce((n, node) => n + 1 + node.uplinks.length, 0));
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
});

test("a park site registers no lab resources and reports pinned SSH endpoints", async () => {
    const { Site } = await import("./site");
    const model = loadSiteFromStackFile(stackFile(ROOT, "isla-nublar"));
    registered.length = 0;
    const site = new Site("isla-nublar", { site: model, stateRoot: "/tmp/nublar-unit" });
    const nodes = await outputValue(site.nodes);
    await outputValue(site.urn);
    assert.deepEqual(registered.map((r) => r.type), ["nublar:site:Site"]);
    assert.equal((nodes.gate as any).hostKey, model.nodes[0].ssh!.hostKey);
    assert.equal((nodes.gate as any).ssh, "ssh -p 22 root@2001:db8:1100:10::2");
});
