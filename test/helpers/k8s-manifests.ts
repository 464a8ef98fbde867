// The Kubernetes objects that components register under Pulumi mocks, as manifests: what the
// Kubernetes provider would send the API server (components/k8s tests, test/k8s).

export interface RegisteredResource { type: string; name: string; inputs: Record<string, any> }

/** Mocks show a secret input as Pulumi's wire wrapper; the provider would send its value. */
export function unsecret(v: any): any {
    if (Array.isArray(v)) return v.map(unsecret);
    if (v && typeof v === "object") {
        if (v["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270") return unsecret(v.value);
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unsecret(x)]));
    }
    return v;
}

/** Built-in kinds only, or every Kubernetes object (custom resources too); never Helm releases. */
export function manifests(rs: RegisteredResource[], which: "builtin" | "all" = "builtin"): Record<string, any>[] {
    const builtin = /^kubernetes:(core|apps|policy|autoscaling|networking\.k8s\.io)\//;
    return rs.filter((r) => r.type.startsWith("kubernetes:") && !r.type.startsWith("kubernetes:helm.sh/") && (which === "all" || builtin.test(r.type))).map((r) => {
        const [group, kind] = r.type.slice("kubernetes:".length).split(":");
        const apiVersion = group.startsWith("core/") ? group.slice("core/".length) : group;
        const inputs = unsecret(r.inputs);
        return { ...inputs, apiVersion, kind, metadata: { name: r.name, ...inputs.metadata } };
    });
}
