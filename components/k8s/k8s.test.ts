// The Kubernetes components under Pulumi mocks: their specs, the SLA-relevant fields, their
// children's names (URNs: a rename needs an alias), bad arguments refused, and the nublar-sla
// policy pack run over everything they register, as the engine would: no mandatory finding.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import * as pulumi from "@pulumi/pulumi";
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { policies } from "../../policy/policies";
import { validateResource, validateStack, type TestResource } from "../../policy/testing";
import { loadSiteFromStackFile } from "../../model/site/load";
import { nginxTest } from "../../test/helpers/nginx";
import { settled } from "../../test/helpers/pulumi-mocks";
import { manifests, unsecret } from "../../test/helpers/k8s-manifests";
import { freePorts } from "../../test/helpers/ports";
import { ComponentArgsError } from "./common";
import { PROJECT_ROOT, projectPath } from "../../model/project";

interface Registered { type: string; name: string; inputs: Record<string, any> }
const registered: Registered[] = [];
const DIGEST = `@sha256:${"0123456789abcdef".repeat(4)}`;
/** kubernetes-validate (PyPI), installed by setup: Kubernetes' OpenAPI schemas, offline. */
const KUBERNETES_VALIDATE = projectPath(".tools", "venv", "bin", "kubernetes-validate");
const park = loadSiteFromStackFile(projectPath("stacks", "Pulumi.isla-nublar.yaml"));

before(async () => {
    await pulumi.runtime.setMocks({
        newResource(args) {
            registered.push({ type: args.type, name: args.name, inputs: args.inputs });
            const metadata = { ...(args.inputs.metadata ?? {}), name: args.inputs.metadata?.name ?? `${args.name}-x1y2` };
            // Generated keys compute their value in their provider; echo a plausible one.
            const extra = args.type.endsWith("nixos:GeneratedKey") ? { value: "generated-password" } : {};
            return { id: `${args.name}-id`, state: { ...args.inputs, ...extra, metadata } };
        },
        call: (args) => args.inputs,
    }, "nublar", "unit", true);
});

async function build<T extends pulumi.ComponentResource>(make: (opts: pulumi.ComponentResourceOptions) => T): Promise<{ component: T; children: Registered[] }> {
    registered.length = 0;
    const { value: component } = await settled(make);
    return { component, children: registered.filter((r) => !r.type.startsWith("nublar:")) };
}

const proxyConfOf = (rs: Registered[]): string => find(rs, "kubernetes:core/v1:ConfigMap").inputs.data["nginx.conf"];
const find = (rs: Registered[], type: string, name?: string) => rs.find((r) => r.type === type && (name === undefined || r.name === name))!;

/** Every nublar-sla rule over the registered resources, as the engine calls them. */
async function mandatoryFindings(rs: Registered[]): Promise<string[]> {
    const resources: TestResource[] = rs.map((r) => ({ type: r.type, name: r.name, props: r.inputs }));
    const out: string[] = [];
    for (const p of policies) {
        if (p.enforcementLevel === "advisory") continue;
        if ("validateStack" in p) out.push(...(await validateStack(p as StackValidationPolicy, resources)).violations.map((v) => `${p.name}: ${v.message}`));
        else for (const r of resources) out.push(...(await validateResource(p as ResourceValidationPolicy, r)).violations.map((v) => `${p.name} on ${r.type} ${r.name}: ${v.message}`));
    }
    return out;
}

