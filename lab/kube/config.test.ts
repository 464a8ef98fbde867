import { test } from "node:test";
import * as assert from "node:assert/strict";
import { LAB_KUBE_DAEMONS, planLabKube } from "../../model/kube/plan";
import { adminKubeconfig, cniConflist, containerdConfig, daemonArgs, kubeletConfig, kubeProxyConfig } from "./config";

const plan = planLabKube({ stateDir: "/srv/lab/kube", netns: "lab-gate", nodeName: "gate", nodeAddress: "fd6e:626c:6172:1::2", zone: "zone-a" });

test("every daemon's command line names the cluster's folder (that is how down knows a PID is ours)", () => {
    for (const d of LAB_KUBE_DAEMONS) assert.ok(daemonArgs(plan, d).some((a) => a.includes(plan.dir)), d);
});

test("the kubelet is told what this machine needs: cgroupfs on cgroup v1, no swap check, no eviction, its own cgroup root", () => {
    const k = JSON.parse(kubeletConfig(plan));
    assert.equal(k.cgroupDriver, "cgroupfs");
    assert.equal(k.failCgroupV1, false);
    assert.equal(k.failSwapOn, false);
    assert.equal(k.protectKernelDefaults, false);
    assert.equal(k.cgroupRoot, plan.cgroupRoot);
    assert.equal(k.containerRuntimeEndpoint, "unix:///run/containerd/containerd.sock");
    assert.equal(k.imageGCHighThresholdPercent, 100);
    assert.equal(k.authentication.webhook.enabled, true);
    assert.equal(k.authorization.mode, "Webhook");
    assert.equal(k.clusterDNS, undefined);
    const args = daemonArgs(plan, "kubelet");
    assert.ok(args.includes("--node-labels=topology.kubernetes.io/zone=zone-a"));
    assert.ok(args.includes(`--node-ip=${plan.nodeAddress}`));
    const withDns = planLabKube({ stateDir: "/srv/lab/kube", netns: "n", nodeName: "gate", nodeAddress: "fd00::2", zone: "z", clusterDns: "fd00:10:96::a" });
    assert.deepEqual(JSON.parse(kubeletConfig(withDns)).clusterDNS, ["fd00:10:96::a"]);
});

test("containerd: the pause image given, oom_score_adj restricted (no CAP_SYS_RESOURCE), cgroupfs, Debian's CNI plugins", () => {
    const c = containerdConfig(plan, "nublar.local/pause@sha256:abc");
    assert.match(c, /sandbox_image = "nublar\.local\/pause@sha256:abc"/);
    assert.match(c, /restrict_oom_score_adj = true/);
    assert.match(c, /SystemdCgroup = false/);
    assert.match(c, /bin_dir = "\/usr\/lib\/cni"/);
    assert.match(c, /conf_dir = "\/srv\/lab\/kube\/cni\/net\.d"/);
    assert.match(c, /root = "\/srv\/lab\/kube\/containerd"/);
});

test("the pods' bridge network is the plan's /64, with its IPAM state in the cluster's folder", () => {
    const n = JSON.parse(cniConflist(plan));
    assert.equal(n.plugins[0].type, "bridge");
    assert.deepEqual(n.plugins[0].ipam.ranges, [[{ subnet: plan.podCidr }]]);
    assert.equal(n.plugins[0].ipam.dataDir, plan.paths.cniDataDir);
});

test("kube-proxy: nftables, and conntrack sysctls left alone", () => {
    const p = JSON.parse(kubeProxyConfig(plan));
    assert.equal(p.mode, "nftables");
    assert.equal(p.conntrack.maxPerCore, 0);
    assert.equal(p.clusterCIDR, plan.podCidr);
});

test("the admin kubeconfig carries its credentials inline and dials the node's address", () => {
    const k = adminKubeconfig(plan, { ca: "CA", cert: "CERT", key: "KEY" });
    assert.match(k, /server: https:\/\/\[fd6e:626c:6172:1::2\]:6443/);
    assert.match(k, new RegExp(`certificate-authority-data: ${Buffer.from("CA").toString("base64")}`));
    assert.doesNotMatch(k, /\/srv\/lab/);
});

test("the API server: IPv6 service range, Node and RBAC authorization, the node's address advertised", () => {
    const a = daemonArgs(plan, "kube-apiserver");
    assert.ok(a.includes("--service-cluster-ip-range=fd00:10:96::/112"));
    assert.ok(a.includes("--authorization-mode=Node,RBAC"));
    assert.ok(a.includes(`--advertise-address=${plan.nodeAddress}`));
    const cm = daemonArgs(plan, "kube-controller-manager");
    for (const f of ["--root-ca-file=", "--service-account-private-key-file=", "--use-service-account-credentials=true", "--leader-elect=false"]) {
        assert.ok(cm.some((x) => x.startsWith(f)), f);
    }
});
