// Reading a site from stack config, and turning schema failures into errors a
// person can act on: each line names the config key, the value found and the rule.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml, YAMLError } from "yaml";
import type { z } from "zod";
import { UserFacingError } from "../errors";
import { SiteSchema, type Site } from "./model";
import { escapeText, listNames, preview, truncate } from "./text";

/** The stack config key that holds the site description. */
export const SITE_CONFIG_KEY = "nublar:site";
/**
 * Or: a YAML file holding it, relative to the project folder. For large sites: Pulumi hands
 * all of a stack's config to the program in one environment variable, which Linux caps at
 * 128 KiB, about 500 nodes (bench/site-plan.ts found it).
 */
export const SITE_FILE_KEY = "nublar:siteFile";

/**
 * Bounds on what a SiteConfigError says, whatever the site: each problem is cut to
 * MAX_PROBLEM_CHARS, and after MAX_PROBLEMS problems (or MAX_PROBLEMS_CHARS in all) the rest are
 * counted, not listed. A site of 60,000 nodes with one problem per node still gives an error a
 * person can read, and one a log line or a Pulumi diagnostic can hold.
 */
export const MAX_PROBLEMS = 50;
export const MAX_PROBLEM_CHARS = 600;
export const MAX_PROBLEMS_CHARS = 12_000;

