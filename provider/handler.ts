// What the provider needs of one resource type: a handler. Handlers see plain values (secrets
// revealed, the dynamic provider's old `__provider` field gone) and return plain values;
// provider.ts does the wire work around them. A handler holds no logic of its own beyond its
// diff: it calls the lab's, the deployer's or the ledger's modules, which the CLI and the agent
// share.
import { z } from "zod";
import { holdsUnknown, type Props } from "./wire";

export interface Failure {
    property: string;
    reason: string;
}

export interface Diff {
    changes: boolean;
    /** Properties whose change replaces the resource (the provider decides: the Node.js provider server ignores replaceOnChanges). */
    replaces: string[];
    deleteBeforeReplace?: boolean;
}

export interface Handler<I extends object, O extends object> {
    /** The resource's inputs, each checked on its own so an error names the property. */
    readonly schema: z.ZodObject;
    /** olds: the previous outputs; news: the new inputs (checked). */
    diff(olds: O, news: I): Diff;
    create(inputs: I): Promise<{ id: string; outs: O }>;
    /** Absent: every change replaces (diff says so). */
    update?(id: string, olds: O, news: I): Promise<O>;
    /** Whether the resource still exists as the state says (refresh); absent: assumed so. */
    exists?(id: string, props: O): Promise<boolean>;
    delete?(id: string, props: O): Promise<void>;
    /** Outputs that are secret whatever the inputs were (a generated key). */
    readonly secretOutputs?: readonly string[];
}

/**
 * Check inputs against a handler's schema, one property at a time, and name each bad one. A
 * property not known yet (a preview, before another resource exists) is not checked.
 */
export function checkInputs(schema: z.ZodObject, inputs: Props): Failure[] {
    const failures: Failure[] = [];
    for (const [key, type] of Object.entries(schema.shape) as [string, z.ZodType][]) {
        const value = inputs[key];
        if (holdsUnknown(value)) continue;
        const r = type.safeParse(value);
        if (r.success) continue;
        for (const issue of r.error.issues) {
            const where = [key, ...issue.path.map(String)].join(".");
            failures.push({ property: where, reason: `${where}: ${issue.message}` });
        }
    }
    return failures;
}

/**
 * The lab's resources: any change to an input replaces the resource, deleting it first (names
 * are reused). `olds` are the previous outputs, which also hold computed fields (publicKey,
 * pid), so only the properties of the new inputs are compared.
 */
export function replaceOnAnyChange(olds: object, news: object, same: (a: unknown, b: unknown) => boolean): Diff {
    const o = olds as Props;
    const n = news as Props;
    const replaces = Object.keys(n).filter((k) => !same(o[k], n[k]));
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: true };
}

/** Schema helpers shared by the handlers. */
export const ifname = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, "an interface name: 1-15 letters, digits, '_', '.', '-'");
export const netnsName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "a namespace name: 1-64 letters, digits, '_', '.', '-'");
export const absolutePath = z.string().regex(/^\/[^\0]*$/, "an absolute path");