test("LegacyLampApp: a Deployment of 2+ pods with requests, limits and probes on both containers, a PDB, an HPA, an SSD volume and an IPv6 Service", async () => {
    const { LegacyLampApp } = await import("./lamp");
    const { children } = await build((o) => new LegacyLampApp("visitor-web", { namespace: "lamp", image: `registry.park/lamp/centos7-lamp${DIGEST}`, cacheImage: `registry.park/nginx${DIGEST}` }, o));
    // The children and their names: renaming one changes its URN, so it needs an alias.
    assert.deepEqual(children.map((c) => `${c.type} ${c.name}`).sort(), [
        "kubernetes:apps/v1:Deployment visitor-web",
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler visitor-web",
        "kubernetes:core/v1:ConfigMap visitor-web-cache-proxy",
        "kubernetes:core/v1:PersistentVolumeClaim visitor-web-data",
        "kubernetes:core/v1:Service visitor-web",
        "kubernetes:policy/v1:PodDisruptionBudget visitor-web",
    ]);
    const dep = find(children, "kubernetes:apps/v1:Deployment").inputs;
    // The HPA owns the pod count (from 2 up): the Deployment does not pin it, so a deploy never resets it.
    assert.equal(dep.spec.replicas, undefined);
    assert.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0);
    const pod = dep.spec.template.spec;
    assert.deepEqual(pod.containers.map((c: any) => c.name), ["app", "cache"]);
    for (const c of pod.containers) {
        assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.cpu && c.resources.limits.memory, c.name);
        assert.ok(c.readinessProbe && c.livenessProbe, c.name);
        assert.match(c.image, /@sha256:[0-9a-f]{64}$/);
    }
    assert.equal(pod.containers[0].readinessProbe.httpGet.path, "/health.php");
    assert.equal(pod.containers[0].livenessProbe.httpGet.path, "/health.php?live=1", "liveness does not depend on the volume");
    assert.equal(pod.topologySpreadConstraints[0].topologyKey, "topology.kubernetes.io/zone");
    const pdb = find(children, "kubernetes:policy/v1:PodDisruptionBudget").inputs;
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) assert.equal(dep.spec.template.metadata.labels[k], v, "the PDB selects the pods");
    const hpa = find(children, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs;
    assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.minReplicas, hpa.spec.maxReplicas], ["Deployment", 2, 6]);
    const pvc = find(children, "kubernetes:core/v1:PersistentVolumeClaim").inputs.spec;
    assert.deepEqual([pvc.accessModes, pvc.storageClassName], [["ReadWriteMany"], "ssd-rwx"]);
    // Not root: nginx's pid and temp files go to a volume of its own.
    assert.match(proxyConfOf(children), /^pid \/tmp\/nginx\.pid;/m);
    assert.ok(pod.containers[1].volumeMounts.some((m: any) => m.mountPath === "/tmp"));
    assert.deepEqual(find(children, "kubernetes:core/v1:Service").inputs.spec.ipFamilies, ["IPv6"]);
    // The sidecar's config as Nginx itself reads it.
    const proxyConf = proxyConfOf(children);
    assert.match(proxyConf, /proxy_pass http:\/\/\[::1\]:8080;[\s\S]*proxy_cache lamp;/);
    const t = nginxTest(proxyConf, (c, dir) => c.replace(/\/tmp\//g, `${dir}/`).replace("/var/cache/nginx", path.join(dir, "cache")));
    assert.equal(t.status, 0, t.output);
    assert.deepEqual(await mandatoryFindings(children), []);
});

test("LegacyLampApp stateful: a StatefulSet with a volume per pod; bad arguments are refused by name", async () => {
    const { LegacyLampApp } = await import("./lamp");
    const { children, component } = await build((o) => new LegacyLampApp("gift-shop", { namespace: "lamp", image: `r/lamp${DIGEST}`, cacheImage: `r/nginx${DIGEST}`, stateful: true, replicas: 3 }, o));
    assert.equal(component.workloadKind, "StatefulSet");
    const sts = find(children, "kubernetes:apps/v1:StatefulSet").inputs;
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.storageClassName, "ssd");
    // Its pods' DNS names come from a headless Service of the name it gives.
    const headless = find(children, "kubernetes:core/v1:Service", "gift-shop-headless").inputs;
    assert.deepEqual([headless.spec.clusterIP, headless.metadata.name, sts.spec.serviceName], ["None", "gift-shop-headless", "gift-shop-headless"]);
    assert.equal(find(children, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs.spec.minReplicas, 3);
    assert.ok(!children.some((c) => c.type === "kubernetes:core/v1:PersistentVolumeClaim"));
    assert.deepEqual(await mandatoryFindings(children), []);
    assert.throws(() => new LegacyLampApp("x", { namespace: "lamp", image: "centos:7", cacheImage: `r/nginx${DIGEST}` }), (e: Error) => e instanceof ComponentArgsError && /x\.image: 'centos:7' is not pinned by digest/.test(e.message));
    assert.throws(() => new LegacyLampApp("y", { namespace: "lamp", image: `r/lamp${DIGEST}`, cacheImage: `r/nginx${DIGEST}`, replicas: 1 }), /cannot survive losing one/);
});

