// The lab's Kubernetes cluster as Pulumi resources: its namespace on the management bridge, the
// single-node cluster itself (provider/resources/kube.ts, lab/kube), and a Kubernetes provider
// that reaches it with the cluster's admin kubeconfig (a secret). The site's workloads then go
// through that provider exactly as a park's do (components/k8s), with the lab's images
// (scripts/images) and a local storage class standing in for the park's SSDs.
import * as path from "node:path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { LabImages } from "../../lab/images";
import { LAB_LEDGER_STORAGE_CLASS, LAB_LEDGER_VOLUME_SIZE, labKubePlan } from "../../lab/layout";
import type { LabPlan } from "../../model/network/lab-plan";
import type { Site } from "../../model/site/model";
import type { SiteWorkloadsArgs } from "../k8s/workloads";
import { LabClusterDns } from "./cluster-dns";
import type { KubeClusterInputs } from "../../provider/resources/kube";
import { NublarResource } from "../resource";
import { LabMetricsServer } from "./metrics-server";
import { LabNetns, LabVeth, type LabBridge } from "./providers";

/** The LAMP apps' group (Apache's, 48, as on CentOS; images/lab-lamp keeps it): their volumes are its. */
const APP_GID = 48;

type Args<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** etcd, the control plane, containerd, the kubelet and kube-proxy, in the cluster's namespace. */
export class LabKubeCluster extends NublarResource {
    declare readonly kubeconfig: pulumi.Output<string>;
    constructor(name: string, args: Args<KubeClusterInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labKubeCluster", name, { ...args, kubeconfig: undefined }, opts, { secretOutputs: ["kubeconfig"] });
    }
}

/** The storage classes the site's apps ask for (components/k8s/lamp.ts), and how many local volumes each gets. */
export interface LabVolumes {
    storageClass: string;
    accessMode: "ReadWriteOnce" | "ReadWriteMany";
    size: string;
    count: number;
}

export interface LabKubeArgs {
    plan: LabPlan;
    /** The management bridge the cluster's namespace hangs off. */
    bridge: LabBridge;
    /** Absolute path of the project's state folder (.nublar). */
    stateRoot: string;
    images: LabImages;
    volumes: LabVolumes[];
}

export class LabKube extends pulumi.ComponentResource {
    readonly provider: k8s.Provider;
    /** What the workloads wait for: the provider, the storage classes and volumes. */
    readonly ready: pulumi.Resource[];
    /** Where the cluster is, for the stack's outputs (no secrets). */
    readonly info: pulumi.Output<Record<string, unknown>>;

    constructor(name: string, args: LabKubeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:lab:Kube", name, {}, opts);
        const node = args.plan.kube;
        if (!node) throw new Error("LabKube needs a lab plan with a Kubernetes node (the site's `kubernetes` settings)");
        const child = { parent: this };
        const plan = labKubePlan(args.plan, args.stateRoot)!;
        const dir = plan.dir;

        const netns = new LabNetns(`${name}-netns`, { netns: node.netns, forwarding: true }, child);
        const mgmt = new LabVeth(`${name}-mgmt`, {
            a: { netns: node.netns, ifname: node.mgmt.ifname, addresses: [`${node.mgmt.address}/64`] },
            b: { ifname: node.mgmt.hostIfname, addresses: [], master: args.plan.mgmt.bridge },
        }, { parent: this, dependsOn: [netns, args.bridge] });

        const { pause, lamp, cacheProxy, metricsServer, postgres, redis, cnpg, coredns } = args.images;
        const volumesDir = path.join(dir, "volumes");
        const volumeNames = args.volumes.flatMap((v) => Array.from({ length: v.count }, (_, i) => `${v.storageClass}-${i}`));
        // The ledger's images only where it runs (about 10 s to import).
        const ledgerImages = node.ledger ? [postgres.tar, redis.tar, cnpg.tar, coredns.tar] : [];
        const cluster = new LabKubeCluster(`${name}-cluster`, {
            plan, images: [pause.tar, lamp.tar, cacheProxy.tar, metricsServer.tar, ...ledgerImages], pauseImage: pause.ref,
            volumes: { dir: volumesDir, names: volumeNames, gid: APP_GID },
            gateway: { via: args.plan.mgmt.hostAddress, dev: node.mgmt.ifname },
        }, { parent: this, dependsOn: [mgmt] });

        this.provider = new k8s.Provider(`${name}-provider`, {
            kubeconfig: cluster.kubeconfig,
            // Apply exactly what the components say, as a park's provider does.
            enableServerSideApply: true,
        }, child);
        const withProvider = { parent: this, provider: this.provider };

        // Local volumes stand in for the park's SSDs: a class per name the apps use, no
        // provisioner, bound when a pod is scheduled (the one node), a folder per volume.
        this.ready = [this.provider];
        for (const v of args.volumes) {
            const sc = new k8s.storage.v1.StorageClass(`${name}-sc-${v.storageClass}`, {
                metadata: { name: v.storageClass, labels: { "app.kubernetes.io/managed-by": "nublar" } },
                provisioner: "kubernetes.io/no-provisioner",
                volumeBindingMode: "WaitForFirstConsumer",
                reclaimPolicy: "Retain",
            }, withProvider);
            this.ready.push(sc);
            for (let i = 0; i < v.count; i++) {
                this.ready.push(new k8s.core.v1.PersistentVolume(`${name}-pv-${v.storageClass}-${i}`, {
                    metadata: { name: `${v.storageClass}-${i}`, labels: { "app.kubernetes.io/managed-by": "nublar" } },
                    spec: {
                        capacity: { storage: v.size },
                        accessModes: [v.accessMode],
                        storageClassName: v.storageClass,
                        persistentVolumeReclaimPolicy: "Retain",
                        local: { path: path.join(volumesDir, `${v.storageClass}-${i}`) },
                        nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [plan.nodeName] }] }] } },
                    },
                }, { ...withProvider, dependsOn: [sc] }));
            }
        }
        // After the cluster: `pulumi stack output kube` then names a cluster that answers.
        // The HPA's CPU figures (metrics.k8s.io); the apps need not wait for it.
        new LabMetricsServer(`${name}-metrics-server`, { image: metricsServer.ref }, withProvider);
        // The cluster's DNS, which CloudNativePG's instances need (they stream from `<cluster>-rw`).
        if (plan.clusterDns) this.ready.push(new LabClusterDns(`${name}-dns`, { image: coredns.ref, address: plan.clusterDns }, withProvider).deployment);
        this.info = cluster.urn.apply((): Record<string, unknown> => ({ node: plan.nodeName, netns: plan.netns, api: plan.apiServer, kubeconfig: plan.paths.adminKubeconfig }));
        this.registerOutputs({ info: this.info });
    }
}

/** What the site's workloads take from the lab (components/k8s/workloads.ts): its images, and CloudNativePG from the module's manifest. */
export function labWorkloadsArgs(site: Site, images: LabImages): Pick<SiteWorkloadsArgs, "defaultImages" | "lab"> {
    return {
        defaultImages: { lamp: images.lamp.ref, cacheProxy: images.cacheProxy.ref, postgres: images.postgres.ref, redis: images.redis.ref },
        ...(site.kubernetes?.ledger ? {
            lab: {
                cloudnativePgManifest: { file: images.cnpgManifest, image: images.cnpg.ref },
                ledgerStorage: { storageClass: LAB_LEDGER_STORAGE_CLASS, size: LAB_LEDGER_VOLUME_SIZE },
            },
        } : {}),
    };
}
