// Secrets and SSH host keys: material outside the always-secret inputs is found, unknowns at
// preview are not mistaken for secrets, and host key checking cannot be switched off.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { loadSiteFromStackFile } from "../../model/site/load";
import { UNKNOWN, validateResource, type TestResource } from "../testing";
import { TYPES } from "./resources";
import { BFD_KEY_SECRET, bfdKeyWellFormed, noPlaintextSecrets, sshHostKeysPinned } from "./secrets";
import { projectPath } from "../../model/project";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1DPPZ1bdOYcF29MZO/LFWFEfFqOlt3s2EXlc/YUWXB";
const PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

const deployment = (props: Record<string, unknown>): TestResource => ({
    type: TYPES.deployment, name: "gate-deployment",
    props: { node: "gate", access: { host: "2001:db8::1", port: 22, user: "root", hostKey: KEY }, files: { "agent.json": "{}" }, secrets: { "bfd.key": "hunter2", "wg0.key": PEM }, ...props },
});

test("no-plaintext-secrets: the secret slots may hold secrets; anywhere else a key, password, token or AWS key is found", async () => {
    assert.deepEqual((await validateResource(noPlaintextSecrets, deployment({}))).violations, []);
    const leaked = await validateResource(noPlaintextSecrets, deployment({ files: { "agent.json": "{}", "wg.conf": PEM } }));
    assert.match(leaked.violations[0]?.message ?? "", /files\.wg\.conf holds a private key/);
    const env: TestResource = {
        type: "kubernetes:apps/v1:Deployment", name: "web",
        props: { spec: { template: { spec: { containers: [{ name: "php", env: [{ name: "DB_PASSWORD", value: "raptor" }, { name: "DB_HOST", value: "db" }, { name: "DB_PASSWORD_FROM", valueFrom: { secretKeyRef: { name: "db", key: "password" } } }] }] } } } },
    };
    const e = await validateResource(noPlaintextSecrets, env);
    assert.equal(e.violations.length, 1);
    assert.match(e.violations[0].message, /containers\[0\]\.env\[0\] \(DB_PASSWORD\) holds a value in plaintext/);
    assert.doesNotMatch(e.violations[0].message, /DB_HOST|secretKeyRef/);
    const aws: TestResource = { type: "aws:lambda/function:Function", name: "f", props: { environment: { variables: { KEY_ID: "AKIAIOSFODNN7EXAMPLE" } } } };
    assert.match((await validateResource(noPlaintextSecrets, aws)).violations[0]?.message ?? "", /environment\.variables\.KEY_ID holds an AWS access key/);
    const token: TestResource = { type: "nublar:x:Y", name: "y", props: { apiToken: "t0k3n", tokenFile: "/run/keys/token" } };
    const t = await validateResource(noPlaintextSecrets, token);
    assert.match(t.violations[0]?.message ?? "", /apiToken holds a plaintext value under a secret's name/);
    assert.doesNotMatch(t.violations[0]?.message ?? "", /tokenFile/);
    // A Kubernetes Secret's data is encrypted by the provider; an extra slot can be allowed in config.
    assert.deepEqual((await validateResource(noPlaintextSecrets, { type: TYPES.k8sSecret, name: "db", props: { stringData: { password: "raptor" } } })).violations, []);
    assert.deepEqual((await validateResource(noPlaintextSecrets, token, { allowedPaths: ["nublar:x:Y apiToken"] })).violations, []);
});

test("no-plaintext-secrets: unknown values at preview are not secrets, and nothing throws", async () => {
    const o = await validateResource(noPlaintextSecrets, { type: "nublar:x:Y", name: "y", props: { password: UNKNOWN.string, env: [{ name: "DB_PASSWORD", value: UNKNOWN.string }], nested: UNKNOWN.object } });
    assert.deepEqual([o.violations, o.unknown], [[], undefined]);
});

test("ssh-host-keys-pinned: parks pin every node's key; a deployment without one, or a command turning checks off, fails", async () => {
    const park = loadSiteFromStackFile(projectPath("stacks", "Pulumi.isla-nublar.yaml"));
    assert.deepEqual((await validateResource(sshHostKeysPinned, { type: TYPES.site, name: park.name, props: { site: park } })).violations, []);
    const unpinned = structuredClone(park);
    unpinned.nodes[1].ssh!.hostKey = "";
    assert.match((await validateResource(sshHostKeysPinned, { type: TYPES.site, name: park.name, props: { site: unpinned } })).violations[0]?.message ?? "", new RegExp(`without a pinned SSH host key: ${park.nodes[1].name}`));
    assert.deepEqual((await validateResource(sshHostKeysPinned, deployment({}))).violations, []);
    assert.match((await validateResource(sshHostKeysPinned, deployment({ access: { host: "h", port: 22, user: "root", hostKey: "*" } }))).violations[0]?.message ?? "", /without a pinned host key \(access\.hostKey is "\*"\)/);
    const cmd: TestResource = { type: "command:remote:Command", name: "c", props: { create: "ssh -o StrictHostKeyChecking=no root@gate true" } };
    assert.match((await validateResource(sshHostKeysPinned, cmd)).violations[0]?.message ?? "", /turns SSH host key checking off \('StrictHostKeyChecking=no'\)/);
    // The lab's access is an output of the park, unknown at preview: checked at `up`.
    assert.deepEqual((await validateResource(sshHostKeysPinned, deployment({ access: UNKNOWN.object }))).violations, []);
});

test("ssh-host-keys-pinned: a known access without a host key fails", async () => {
    const { hostKey: _, ...noKey } = deployment({}).props.access as Record<string, unknown>;
    assert.match((await validateResource(sshHostKeysPinned, deployment({ access: noKey }))).violations[0]?.message ?? "", /without a pinned host key \(access\.hostKey is undefined\)/);
    assert.deepEqual((await validateResource(sshHostKeysPinned, deployment({ access: { ...noKey, hostKey: UNKNOWN.string } }))).violations, []);
});

test("bfd-key-well-formed: a deployment delivering an empty, whitespace or short BFD key fails, naming the rule and not the key; a good or unknown key passes", async () => {
    const good = `0x${"c3".repeat(20)}`;
    const withKey = (key: unknown) => deployment({ secrets: { [BFD_KEY_SECRET]: key, "nublar-wg-ov0.key": PEM } });
    assert.deepEqual((await validateResource(bfdKeyWellFormed, withKey(good))).violations, []);
    // Unknown at the first preview (a generated key): checked at `up`.
    assert.deepEqual((await validateResource(bfdKeyWellFormed, withKey(UNKNOWN.string))).violations, []);
    assert.deepEqual((await validateResource(bfdKeyWellFormed, deployment({ secrets: UNKNOWN.object }))).violations, []);
    for (const [key, why] of [["", /it is empty/], [" \t", /only whitespace/], [`0x${"c3".repeat(10)}`, /20 hex digits after 0x, not 40/], ["letmein", /does not start with 0x/]] as const) {
        const v = (await validateResource(bfdKeyWellFormed, withKey(key))).violations;
        assert.equal(v.length, 1, JSON.stringify(key));
        assert.match(v[0].message, /the BFD key \(nublar:bfdKey\) that node gate's deployment delivers is not usable/);
        assert.match(v[0].message, why);
        assert.match(v[0].message, /It must be 0x followed by 40 hex digits/);
        if (key.trim()) assert.ok(!v[0].message.includes(key), "never quoted");
    }
    // Other resources are not its business.
    assert.deepEqual((await validateResource(bfdKeyWellFormed, { type: "nublar:x:Y", name: "y", props: { secrets: { [BFD_KEY_SECRET]: "" } } })).violations, []);
});