test("UnicornLedgerCluster: one CloudNativePG Cluster per shard with the site's quorum, backups and anti-affinity, and a Redis cache tier", async () => {
    const { UnicornLedgerCluster } = await import("./ledger-cluster");
    const { children } = await build((o) => new UnicornLedgerCluster("unicorn", {
        namespace: "ledger", ledger: park.ledger, postgresImage: `ghcr.io/cloudnative-pg/postgresql${DIGEST}`, redisImage: `redis${DIGEST}`,
        backupDestination: "s3://jurassic-lake/unicorn", backupCredentialsSecret: "lake-credentials",
    }, o));
    const clusters = children.filter((c) => c.type === "kubernetes:postgresql.cnpg.io/v1:Cluster");
    assert.deepEqual(clusters.map((c) => c.inputs.metadata.name), park.ledger.shards.map((s) => `unicorn-${s}`), "fixed short names, not generated ones");
    for (const c of clusters) {
        const spec = c.inputs.spec;
        assert.equal(spec.instances, 3);
        assert.deepEqual(spec.postgresql.synchronous, { method: "any", number: 1, dataDurability: "required" });
        assert.deepEqual(spec.affinity, { enablePodAntiAffinity: true, topologyKey: "topology.kubernetes.io/zone", podAntiAffinityType: "required" });
        assert.equal(spec.backup.retentionPolicy, "30d");
        assert.equal(spec.backup.barmanObjectStore.destinationPath, `s3://jurassic-lake/unicorn/${spec.bootstrap.initdb.database}`);
    }
    const scheduled = children.filter((c) => c.type === "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup");
    assert.equal(scheduled.length, clusters.length);
    assert.equal(scheduled[0].inputs.spec.schedule, "0 0 3 * * *");
    // The cache: a password from its own Secret (the next test: never on a command line).
    assert.ok(find(children, "kubernetes:core/v1:Secret", "unicorn-cache-password"));
    const np = find(children, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "unicorn-cache").inputs.spec;
    assert.deepEqual([np.policyTypes, np.ingress[0].from[0].podSelector.matchLabels, np.ingress[0].ports[0].port], [["Ingress"], { "nublar/ledger-client": "true" }, 6379]);
    assert.deepEqual(await mandatoryFindings(children), []);
    const { backup: _, ...noBackup } = park.ledger;
    assert.throws(() => new UnicornLedgerCluster("u2", { namespace: "l", ledger: noBackup as typeof park.ledger, postgresImage: `p${DIGEST}`, redisImage: `r${DIGEST}`, backupDestination: "s3://b", backupCredentialsSecret: "s" }), /ledger\.backup is not set/);
});

