// The lab cluster's configuration files and command lines, rendered from its plan
// (model/kube/plan.ts). Pure: lab/kube/cluster.ts writes them and starts the daemons.
// Paths are those seen inside the cluster's mount namespace; the folders of plan.dir are the
// same there as on the host (only the fixed paths of plan.mounts are redirected).
import * as path from "node:path";
import type { LabKubeDaemon, LabKubePlan } from "../../model/kube/plan";

/** Files of the throwaway PKI (lab/kube/pki.ts makes them). */
export function pkiFile(plan: LabKubePlan, name: string): string {
    return path.join(plan.paths.pki, name);
}

export function configFile(plan: LabKubePlan, name: string): string {
    return path.join(plan.paths.config, name);
}

/** The clients of the API server, each with its own certificate and kubeconfig. */
export const KUBE_CLIENTS = {
    admin: { cn: "nublar-admin", o: "system:masters" },
    "kube-controller-manager": { cn: "system:kube-controller-manager" },
    "kube-scheduler": { cn: "system:kube-scheduler" },
    "kube-proxy": { cn: "system:kube-proxy" },
    // The Node authorizer and NodeRestriction know a kubelet by this name and group.
    kubelet: { cn: "system:node:", o: "system:nodes" },
} as const satisfies Record<string, { cn: string; o?: string }>;
export type KubeClient = keyof typeof KUBE_CLIENTS;

/** A kubeconfig whose credentials are files of the PKI (the daemons'). */
export function kubeconfig(plan: LabKubePlan, client: KubeClient): string {
    return [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: lab",
        "  cluster:",
        `    server: ${plan.apiServer}`,
        `    certificate-authority: ${pkiFile(plan, "ca.crt")}`,
        "users:",
        `- name: ${client}`,
        "  user:",
        `    client-certificate: ${pkiFile(plan, `${client}.crt`)}`,
        `    client-key: ${pkiFile(plan, `${client}.key`)}`,
        "contexts:",
        "- name: lab",
        `  context: {cluster: lab, user: ${client}}`,
        "current-context: lab",
        "",
    ].join("\n");
}

/** The admin's kubeconfig with everything inline: the host's Pulumi provider reads it as text. */
export function adminKubeconfig(plan: LabKubePlan, pem: { ca: string; cert: string; key: string }): string {
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    return [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        `- name: ${plan.nodeName}`,
        "  cluster:",
        `    server: ${plan.apiServer}`,
        `    certificate-authority-data: ${b64(pem.ca)}`,
        "users:",
        "- name: nublar-admin",
        "  user:",
        `    client-certificate-data: ${b64(pem.cert)}`,
        `    client-key-data: ${b64(pem.key)}`,
        "contexts:",
        `- name: ${plan.nodeName}`,
        `  context: {cluster: ${plan.nodeName}, user: nublar-admin}`,
        `current-context: ${plan.nodeName}`,
        "",
    ].join("\n");
}

/**
 * containerd 1.6's config (version 2). Its state is /run/containerd (plan.mounts puts it in
 * plan.dir), where its shims' sockets must be anyway.
 */
export function containerdConfig(plan: LabKubePlan, pauseImage: string): string {
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return `version = 2
root = ${JSON.stringify(plan.paths.containerdRoot)}
state = ${JSON.stringify(plan.paths.containerdState)}
oom_score = 0
# Snapshotters the lab has no use for; aufs's would modprobe a module.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${JSON.stringify(plan.paths.containerdSocket)}

[plugins."io.containerd.internal.v1.opt"]
  path = ${JSON.stringify(path.join(plan.paths.containerdRoot, "opt"))}

[${cri}]
  sandbox_image = ${JSON.stringify(pauseImage)}
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails to lower a container's
  # oom_score_adj below its own ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # An AppArmor profile would be loaded into the kernel for every container: global state.
  disable_apparmor = true
  enable_selinux = false
  # Per pod network namespace: pods may bind low ports and ping without privileges.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  stream_server_address = "::1"
  stream_server_port = "0"

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  # No systemd here: cgroupfs, as the kubelet's cgroupDriver.
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = ${JSON.stringify(plan.paths.cniConfDir)}
  max_conf_num = 1
`;
}

