// The NixOS bundle: every .nix file parses, node.nix and the pure helpers evaluate (with Nix
// itself, without nixpkgs) to the planned data, the ruleset holds the agent's GTSM table and
// passes `nft -c`, and the sample park's bundles match the committed goldens.
//
// Regenerate the goldens: UPDATE_GOLDEN=1 node --import tsx --test model/nix/render.test.ts
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gtsmRuleset } from "../../packages/node-bfd/src/gtsm";
import { planAgents } from "../network/agent-plan";
import { renderNginxConf } from "../network/nginx-conf";
import { planSite, type SitePlan } from "../network/site-plan";
import { loadSiteFromStackFile } from "../site/load";
import type { Site } from "../site/model";
import { toNix, type NixValue } from "./nix-value";
import { NIXOS_NGINX, NIXOS_PATHS, nixosAgentPaths, NixosRenderError, renderNixosNode, type NixosNodeInput } from "./render";
import { PROJECT_ROOT } from "../project";

const REPO = PROJECT_ROOT;
const STACK = path.join(REPO, "stacks", "Pulumi.isla-nublar.yaml");
const GOLDEN = path.join(__dirname, "golden", "isla-nublar");
const NIX_INSTANTIATE = "/usr/bin/nix-instantiate";
const AUTHORIZED_KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdvbGRlbi10ZXN0LWtleS1ub3QtYS1yZWFsLWtleQ operator@golden"];

/** Clearly fake WireGuard public keys: base64 of "FAKE <node> <provider>", padded to 32 bytes. */
function fakeWireguardKeys(site: Site): Record<string, Record<string, string>> {
    return Object.fromEntries(site.nodes.map((n) => [n.name, Object.fromEntries(site.providers.map((p) =>
        [p.name, Buffer.from(`FAKE ${n.name} ${p.name}`.padEnd(32, ".").slice(0, 32)).toString("base64")]))]));
}

function inputs(site: Site, plan: SitePlan = planSite(site)): NixosNodeInput[] {
    const agents = planAgents(site, {
        paths: nixosAgentPaths,
    }, plan);
    const keys = site.overlay.transport === "wireguard" ? fakeWireguardKeys(site) : undefined;
    return plan.nodes.map((node, i) => {
        const agent = agents[i];
        return {
            site, node, agent,
            nginxConf: agent.ingress.length
                ? renderNginxConf({ upstreams: agent.ingress, controlSocket: agent.paths.nginxControl!, ...NIXOS_NGINX })
                : undefined,
            authorizedKeys: AUTHORIZED_KEYS,
            wireguardPublicKeys: keys,
            profile: { label: "golden" },
        };
    });
}

const park = loadSiteFromStackFile(STACK);
const parkPlan = planSite(park);
/** Nodes that serve an ingress service (their firewalls admit the edges' Nginx). */
const upstreamNodes = new Set(park.ingress.flatMap((svc) => svc.upstreams));
const parkInputs = inputs(park, parkPlan);
const parkBundles = new Map(parkInputs.map((i) => [i.node.name, renderNixosNode(i)]));

function writeBundle(files: Record<string, string>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-nix-"));
    for (const [rel, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), content);
    }
    return dir;
}

/** Runs nix-instantiate; stderr carries warnings about the missing nixbld group here, so the exit status decides. */
function nix(args: string[]): { ok: boolean; stdout: string; stderr: string } {
    const r = spawnSync(NIX_INSTANTIATE, args, { encoding: "utf8", env: { ...process.env, NIX_CONFIG: "build-users-group =" } });
    return { ok: r.status === 0, stdout: r.stdout ?? "", stderr: r.stderr ?? r.error?.message ?? "" };
}

function evalJson(expr: string): unknown {
    const r = nix(["--eval", "--strict", "--json", "-E", expr]);
    assert.ok(r.ok, `nix-instantiate --eval failed for ${expr}:\n${r.stderr}`);
    return JSON.parse(r.stdout);
}

