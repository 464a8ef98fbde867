// The provider's wire work, with handlers of its own and the real ones' pure parts: check names
// bad input, secrets stay secrets, diff decides replace or update, and state written by the
// dynamic providers moves over without running anything.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { z } from "zod";
import { PROJECT_ROOT } from "../model/project";
import { bundleDigest, packBundle, ReleaseMismatchError, unpackBundle } from "../model/nix/bundle";
import { releaseFiles } from "../model/nix/render";
import type { Handler } from "./handler";
import { NublarProvider, typeOf } from "./provider";
import { HANDLERS, UNSERVED } from "./resources";
import { deployment } from "./resources/deployment";
import { DYNAMIC_CODE_FIELD, DYNAMIC_TYPES, PROVIDER_VERSION, RESOURCE_TYPES } from "./tokens";
import { asSecret, holdsSecret, reveal, secretKeys, UNKNOWN, wrapSecrets, type Props } from "./wire";

const urn = (type: string, name = "r", parent = "nublar:site:Site$nublar:lab:LabPark") => `urn:pulumi:lab::nublar::${parent}$${type}::${name}`;
const real = new NublarProvider(HANDLERS);

test("every type token is served, under the package's version", () => {
    assert.deepEqual(UNSERVED, []);
    assert.equal(PROVIDER_VERSION, JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")).version);
    // Every type that was a dynamic resource keeps its alias; the cluster was born here.
    assert.deepEqual(Object.keys(DYNAMIC_TYPES).sort(), Object.keys(RESOURCE_TYPES).filter((k) => k !== "labKubeCluster").sort());
    for (const t of Object.values(RESOURCE_TYPES)) assert.match(t, /^nublar:(lab|nixos):[A-Z][A-Za-z]+$/);
});

test("a URN's type is its last parent-qualified segment", () => {
    assert.equal(typeOf(urn(RESOURCE_TYPES.labVeth)), "nublar:lab:Veth");
    assert.equal(typeOf("urn:pulumi:s::p::nublar:nixos:GeneratedKey::k"), "nublar:nixos:GeneratedKey");
});

test("an unknown type says the plugin is older than the program, and how to fix it", async () => {
    await assert.rejects(real.check(urn("nublar:lab:Teleporter"), {}, {}), /no resource type 'nublar:lab:Teleporter'.*scripts\/setup/);
});

test("check names each bad property, and skips values not known yet", async () => {
    const r = await real.check(urn(RESOURCE_TYPES.labVeth), {}, {
        a: { netns: "nl-node-1", ifname: "an interface name far too long", addresses: ["2001:db8::2/64"] },
        b: { ifname: "eth0", addresses: ["not an address"] },
    });
    const properties = r.failures!.map((f) => f.property).sort();
    assert.deepEqual(properties, ["a.ifname", "b.addresses.0"]);
    assert.match(r.failures!.find((f) => f.property === "a.ifname")!.reason, /^a\.ifname: an interface name/);
    const missing = await real.check(urn(RESOURCE_TYPES.labFile), {}, { file: "relative/path", content: "x" });
    assert.deepEqual(missing.failures!.map((f) => f.property).sort(), ["file", "mode"]);
    const preview = await real.check(urn(RESOURCE_TYPES.labSshd), {}, {
        netns: "nl-n", hostname: "n", dir: "/tmp/x", hostKeyFile: UNKNOWN, listen: ["::1"], authorizedKeys: UNKNOWN,
    });
    assert.deepEqual(preview.failures, []);
    const kind = await real.check(urn(RESOURCE_TYPES.generatedKey), {}, { kind: "rsa" });
    assert.match(kind.failures![0].reason, /^kind: /);
});

test("check hands the inputs back with their secrets still wrapped (they are what the state keeps)", async () => {
    const news = { kind: "password", extra: asSecret("hunter2") };
    const r = await real.check(urn(RESOURCE_TYPES.generatedKey), {}, news);
    assert.deepEqual(r.inputs, news);
});

/** A handler that records what it was given and does nothing else. */
function recorder() {
    const calls: string[] = [];
    const h: Handler<Props, Props> = {
        schema: z.object({ name: z.string() }),
        secretOutputs: ["made"],
        diff: (olds, news) => ({ changes: olds.name !== news.name, replaces: olds.name !== news.name ? ["name"] : [], deleteBeforeReplace: true }),
        async create(i) {
            calls.push(`create ${JSON.stringify(i)}`);
            return { id: "id", outs: { ...i, made: "generated", plain: "p" } };
        },
        async update(_id, _o, n) {
            calls.push(`update ${JSON.stringify(n)}`);
            return { ...n };
        },
        async exists(_id, p) {
            calls.push(`exists ${JSON.stringify(p)}`);
            return p.name !== "gone";
        },
        async delete(_id, p) {
            calls.push(`delete ${JSON.stringify(p)}`);
        },
    };
    return { calls, provider: new NublarProvider({ "nublar:test:Thing": h }), urn: urn("nublar:test:Thing") };
}

test("create: handlers see secrets revealed; outputs that came in secret, or are declared secret, go back wrapped", async () => {
    const { calls, provider, urn: u } = recorder();
    const r = await provider.create(u, { name: "a", password: asSecret("s3cret") });
    assert.deepEqual(calls, ['create {"name":"a","password":"s3cret"}']);
    assert.deepEqual(secretKeys(r.outs).sort(), ["made", "password"]);
    assert.deepEqual(reveal(r.outs), { name: "a", password: "s3cret", made: "generated", plain: "p" });
});

test("diff: a change the handler replaces on is a replace, delete first; none is none", async () => {
    const { provider, urn: u } = recorder();
    assert.deepEqual(await provider.diff("id", u, { name: "a" }, { name: "b" }), { changes: true, replaces: ["name"], deleteBeforeReplace: true });
    assert.equal((await provider.diff("id", u, { name: "a" }, { name: "a" })).changes, false);
});

test("state from a dynamic provider: diff ignores its code (nothing to do), read and update drop it", async () => {
    const { calls, provider, urn: u } = recorder();
    const olds = { name: "a", made: asSecret("generated"), [DYNAMIC_CODE_FIELD]: "exports.handler = ...".repeat(100) };
    assert.deepEqual(await provider.diff("id", u, olds, { name: "a" }), { changes: false, replaces: [], deleteBeforeReplace: true });
    // A real change still replaces, whatever the old code field.
    assert.deepEqual((await provider.diff("id", u, olds, { name: "b" })).replaces, ["name"]);
    const read = await provider.read("id", u, olds);
    assert.equal(read.id, "id");
    assert.ok(!(DYNAMIC_CODE_FIELD in read.props!));
    assert.deepEqual(secretKeys(read.props!), ["made"]);
    assert.deepEqual(reveal(read.props), { name: "a", made: "generated" });
    const up = await provider.update("id", u, olds, { name: "a", extra: 1 });
    assert.ok(!(DYNAMIC_CODE_FIELD in up.outs!));
    await provider.delete("id", u, olds);
    assert.ok(calls.every((c) => !c.includes(DYNAMIC_CODE_FIELD)), "no handler ever sees the code field");
});

test("read: a resource that no longer exists gets an empty id (the next up creates it again)", async () => {
    const { provider, urn: u } = recorder();
    assert.equal((await provider.read("id", u, { name: "gone" })).id, "");
    assert.equal((await provider.read("id", u, { name: "here" })).id, "id");
});

test("generated keys: the value is secret in the outputs, and a new kind replaces", async () => {
    const u = urn(RESOURCE_TYPES.generatedKey);
    for (const kind of ["bfd", "wireguard", "password", "ed25519", "ssh-host"]) {
        const r = await real.create(u, { kind });
        assert.deepEqual(secretKeys(r.outs), ["value"], kind);
        assert.ok(String(reveal(r.outs.value)).length >= 20, kind);
    }
    assert.deepEqual((await real.diff("id", u, { kind: "bfd", value: asSecret("0x00") }, { kind: "password" })).replaces, ["kind"]);
    assert.equal((await real.diff("id", u, { kind: "bfd", value: asSecret("0x00") }, { kind: "bfd" })).changes, false);
});

test("deployments: never replaced; a new bundle, release file, secret or machine deploys again; a bundle not known yet is a change", () => {
    const release = releaseFiles();
    const full = { ...release, "configuration.nix": "{ }", "node.nix": "{ x = 1; }" };
    const packed = packBundle(full);
    const secrets = { "bfd.key": "0x01" };
    const base = {
        node: "gate", access: { host: "::1", port: 22, user: "root", hostKey: "ssh-ed25519 AAAA" }, agentSocket: "/run/a.sock", machine: "m1",
        activation: { kind: "nixos" as const }, mode: "switch" as const, confirmTimeoutMs: 1000,
    };
    const olds = { ...base, digest: bundleDigest(full), secretsDigest: bundleDigest(secrets), generation: 3 };
    const news = { ...base, files: packed.own, release: packed.release, secrets };
    assert.deepEqual(deployment.diff(olds, news), { changes: false, replaces: [] });
    assert.deepEqual(deployment.diff(olds, { ...news, files: { ...packed.own, "node.nix": "{ x = 2; }" } }), { changes: true, replaces: [] });
    assert.equal(deployment.diff(olds, { ...news, secrets: { "bfd.key": "0x02" } }).changes, true);
    assert.equal(deployment.diff(olds, { ...news, machine: "m2" }).changes, true);
    assert.equal(deployment.diff(olds, { ...news, files: UNKNOWN as never }).changes, true);
    // A release file the program planned that this checkout does not have: a clear refusal.
    assert.throws(() => deployment.diff(olds, { ...news, release: { ...packed.release, digest: "0123456789abcdef" } }), /different nublar checkouts/);
});

test("a packed bundle keeps only the node's own files; unpacked, it is the bundle again", () => {
    const release = releaseFiles();
    const names = Object.keys(release);
    assert.ok(names.includes("balancer.lua") && names.some((n) => n.startsWith("modules/")));
    const full = { ...release, "node.nix": "{ }", "agent.json": "{}", "modules/default.nix": "# changed on purpose\n" };
    const p = packBundle(full);
    // A release file the node changed is its own.
    assert.deepEqual(Object.keys(p.own).sort(), ["agent.json", "modules/default.nix", "node.nix"]);
    assert.ok(!p.release.files.includes("modules/default.nix"));
    assert.deepEqual(unpackBundle(p), full);
    assert.ok(JSON.stringify(p).length * 2 < JSON.stringify(full).length, "the release files stay out");
    assert.throws(() => unpackBundle({ ...p, release: { ...p.release, files: [...p.release.files, "modules/gone.nix"] } }), (e: Error) => e instanceof ReleaseMismatchError && /missing: modules\/gone\.nix/.test(e.message));
});

test("property: wrapping then revealing gives the outputs back, and exactly the named keys are secret", () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.array(fc.string(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.string(), { maxKeys: 3, noNullPrototype: true }));
    fc.assert(fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), value, { maxKeys: 8, noNullPrototype: true }), fc.array(fc.string({ minLength: 1, maxLength: 8 })), (outs, names) => {
        const wrapped = wrapSecrets(outs, names);
        assert.deepEqual(reveal(wrapped), outs);
        assert.deepEqual(secretKeys(wrapped).sort(), Object.keys(outs).filter((k) => names.includes(k)).sort());
        for (const k of Object.keys(outs)) assert.equal(holdsSecret(wrapped[k]), names.includes(k));
    }));
});
