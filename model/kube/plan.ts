// Pure plan of the lab's single-node Kubernetes cluster (lab/kube runs it): every daemon of
// the cluster runs inside one network namespace the caller made (a link to the host up, the
// node's address on it, a default route) and one private mount namespace lab/kube makes, so
// nothing the kubelet, containerd or the CNI plugins mount or program is seen by the host.
// This module only decides names, addresses, ports and paths; no I/O.
import { createHash } from "node:crypto";
import * as path from "node:path";
import { IPv6CidrRange } from "ip-num";
import { formatIpv6, hostAddress, PlanError, prefixBase } from "../network/addressing";

export interface LabKubeInput {
    /** The cluster's own folder (created 0700): PKI, configs, data, logs, pid files. */
    stateDir: string;
    /** The network namespace (in /run/netns) the cluster runs in. */
    netns: string;
    nodeName: string;
    /** The node's IPv6 address in the namespace (a /64 on its link); "/64" may be appended. */
    nodeAddress: string;
    /** The node's topology.kubernetes.io/zone label. */
    zone: string;
    apiPort?: number;
    /** The pods' /64 (the CNI bridge's). */
    podCidr?: string;
    /** The Services' range: IPv6, /108 or longer (the API server refuses larger ones). */
    serviceCidr?: string;
    /** A cluster DNS server address to hand to pods; none by default (no DNS add-on yet). */
    clusterDns?: string;
}

export interface LabKubePorts {
    api: number;
    etcdClient: number;
    etcdPeer: number;
    controllerManager: number;
    scheduler: number;
    kubelet: number;
    kubeletHealthz: number;
    proxyHealthz: number;
    proxyMetrics: number;
}

/** A folder of `dir` bind-mounted, inside the cluster's mount namespace only, over a fixed path. */
export interface LabKubeMount {
    target: string;
    source: string;
}

export interface LabKubePlan {
    dir: string;
    netns: string;
    nodeName: string;
    /** Bare IPv6 address (no prefix length). */
    nodeAddress: string;
    zone: string;
    podCidr: string;
    serviceCidr: string;
    /** kubernetes.default's ClusterIP: the first address of the service range. */
    apiServiceAddress: string;
    /** What the host (Pulumi's Kubernetes provider) and the kubelet dial. */
    apiServer: string;
    clusterDns?: string;
    ports: LabKubePorts;
    /**
     * The cgroup (in every hierarchy) the kubelet puts its kubepods tree under. Its own per
     * cluster, not the default "/": a kubelet deletes pod cgroups it does not know, so two
     * clusters on one machine (the lab's and a test's) must not share /kubepods.
     */
    cgroupRoot: string;
    /** Fixed paths the kubelet, containerd and the CNI plugins insist on, redirected into dir. */
    mounts: LabKubeMount[];
    paths: {
        pki: string;
        etcdData: string;
        containerdRoot: string;
        /** containerd's state, socket and runc root: /run/containerd inside the namespace. */
        containerdState: string;
        /** The socket's path inside the cluster's mount namespace. */
        containerdSocket: string;
        /** The same socket seen from the host (through the bind mount's source). */
        containerdSocketOnHost: string;
        /** runc's root for the k8s.io namespace's containers, seen from the host. */
        runcRootOnHost: string;
        cniConfDir: string;
        cniDataDir: string;
        kubeletDir: string;
        config: string;
        logs: string;
        run: string;
        adminKubeconfig: string;
    };
}

/** The kubelet's defaults it writes to global (not per-namespace) sysctls at start. */
export const KUBELET_GLOBAL_SYSCTLS = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
] as const;

/** The cluster's daemons, in start order. */
export const LAB_KUBE_DAEMONS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
] as const;
export type LabKubeDaemon = (typeof LAB_KUBE_DAEMONS)[number];

/**
 * The CPU weight of the whole cluster (its daemons and its pods: plan.cgroupRoot), against a
 * process of the machine's at the default 1024 (cgroup v1 cpu.shares; cgroup v2's cpu.weight
 * gets the same ratio of its default 100). A quarter: when the cluster's daemons wake together
 * they must not hold both cores while the lab's BFD agents wait (bench/README.md, kube).
 */
export const LAB_KUBE_CPU_SHARES = 256;

export const LAB_KUBE_DEFAULTS = {
    apiPort: 6443,
    podCidr: "fd00:10:244::/64",
    serviceCidr: "fd00:10:96::/112",
    /** The cluster DNS Service's address in the default service range (kube-dns's usual ::a). */
    clusterDns: "fd00:10:96::a",
} as const;

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function cidr(what: string, text: string, minLength: number, maxLength: number): { base: bigint; length: number } {
    let range: IPv6CidrRange;
    try {
        range = IPv6CidrRange.fromCidr(text);
    } catch {
        throw new PlanError(`the lab cluster's ${what} '${text}' is not an IPv6 prefix (the cluster is IPv6-only)`);
    }
    const length = Number(range.cidrPrefix.getValue());
    if (length < minLength || length > maxLength) {
        throw new PlanError(`the lab cluster's ${what} '${text}' must be a /${minLength}${maxLength > minLength ? ` to /${maxLength}` : ""}`);
    }
    if (prefixBase(text) !== range.getFirst().getValue() || formatIpv6(range.getFirst().getValue()) !== text.split("/")[0]) {
        throw new PlanError(`the lab cluster's ${what} '${text}' has host bits set or is not in canonical form (expected ${formatIpv6(range.getFirst().getValue())}/${length})`);
    }
    return { base: range.getFirst().getValue(), length };
}

