// Keys that nublar generates itself, kept as Pulumi secrets (what they are, and how to rotate
// them: provider/resources/keys.ts, which makes them).
import type * as pulumi from "@pulumi/pulumi";
import type { KeyKind } from "../../provider/resources/keys";
import { NublarResource } from "../resource";

export class GeneratedKey extends NublarResource {
    /** The secret. */
    declare readonly value: pulumi.Output<string>;
    /** The public half (empty for BFD keys and passwords). */
    declare readonly publicKey: pulumi.Output<string>;
    constructor(name: string, kind: KeyKind, opts?: pulumi.CustomResourceOptions) {
        super("generatedKey", name, { kind, value: undefined, publicKey: undefined }, opts, { secretOutputs: ["value"] });
    }
}
