// metrics-server on the lab's cluster: what the LAMP app's HorizontalPodAutoscaler reads its
// CPU figures from (the metrics.k8s.io API). A park's cluster comes with its own; the lab's is
// built from the Go module (scripts/images) and deployed here as upstream's manifest does: a
// service account with the read-only rights it needs, a Deployment, its Service and the
// APIService that puts it behind the API server.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

export interface LabMetricsServerArgs {
    image: string;
}

const NAMESPACE = "kube-system";
const NAME = "metrics-server";
const LABELS = { "app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "nublar" };

export class LabMetricsServer extends pulumi.ComponentResource {
    readonly apiService: k8s.apiregistration.v1.APIService;

    constructor(name: string, args: LabMetricsServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:MetricsServer", name, {}, opts);
        const child = { parent: this };
        const meta = (extra: Record<string, string> = {}) => ({ name: NAME, labels: LABELS, ...extra });
        const sa = new k8s.core.v1.ServiceAccount(`${name}-sa`, { metadata: meta({ namespace: NAMESPACE }) }, child);
        const subjects = [{ kind: "ServiceAccount", name: NAME, namespace: NAMESPACE }];
        const reader = new k8s.rbac.v1.ClusterRole(`${name}-reader`, {
            metadata: { name: "system:metrics-server", labels: LABELS },
            rules: [
                { apiGroups: [""], resources: ["nodes/metrics"], verbs: ["get"] },
                { apiGroups: [""], resources: ["pods", "nodes"], verbs: ["get", "list", "watch"] },
            ],
        }, child);
        const bindings = [
            new k8s.rbac.v1.ClusterRoleBinding(`${name}-reader`, {
                metadata: { name: "system:metrics-server", labels: LABELS },
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: reader.metadata.name },
                subjects,
            }, child),
            // It checks its callers' (the API server's) credentials as an aggregated API server does.
            new k8s.rbac.v1.ClusterRoleBinding(`${name}-auth-delegator`, {
                metadata: { name: "metrics-server:system:auth-delegator", labels: LABELS },
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" },
                subjects,
            }, child),
            new k8s.rbac.v1.RoleBinding(`${name}-auth-reader`, {
                metadata: { name: "metrics-server-auth-reader", namespace: NAMESPACE, labels: LABELS },
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "extension-apiserver-authentication-reader" },
                subjects,
            }, child),
        ];
        const deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, {
            metadata: meta({ namespace: NAMESPACE }),
            spec: {
                selector: { matchLabels: { "app.kubernetes.io/name": NAME } },
                template: {
                    metadata: { labels: LABELS },
                    spec: {
                        serviceAccountName: sa.metadata.name,
                        priorityClassName: "system-cluster-critical",
                        containers: [{
                            name: NAME,
                            image: args.image,
                            args: [
                                "--secure-port=10250",
                                "--cert-dir=/tmp",
                                "--kubelet-preferred-address-types=InternalIP",
                                // The lab's kubelet serves a self-signed certificate (no serving-cert
                                // rotation in a one-node lab): metrics-server cannot verify it.
                                "--kubelet-insecure-tls",
                                "--metric-resolution=15s",
                            ],
                            ports: [{ name: "https", containerPort: 10250 }],
                            resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { cpu: "500m", memory: "256Mi" } },
                            readinessProbe: { httpGet: { path: "/readyz", port: "https", scheme: "HTTPS" }, periodSeconds: 10 },
                            livenessProbe: { httpGet: { path: "/livez", port: "https", scheme: "HTTPS" }, periodSeconds: 10 },
                            securityContext: { runAsNonRoot: true, runAsUser: 65534, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
                        }],
                        volumes: [{ name: "tmp", emptyDir: {} }],
                    },
                },
            },
        }, { parent: this, dependsOn: bindings });
        // One replica: a drain may take it (the HPA then holds its count until it is back), but
        // the pack asks every workload to say so.
        new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, {
            metadata: meta({ namespace: NAMESPACE }),
            spec: { maxUnavailable: 1, selector: { matchLabels: { "app.kubernetes.io/name": NAME } } },
        }, child);
        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: meta({ namespace: NAMESPACE }),
            spec: { selector: { "app.kubernetes.io/name": NAME }, ipFamilyPolicy: "SingleStack", ipFamilies: ["IPv6"], ports: [{ name: "https", port: 443, targetPort: "https" }] },
        }, child);
        this.apiService = new k8s.apiregistration.v1.APIService(`${name}-api`, {
            metadata: { name: "v1beta1.metrics.k8s.io", labels: LABELS },
            spec: {
                service: { name: service.metadata.name, namespace: NAMESPACE },
                group: "metrics.k8s.io",
                version: "v1beta1",
                // Its serving certificate is self-signed, made at start.
                insecureSkipTLSVerify: true,
                groupPriorityMinimum: 100,
                versionPriority: 100,
            },
        }, { parent: this, dependsOn: [deployment] });
        this.registerOutputs({});
    }
}
