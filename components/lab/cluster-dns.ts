// The lab cluster's DNS: CoreDNS answering for cluster.local from the API server (Services and
// pods), as a park's cluster has one. CloudNativePG needs it: its instances stream from, and
// its join jobs copy from, the `<cluster>-rw` Service by name. Built from CoreDNS's Go module
// with only the plugins this needs (scripts/images/operators/coredns), deployed as upstream's
// manifest does: a service account with read-only rights, its Corefile, a Deployment, and the
// kube-dns Service at the address the kubelet hands to pods (LabKubePlan.clusterDns).
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

export interface LabClusterDnsArgs {
    image: string;
    /** The Service's fixed address (in the service range): what the kubelet writes into pods' resolv.conf. */
    address: string;
    /** The cluster's domain (the kubelet's clusterDomain). */
    domain?: string;
}

const NAMESPACE = "kube-system";
const NAME = "coredns";
/** Unprivileged: CoreDNS listens above 1024 as nobody, and the Service maps port 53 to it. */
export const CLUSTER_DNS_PORT = 1053;
const LABELS = { "app.kubernetes.io/name": NAME, "k8s-app": "kube-dns", "app.kubernetes.io/managed-by": "nublar" };
const SELECTOR = { "k8s-app": "kube-dns" };

/** CoreDNS's Corefile: the cluster's zone and reverse lookups, nothing forwarded (no network beyond the lab). */
export function corefile(domain: string): string {
    return [
        `.:${CLUSTER_DNS_PORT} {`,
        "    errors",
        "    health {",
        "        lameduck 5s",
        "    }",
        "    ready",
        `    kubernetes ${domain} in-addr.arpa ip6.arpa {`,
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "        ttl 30",
        "    }",
        "    cache 30",
        "}",
        "",
    ].join("\n");
}

export class LabClusterDns extends pulumi.ComponentResource {
    readonly service: k8s.core.v1.Service;
    readonly deployment: k8s.apps.v1.Deployment;

    constructor(name: string, args: LabClusterDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:ClusterDns", name, {}, opts);
        const child = { parent: this };
        const meta = { name: NAME, namespace: NAMESPACE, labels: LABELS };
        const sa = new k8s.core.v1.ServiceAccount(`${name}-sa`, { metadata: meta }, child);
        const role = new k8s.rbac.v1.ClusterRole(`${name}-reader`, {
            metadata: { name: "system:coredns", labels: LABELS },
            rules: [
                { apiGroups: [""], resources: ["endpoints", "services", "pods", "namespaces"], verbs: ["list", "watch"] },
                { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
            ],
        }, child);
        const binding = new k8s.rbac.v1.ClusterRoleBinding(`${name}-reader`, {
            metadata: { name: "system:coredns", labels: LABELS },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
            subjects: [{ kind: "ServiceAccount", name: NAME, namespace: NAMESPACE }],
        }, child);
        const config = new k8s.core.v1.ConfigMap(`${name}-corefile`, { metadata: meta, data: { Corefile: corefile(args.domain ?? "cluster.local") } }, child);
        this.deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, {
            metadata: meta,
            spec: {
                selector: { matchLabels: SELECTOR },
                template: {
                    metadata: { labels: LABELS },
                    spec: {
                        serviceAccountName: sa.metadata.name,
                        priorityClassName: "system-cluster-critical",
                        // Not itself: it asks nobody (no forwarding), and must not wait on its own Service.
                        dnsPolicy: "Default",
                        containers: [{
                            name: NAME,
                            image: args.image,
                            args: ["-conf", "/etc/coredns/Corefile"],
                            ports: [
                                { name: "dns", containerPort: CLUSTER_DNS_PORT, protocol: "UDP" },
                                { name: "dns-tcp", containerPort: CLUSTER_DNS_PORT, protocol: "TCP" },
                            ],
                            resources: { requests: { cpu: "20m", memory: "32Mi" }, limits: { cpu: "500m", memory: "128Mi" } },
                            readinessProbe: { httpGet: { path: "/ready", port: 8181 }, periodSeconds: 5 },
                            livenessProbe: { httpGet: { path: "/health", port: 8080 }, periodSeconds: 10, failureThreshold: 5 },
                            securityContext: { runAsNonRoot: true, runAsUser: 65534, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                            volumeMounts: [{ name: "config", mountPath: "/etc/coredns", readOnly: true }],
                        }],
                        volumes: [{ name: "config", configMap: { name: config.metadata.name, items: [{ key: "Corefile", path: "Corefile" }] } }],
                    },
                },
            },
        }, { parent: this, dependsOn: [binding] });
        new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, {
            metadata: meta,
            spec: { maxUnavailable: 1, selector: { matchLabels: SELECTOR } },
        }, child);
        this.service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { ...meta, name: "kube-dns" },
            spec: {
                selector: SELECTOR,
                clusterIP: args.address,
                ipFamilyPolicy: "SingleStack",
                ipFamilies: ["IPv6"],
                ports: [
                    { name: "dns", port: 53, targetPort: CLUSTER_DNS_PORT, protocol: "UDP" },
                    { name: "dns-tcp", port: 53, targetPort: CLUSTER_DNS_PORT, protocol: "TCP" },
                ],
            },
        }, child);
        this.registerOutputs({});
    }
}