function withBundle<T>(files: Record<string, string>, fn: (dir: string) => T): T {
    const dir = writeBundle(files);
    try {
        return fn(dir);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

test("the Nix serializer writes plain data that Nix reads back as the same JSON", () => {
    const value = {
        plain: "a",
        "needs quoting": 1,
        "in": true,
        negative: [-1, 2, -3],
        nothing: null,
        skipped: undefined,
        nested: { list: [], attrs: {}, mixed: [{ a: "b" }, "c"] },
    };
    const expected = JSON.parse(JSON.stringify(value));
    const file = writeBundle({ "v.nix": toNix(value) });
    try {
        assert.deepEqual(evalJson(`import ${path.join(file, "v.nix")}`), expected);
    } finally {
        fs.rmSync(file, { recursive: true, force: true });
    }
    assert.match(toNix(value), /"needs quoting" = 1;/);
    assert.match(toNix(value), /"in" = true;/);
    assert.match(toNix(value), /negative = \[ \(-1\) 2 \(-3\) \];/);
    assert.throws(() => toNix(1.5), /only integers/);
    assert.throws(() => toNix("a\0b"), /NUL/);
});

test("hostile strings round-trip through nix-instantiate: ${, quotes, backslashes, newlines", () => {
    const hostile = [
        "${builtins.throw \"pwned\"}",
        "$${x}",
        "$$",
        "trailing $",
        "\\${not an interpolation}",
        "quote \" and backslash \\ and \\\" both",
        "line one\nline two\r\n\ttabbed",
        "''${x}'' indented-string escapes",
        "unicode: ñ ✓ 🦖",
        "",
    ];
    const value: NixValue = { list: hostile, [hostile[0]]: hostile[0], nested: { "a\"b": hostile } };
    withBundle({ "hostile.nix": toNix(value) }, (dir) => {
        assert.deepEqual(evalJson(`import ${path.join(dir, "hostile.nix")}`), value);
    });
});

test("every .nix file of every node of the sample park parses", () => {
    for (const [name, files] of parkBundles) {
        withBundle(files, (dir) => {
            const nixFiles = Object.keys(files).filter((f) => f.endsWith(".nix"));
            assert.ok(nixFiles.includes("configuration.nix") && nixFiles.includes("node.nix") && nixFiles.includes("modules/default.nix"), `${name}: ${nixFiles.join(", ")}`);
            for (const f of nixFiles) {
                const r = nix(["--parse", path.join(dir, f)]);
                assert.ok(r.ok, `${name}/${f} does not parse:\n${r.stderr}`);
            }
        });
    }
});

test("node.nix evaluates without nixpkgs to the node's plan", () => {
    for (const input of parkInputs) {
        const node = input.node;
        const files = parkBundles.get(node.name)!;
        const data = withBundle(files, (dir) => {
            const r = nix(["--eval", "--strict", "--json", path.join(dir, "node.nix")]);
            assert.ok(r.ok, `${node.name}/node.nix does not evaluate:\n${r.stderr}`);
            return JSON.parse(r.stdout);
        });
        assert.equal(data.name, node.name);
        assert.equal(data.site, "isla-nublar");
        assert.equal(data.hub, node.hub);
        assert.equal(data.loopback, node.loopback);
        assert.equal(data.loopbackPrefix, parkPlan.loopbackPrefix);
        assert.deepEqual(data.uplinks, node.uplinks.map(({ gatewayBfd: _, ...u }) => u));
        assert.deepEqual(data.sensors, node.sensors);
        assert.deepEqual(data.sitePrefixes, ["2001:db8:1100::/48", "2001:db8:1200::/48"]);
        assert.deepEqual(data.authorizedKeys, AUTHORIZED_KEYS);
        assert.deepEqual(data.profile, { label: "golden", revision: null });
        assert.equal(data.overlays.length, node.overlays.length);
        node.overlays.forEach((o, k) => {
            const got = data.overlays[k];
            for (const key of ["provider", "transport", "ifname", "vni", "port", "mtu", "prefix", "address"] as const) assert.equal(got[key], o[key], `${node.name} ${o.ifname}.${key}`);
            assert.deepEqual(got.underlay, o.underlay);
            assert.equal(got.privateKeyFile, NIXOS_PATHS.wireguardKeyFile(o.ifname));
            assert.deepEqual(got.peers.map((p: { node: string }) => p.node), o.peers.map((p) => p.node));
            o.peers.forEach((p, j) => {
                const peer = got.peers[j];
                assert.equal(peer.address, p.address);
                assert.equal(peer.endpoint, p.endpoint);
                assert.equal(peer.loopback, p.loopback);
                // The port the peer's own plan gives its tunnel on this provider.
                const theirs = parkPlan.nodes.find((n) => n.name === p.node)!.overlays.find((x) => x.provider === o.provider)!;
                assert.equal(peer.endpointPort, theirs.port, `${node.name} ${o.ifname} -> ${p.node}`);
                assert.equal(peer.publicKey, input.wireguardPublicKeys![p.node][o.provider]);
                assert.ok(peer.allowedIPs.includes(`${p.address}/128`) && peer.allowedIPs.includes(`${p.loopback}/128`));
            });
            // Exactly one hub per tunnel of a spoke carries the loopback /64; none on hubs.
            const withPrefix = got.peers.filter((p: { allowedIPs: string[] }) => p.allowedIPs.includes(parkPlan.loopbackPrefix));
            assert.equal(withPrefix.length, node.hub ? 0 : 1, `${node.name} ${o.ifname}`);
            if (!node.hub) assert.equal(withPrefix[0].node, parkPlan.hubs[0]);
        });
        assert.deepEqual(data.ingressPorts, node.role === "edge" ? [443] : []);
        assert.deepEqual(data.upstreamPorts, upstreamNodes.has(node.name) ? [443] : []);
    }
});

function ruleset(files: Record<string, string>): string {
    return withBundle(files, (dir) => evalJson(`import ${path.join(dir, "modules/nftables-ruleset.nix")} (import ${path.join(dir, "node.nix")})`) as string);
}

test("the nftables module holds the GTSM rule: single-hop BFD (udp 3784) with hop limit other than 255 is dropped", () => {
    const module = parkBundles.get("gate")!["modules/nftables-ruleset.nix"];
    assert.match(module, /udp dport 3784 ip6 hoplimit != 255 counter drop/);
    assert.match(parkBundles.get("gate")!["modules/nftables.nix"], /import \.\/nftables-ruleset\.nix config\.nublar\.node/);
});

test("the evaluated ruleset: the agent's GTSM table verbatim, BFD, tunnels, SSH and ingress from the node's data", () => {
    for (const input of parkInputs) {
        const node = input.node;
        const rules = ruleset(parkBundles.get(node.name)!);
        assert.ok(rules.includes(gtsmRuleset()), `${node.name}: the GTSM table differs from the agent's:\n${rules}`);
        assert.match(rules, /policy drop;/);
        assert.match(rules, /icmpv6 type \{[^}]*nd-neighbor-solicit[^}]*\} accept/);
        assert.ok(rules.includes("ip6 saddr { 2001:db8:1100::/48, 2001:db8:1200::/48 } udp dport 4784 accept"), rules);
        assert.ok(rules.includes("tcp dport 22 accept"));
        for (const u of node.uplinks) assert.ok(rules.includes(`iifname "${u.ifname}" ip6 saddr ${u.prefix} udp dport 3784 accept`), `${node.name}: ${u.ifname}`);
        for (const o of node.overlays) {
            const block = park.providers.find((p) => p.name === o.provider)!.prefix;
            assert.ok(rules.includes(`iifname "${o.ifname}" ip6 saddr ${o.prefix} udp dport 3784 accept`), `${node.name}: BFD in ${o.ifname}`);
            assert.ok(rules.includes(`iifname "${o.underlay.ifname}" ip6 saddr ${block} udp dport ${o.port} accept`), `${node.name}: tunnel ${o.ifname}`);
        }
        assert.equal(/^\s*tcp dport \{ 443 \} accept$/m.test(rules), node.role === "edge", node.name);
        assert.equal(rules.includes(`ip6 saddr ${parkPlan.loopbackPrefix} tcp dport { 443 } accept`), upstreamNodes.has(node.name), node.name);
        assert.equal(rules.includes(`iifname "ov*" oifname "ov*" accept`), node.hub, node.name);
    }
});

