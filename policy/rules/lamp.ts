// The LAMP pods (and every other workload on the parks' clusters): bounded resources, probes,
// disruption budgets, images pinned by digest, trusted packages, and CentOS 7's end of life.
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { configOf, containersOf, describe, isUnknown, known, podSpecOf, REPLICATED_WORKLOADS, TYPES } from "./resources";

export const podResources: ResourceValidationPolicy = {
    name: "pod-resources",
    description: "Every container states CPU and memory requests and limits, so that one app cannot starve the others on a node.",
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps: "Set resources.requests and resources.limits (cpu and memory) on every container and init container.",
    validateResource: (args, report) => {
        const spec = podSpecOf(args.type, args.props);
        if (!spec) return;
        const bad: string[] = [];
        for (const { name, container } of containersOf(spec)) {
            if (isUnknown(() => container.resources)) continue; // checked at `up`
            const r = known(() => container.resources) ?? {};
            const missing = [["requests", "cpu"], ["requests", "memory"], ["limits", "cpu"], ["limits", "memory"]]
                .filter(([k, res]) => known(() => r[k]?.[res]) === undefined && !isUnknown(() => r[k]?.[res]))
                .map(([k, res]) => `${k}.${res}`);
            if (missing.length) bad.push(`container ${name} lacks ${missing.join(", ")}`);
        }
        if (bad.length) report(`${bad.join("; ")}. Fix: set resources.requests and resources.limits for cpu and memory.`);
    },
};

export const podProbes: ResourceValidationPolicy = {
    name: "pod-probes",
    description: "Every long-running container has a readiness and a liveness probe, so that traffic only reaches a ready app and a hung one is restarted.",
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps: "Add readinessProbe and livenessProbe (HTTP GET on the app's health path for Apache/PHP) to every container.",
    validateResource: (args, report) => {
        if (args.type.startsWith("kubernetes:batch/")) return; // jobs run to completion
        const spec = podSpecOf(args.type, args.props);
        if (!spec) return;
        const bad = containersOf(spec).filter((c) => !c.init).flatMap(({ name, container }) => {
            const missing = ["readinessProbe", "livenessProbe"].filter((p) => known(() => container[p]) === undefined && !isUnknown(() => container[p]));
            return missing.length ? [`container ${name} lacks ${missing.join(" and ")}`] : [];
        });
        if (bad.length) report(`${bad.join("; ")}. Fix: add readiness and liveness probes.`);
    },
};

const DIGEST = /@sha256:[0-9a-f]{64}$/;

export const imageDigest: ResourceValidationPolicy = {
    name: "image-digest",
    description: "Every container image is pinned by digest (image@sha256:...), so that what was reviewed is what runs.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Reference images as registry/name@sha256:<digest> (images/ builds record their digests).",
    validateResource: (args, report) => {
        const spec = podSpecOf(args.type, args.props);
        if (!spec) return;
        const bad = containersOf(spec).flatMap(({ name, container }) => {
            const image = known(() => container.image);
            return image === undefined || DIGEST.test(String(image)) ? [] : [`container ${name} image '${image}'`];
        });
        if (bad.length) report(`images not pinned by digest: ${bad.join("; ")}. Fix: use image@sha256:<digest>.`);
    },
};

/**
 * CentOS 7 by its image reference: a `centos` repository tagged 7 or 7.x (`centos:7`,
 * `quay.io/centos/centos:7.9.2009`, `centos:centos7`), or a repository named for it
 * (`lamp-centos7`). `centos:8.7` or a digest that happens to hold a 7 is not.
 */
export function isCentos7(image: string): boolean {
    const ref = image.split("@")[0];
    const slash = ref.lastIndexOf("/");
    const colon = ref.lastIndexOf(":");
    const name = colon > slash ? ref.slice(0, colon) : ref;
    const tag = colon > slash ? ref.slice(colon + 1) : "";
    const repo = name.slice(name.lastIndexOf("/") + 1);
    return (/centos/i.test(repo) && /^(centos)?7(\.|-|$)/i.test(tag)) || /centos-?7$/i.test(repo);
}

export const centos7EndOfLife: ResourceValidationPolicy = {
    name: "centos7-end-of-life",
    description: "CentOS 7 reached end of life on 2024-06-30 and gets no security updates. Workloads still on it are flagged, except those on the exception list.",
    enforcementLevel: "advisory",
    severity: "medium",
    remediationSteps: "Move the app to a maintained base (AlmaLinux or Rocky Linux 8/9, or Debian) and rebuild its image, or record a time-boxed exception in this policy's `exceptions` config with the reason.",
    configSchema: {
        properties: {
            exceptions: { type: "array", items: { type: "string" }, default: [], description: "Resource names or image prefixes allowed to stay on CentOS 7 for now." },
        },
    },
    validateResource: (args, report) => {
        const spec = podSpecOf(args.type, args.props);
        if (!spec) return;
        const { exceptions } = configOf(args, { exceptions: [] as string[] });
        if (exceptions.includes(args.name)) return;
        const eol = containersOf(spec).flatMap(({ name, container }) => {
            const image = String(known(() => container.image) ?? "");
            if (!isCentos7(image) || exceptions.some((e) => image.startsWith(e))) return [];
            return [`container ${name} runs '${image}'`];
        });
        if (eol.length) report(`CentOS 7 is end of life: ${eol.join("; ")}. Fix: rebuild on a maintained base, or add '${args.name}' to the policy's exceptions with a reason.`);
    },
};