export class SiteConfigError extends UserFacingError {
    readonly kind = "user";
    constructor(
        readonly source: string,
        readonly problems: string[],
    ) {
        super(`${truncate(escapeText(source), 300)}: the site description is invalid (nothing was created):\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "SiteConfigError";
    }
}

/** Validate a raw site object. Throws SiteConfigError listing every problem at once. */
export function parseSite(raw: unknown, source = SITE_CONFIG_KEY): Site {
    if (raw === undefined || raw === null) {
        throw new SiteConfigError(source, [`${SITE_CONFIG_KEY} is missing: describe the site under 'config:' in the stack file`]);
    }
    const result = SiteSchema.safeParse(raw);
    if (result.success) return result.data;
    throw new SiteConfigError(source, boundProblems(result.error.issues, (issue) => describeIssue(raw, issue)));
}

/** The problems to report, described one by one until the bounds (MAX_PROBLEMS...) are reached. */
function boundProblems<T>(issues: readonly T[], describe: (issue: T) => string): string[] {
    const out: string[] = [];
    let chars = 0;
    for (const issue of issues) {
        const problem = truncate(escapeText(describe(issue)), MAX_PROBLEM_CHARS);
        if (out.length === MAX_PROBLEMS || chars + problem.length > MAX_PROBLEMS_CHARS) break;
        out.push(problem);
        chars += problem.length;
    }
    const more = issues.length - out.length;
    if (more > 0) out.push(`${SITE_CONFIG_KEY}: ... and ${more} more problem${more === 1 ? "" : "s"}, not listed: fix these and validate again`);
    return out;
}

function describeIssue(raw: unknown, issue: z.core.$ZodIssue): string {
    const key = formatPath(issue.path);
    const found = valueAt(raw, issue.path);
    // The value found, escaped and cut short: it may be anything (a 60,000-node list, a cycle of YAML aliases).
    const shown = found === undefined ? "(missing)" : preview(found, 80);
    let rule = issue.message;
    if (issue.code === "unrecognized_keys") {
        rule = `unknown key(s) ${listNames(issue.keys, 10, (k) => `'${k}'`)}: check the spelling against the site schema (model/site/model.ts)`;
        return `${key}: ${rule}`;
    }
    if (issue.code === "invalid_type" && found === undefined) rule = `is required (${issue.expected})`;
    return `${key} = ${shown}: ${rule}`;
}

function formatPath(p: PropertyKey[]): string {
    let out = SITE_CONFIG_KEY;
    for (const part of p) out += typeof part === "number" ? `[${part}]` : `.${truncate(escapeText(String(part)), 64)}`;
    return out;
}

function valueAt(raw: unknown, p: PropertyKey[]): unknown {
    let cur: unknown = raw;
    for (const part of p) {
        if (cur === null || typeof cur !== "object") return undefined;
        cur = (cur as Record<PropertyKey, unknown>)[part];
    }
    return cur;
}

/** Where a stack's file lives (Pulumi.yaml sets stackConfigDir: stacks). */
export function stackFile(projectDir: string, stack: string): string {
    return path.join(projectDir, "stacks", `Pulumi.${stack}.yaml`);
}

/**
 * A YAML parse failure, without the text around it: the file may be anything (the point of
 * confining nublar:siteFile is that a secret never ends up in an error), so only the kind of
 * error and where it is.
 */
function readProblem(err: unknown): string {
    if (err instanceof YAMLError) {
        const at = err.linePos?.[0];
        return `not valid YAML (${err.code}${at ? ` at line ${at.line}, column ${at.col}` : ""})`;
    }
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === "string") return code;
    return `not valid YAML (${err instanceof Error ? err.name : "error"})`;
}

/** Parse YAML text; warnings (which quote the text) are not printed. */
function readYaml(file: string): unknown {
    return parseYaml(fs.readFileSync(file, "utf8"), { logLevel: "error" });
}

/**
 * A stack file's config, raw: `nublar:site` and `nublar:siteFile` as the file holds them, and the
 * project folder (stack files live in <project>/stacks, Pulumi.yaml: stackConfigDir).
 */
export function readStackConfig(file: string): { site?: unknown; siteFile?: unknown; projectDir: string } {
    let doc: unknown;
    try {
        doc = readYaml(file);
    } catch (err) {
        throw new SiteConfigError(file, [`cannot read the stack file: ${readProblem(err)}`]);
    }
    const config = doc !== null && typeof doc === "object" ? (doc as { config?: unknown }).config : undefined;
    const entries = config !== null && typeof config === "object" ? (config as Record<string, unknown>) : {};
    return { site: entries[SITE_CONFIG_KEY], siteFile: entries[SITE_FILE_KEY], projectDir: path.dirname(path.dirname(path.resolve(file))) };
}

/**
 * Read a site straight from a stack file, without the Pulumi engine: used by the CLI
 * (`nublar site validate`) and by tests that check every shipped stack.
 */
export function loadSiteFromStackFile(file: string): Site {
    const { site, siteFile, projectDir } = readStackConfig(file);
    return siteFromConfig({ site, siteFile }, projectDir, file);
}

/**
 * The file `nublar:siteFile` names, confined to the project: a YAML file (.yaml or .yml) whose
 * real path (symlinks resolved) lies inside the project folder's real path.
 */
function siteFilePath(siteFile: string, projectDir: string, source: string): string {
    const key = `${SITE_FILE_KEY} = ${preview(siteFile, 120)}`;
    const fail = (rule: string): never => {
        throw new SiteConfigError(source, [`${key}: ${rule}`]);
    };
    let root: string;
    let real: string;
    try {
        root = fs.realpathSync(projectDir);
    } catch (err) {
        return fail(`cannot read the project folder ${escapeText(projectDir)}: ${readProblem(err)}`);
    }
    try {
        real = fs.realpathSync(path.resolve(projectDir, siteFile));
    } catch (err) {
        return fail(`cannot read it: ${readProblem(err)}`);
    }
    const rel = path.relative(root, real);
    if (rel === "" || rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
        fail("must be a file inside the project folder (symlinks are followed): a site file elsewhere is refused");
    }
    if (!/\.ya?ml$/.test(real)) fail("must be a YAML file, named *.yaml or *.yml (symlinks are followed)");
    let regular = false;
    try {
        regular = fs.statSync(real).isFile();
    } catch (err) {
        fail(`cannot read it: ${readProblem(err)}`);
    }
    if (!regular) fail("must be a regular file");
    return real;
}

/** The site from a stack's config: `nublar:site` inline, or the file `nublar:siteFile` names. */
export function siteFromConfig(config: { site?: unknown; siteFile?: unknown }, projectDir: string, source: string): Site {
    if (config.siteFile === undefined) return parseSite(config.site, source);
    if (config.site !== undefined) throw new SiteConfigError(source, [`set either ${SITE_CONFIG_KEY} or ${SITE_FILE_KEY}, not both`]);
    if (typeof config.siteFile !== "string" || !config.siteFile) throw new SiteConfigError(source, [`${SITE_FILE_KEY} must be a path to a YAML file`]);
    const file = siteFilePath(config.siteFile, projectDir, source);
    let raw: unknown;
    try {
        raw = readYaml(file);
    } catch (err) {
        throw new SiteConfigError(source, [`${SITE_FILE_KEY} = ${preview(config.siteFile, 120)}: cannot read ${escapeText(file)}: ${readProblem(err)}`]);
    }
    // Not a mapping: not a site description. Say so without quoting what the file holds.
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw new SiteConfigError(source, [`${SITE_FILE_KEY} = ${preview(config.siteFile, 120)}: ${escapeText(file)} does not hold a site description (a YAML mapping with name, kind, sla, providers and nodes)`]);
    }
    return parseSite(raw, `${source} (${SITE_FILE_KEY} ${truncate(escapeText(config.siteFile), 200)})`);
}