test("the evaluated ruleset passes `nft -c` (when nft can run here)", (t) => {
    const probe = spawnSync("nft", ["-c", "-f", "-"], { input: "table inet nublar_probe {\n}\n", encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
        t.skip(`nft -c is not usable here: ${(probe.stderr || probe.error?.message || "").trim()}`);
        return;
    }
    for (const [name, files] of parkBundles) {
        const r = spawnSync("nft", ["-c", "-f", "-"], { input: ruleset(files), encoding: "utf8" });
        assert.equal(r.status, 0, `${name}: nft -c rejects the ruleset:\n${r.stderr}`);
    }
});

test("VXLAN transport: the bundle parses and the start script creates the planned device and one flood entry per peer", () => {
    const site: Site = { ...park, overlay: { transport: "vxlan" } };
    const plan = planSite(site);
    for (const input of inputs(site, plan)) {
        const files = renderNixosNode(input);
        assert.ok(!/publicKey|privateKeyFile|allowedIPs/.test(files["node.nix"]), "no WireGuard data for VXLAN");
        withBundle(files, (dir) => {
            for (const f of Object.keys(files).filter((x) => x.endsWith(".nix"))) assert.ok(nix(["--parse", path.join(dir, f)]).ok, `${input.node.name}/${f}`);
            input.node.overlays.forEach((o, k) => {
                const script = evalJson(`import ${path.join(dir, "modules/vxlan-script.nix")} (builtins.elemAt (import ${path.join(dir, "node.nix")}).overlays ${k})`) as string;
                assert.ok(script.includes(`ip link add ${o.ifname} address ${o.mac} type vxlan id ${o.vni} local ${o.underlay.local} dstport 4789 dev ${o.underlay.ifname}`), script);
                assert.ok(script.includes(`ip -6 addr replace ${o.address}/64 dev ${o.ifname} nodad`), script);
                assert.ok(script.includes(`ip link set dev ${o.ifname} mtu ${o.mtu} up`), script);
                const fdb = script.split("\n").filter((l) => l.startsWith("bridge fdb append"));
                assert.deepEqual(fdb, o.peers.map((p) => `bridge fdb append 00:00:00:00:00:00 dev ${o.ifname} dst ${p.endpoint}`));
            });
            const rules = evalJson(`import ${path.join(dir, "modules/nftables-ruleset.nix")} (import ${path.join(dir, "node.nix")})`) as string;
            assert.match(rules, /ip6 saddr 2001:db8:1100::\/48 udp dport 4789 accept/);
        });
    }
});

test("Nginx: edge nodes get nginx.conf and balancer.lua, and NixOS's nginx gets absolute paths and no pid of its own", () => {
    for (const input of parkInputs) {
        const name = input.node.name;
        const files = parkBundles.get(name)!;
        const edge = input.node.role === "edge";
        assert.equal("nginx.conf" in files, edge, name);
        assert.equal("balancer.lua" in files, edge, name);
        assert.equal(/nublar\.ingress = \{/.test(files["configuration.nix"]), edge, name);
        if (!edge) continue;
        assert.equal(files["nginx.conf"], input.nginxConf, "written as given (the lab runs it too)");
        assert.equal(files["balancer.lua"], fs.readFileSync(path.join(REPO, "model/network/nginx/balancer.lua"), "utf8"));
        assert.match(files["modules/nginx.nix"], /environment\.etc\."nublar\/lua\/balancer\.lua"/);
        assert.equal(NIXOS_PATHS.luaDir, "/etc/nublar/lua");
        const conf = withBundle(files, (dir) => evalJson(`import ${path.join(dir, "modules/nginx-conf.nix")} (builtins.readFile ${path.join(dir, "nginx.conf")})`) as string);
        assert.doesNotMatch(conf, /load_module|^pid |^error_log /m);
        assert.match(conf, /lua_package_path "\/etc\/nublar\/lua\/\?\.lua;;";/);
        // The control socket in Nginx's own runtime folder; the token from Nginx's credential.
        assert.match(conf, /listen unix:\/run\/nginx\/nublar-control\.sock;/);
        assert.ok(conf.includes(`balancer.init("${NIXOS_PATHS.nginxControlTokenCredential}")`), "the control token is Nginx's credential");
        assert.match(conf, /access_log \/var\/log\/nginx\/access\.log /);
        assert.match(conf, /client_body_temp_path \/var\/cache\/nginx\/client_body;/);
        assert.doesNotMatch(conf, /\s(temp|logs)\//);
    }
    // A config rendered for Debian (the lab's default) is refused at evaluation, not on the node.
    const gate = parkInputs.find((i) => i.node.name === "gate")!;
    const debian = renderNginxConf({ upstreams: gate.agent.ingress, controlSocket: NIXOS_PATHS.nginxControl });
    withBundle({ ...parkBundles.get("gate")!, "nginx.conf": debian }, (dir) => {
        const r = nix(["--eval", "--strict", "--json", "-E", `import ${path.join(dir, "modules/nginx-conf.nix")} (builtins.readFile ${path.join(dir, "nginx.conf")})`]);
        assert.ok(!r.ok);
        assert.match(r.stderr, /loads dynamic modules/);
        assert.match(r.stderr, /lua_package_path is not \/etc\/nublar\/lua/);
        assert.match(r.stderr, /its control token is not Nginx's credential/);
    });
});

test("rendering refuses inputs NixOS would not run: missing WireGuard keys, another BFD key file, a bad label", () => {
    const input = parkInputs.find((i) => i.node.name === "ledger-1")!;
    const keys = fakeWireguardKeys(park);
    delete keys["gate"]["pacific-fiber"];
    assert.throws(() => renderNixosNode({ ...input, wireguardPublicKeys: keys }), (e: Error) =>
        e instanceof NixosRenderError && /peer 'gate' on provider 'pacific-fiber'/.test(e.message));
    assert.throws(() => renderNixosNode({ ...input, agent: { ...input.agent, pathAuth: { ...input.agent.pathAuth!, keyFile: "/tmp/bfd.key" } } }), /pathAuth\.keyFile is \/tmp\/bfd\.key/);
    assert.throws(() => renderNixosNode({ ...input, profile: { label: "has spaces" } }), /profile label/);
    const gate = parkInputs.find((i) => i.node.name === "gate")!;
    assert.throws(() => renderNixosNode({ ...gate, nginxConf: undefined }), /no nginxConf/);
});

test("rendering is deterministic and the bundle holds no secrets, only key file paths", () => {
    const fakeSecret = "c2VjcmV0LXByaXZhdGUta2V5LW5ldmVyLXBhc3NlZC0xMjM0NTY=";
    const publicKeys = new Set(Object.values(fakeWireguardKeys(park)).flatMap((byProvider) => Object.values(byProvider)));
    for (const input of parkInputs) {
        const once = renderNixosNode(input);
        const twice = renderNixosNode(structuredClone(input));
        assert.deepEqual(twice, once);
        for (const [file, content] of Object.entries(once)) {
            assert.ok(!content.includes(fakeSecret), `${input.node.name}/${file}`);
            // Every WireGuard-key-shaped string in the bundle is one of the public keys given.
            for (const m of content.matchAll(/[A-Za-z0-9+/]{43}=/g)) assert.ok(publicKeys.has(m[0]), `${input.node.name}/${file}: unexpected key material ${m[0]}`);
        }
        assert.match(once["node.nix"], /privateKeyFile = "\/run\/keys\/nublar-wg-ov0\.key";/);
        assert.match(once["agent.json"], /"keyFile": "\/run\/keys\/nublar-bfd\.key"/);
        assert.match(once["configuration.nix"], /bfdKeyFile = "\/run\/keys\/nublar-bfd\.key";/);
    }
});

test("golden bundles of the sample park (isla-nublar)", () => {
    // Files the bundle copies verbatim (the modules, balancer.lua) are checked against their
    // sources; the goldens hold only what is rendered per node.
    const sourceOf = (rel: string) => rel.startsWith("modules/") ? path.join(__dirname, rel)
        : rel === "balancer.lua" ? path.join(__dirname, "..", "network", "nginx", "balancer.lua") : undefined;
    const rendered = (files: Record<string, string>) => Object.entries(files).filter(([rel]) => !sourceOf(rel));
    if (process.env.UPDATE_GOLDEN === "1") {
        fs.rmSync(GOLDEN, { recursive: true, force: true });
        for (const [name, files] of parkBundles) {
            for (const [rel, content] of rendered(files)) {
                const file = path.join(GOLDEN, name, rel);
                fs.mkdirSync(path.dirname(file), { recursive: true });
                fs.writeFileSync(file, content);
            }
        }
    }
    const listed = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? listed(path.join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name]);
    assert.deepEqual(fs.readdirSync(GOLDEN).sort(), [...parkBundles.keys()].sort(), "one golden folder per node");
    for (const [name, files] of parkBundles) {
        assert.deepEqual(listed(path.join(GOLDEN, name)).sort(), rendered(files).map(([rel]) => rel).sort(), `${name}: golden files (UPDATE_GOLDEN=1 to regenerate)`);
        for (const [rel, content] of Object.entries(files)) {
            const source = sourceOf(rel);
            assert.equal(content, fs.readFileSync(source ?? path.join(GOLDEN, name, rel), "utf8"),
                source ? `${name}/${rel} is not a verbatim copy of ${source}` : `${name}/${rel} differs from its golden (UPDATE_GOLDEN=1 to regenerate)`);
        }
        assert.ok(Object.keys(files).some((rel) => rel.startsWith("modules/")), `${name}: the bundle carries its modules`);
    }
});

/**
 * The agent's and Nginx's NixOS modules, evaluated with Nix on a node's bundle. There is no
 * nixpkgs here, so `lib` is a stand-in holding only what the two modules use, with NixOS's
 * meaning (mkIf, optional, hasPrefix, ...); what is checked is what the modules themselves
 * compute: the systemd units' settings.
 */
function evalUnits(files: Record<string, string>): any {
    return withBundle(files, (dir) => evalJson(`
        let
          lib = {
            mkIf = cond: value: if cond then value else { };
            mkOption = o: o;
            mkEnableOption = d: d;
            mkPackageOption = pkgs: name: o: name;
            mkForce = v: v;
            types = { path = "path"; str = "str"; };
            optional = cond: v: if cond then [ v ] else [ ];
            hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
          };
          pkgs = { nftables = "/nix/store/nftables"; iproute2 = "/nix/store/iproute2"; openresty = "/nix/store/openresty"; };
          config = {
            nublar.node = import ${dir}/node.nix;
            services.nublar-agent = { enable = true; package = "/nix/store/nublar-agent"; configFile = "${dir}/agent.json"; bfdKeyFile = ${JSON.stringify(NIXOS_PATHS.bfdKeyFile)}; };
            nublar.ingress = { enable = builtins.pathExists ${dir}/nginx.conf; configFile = "${dir}/nginx.conf"; balancer = "/nix/store/balancer.lua"; };
            services.nginx.group = "nginx";
          };
          units = module: (import module { inherit config lib pkgs; }).config;
        in { agent = units ${dir}/modules/nublar-agent.nix; ingress = units ${dir}/modules/nginx.nix; }`));
}

test("the nublar-agent unit: user nublar, the BFD key as a credential (never group-readable), three capabilities, a runtime folder of its own", () => {
    for (const input of parkInputs) {
        const { agent } = evalUnits(parkBundles.get(input.node.name)!);
        for (const a of agent.assertions) assert.ok(a.assertion, `${input.node.name}: ${a.message}`);
        const unit = agent.systemd.services["nublar-agent"].serviceConfig;
        assert.equal(unit.User, "nublar");
        assert.equal(unit.Group, "nublar");
        // The deploy's root-only key file, copied by systemd into a folder only user nublar reads.
        assert.deepEqual(unit.LoadCredential, [`bfd-key:${NIXOS_PATHS.bfdKeyFile}`]);
        assert.equal(JSON.parse(parkBundles.get(input.node.name)!["agent.json"]).pathAuth.keyFile, NIXOS_PATHS.bfdKeyFile);
        assert.ok(!(unit.SupplementaryGroups ?? []).includes("keys"), "no group keys: the key is never group-readable");
        assert.deepEqual(unit.AmbientCapabilities, ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_NICE"]);
        assert.deepEqual(unit.CapabilityBoundingSet, unit.AmbientCapabilities);
        assert.equal(unit.NoNewPrivileges, true);
        // Its socket's folder is its own: nobody else may write there (and so replace agent.sock).
        assert.equal(unit.RuntimeDirectory, "nublar");
        assert.equal(unit.RuntimeDirectoryMode, "0750");
        assert.equal(path.posix.dirname(NIXOS_PATHS.agentSocket), "/run/nublar");
        assert.equal(unit.StateDirectory, "nublar");
        assert.match(unit.ExecStart, /^\/nix\/store\/nublar-agent\/bin\/nublar-agent --config \S+\/agent\.json$/);
        assert.equal(agent.users.users.nublar.isSystemUser, true);
    }
});

test("Nginx's unit and the control token: private runtime folders, a root-only token both services get as credentials", () => {
    const gate = evalUnits(parkBundles.get("gate")!);
    const nginx = gate.ingress.systemd.services.nginx;
    // Nginx no longer writes anywhere of the agent's, nor joins its group.
    assert.equal(nginx.serviceConfig.ReadWritePaths, undefined);
    assert.equal(nginx.serviceConfig.SupplementaryGroups, undefined);
    assert.equal(nginx.serviceConfig.UMask, undefined, "NixOS's own umask (0027) again");
    assert.ok(!(nginx.after ?? []).includes("nublar-agent.service"));
    assert.deepEqual(nginx.serviceConfig.LoadCredential, [`nublar-control-token:${NIXOS_PATHS.nginxControlToken}`]);
    assert.equal(path.posix.basename(NIXOS_PATHS.nginxControlTokenCredential), "nublar-control-token");
    assert.equal(path.posix.dirname(NIXOS_PATHS.nginxControlTokenCredential), "/run/credentials/nginx.service");
    assert.deepEqual([nginx.requires, nginx.after], [["nublar-control-token.service"], ["nublar-control-token.service"]]);
    // The control socket in Nginx's own runtime folder (NixOS: RuntimeDirectory=nginx, 0750 nginx:nginx).
    assert.equal(path.posix.dirname(NIXOS_PATHS.nginxControl), "/run/nginx");
    // The agent: its copy of the token, and group nginx only to pass /run/nginx.
    const agentExtra = gate.ingress.systemd.services["nublar-agent"];
    assert.deepEqual(agentExtra.serviceConfig.LoadCredential, [`nginx-control-token:${NIXOS_PATHS.nginxControlToken}`]);
    assert.deepEqual(agentExtra.serviceConfig.SupplementaryGroups, ["nginx"]);
    assert.deepEqual(agentExtra.requires, ["nublar-control-token.service"]);
    const agentJson = JSON.parse(parkBundles.get("gate")!["agent.json"]);
    assert.deepEqual([agentJson.paths.nginxControl, agentJson.paths.nginxControlToken], [NIXOS_PATHS.nginxControl, NIXOS_PATHS.nginxControlToken]);
    for (const a of gate.agent.assertions) assert.ok(a.assertion, a.message);
    // The token: root's, in a folder of its own (0700), written once per boot.
    const token = gate.ingress.systemd.services["nublar-control-token"];
    assert.equal(token.serviceConfig.Type, "oneshot");
    assert.equal(token.serviceConfig.RuntimeDirectory, path.posix.basename(path.posix.dirname(NIXOS_PATHS.nginxControlToken)));
    assert.equal(token.serviceConfig.RuntimeDirectoryMode, "0700");
    assert.equal(token.serviceConfig.UMask, "0077");
    assert.ok(token.script.includes(`f=${NIXOS_PATHS.nginxControlToken}`));
    // The script itself, run here on a scratch path: 64 hex digits, mode 0600, kept on a second run.
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-token-"));
    try {
        const script = token.script.replace(NIXOS_PATHS.nginxControlToken, `${scratch}/token`);
        const run = () => spawnSync("sh", ["-ec", `umask 0077\n${script}`], { encoding: "utf8" });
        assert.equal(run().status, 0);
        const first = fs.readFileSync(`${scratch}/token`, "utf8");
        assert.match(first, /^[0-9a-f]{64}$/);
        assert.equal(fs.statSync(`${scratch}/token`).mode & 0o777, 0o600);
        assert.equal(run().status, 0);
        assert.equal(fs.readFileSync(`${scratch}/token`, "utf8"), first, "written only when missing");
    } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
    // A node without ingress: no token, no group nginx.
    const ledger = evalUnits(parkBundles.get("ledger-1")!);
    assert.deepEqual(ledger.ingress, {});
    assert.equal(ledger.agent.systemd.services["nublar-agent"].serviceConfig.SupplementaryGroups, undefined);
});

test("the agent module refuses agent.json naming another control socket or token than NixOS provides", () => {
    const files = parkBundles.get("gate")!;
    const agentJson = JSON.parse(files["agent.json"]);
    agentJson.paths.nginxControl = "/run/nublar/nginx-control.sock";
    const { agent } = evalUnits({ ...files, "agent.json": JSON.stringify(agentJson) });
    assert.ok(agent.assertions.some((a: any) => !a.assertion && /paths\.nginxControl must be \/run\/nginx\/nublar-control\.sock/.test(a.message)));
});
