// LegacyLampApp: a containerized CentOS 7 LAMP app (images/centos7-lamp) on Kubernetes, with
// the SLA-safe defaults the nublar-sla pack asks for: replicas spread over failure domains,
// requests and limits, readiness and liveness probes, a PodDisruptionBudget, an HPA, and a
// caching proxy sidecar in front of the legacy app, so that repeat requests never reach PHP.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ComponentArgsError, FAILURE_DOMAIN_KEY, labelsFor, pinnedImage, selectorFor, type Resources } from "./common";

export interface LegacyLampAppArgs {
    namespace: string;
    /** The app's image, pinned by digest (images/centos7-lamp). */
    image: string;
    /** The caching proxy's image, pinned by digest (Nginx with proxy_cache). */
    cacheImage: string;
    /** Pods; the HPA scales between this and `maxReplicas`. Default 2, the least that survives a node. */
    replicas?: number;
    maxReplicas?: number;
    /** Target CPU use for the HPA, percent of requests. Default 70. */
    targetCpuPercent?: number;
    /** Keeps state (sessions, uploads) on its volume: a StatefulSet with one volume per pod. */
    stateful?: boolean;
    /**
     * The app's data volume. A StatefulSet gets one per pod on `storageClass` (default `ssd`).
     * A Deployment's pods share one, so its class must support ReadWriteMany on SSDs (EFS,
     * CephFS...): `sharedStorageClass`, default `ssd-rwx`.
     */
    storage?: { size?: string; storageClass?: string; sharedStorageClass?: string };
    /** Apache's port inside the pod: 8080, where images/centos7-lamp listens as a non-root user. The proxy listens on 8081 and is what the Service exposes. */
    appPort?: number;
    /** The app's health page, for the probes. Default /health.php. */
    healthPath?: string;
    resources?: Partial<Resources>;
    cacheResources?: Partial<Resources>;
}

const APP_RESOURCES: Resources = { requests: { cpu: "250m", memory: "256Mi" }, limits: { cpu: "1", memory: "512Mi" } };
const CACHE_RESOURCES: Resources = { requests: { cpu: "50m", memory: "64Mi" }, limits: { cpu: "250m", memory: "128Mi" } };
const PROXY_PORT = 8081;
/** How long a leaving pod keeps serving (its containers' preStop). */
const DRAIN_SECONDS = 5;

/** The sidecar's Nginx: a small cache in front of Apache, on the pod's loopback (IPv6 only, like the site). */
export function cacheProxyConf(appPort: number): string {
    return [
        // Not root: the pid file and the temp paths must be somewhere user 101 can write.
        "pid /tmp/nginx.pid;",
        "events {}",
        "http {",
        // No version in the Server header, as Apache behind it (images/centos7-lamp's nublar.conf).
        "  server_tokens off;",
        "  client_body_temp_path /tmp/client_body;",
        "  proxy_temp_path /tmp/proxy;",
        "  proxy_cache_path /var/cache/nginx levels=1:2 keys_zone=lamp:10m max_size=256m inactive=10m use_temp_path=off;",
        "  server {",
        `    listen [::]:${PROXY_PORT} ipv6only=on;`,
        "    location = /nublar-proxy-health { return 200 'ok'; }",
        "    location / {",
        `      proxy_pass http://[::1]:${appPort};`,
        "      proxy_cache lamp;",
        "      proxy_cache_valid 200 301 302 30s;",
        "      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;",
        "      proxy_cache_lock on;",
        "      proxy_set_header Host $host;",
        "    }",
        "  }",
        "}",
        "",
    ].join("\n");
}

export class LegacyLampApp extends pulumi.ComponentResource {
    readonly service: k8s.core.v1.Service;
    readonly workloadKind: "Deployment" | "StatefulSet";