function address(what: string, text: string): string {
    try {
        const r = IPv6CidrRange.fromCidr(`${text}/128`);
        return formatIpv6(r.getFirst().getValue());
    } catch {
        throw new PlanError(`the lab cluster's ${what} '${text}' is not an IPv6 address`);
    }
}

function port(what: string, p: number): number {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new PlanError(`the lab cluster's ${what} ${p} is not a TCP port`);
    return p;
}

export function planLabKube(input: LabKubeInput): LabKubePlan {
    if (!path.isAbsolute(input.stateDir)) throw new PlanError(`the lab cluster's stateDir '${input.stateDir}' must be an absolute path`);
    const dir = path.resolve(input.stateDir);
    if (dir === "/") throw new PlanError("the lab cluster's stateDir cannot be /");
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(input.netns)) throw new PlanError(`the lab cluster's netns '${input.netns}' is not a namespace name`);
    if (input.nodeName.length > 63 || !DNS_SUBDOMAIN.test(input.nodeName)) {
        throw new PlanError(`the lab cluster's node name '${input.nodeName}' must be a lower-case DNS name of at most 63 characters`);
    }
    if (!input.zone || input.zone.length > 63 || !LABEL_VALUE.test(input.zone)) {
        throw new PlanError(`the lab cluster's zone '${input.zone}' is not a Kubernetes label value`);
    }
    const nodeAddress = address("node address", input.nodeAddress.replace(/\/\d+$/, ""));
    const podCidr = input.podCidr ?? LAB_KUBE_DEFAULTS.podCidr;
    cidr("pod range", podCidr, 64, 64);
    const serviceCidr = input.serviceCidr ?? LAB_KUBE_DEFAULTS.serviceCidr;
    cidr("service range", serviceCidr, 108, 120);
    const apiServiceAddress = hostAddress(serviceCidr, 1);
    const clusterDns = input.clusterDns === undefined ? undefined : address("cluster DNS address", input.clusterDns);
    const api = port("API port", input.apiPort ?? LAB_KUBE_DEFAULTS.apiPort);
    // The components' usual ports: the namespace is the cluster's alone, so none can clash.
    const ports: LabKubePorts = {
        api, etcdClient: 2379, etcdPeer: 2380, controllerManager: 10257, scheduler: 10259,
        kubelet: 10250, kubeletHealthz: 10248, proxyHealthz: 10256, proxyMetrics: 10249,
    };
    const taken = Object.entries(ports).filter(([k, v]) => k !== "api" && v === api);
    if (taken.length) throw new PlanError(`the lab cluster's API port ${api} is the ${taken[0][0]} port`);

    const j = (...p: string[]) => path.join(dir, ...p);
    const containerdState = j("run", "containerd");
    const mounts: LabKubeMount[] = [
        // kubelet: its root (device-plugins and pod volumes are under it at fixed paths), logs.
        { target: "/var/lib/kubelet", source: j("kubelet") },
        { target: "/var/log/pods", source: j("logs", "pods") },
        { target: "/var/log/containers", source: j("logs", "containers") },
        // The kubelet's and the controller-manager's flexvolume folder.
        { target: "/usr/libexec/kubernetes", source: j("libexec") },
        // libcni's result cache, and containerd's default plugin folder.
        { target: "/var/lib/cni", source: j("cni", "lib") },
        { target: "/opt/cni", source: j("cni", "opt") },
        // containerd's shim sockets are always under /run/containerd/s: its state lives there.
        { target: "/run/containerd", source: containerdState },
        // The pods' network namespace pins: else `ip netns` on the host would list them.
        { target: "/run/netns", source: j("run", "netns") },
        // libmount's record of the kubelet's mounts (utab), where /run is the host's disk.
        { target: "/run/mount", source: j("run", "mount") },
    ];
    return {
        dir,
        netns: input.netns,
        nodeName: input.nodeName,
        nodeAddress,
        zone: input.zone,
        podCidr,
        serviceCidr,
        apiServiceAddress,
        apiServer: `https://[${nodeAddress}]:${api}`,
        ...(clusterDns ? { clusterDns } : {}),
        ports,
        cgroupRoot: `/nublar-kube-${createHash("sha256").update(dir).digest("hex").slice(0, 10)}`,
        mounts,
        paths: {
            pki: j("pki"),
            etcdData: j("etcd"),
            containerdRoot: j("containerd"),
            containerdState: "/run/containerd",
            containerdSocket: "/run/containerd/containerd.sock",
            containerdSocketOnHost: path.join(containerdState, "containerd.sock"),
            runcRootOnHost: path.join(containerdState, "runc", "k8s.io"),
            cniConfDir: j("cni", "net.d"),
            cniDataDir: j("cni", "ipam"),
            kubeletDir: j("kubelet"),
            config: j("config"),
            logs: j("logs"),
            run: j("run"),
            adminKubeconfig: j("admin.kubeconfig"),
        },
    };
}
