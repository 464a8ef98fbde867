// The base of every custom resource nublar registers: served by nublar's own provider plugin
// (provider/, `pulumi-resource-nublar`), typed `nublar:<module>:<Type>` (provider/tokens.ts).
// Each keeps an alias to the dynamic-provider type it had before, so that a stack created then
// moves to the provider in place, without a replace.
import * as pulumi from "@pulumi/pulumi";
import { DYNAMIC_TYPES, PROVIDER_VERSION, RESOURCE_TYPES, type ResourceKind } from "../provider/tokens";

function formerly(kind: ResourceKind, given: pulumi.Input<string | pulumi.Alias> | undefined): pulumi.Input<string | pulumi.Alias>[] {
    if (given) return [given];
    const type = DYNAMIC_TYPES[kind];
    return type ? [{ type }] : [];
}

export abstract class NublarResource extends pulumi.CustomResource {
    /**
     * `props` also names each output with the value undefined (so the SDK makes it a property of
     * this object). `secretOutputs`: outputs that are secret whatever their inputs were.
     * `formerly`: the dynamic resource's URN or alias, when it had another name or parent.
     */
    protected constructor(kind: ResourceKind, name: string, props: pulumi.Inputs, opts: pulumi.CustomResourceOptions | undefined,
        extra: { secretOutputs?: string[]; formerly?: pulumi.Input<string | pulumi.Alias> } = {}) {
        super(RESOURCE_TYPES[kind], name, props, {
            ...opts,
            version: PROVIDER_VERSION,
            additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), ...(extra.secretOutputs ?? [])],
            // Where it was as a dynamic resource: the same name and parent, by default.
            aliases: [...(opts?.aliases ?? []), ...formerly(kind, extra.formerly)],
        });
    }
}
