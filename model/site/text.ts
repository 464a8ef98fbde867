// Text from a site description, made safe to show: in error messages (load.ts) and on a
// terminal (`nublar site show`). A site's strings reach a person's terminal, so control
// characters (a raw ESC starts a terminal escape sequence), Unicode bidi overrides (which
// reorder what is shown, "Trojan Source") and lone surrogates are shown escaped, lists of
// names are capped and long values cut.

/**
 * Characters that have no place in one line of free text: C0 controls (tab and newline
 * included), DEL, C1 controls, the line and paragraph separators, the bidi embeddings,
 * overrides and isolates and the invisible direction marks, the BOM, and lone surrogates.
 */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]|\p{Cs}/u;
const CONTROL_CHARS_ALL = new RegExp(CONTROL_CHARS.source, "gu");

/** The first control character in `s` (see CONTROL_CHARS) as `U+001B at 12`, or undefined. */
export function findControlChar(s: string): string | undefined {
    const m = CONTROL_CHARS.exec(s);
    if (!m) return undefined;
    return `${codePoint(m[0])} at ${m.index}`;
}

function codePoint(ch: string): string {
    return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
}

/** `s` with each control character (CONTROL_CHARS) written as a visible escape: \x1b, \u202e. */
export function escapeText(s: string): string {
    return s.replace(CONTROL_CHARS_ALL, (ch) => {
        const c = ch.codePointAt(0) ?? 0;
        return c <= 0xff ? `\\x${c.toString(16).padStart(2, "0")}` : `\\u${c.toString(16).padStart(4, "0")}`;
    });
}

/**
 * JSON text that is safe on a terminal: JSON.stringify escapes the C0 controls but not DEL, the
 * C1 controls (U+009B is a CSI on some terminals), the bidi controls or U+2028; this escapes
 * those as \uXXXX too, so the output is still JSON, and parses to the same value.
 */
export function safeJson(value: unknown, indent?: number): string {
    // The C0 controls left in JSON text are its own line breaks (inside strings, JSON.stringify
    // escaped them), and it escapes lone surrogates itself.
    return JSON.stringify(value, null, indent).replace(/[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** `s` cut to at most `max` characters, with "..." when cut (never splitting a surrogate pair). */
export function truncate(s: string, max: number): string {
    if (s.length <= max) return s;
    let cut = Math.max(0, max - 3);
    if (cut > 0 && /[\ud800-\udbff]/.test(s[cut - 1])) cut--;
    return `${s.slice(0, cut)}...`;
}

/** How many names an error lists before "... and N more". */
export const MAX_LISTED_NAMES = 10;
/** How much of one name an error shows. */
const MAX_NAME_CHARS = 64;

/** A name from the site as an error shows it: escaped, and cut when long. */
export function showName(name: string): string {
    return truncate(escapeText(name), MAX_NAME_CHARS);
}

/**
 * Names for an error message: "a, b, c", the first MAX_LISTED_NAMES and "... and N more" past
 * that, each name escaped and cut. Reads no more of `names` than it shows.
 */
export function listNames(names: Iterable<string>, max = MAX_LISTED_NAMES, format: (shown: string) => string = (n) => n): string {
    const shown: string[] = [];
    let total = 0;
    for (const n of names) {
        if (total < max) shown.push(format(showName(n)));
        total++;
    }
    return total > max ? `${shown.join(", ")}, ... and ${total - max} more` : shown.join(", ");
}

/**
 * A value found in the site, for an error: JSON-like, at most `max` characters, escaped,
 * whatever the value (a cycle, a huge list, a very long string). Walks only as much of the
 * value as it shows.
 */
export function preview(value: unknown, max = 80): string {
    const out: string[] = [];
    let budget = max + 1;
    const seen = new Set<unknown>();
    const emit = (s: string): boolean => {
        out.push(s.slice(0, Math.max(0, budget)));
        budget -= s.length;
        return budget > 0;
    };
    const walk = (v: unknown, depth: number): boolean => {
        if (budget <= 0) return false;
        if (v === undefined) return emit("undefined");
        if (v === null || typeof v === "boolean" || typeof v === "number") return emit(String(v));
        if (typeof v === "bigint") return emit(`${v}`);
        if (typeof v === "string") return emit(JSON.stringify(v.length > budget ? v.slice(0, budget) : v));
        if (typeof v !== "object") return emit(`(${typeof v})`);
        if (seen.has(v) || depth > 20) return emit("...");
        seen.add(v);
        try {
            if (v instanceof Date) return emit(JSON.stringify(v.toISOString()));
            if (Array.isArray(v)) {
                if (!emit("[")) return false;
                for (let i = 0; i < v.length; i++) {
                    if (i > 0 && !emit(",")) return false;
                    if (!walk(v[i], depth + 1)) return false;
                }
                return emit("]");
            }
            if (!emit("{")) return false;
            let first = true;
            for (const k of Object.keys(v)) {
                if (!first && !emit(",")) return false;
                first = false;
                if (!emit(`${JSON.stringify(k.length > budget ? k.slice(0, budget) : k)}:`)) return false;
                if (!walk((v as Record<string, unknown>)[k], depth + 1)) return false;
            }
            return emit("}");
        } finally {
            seen.delete(v);
        }
    };
    walk(value, 0);
    return truncate(escapeText(out.join("")), max);
}
