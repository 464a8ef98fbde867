import { test } from "node:test";
import * as assert from "node:assert/strict";
import { PlanError } from "../network/addressing";
import { LAB_KUBE_DEFAULTS, planLabKube } from "./plan";

const base = { stateDir: "/var/lib/nublar/lab/kube", netns: "lab-gate", nodeName: "gate", nodeAddress: "fd6e:626c:6172:1::2/64", zone: "zone-a" };

test("the plan's defaults: IPv6 ranges, the API on the node's address, kubernetes.default first in the range", () => {
    const p = planLabKube(base);
    assert.equal(p.nodeAddress, "fd6e:626c:6172:1::2");
    assert.equal(p.podCidr, LAB_KUBE_DEFAULTS.podCidr);
    assert.equal(p.serviceCidr, "fd00:10:96::/112");
    assert.equal(p.apiServiceAddress, "fd00:10:96::1");
    assert.equal(p.apiServer, "https://[fd6e:626c:6172:1::2]:6443");
    assert.equal(p.ports.kubelet, 10250);
    assert.equal(p.clusterDns, undefined);
    assert.equal(p.paths.adminKubeconfig, "/var/lib/nublar/lab/kube/admin.kubeconfig");
});

test("every fixed path the daemons insist on is redirected into the cluster's folder", () => {
    const p = planLabKube(base);
    const targets = p.mounts.map((m) => m.target);
    for (const t of ["/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/usr/libexec/kubernetes", "/var/lib/cni", "/run/containerd", "/opt/cni", "/run/netns", "/run/mount"]) {
        assert.ok(targets.includes(t), t);
    }
    for (const m of p.mounts) assert.ok(m.source.startsWith(`${p.dir}/`), m.source);
    assert.equal(p.paths.containerdSocketOnHost, `${p.dir}/run/containerd/containerd.sock`);
});

test("each cluster folder has its own cgroup root: two kubelets never share /kubepods", () => {
    const a = planLabKube(base);
    const b = planLabKube({ ...base, stateDir: "/tmp/other" });
    assert.match(a.cgroupRoot, /^\/nublar-kube-[0-9a-f]{10}$/);
    assert.notEqual(a.cgroupRoot, b.cgroupRoot);
    assert.equal(planLabKube(base).cgroupRoot, a.cgroupRoot);
});

test("overrides are checked: IPv6 only, the service range /108 or longer, canonical prefixes", () => {
    const p = planLabKube({ ...base, apiPort: 16443, podCidr: "fd00:1::/64", serviceCidr: "fd00:2::/108", clusterDns: "fd00:2::a" });
    assert.equal(p.apiServer, "https://[fd6e:626c:6172:1::2]:16443");
    assert.equal(p.clusterDns, "fd00:2::a");
    assert.throws(() => planLabKube({ ...base, serviceCidr: "10.96.0.0/12" }), /not an IPv6 prefix/);
    assert.throws(() => planLabKube({ ...base, serviceCidr: "fd00:2::/64" }), /\/108 to \/120/);
    assert.throws(() => planLabKube({ ...base, podCidr: "fd00:1::/48" }), /must be a \/64/);
    assert.throws(() => planLabKube({ ...base, podCidr: "fd00:1::1/64" }), /host bits/);
    assert.throws(() => planLabKube({ ...base, nodeAddress: "192.0.2.1" }), PlanError);
    assert.throws(() => planLabKube({ ...base, apiPort: 10250 }), /kubelet port/);
    assert.throws(() => planLabKube({ ...base, nodeName: "Gate_1" }), /DNS name/);
    assert.throws(() => planLabKube({ ...base, zone: "a zone" }), /label value/);
    assert.throws(() => planLabKube({ ...base, stateDir: "relative/dir" }), /absolute/);
});
