// Property values as the Node.js provider server hands them over (Struct.toJavaScript): secrets
// arrive wrapped in Pulumi's signature object, and values not yet known at preview as a sentinel
// string. Pure functions, so the provider's handlers see plain values and the state keeps its
// secrets encrypted.

/** Pulumi's special signature key, and its value for a secret (sdk: runtime/rpc.ts). */
const SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
/** What an unknown value (a preview's "known after create") looks like on the wire. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export type Props = Record<string, unknown>;

function isSecret(v: unknown): v is { [SIG]: string; value: unknown } {
    return typeof v === "object" && v !== null && (v as Props)[SIG] === SECRET_SIG;
}

/** True when v is, or holds anywhere, a secret. */
export function holdsSecret(v: unknown): boolean {
    if (isSecret(v)) return true;
    if (Array.isArray(v)) return v.some(holdsSecret);
    if (typeof v === "object" && v !== null) return Object.values(v).some(holdsSecret);
    return false;
}

/** True when v is, or holds anywhere, a value not known yet (preview). */
export function holdsUnknown(v: unknown): boolean {
    if (v === UNKNOWN) return true;
    if (isSecret(v)) return holdsUnknown(v.value);
    if (Array.isArray(v)) return v.some(holdsUnknown);
    if (typeof v === "object" && v !== null) return Object.values(v).some(holdsUnknown);
    return false;
}

/** v with every secret wrapper removed, at any depth. */
export function reveal(v: unknown): unknown {
    if (isSecret(v)) return reveal(v.value);
    if (Array.isArray(v)) return v.map(reveal);
    if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
    return v;
}

/** The names of the top-level properties that are, or hold, a secret. */
export function secretKeys(props: Props): string[] {
    return Object.keys(props).filter((k) => holdsSecret(props[k]));
}

/** v wrapped as a secret (once). */
export function asSecret(v: unknown): unknown {
    return isSecret(v) ? v : { [SIG]: SECRET_SIG, value: v };
}

/**
 * The outputs to return: plain values, with every top-level property named in `secret` wrapped,
 * so a secret that came in (or that the resource made) is a secret in the state. Undefined
 * values are dropped: a Struct cannot hold them.
 */
export function wrapSecrets(outs: Props, secret: Iterable<string>): Props {
    const names = new Set(secret);
    return Object.fromEntries(Object.entries(outs).filter(([, v]) => v !== undefined).map(([k, v]) => [k, names.has(k) ? asSecret(v) : v]));
}

/** props without the keys given (the dynamic provider's code, output placeholders). */
export function without(props: Props, ...keys: string[]): Props {
    const copy = { ...props };
    for (const k of keys) delete copy[k];
    return copy;
}

/** Canonical JSON (sorted keys), to compare two values whatever their keys' order. */
export function canonical(v: unknown): string {
    return JSON.stringify(v, (_k, x) => (x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, (x as Props)[k]]))
        : x));
}
