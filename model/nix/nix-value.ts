// A small serializer from plain data to a Nix expression, for the bundle's node.nix and the
// values model/nix/render.ts writes into configuration.nix. Only what JSON has (no floats, no
// functions, no paths): the result is pure data that `nix-instantiate --eval` reads back.

export type NixValue = string | number | boolean | null | NixValue[] | { [key: string]: NixValue | undefined };

/** Words the Nix parser treats specially; as attribute names they must be quoted. */
const KEYWORDS = new Set(["if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"]);
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_'-]*$/;

/**
 * A Nix double-quoted string. Escaped: backslash, double quote, `${` (which would start an
 * interpolation) and the control characters Nix has escapes for. Nix strings cannot hold NUL.
 */
export function nixString(s: string): string {
    if (s.includes("\0")) throw new Error(`cannot write a Nix string containing NUL: ${JSON.stringify(s)}`);
    let out = "";
    for (let i = 0; i < s.length; i++) {
        const c = s[i];
        if (c === "\\") out += "\\\\";
        else if (c === "\"") out += "\\\"";
        else if (c === "\n") out += "\\n";
        else if (c === "\r") out += "\\r";
        else if (c === "\t") out += "\\t";
        else if (c === "$" && s[i + 1] === "{") out += "\\$";
        else out += c;
    }
    return `"${out}"`;
}

export function nixAttrName(name: string): string {
    return IDENTIFIER.test(name) && !KEYWORDS.has(name) ? name : nixString(name);
}

function isScalar(v: NixValue): boolean {
    return v === null || typeof v !== "object";
}

function scalar(v: string | number | boolean | null): string {
    if (v === null) return "null";
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v === "number") {
        if (!Number.isSafeInteger(v)) throw new Error(`cannot write ${v} to Nix: only integers are supported`);
        // `[ 1 -2 ]` would parse as a subtraction.
        return v < 0 ? `(${v})` : String(v);
    }
    return nixString(v);
}

/**
 * Pretty-printed Nix for `value`: two-space indentation, short lists of scalars on one line.
 * Attributes whose value is undefined are left out (as JSON.stringify does).
 */
export function toNix(value: NixValue, indent = ""): string {
    if (isScalar(value)) return scalar(value as string | number | boolean | null);
    const inner = `${indent}  `;
    if (Array.isArray(value)) {
        if (value.length === 0) return "[ ]";
        if (value.every(isScalar)) {
            const oneLine = `[ ${value.map((v) => scalar(v as string | number | boolean | null)).join(" ")} ]`;
            if (oneLine.length + indent.length <= 100) return oneLine;
        }
        return `[\n${value.map((v) => `${inner}${toNix(v, inner)}`).join("\n")}\n${indent}]`;
    }
    const entries = Object.entries(value as { [key: string]: NixValue | undefined }).filter((e): e is [string, NixValue] => e[1] !== undefined);
    if (entries.length === 0) return "{ }";
    return `{\n${entries.map(([k, v]) => `${inner}${nixAttrName(k)} = ${toNix(v, inner)};`).join("\n")}\n${indent}}`;
}