    constructor(name: string, args: LegacyLampAppArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:k8s:LegacyLampApp", name, {}, opts);
        const image = pinnedImage(`${name}.image`, args.image);
        const cacheImage = pinnedImage(`${name}.cacheImage`, args.cacheImage);
        const replicas = args.replicas ?? 2;
        const maxReplicas = args.maxReplicas ?? Math.max(replicas * 3, 4);
        if (!Number.isInteger(replicas) || replicas < 2) throw new ComponentArgsError(`${name}.replicas: ${replicas} pods cannot survive losing one; use 2 or more`);
        if (maxReplicas < replicas) throw new ComponentArgsError(`${name}.maxReplicas (${maxReplicas}) is below replicas (${replicas})`);
        const appPort = args.appPort ?? 8080;
        const healthPath = args.healthPath ?? "/health.php";
        const ns = args.namespace;
        const labels = labelsFor(name, "lamp");
        const selector = selectorFor(name);
        const child = { parent: this };

        const proxyConf = new k8s.core.v1.ConfigMap(`${name}-cache-proxy`, {
            metadata: { namespace: ns, labels },
            data: { "nginx.conf": cacheProxyConf(appPort) },
        }, child);

        const probe = (path: string, port: number, initialDelaySeconds: number) => ({
            httpGet: { path, port }, initialDelaySeconds, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 3,
        });
        // A pod being removed (a rollout, an eviction, a scale-in) keeps serving for a few
        // seconds after it leaves the Service's endpoints, while kube-proxy on every node catches
        // up: connections opened in that window still reach a live server.
        const lifecycle = { preStop: { sleep: { seconds: DRAIN_SECONDS } } };
        const volumeName = "data";
        const storageClassName = args.storage?.storageClass ?? "ssd";
        const size = args.storage?.size ?? "10Gi";
        const podSpec = {
            // Apache drops to its own user; the proxy runs as nginx's unprivileged user.
            securityContext: { fsGroup: 48 },
            // Replicas in different failure domains where the cluster has them.
            topologySpreadConstraints: [{ maxSkew: 1, topologyKey: FAILURE_DOMAIN_KEY, whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: selector } }],
            containers: [
                {
                    name: "app",
                    image,
                    ports: [{ name: "http-app", containerPort: appPort }],
                    resources: { ...APP_RESOURCES, ...args.resources },
                    readinessProbe: probe(healthPath, appPort, 5),
                    // Liveness asks only whether PHP answers (images/centos7-lamp/.../health.php?live):
                    // a storage hiccup must not restart every pod at once.
                    livenessProbe: probe(`${healthPath}?live=1`, appPort, 30),
                    lifecycle,
                    volumeMounts: [{ name: volumeName, mountPath: "/var/www/data" }],
                },
                {
                    name: "cache",
                    image: cacheImage,
                    ports: [{ name: "http", containerPort: PROXY_PORT }],
                    resources: { ...CACHE_RESOURCES, ...args.cacheResources },
                    readinessProbe: probe("/nublar-proxy-health", PROXY_PORT, 2),
                    livenessProbe: probe("/nublar-proxy-health", PROXY_PORT, 10),
                    lifecycle,
                    securityContext: { runAsNonRoot: true, runAsUser: 101, allowPrivilegeEscalation: false },
                    volumeMounts: [{ name: "cache-proxy", mountPath: "/etc/nginx/nginx.conf", subPath: "nginx.conf" }, { name: "cache", mountPath: "/var/cache/nginx" }, { name: "tmp", mountPath: "/tmp" }],
                },
            ],
            volumes: [
                { name: "cache-proxy", configMap: { name: proxyConf.metadata.name } },
                { name: "cache", emptyDir: { sizeLimit: "512Mi" } },
                { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
            ] as k8s.types.input.core.v1.Volume[],
        };

        let workload: k8s.apps.v1.Deployment | k8s.apps.v1.StatefulSet;
        // No `replicas` in the workload: the HPA owns the count (from `replicas` up), and a
        // deploy must not reset what it chose.
        if (args.stateful) {
            this.workloadKind = "StatefulSet";
            // A StatefulSet's pods get their DNS names from a headless Service of a fixed name.
            const headless = new k8s.core.v1.Service(`${name}-headless`, {
                metadata: { namespace: ns, name: `${name}-headless`, labels },
                spec: { clusterIP: "None", selector, ipFamilyPolicy: "SingleStack", ipFamilies: ["IPv6"], ports: [{ name: "http", port: 80, targetPort: "http" }] },
            }, child);
            workload = new k8s.apps.v1.StatefulSet(name, {
                metadata: { namespace: ns, labels },
                spec: {
                    serviceName: headless.metadata.name,
                    selector: { matchLabels: selector },
                    template: { metadata: { labels }, spec: podSpec },
                    volumeClaimTemplates: [{ metadata: { name: volumeName }, spec: { accessModes: ["ReadWriteOnce"], storageClassName, resources: { requests: { storage: size } } } }],
                },
            }, child);
        } else {
            this.workloadKind = "Deployment";
            const pvc = new k8s.core.v1.PersistentVolumeClaim(`${name}-data`, {
                metadata: { namespace: ns, labels },
                // Shared by the replicas: uploads and the like; a volume per pod is what `stateful` is for.
                spec: { accessModes: ["ReadWriteMany"], storageClassName: args.storage?.sharedStorageClass ?? "ssd-rwx", resources: { requests: { storage: size } } },
            }, child);
            podSpec.volumes.push({ name: volumeName, persistentVolumeClaim: { claimName: pvc.metadata.name } });
            workload = new k8s.apps.v1.Deployment(name, {
                metadata: { namespace: ns, labels },
                spec: {
                    selector: { matchLabels: selector },
                    strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
                    template: { metadata: { labels }, spec: podSpec },
                },
            }, child);
        }

        this.service = new k8s.core.v1.Service(name, {
            metadata: { namespace: ns, labels },
            spec: { selector, ipFamilyPolicy: "SingleStack", ipFamilies: ["IPv6"], ports: [{ name: "http", port: 80, targetPort: "http" }] },
        }, child);
        new k8s.policy.v1.PodDisruptionBudget(name, {
            metadata: { namespace: ns, labels },
            spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
        }, child);
        new k8s.autoscaling.v2.HorizontalPodAutoscaler(name, {
            metadata: { namespace: ns, labels },
            spec: {
                scaleTargetRef: { apiVersion: "apps/v1", kind: this.workloadKind, name: workload.metadata.name },
                minReplicas: replicas,
                maxReplicas,
                metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: args.targetCpuPercent ?? 70 } } }],
            },
        }, child);
        this.registerOutputs({ service: this.service.metadata.name, workloadKind: this.workloadKind });
    }
}
