// Calls policies the way @pulumi/policy's analyzer server does (server.js, analyze and
// analyzeStack): inputs wrapped in the unknown-checking proxy, `getConfig` returning the pack's
// config, `notApplicable` throwing, and an UnknownValueError turned into an advisory "can't run
// during preview" finding. Tests only; the engine runs the real server.
import type { PolicyResource, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { unknownCheckingProxy, UnknownValueError } from "@pulumi/policy";

// The unknown placeholders the engine sends at preview (@internal in @pulumi/policy's typings).
const proxy = require("@pulumi/policy/proxy") as Record<string, string>;
export const UNKNOWN = {
    string: proxy.unknownStringValue,
    number: proxy.unknownNumberValue,
    bool: proxy.unknownBooleanValue,
    array: proxy.unknownArrayValue,
    object: proxy.unknownObjectValue,
};

export interface Outcome {
    violations: { message: string; urn?: string }[];
    notApplicable?: string;
    /** The engine's advisory when a policy touched an unknown value. */
    unknown?: string;
}

export interface TestResource {
    type: string;
    name?: string;
    props: Record<string, any>;
    propertyDependencies?: Record<string, string[]>;
}

function urnOf(r: TestResource): string {
    return `urn:pulumi:test::nublar::${r.type}::${r.name ?? "r"}`;
}

async function invoke(run: (notApplicable: (reason?: string) => never) => unknown): Promise<Outcome> {
    const outcome: Outcome = { violations: [] };
    class NotApplicable extends Error {}
    try {
        await run((reason?: string) => {
            outcome.notApplicable = reason ?? "";
            throw new NotApplicable(reason);
        });
    } catch (err) {
        if (err instanceof UnknownValueError) outcome.unknown = (err as Error).message;
        else if (!(err instanceof NotApplicable)) throw err;
    }
    return outcome;
}

export async function validateResource(policy: ResourceValidationPolicy, r: TestResource, config: Record<string, unknown> = {}): Promise<Outcome> {
    const validations = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource!];
    const all: Outcome = { violations: [] };
    for (const validate of validations) {
        const o = await invoke((notApplicable) => validate({
            type: r.type,
            name: r.name ?? "r",
            urn: urnOf(r),
            props: unknownCheckingProxy(structuredClone(r.props)),
            opts: { protect: false, ignoreChanges: [], aliases: [], customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 }, additionalSecretOutputs: [] },
            stackTags: new Map(),
            isType: () => false,
            asType: () => undefined,
            getConfig: <T>() => config as T,
            notApplicable,
        } as any, (message, urn) => all.violations.push({ message, urn })));
        all.notApplicable ??= o.notApplicable;
        all.unknown ??= o.unknown;
    }
    return all;
}

export async function validateStack(policy: StackValidationPolicy, resources: TestResource[], config: Record<string, unknown> = {}): Promise<Outcome> {
    const byUrn = new Map<string, PolicyResource>();
    const list: PolicyResource[] = resources.map((r) => {
        const pr = {
            type: r.type, name: r.name ?? "r", urn: urnOf(r),
            props: unknownCheckingProxy(structuredClone(r.props)),
            dependencies: [], propertyDependencies: {},
        } as unknown as PolicyResource;
        byUrn.set(pr.urn, pr);
        return pr;
    });
    resources.forEach((r, i) => {
        for (const [prop, names] of Object.entries(r.propertyDependencies ?? {})) {
            list[i].propertyDependencies[prop] = names.map((n) => {
                const dep = list.find((x) => x.name === n);
                if (!dep) throw new Error(`test resource '${n}' not found`);
                return dep;
            });
        }
    });
    const out: Outcome = { violations: [] };
    const o = await invoke((notApplicable) => policy.validateStack({
        resources: list, stackTags: new Map(), getConfig: <T>() => config as T, notApplicable,
    } as any, (message, urn) => out.violations.push({ message, urn })));
    return { ...o, violations: out.violations };
}