test("UnicornLedgerCluster's Redis: the password only in its Secret (a redis.conf that Redis reads from a read-only file, REDISCLI_AUTH for the probe), never on a command line", async (t) => {
    const { UnicornLedgerCluster, redisConf, REDIS_CONF_KEY } = await import("./ledger-cluster");
    const { children } = await build((o) => new UnicornLedgerCluster("unicorn", {
        namespace: "ledger", ledger: park.ledger, postgresImage: `p${DIGEST}`, redisImage: `r${DIGEST}`, backupDestination: "s3://lake/u", backupCredentialsSecret: "lake-credentials",
    }, o));
    const PASSWORD = "generated-password"; // what the mocks give the GeneratedKey
    const secret = find(children, "kubernetes:core/v1:Secret", "unicorn-cache-password");
    const secretName = `${secret.name}-x1y2`; // its generated name, under the mocks
    // It stays a Pulumi secret, the config too: mocks see a secret input as Pulumi's wire wrapper.
    assert.equal(secret.inputs.stringData["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270", "stringData is a secret");
    assert.deepEqual(Object.keys(unsecret(secret.inputs.stringData)).sort(), ["password", REDIS_CONF_KEY]);
    const conf = unsecret(secret.inputs.stringData)[REDIS_CONF_KEY];
    assert.equal(conf, redisConf(PASSWORD));
    assert.match(conf, /^requirepass "generated-password"$/m);
    assert.match(conf, /^bind ::$/m);

    const dep = find(children, "kubernetes:apps/v1:Deployment", "unicorn-cache").inputs;
    const pod = dep.spec.template.spec;
    assert.ok(!JSON.stringify(unsecret(dep)).includes(PASSWORD), "the password is nowhere in the Deployment");
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        const probes = [c.readinessProbe, c.livenessProbe, c.startupProbe].filter((p) => p?.exec).map((p) => p.exec.command);
        for (const argv of [c.command ?? [], c.args ?? [], ...probes]) {
            const line = argv.join(" ");
            assert.ok(!line.includes(PASSWORD), `${c.name}: the password in '${line}'`);
            assert.doesNotMatch(line, /(^|\s)(-a|--pass|--requirepass|--user)(\s|=|$)|\$REDIS_PASSWORD/, `${c.name}: a password argument in '${line}'`);
        }
    }
    const redis = pod.containers.find((c: any) => c.name === "redis");
    assert.deepEqual(redis.command, ["redis-server", `/etc/redis/${REDIS_CONF_KEY}`]);
    assert.equal(redis.args, undefined);
    // The config file: the Secret's redis.conf only, mounted read-only, 0440 for root and the fsGroup.
    const mount = redis.volumeMounts.find((m: any) => m.mountPath === "/etc/redis");
    assert.equal(mount.readOnly, true);
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    assert.deepEqual(volume.secret, { secretName, items: [{ key: REDIS_CONF_KEY, path: REDIS_CONF_KEY }], defaultMode: 0o440 });
    assert.equal(pod.securityContext.fsGroup, redis.securityContext.runAsUser, "Redis's user reads the file through its group");
    assert.equal(redis.securityContext.runAsNonRoot, true);
    // The probe's redis-cli takes the password from REDISCLI_AUTH, from the Secret.
    assert.deepEqual(redis.env, [{ name: "REDISCLI_AUTH", valueFrom: { secretKeyRef: { name: secretName, key: "password" } } }]);
    const probe: string[] = redis.readinessProbe.exec.command;
    assert.match(probe.join(" "), /redis-cli -h ::1 ping/);

    // As Redis itself reads them: a real redis-server from the rendered file (with a password that
    // needs quoting), and the probe's command, which passes with REDISCLI_AUTH and fails without.
    const tricky = 'pa"ss\\w rd#$x';
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-redis-conf-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, REDIS_CONF_KEY), redisConf(tricky), { mode: 0o440 });
    const [port] = await freePorts(1);
    const server = spawn("redis-server", [path.join(dir, REDIS_CONF_KEY), "--port", String(port), "--bind", "::1", "--dir", dir], { stdio: "ignore" });
    t.after(() => { if (server.exitCode === null) server.kill(); });
    const { REDISCLI_AUTH: _, ...env } = process.env;
    const cli = (auth: string | undefined, ...argv: string[]) => spawnSync("redis-cli", ["-h", "::1", "-p", String(port), ...argv], { encoding: "utf8", env: auth === undefined ? env : { ...env, REDISCLI_AUTH: auth } });
    for (let i = 0; i < 100 && !/PONG|NOAUTH/.test(cli(undefined, "ping").stdout); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(cli(tricky, "ping").stdout, /^PONG$/m);
    assert.match(cli(undefined, "ping").stdout, /NOAUTH/);
    assert.match(cli("wrong", "ping").stdout + cli("wrong", "ping").stderr, /WRONGPASS|invalid/i);
    assert.equal(cli(tricky, "config", "get", "maxmemory-policy").stdout.trim().split("\n")[1], "allkeys-lru");
    const probeAt = [...probe.slice(0, -1), probe[probe.length - 1].replace("-h ::1", `-h ::1 -p ${port}`)];
    assert.equal(spawnSync(probeAt[0], probeAt.slice(1), { env: { ...env, REDISCLI_AUTH: tricky } }).status, 0, "the readiness probe passes with REDISCLI_AUTH");
    assert.notEqual(spawnSync(probeAt[0], probeAt.slice(1), { env }).status, 0, "and fails without it");
});

test("EventBus: Strimzi Kafka in KRaft mode, 3 controllers and 3 brokers, replication 3 and min ISR 2 on the cluster and every topic", async () => {
    const { EventBus } = await import("./event-bus");
    const { children } = await build((o) => new EventBus("park-events", { namespace: "events", topics: [{ name: "sensor.readings" }, { name: "network.changes", partitions: 12 }] }, o));
    const kafka = find(children, "kubernetes:kafka.strimzi.io/v1beta2:Kafka").inputs;
    assert.equal(kafka.metadata.annotations["strimzi.io/kraft"], "enabled");
    // Strimzi finds pools and topics by the cluster's exact name.
    assert.equal(kafka.metadata.name, "events");
    for (const r of children.filter((c) => /KafkaNodePool|KafkaTopic/.test(c.type))) assert.equal(r.inputs.metadata.labels["strimzi.io/cluster"], "events", r.name);
    assert.deepEqual(kafka.spec.kafka.listeners[0].authentication, { type: "tls" });
    assert.equal(kafka.spec.kafka.config["default.replication.factor"], 3);
    assert.equal(kafka.spec.kafka.config["min.insync.replicas"], 2);
    const pools = children.filter((c) => c.type === "kubernetes:kafka.strimzi.io/v1beta2:KafkaNodePool").map((p) => [p.inputs.spec.roles.join(","), p.inputs.spec.replicas]);
    assert.deepEqual(pools, [["controller", 3], ["broker", 3]]);
    const topics = children.filter((c) => c.type === "kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic");
    assert.deepEqual(topics.map((t) => [t.inputs.metadata.name, t.inputs.spec.replicas, t.inputs.spec.config["min.insync.replicas"]]), [["sensor.readings", 3, 2], ["network.changes", 3, 2]]);
    assert.deepEqual(await mandatoryFindings(children), []);
    assert.throws(() => new EventBus("e2", { namespace: "e", topics: [], controllers: 2 }), /odd quorum of 3 or more/);
    assert.throws(() => new EventBus("e3", { namespace: "e", topics: [{ name: "a" }, { name: "a" }] }), /'a' is listed twice/);
});