/**
 * The pods' network: one bridge with the pod /64, the bridge as their gateway (the namespace
 * forwards), no masquerading (everything is IPv6 ULA, routed). containerd sets up each pod's
 * loopback itself. Hairpin lets a pod reach itself through a Service.
 */
export function cniConflist(plan: LabKubePlan): string {
    return `${JSON.stringify({
        cniVersion: "1.0.0",
        name: "nublar-lab",
        plugins: [
            {
                type: "bridge",
                bridge: "cni0",
                isGateway: true,
                ipMasq: false,
                hairpinMode: true,
                ipam: {
                    type: "host-local",
                    ranges: [[{ subnet: plan.podCidr }]],
                    routes: [{ dst: "::/0" }],
                    dataDir: plan.paths.cniDataDir,
                },
            },
            { type: "portmap", capabilities: { portMappings: true } },
        ],
    }, null, 2)}\n`;
}

/** Eviction thresholds that never trigger: the disk and memory are shared with the whole lab. */
const NO_EVICTION = {
    "memory.available": "1Mi",
    "nodefs.available": "1Mi",
    "nodefs.inodesFree": "1",
    "imagefs.available": "1Mi",
    "imagefs.inodesFree": "1",
};

export function kubeletConfig(plan: LabKubePlan): string {
    const cfg = {
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        address: "::",
        port: plan.ports.kubelet,
        readOnlyPort: 0,
        healthzBindAddress: "::1",
        healthzPort: plan.ports.kubeletHealthz,
        // Served with a certificate of the lab's CA, so the API server (and metrics-server)
        // can verify the kubelet.
        tlsCertFile: pkiFile(plan, "kubelet-serving.crt"),
        tlsPrivateKeyFile: pkiFile(plan, "kubelet-serving.key"),
        rotateCertificates: false,
        serverTLSBootstrap: false,
        authentication: {
            anonymous: { enabled: false },
            webhook: { enabled: true },
            x509: { clientCAFile: pkiFile(plan, "ca.crt") },
        },
        authorization: { mode: "Webhook" },
        // No systemd, cgroup v1 (hybrid) here: both must be said, or the kubelet refuses.
        cgroupDriver: "cgroupfs",
        failCgroupV1: false,
        cgroupRoot: plan.cgroupRoot,
        failSwapOn: false,
        containerRuntimeEndpoint: `unix://${plan.paths.containerdSocket}`,
        // It would refuse to start with the kernel's defaults otherwise; lab/kube restores the
        // global sysctls the kubelet sets when the cluster stops.
        protectKernelDefaults: false,
        clusterDomain: "cluster.local",
        ...(plan.clusterDns ? { clusterDNS: [plan.clusterDns] } : {}),
        // Images are imported, never pulled: never collect them.
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        serializeImagePulls: false,
        evictionHard: NO_EVICTION,
        maxPods: 32,
        containerLogMaxSize: "10Mi",
        containerLogMaxFiles: 2,
    };
    return `${JSON.stringify(cfg, null, 2)}\n`;
}

export function kubeProxyConfig(plan: LabKubePlan): string {
    const cfg = {
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        mode: "nftables",
        clientConnection: { kubeconfig: configFile(plan, "kube-proxy.kubeconfig") },
        hostnameOverride: plan.nodeName,
        clusterCIDR: plan.podCidr,
        healthzBindAddress: `[::1]:${plan.ports.proxyHealthz}`,
        metricsBindAddress: `[::1]:${plan.ports.proxyMetrics}`,
        // Zero: leave the conntrack sysctls alone (nf_conntrack_max is global, not the namespace's).
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s", udpTimeout: "0s", udpStreamTimeout: "0s" },
    };
    return `${JSON.stringify(cfg, null, 2)}\n`;
}

