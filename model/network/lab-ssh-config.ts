// The operator's SSH files for a lab park, rendered from the plan (pure).
// known_hosts pins each node's key under a host-key alias, so the pin follows the
// node and not whatever address it answers on; StrictHostKeyChecking refuses any
// other key, and the global known_hosts is never consulted.
import * as path from "node:path";
import type { LabNodePlan, LabPlan } from "./lab-plan";

export interface LabSshPaths {
    identityFile: string;
    knownHostsFile: string;
    configFile: string;
}

export function labSshPaths(plan: LabPlan, stateRoot: string): LabSshPaths {
    const dir = path.join(stateRoot, plan.stateSubdir, "client");
    return {
        identityFile: path.join(dir, "id_ed25519"),
        knownHostsFile: path.join(dir, "known_hosts"),
        configFile: path.join(dir, "ssh_config"),
    };
}

export function hostKeyAlias(plan: LabPlan, node: LabNodePlan): string {
    return `nublar-${plan.tag}-${node.name}`;
}

/** known_hosts lines, one per node; `hostKeys` are public key lines in plan.nodes order. */
export function renderKnownHosts(plan: LabPlan, hostKeys: string[]): string {
    return plan.nodes.map((n, i) => `${hostKeyAlias(plan, n)} ${hostKeys[i].split(" ").slice(0, 2).join(" ")}`).join("\n") + "\n";
}

export function renderSshConfig(plan: LabPlan, paths: LabSshPaths): string {
    return [
        `# Written by nublar for the lab park '${plan.site}' (tag ${plan.tag}). Use: ssh -F ${paths.configFile} <node>`,
        ...plan.nodes.flatMap((n) => [
            `Host ${n.name}`,
            `  HostName ${n.mgmt.address}`,
            "  User root",
            `  IdentityFile ${paths.identityFile}`,
            "  IdentitiesOnly yes",
            `  UserKnownHostsFile ${paths.knownHostsFile}`,
            "  GlobalKnownHostsFile /dev/null",
            `  HostKeyAlias ${hostKeyAlias(plan, n)}`,
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  BatchMode yes",
            "  ConnectTimeout 5",
        ]),
        "",
    ].join("\n");
}