test("the policy pack does find what the components prevent, on the same resources: a one-replica topic, a pod without limits", async () => {
    const { EventBus } = await import("./event-bus");
    const { children } = await build((o) => new EventBus("ev", { namespace: "events", topics: [{ name: "t" }] }, o));
    const topic = find(children, "kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic");
    topic.inputs.spec.replicas = 1;
    assert.ok((await mandatoryFindings(children)).some((f) => f.startsWith("kafka-replication on kubernetes:kafka.strimzi.io/v1beta2:KafkaTopic")));
    const { LegacyLampApp } = await import("./lamp");
    const lamp = (await build((o) => new LegacyLampApp("web", { namespace: "lamp", image: `r/lamp${DIGEST}`, cacheImage: `r/nginx${DIGEST}` }, o))).children;
    delete find(lamp, "kubernetes:apps/v1:Deployment").inputs.spec.template.spec.containers[1].resources.limits;
    const found = await mandatoryFindings(lamp);
    assert.equal(found.length, 1, found.join("\n"));
    assert.match(found[0], /^pod-resources on kubernetes:apps\/v1:Deployment web: container cache lacks limits\.cpu, limits\.memory/);
});

function kubernetesValidate(docs: Record<string, unknown>[]): { status: number | null; output: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-k8s-validate-"));
    try {
        const files = docs.map((d, i) => {
            const f = path.join(dir, `${i}-${String(d.kind).toLowerCase()}.yaml`);
            fs.writeFileSync(f, JSON.stringify(d));
            return f;
        });
        const r = spawnSync(KUBERNETES_VALIDATE, ["--strict", "--no-warn", "-k", "1.34.0", ...files], { encoding: "utf8" });
        return { status: r.status, output: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ""}` };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

test("the built-in resources are valid Kubernetes 1.34 objects (kubernetes-validate --strict: schema and no unknown field)", async () => {
    assert.ok(fs.existsSync(KUBERNETES_VALIDATE), `no ${KUBERNETES_VALIDATE}: run npm run setup`);
    const { LegacyLampApp } = await import("./lamp");
    const { UnicornLedgerCluster } = await import("./ledger-cluster");
    const docs = [
        ...manifests((await build((o) => new LegacyLampApp("visitor-web", { namespace: "lamp", image: `r/lamp${DIGEST}`, cacheImage: `r/nginx${DIGEST}` }, o))).children),
        ...manifests((await build((o) => new LegacyLampApp("gift-shop", { namespace: "lamp", image: `r/lamp${DIGEST}`, cacheImage: `r/nginx${DIGEST}`, stateful: true }, o))).children),
        ...manifests((await build((o) => new UnicornLedgerCluster("unicorn", {
            namespace: "ledger", ledger: park.ledger, postgresImage: `p${DIGEST}`, redisImage: `r${DIGEST}`, backupDestination: "s3://lake/u", backupCredentialsSecret: "lake-credentials",
        }, o))).children),
    ];
    assert.deepEqual([...new Set(docs.map((d) => d.kind))].sort(), ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "Secret", "Service", "StatefulSet"]);
    const ok = kubernetesValidate(docs);
    assert.equal(ok.status, 0, ok.output);
    // The validator is not a rubber stamp: one misspelt field fails it.
    const bad = structuredClone(docs.find((d) => d.kind === "Deployment")!) as any;
    bad.spec.replicass = 2;
    const no = kubernetesValidate([bad]);
    assert.notEqual(no.status, 0);
    assert.match(no.output, /replicass/);
});

test("the Kubernetes provider plugin setup builds carries the version of the npm package the program loads", () => {
    // The engine asks for exactly the npm package's version (automatic plugin download is off).
    const script = fs.readFileSync(path.join(PROJECT_ROOT, "scripts", "kube", "build-pulumi-kubernetes"), "utf8");
    const built = /^PULUMI_KUBERNETES_VERSION=(\S+)$/m.exec(script)?.[1];
    const pinned = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")).dependencies["@pulumi/kubernetes"];
    assert.equal(built, pinned);
    assert.equal(JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "node_modules", "@pulumi", "kubernetes", "package.json"), "utf8")).version, pinned);
});
