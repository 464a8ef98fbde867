// The site's cross-field rules (model/site/model.ts, SITE_CHECKS): the order their problems come
// out in, and the rule that keeps the lab's management /64 out of the providers' blocks.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { labSiteInput } from "./fixtures";
import { parseSite, SiteConfigError } from "./load";
import { SiteSchema } from "./model";

function problems(raw: unknown): string[] {
    try {
        parseSite(raw);
    } catch (err) {
        assert.ok(err instanceof SiteConfigError, `expected SiteConfigError, got ${err}`);
        return err.problems;
    }
    assert.fail("expected the site to be rejected");
}

test("problems come out rule by rule, a node's together, in the order of SITE_CHECKS", () => {
    const raw = labSiteInput(["gate", "control-room", "aviary"], {
        kind: "park", lab: { tag: "x" }, deploy: { canary: "nobody" }, ingress: [{ name: "web", port: 80, upstreams: ["nowhere", "gate", "gate"] }],
    });
    raw.providers.push({ name: "provider-a", prefix: "2001:db8:c::/48" });
    raw.nodes[0].uplinks[0].provider = "provider-c";
    raw.nodes[0].ssh = { host: "gate.example.net", hostKey: "ssh-ed25519 AAAAC3Nza" };
    raw.nodes[1].ec2 = {};
    raw.nodes[1].ssh = { host: "control-room.example.net", hostKey: "ssh-ed25519 AAAAC3Nza" };
    // The schema's own issues: key and rule, whatever load.ts makes of the value.
    const result = SiteSchema.safeParse(raw);
    assert.ok(!result.success);
    assert.deepEqual(result.error.issues.map((i) => [i.path.join("."), i.message]), [
        ["providers.2.name", "duplicate provider name (also providers[0])"],
        ["nodes.0.uplinks.0.provider", "must name one of the site's providers (provider-a, provider-b)"],
        ["nodes.1.ec2", "EC2 nodes belong to datacenter sites"],
        ["nodes.1.ssh", "is derived on an EC2 node (its planned address and the host key nublar generates); remove it"],
        ["nodes.1.ec2", "needs the site's VPC: give aws.vpc.uplinks"],
        ["nodes.2.ssh", "is required outside the lab: give host, user and the pinned hostKey"],
        ["nodes", "EC2 nodes must span at least two availability zones (all are in east)"],
        ["ingress.0.upstreams.0", "must name one of the site's nodes (gate, control-room, aviary)"],
        ["ingress.0.upstreams.2", "'gate' is listed twice"],
        ["deploy.canary", "must name one of the site's nodes (gate, control-room, aviary), or be true or false"],
        ["lab", "is only allowed on sites of kind 'lab'"],
    ]);
});

test("the lab's management /64 must lie outside the providers' blocks, which the planners carve up", () => {
    // Found by plan.property.test.ts: the overlay segment of provider-a, or its loopback /64 (where
    // the lab's host, ::1 of the management /64, would be the loopback of node number 1).
    for (const prefix of ["2001:db8:a:4000::/64", "2001:db8:a::/64", "2001:db8:b:ffff::/64"]) {
        const ps = problems(labSiteInput(["gate"], { lab: { managementPrefix: prefix } }));
        assert.equal(ps.length, 1, ps.join("\n"));
        assert.match(ps[0], /^nublar:site\.lab\.managementPrefix = "[^"]+": overlaps providers\[\d\] 'provider-[ab]' \(2001:db8:[ab]::\/48\).*a \/64 of its own/);
    }
    // The default one too, when a provider's block holds it.
    const raw = labSiteInput(["gate"]);
    raw.providers[1].prefix = "fd6e:626c:6172::/48";
    assert.deepEqual(problems(raw).map((p) => p.slice(0, 90)), [`nublar:site.lab.managementPrefix = (missing): the default, fd6e:626c:6172::/64, overlaps providers[1]`.slice(0, 90)]);
    // A ULA of its own is fine, as is the default beside documentation prefixes.
    parseSite(labSiteInput(["gate"], { lab: { managementPrefix: "fd00:1:2:3::/64" } }));
    parseSite(labSiteInput(["gate"]));
});