export const yumGpgcheck: ResourceValidationPolicy = {
    name: "yum-gpgcheck",
    description: "Every yum repository the apps use checks package signatures (gpgcheck=1), so that a mirror cannot slip in unsigned packages.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Set gpgcheck=1 (and repo_gpgcheck=1 where the mirror signs metadata) with a gpgkey in every [repo] section.",
    validateResource: (args, report) => {
        if (args.type !== TYPES.configMap) return;
        const data = known(() => args.props.data) ?? {};
        const bad: string[] = [];
        for (const [file, text] of Object.entries(data)) {
            if (typeof text !== "string" || !(file.endsWith(".repo") || /^\s*\[[^\]]+\]\s*$/m.test(text) && /baseurl|mirrorlist|metalink/.test(text))) continue;
            bad.push(...yumRepoProblems(file, text));
        }
        if (bad.length) report(`yum repositories without signature checks: ${bad.join("; ")}. Fix: set gpgcheck=1 with a gpgkey.`);
    },
};

/** Enabled repos of a yum .repo file that do not check package signatures (images/ use this too). */
export function yumRepoProblems(file: string, text: string): string[] {
    const bad: string[] = [];
    for (const section of repoSections(text)) {
        if (section.settings.get("enabled") === "0") continue;
        const gpg = section.settings.get("gpgcheck");
        if (gpg !== "1" && gpg !== "true" && gpg !== "yes") bad.push(`${file} [${section.name}] gpgcheck=${gpg ?? "unset"}`);
    }
    return bad;
}

function repoSections(text: string): { name: string; settings: Map<string, string> }[] {
    const sections: { name: string; settings: Map<string, string> }[] = [];
    for (const raw of text.split("\n")) {
        const line = raw.replace(/[#;].*/, "").trim();
        const header = /^\[([^\]]+)\]$/.exec(line);
        if (header) sections.push({ name: header[1], settings: new Map() });
        else if (sections.length && line.includes("=")) {
            const i = line.indexOf("=");
            sections[sections.length - 1].settings.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim().toLowerCase());
        }
    }
    return sections;
}

export const podDisruptionBudget: StackValidationPolicy = {
    name: "pod-disruption-budget",
    description: "Every replicated workload (Deployment, StatefulSet) is covered by a PodDisruptionBudget in its namespace, so that node drains never take all its replicas at once.",
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps: "Add a policy/v1 PodDisruptionBudget whose selector matches the workload's pod labels, with minAvailable: 1 or maxUnavailable: 1.",
    validateStack: (args, report) => {
        const pdbs = args.resources.filter((r) => r.type === TYPES.pdb);
        // A PDB whose namespace or selector is not known yet might cover anything: decide at `up`.
        if (pdbs.some((p) => isUnknown(() => p.props.metadata?.namespace) || isUnknown(() => p.props.spec?.selector))) return;
        const selectors = pdbs.map((r) => ({
            namespace: known(() => r.props.metadata?.namespace) ?? "default",
            selector: (known(() => r.props.spec?.selector) ?? {}) as LabelSelector,
        }));
        for (const r of args.resources) {
            if (!REPLICATED_WORKLOADS.has(r.type)) continue;
            const labels = known(() => r.props.spec?.template?.metadata?.labels) as Record<string, string> | undefined;
            if (!labels || isUnknown(() => r.props.metadata?.namespace)) continue; // unknown at preview: checked at `up`
            const namespace = known(() => r.props.metadata?.namespace) ?? "default";
            const covered = selectors.some((p) => p.namespace === namespace && selects(p.selector, labels));
            if (!covered) report(`${describe(r)} has no PodDisruptionBudget selecting its pods (${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ")}). Fix: add a PodDisruptionBudget with that selector.`, r.urn);
        }
    },
};

interface LabelSelector {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

/** Kubernetes label selector semantics; an empty selector selects nothing in a PDB (policy/v1). */
function selects(sel: LabelSelector, labels: Record<string, string>): boolean {
    const ml = Object.entries(sel.matchLabels ?? {});
    const me = sel.matchExpressions ?? [];
    if (!ml.length && !me.length) return false;
    return ml.every(([k, v]) => labels[k] === v) && me.every((e) => {
        const has = Object.prototype.hasOwnProperty.call(labels, e.key);
        switch (e.operator) {
            case "In": return has && (e.values ?? []).includes(labels[e.key]);
            case "NotIn": return !has || !(e.values ?? []).includes(labels[e.key]);
            case "Exists": return has;
            case "DoesNotExist": return !has;
            default: return false;
        }
    });
}

export const lampPolicies = [podResources, podProbes, imageDigest, centos7EndOfLife, yumGpgcheck];
export const lampStackPolicies = [podDisruptionBudget];