/** Each daemon's command line (after its binary); every one names plan.dir, which marks it ours. */
export function daemonArgs(plan: LabKubePlan, daemon: LabKubeDaemon): string[] {
    const pki = (n: string) => pkiFile(plan, n);
    const cfg = (n: string) => configFile(plan, n);
    switch (daemon) {
        case "etcd":
            return [
                "--name", plan.nodeName, "--data-dir", plan.paths.etcdData,
                "--listen-client-urls", `http://[::1]:${plan.ports.etcdClient}`,
                "--advertise-client-urls", `http://[::1]:${plan.ports.etcdClient}`,
                "--listen-peer-urls", `http://[::1]:${plan.ports.etcdPeer}`,
                "--initial-advertise-peer-urls", `http://[::1]:${plan.ports.etcdPeer}`,
                "--initial-cluster", `${plan.nodeName}=http://[::1]:${plan.ports.etcdPeer}`,
                // A lab's data on a shared disk: no fsync, a small quota.
                "--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn",
            ];
        case "kube-apiserver":
            return [
                `--etcd-servers=http://[::1]:${plan.ports.etcdClient}`,
                "--bind-address=::", `--advertise-address=${plan.nodeAddress}`, `--secure-port=${plan.ports.api}`,
                `--tls-cert-file=${pki("apiserver.crt")}`, `--tls-private-key-file=${pki("apiserver.key")}`,
                `--client-ca-file=${pki("ca.crt")}`,
                "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                `--service-cluster-ip-range=${plan.serviceCidr}`,
                "--service-account-issuer=https://kubernetes.default.svc",
                `--service-account-key-file=${pki("sa.pub")}`, `--service-account-signing-key-file=${pki("sa.key")}`,
                // logs, exec and port-forward go to the kubelet with this identity.
                `--kubelet-client-certificate=${pki("apiserver-kubelet-client.crt")}`,
                `--kubelet-client-key=${pki("apiserver-kubelet-client.key")}`,
                `--kubelet-certificate-authority=${pki("ca.crt")}`,
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                // The aggregation layer (metrics-server): the front proxy's CA and client.
                `--requestheader-client-ca-file=${pki("front-proxy-ca.crt")}`,
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                `--proxy-client-cert-file=${pki("front-proxy-client.crt")}`,
                `--proxy-client-key-file=${pki("front-proxy-client.key")}`,
                "--enable-aggregator-routing=true",
                "--profiling=false",
            ];
        case "kube-controller-manager":
            return [
                `--kubeconfig=${cfg("kube-controller-manager.kubeconfig")}`,
                `--authentication-kubeconfig=${cfg("kube-controller-manager.kubeconfig")}`,
                `--authorization-kubeconfig=${cfg("kube-controller-manager.kubeconfig")}`,
                "--bind-address=::1", `--secure-port=${plan.ports.controllerManager}`,
                "--leader-elect=false", "--controllers=*",
                // Without these no namespace gets kube-root-ca.crt and no pod starts.
                `--root-ca-file=${pki("ca.crt")}`,
                `--service-account-private-key-file=${pki("sa.key")}`,
                "--use-service-account-credentials=true",
                `--cluster-signing-cert-file=${pki("ca.crt")}`, `--cluster-signing-key-file=${pki("ca.key")}`,
                `--service-cluster-ip-range=${plan.serviceCidr}`,
                "--profiling=false",
            ];
        case "kube-scheduler":
            return [
                `--kubeconfig=${cfg("kube-scheduler.kubeconfig")}`,
                `--authentication-kubeconfig=${cfg("kube-scheduler.kubeconfig")}`,
                `--authorization-kubeconfig=${cfg("kube-scheduler.kubeconfig")}`,
                "--bind-address=::1", `--secure-port=${plan.ports.scheduler}`,
                "--leader-elect=false", "--profiling=false",
            ];
        case "containerd":
            return ["--config", cfg("containerd.toml")];
        case "kubelet":
            return [
                `--config=${cfg("kubelet.json")}`,
                `--kubeconfig=${cfg("kubelet.kubeconfig")}`,
                `--hostname-override=${plan.nodeName}`,
                `--node-ip=${plan.nodeAddress}`,
                `--node-labels=topology.kubernetes.io/zone=${plan.zone}`,
            ];
        case "kube-proxy":
            return [`--config=${cfg("kube-proxy.json")}`];
    }
}
