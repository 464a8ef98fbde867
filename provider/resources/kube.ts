// The lab's single-node Kubernetes cluster (lab/kube): etcd, the control plane, containerd, the
// kubelet and kube-proxy in a namespace of their own, with the lab's images imported. Parks and
// data centers bring their own cluster; the lab's stands in for it. Its admin kubeconfig is an
// output, secret: the Kubernetes provider of the same program uses it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import type { LabKubePlan } from "../../model/kube/plan";
import type { Handler } from "../handler";
import { RESOURCE_TYPES } from "../tokens";
import { canonical } from "../wire";

const cluster = () => import("../../lab/kube/cluster");

export interface KubeClusterInputs {
    plan: LabKubePlan;
    /** OCI archives imported into the node's containerd (scripts/images). */
    images: string[];
    /** The sandbox image's reference, one of `images`. */
    pauseImage: string;
    /** Folders for the local volumes (owned by the apps' group, 48), made at create. */
    volumes: { dir: string; names: string[]; gid: number };
    /** The namespace's default route: the host's end of the management bridge. */
    gateway: { via: string; dev: string };
}

export type KubeClusterOutputs = KubeClusterInputs & { kubeconfig: string };

const plan = z.object({
    dir: z.string().startsWith("/", "an absolute path"),
    netns: z.string().min(1),
    nodeName: z.string().min(1),
    nodeAddress: z.string().includes(":", { message: "an IPv6 address" }),
}).loose();

function makeVolumes(v: KubeClusterInputs["volumes"]): void {
    fs.mkdirSync(v.dir, { recursive: true, mode: 0o711 });
    for (const name of v.names) {
        const dir = path.join(v.dir, name);
        fs.mkdirSync(dir, { recursive: true });
        fs.chownSync(dir, 0, v.gid);
        fs.chmodSync(dir, 0o2770);
    }
}

/** The kubelet and kube-proxy want a default route to pick the node's address family and source. */
function defaultRoute(netns: string, gw: KubeClusterInputs["gateway"]): void {
    const r = spawnSync("ip", ["-n", netns, "-6", "route", "replace", "default", "via", gw.via, "dev", gw.dev], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`adding the default route via ${gw.via} dev ${gw.dev} in namespace ${netns} failed: ${(r.stderr || String(r.error)).trim()}`);
}

async function up(i: KubeClusterInputs): Promise<KubeClusterOutputs> {
    makeVolumes(i.volumes);
    defaultRoute(i.plan.netns, i.gateway);
    const r = await (await cluster()).labKubeUp(i.plan, { images: i.images, pauseImage: i.pauseImage });
    return { ...i, kubeconfig: fs.readFileSync(r.kubeconfig, "utf8") };
}

export const labKubeCluster: Handler<KubeClusterInputs, KubeClusterOutputs> = {
    schema: z.object({
        plan,
        images: z.array(z.string().startsWith("/", "an absolute path to an OCI archive")),
        pauseImage: z.string().regex(/@sha256:[0-9a-f]{64}$/, "an image reference pinned by digest"),
        volumes: z.object({
            dir: z.string().startsWith("/", "an absolute path"),
            names: z.array(z.string().regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, "a volume folder name (a-z, 0-9, '.', '-')")),
            gid: z.number().int().min(0),
        }),
        gateway: z.object({ via: z.string().includes(":", { message: "an IPv6 address" }), dev: z.string().min(1).max(15) }),
    }),
    // A new plan (addresses, ranges, place) is a new cluster; new images are imported in place.
    diff(olds, news) {
        const replaced = canonical(olds.plan) !== canonical(news.plan) || olds.pauseImage !== news.pauseImage || canonical(olds.gateway) !== canonical(news.gateway);
        const changed = replaced || canonical(olds.images) !== canonical(news.images) || canonical(olds.volumes) !== canonical(news.volumes);
        return { changes: changed, replaces: replaced ? ["plan"] : [], deleteBeforeReplace: true };
    },
    async create(i) {
        return { id: i.plan.dir, outs: await up(i) };
    },
    async update(_id, _olds, news) {
        return up(news);
    },
    async exists(_id, p) {
        return (await cluster()).labKubeAlive(p.plan);
    },
    // Its data (etcd, the PKI, the images) goes too: a cluster created again must not come
    // back with the objects of this one, which the state no longer holds.
    async delete(_id, p) {
        await (await cluster()).labKubeDown(p.plan, { purge: true });
    },
    secretOutputs: ["kubeconfig"],
};

export const KUBE_HANDLERS = {
    [RESOURCE_TYPES.labKubeCluster]: labKubeCluster,
};
