// The nublar resource provider's names: its package, its version, and one type token per custom
// resource, in the project's `nublar:<module>:<Type>` scheme. The components (which register these
// resources) and the provider (which serves them) both read this table; nothing else spells them.
//
// Kept free of heavy imports: the Pulumi program loads it on every preview.

/** The provider plugin's package name: the engine runs `pulumi-resource-nublar`. */
export const PROVIDER_PACKAGE = "nublar";

/**
 * The plugin's version, which every resource asks for. It follows package.json (a unit test
 * checks). The engine runs whatever plugin is installed under this version, so a rebuilt provider
 * serves existing resources at once: no code lives in the state.
 */
export const PROVIDER_VERSION = "0.1.0";

/** Each custom resource's type token, by a short name used in code. */
export const RESOURCE_TYPES = {
    labNetns: "nublar:lab:Netns",
    labVeth: "nublar:lab:Veth",
    labBridge: "nublar:lab:Bridge",
    labSshKey: "nublar:lab:SshKey",
    labSshd: "nublar:lab:Sshd",
    labFile: "nublar:lab:File",
    labDaemon: "nublar:lab:Daemon",
    labEventBusDaemons: "nublar:lab:EventBusDaemons",
    labLedgerCluster: "nublar:lab:LedgerCluster",
    labKubeCluster: "nublar:lab:KubeCluster",
    generatedKey: "nublar:nixos:GeneratedKey",
    deployment: "nublar:nixos:Deployment",
} as const;

export type ResourceKind = keyof typeof RESOURCE_TYPES;
export type ResourceType = (typeof RESOURCE_TYPES)[ResourceKind];

/**
 * The type each resource had as a Pulumi dynamic resource (until 2026-12), for `aliases`: with
 * them the engine moves an existing resource to the provider in place; without, it would plan a
 * delete and a create of everything (a lab torn down, every node's keys regenerated). Types
 * born in the provider have none.
 */
export const DYNAMIC_TYPES: Partial<Record<ResourceKind, string>> = {
    labNetns: "pulumi-nodejs:dynamic/lab:Netns",
    labVeth: "pulumi-nodejs:dynamic/lab:Veth",
    labBridge: "pulumi-nodejs:dynamic/lab:Bridge",
    labSshKey: "pulumi-nodejs:dynamic/lab:SshKey",
    labSshd: "pulumi-nodejs:dynamic/lab:Sshd",
    labFile: "pulumi-nodejs:dynamic/lab:File",
    labDaemon: "pulumi-nodejs:dynamic/lab:Daemon",
    labEventBusDaemons: "pulumi-nodejs:dynamic/lab:EventBus",
    labLedgerCluster: "pulumi-nodejs:dynamic/lab:LedgerCluster",
    generatedKey: "pulumi-nodejs:dynamic/nixos:GeneratedKey",
    deployment: "pulumi-nodejs:dynamic/nixos:Deployment",
};

/** The field in which a dynamic resource kept its provider's serialized code. */
export const DYNAMIC_CODE_FIELD = "__provider";
