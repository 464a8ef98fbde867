// Reading a site from stack config, and turning schema failures into errors a
// person can act on: each line names the config key, the value found and the rule.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { UserFacingError } from "../errors";
import { SiteSchema, type Site } from "./model";

/** The stack config key that holds the site description. */
export const SITE_CONFIG_KEY = "nublar:site";
/**
 * Or: a YAML file holding it, relative to the project folder. For large sites: Pulumi hands
 * all of a stack's config to the program in one environment variable, which Linux caps at
 * 128 KiB, about 500 nodes (bench/site-plan.ts found it).
 */
export const SITE_FILE_KEY = "nublar:siteFile";

export class SiteConfigError extends UserFacingError {
    readonly kind = "user";
    constructor(
        readonly source: string,
        readonly problems: string[],
    ) {
        super(`${source}: the site description is invalid (nothing was created):\n${problems.map((p) => `  - ${p}`).join("\n")}`);
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
    throw new SiteConfigError(source, result.error.issues.map((issue) => describeIssue(raw, issue)));
}

function describeIssue(raw: unknown, issue: z.core.$ZodIssue): string {
    const key = formatPath(issue.path);
    const found = valueAt(raw, issue.path);
    const shown = found === undefined ? "(missing)" : JSON.stringify(found);
    let rule = issue.message;
    if (issue.code === "unrecognized_keys") {
        rule = `unknown key(s) ${issue.keys.map((k) => `'${k}'`).join(", ")}: check the spelling against the site schema (model/site/model.ts)`;
        return `${key}: ${rule}`;
    }
    if (issue.code === "invalid_type" && found === undefined) rule = `is required (${issue.expected})`;
    return `${key} = ${truncate(shown)}: ${rule}`;
}

function formatPath(p: PropertyKey[]): string {
    let out = SITE_CONFIG_KEY;
    for (const part of p) out += typeof part === "number" ? `[${part}]` : `.${String(part)}`;
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

function truncate(s: string): string {
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Where a stack's file lives (Pulumi.yaml sets stackConfigDir: stacks). */
export function stackFile(projectDir: string, stack: string): string {
    return path.join(projectDir, "stacks", `Pulumi.${stack}.yaml`);
}

/**
 * Read a site straight from a stack file, without the Pulumi engine: used by the CLI
 * (`nublar site validate`) and by tests that check every shipped stack.
 */
export function loadSiteFromStackFile(file: string): Site {
    let doc: unknown;
    try {
        doc = parseYaml(fs.readFileSync(file, "utf8"));
    } catch (err) {
        throw new SiteConfigError(file, [`cannot read the stack file: ${(err as Error).message}`]);
    }
    const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
    // Stack files live in <project>/stacks (Pulumi.yaml: stackConfigDir).
    return siteFromConfig({ site: config[SITE_CONFIG_KEY], siteFile: config[SITE_FILE_KEY] }, path.dirname(path.dirname(path.resolve(file))), file);
}

/** The site from a stack's config: `nublar:site` inline, or the file `nublar:siteFile` names. */
export function siteFromConfig(config: { site?: unknown; siteFile?: unknown }, projectDir: string, source: string): Site {
    if (config.siteFile === undefined) return parseSite(config.site, source);
    if (config.site !== undefined) throw new SiteConfigError(source, [`set either ${SITE_CONFIG_KEY} or ${SITE_FILE_KEY}, not both`]);
    if (typeof config.siteFile !== "string" || !config.siteFile) throw new SiteConfigError(source, [`${SITE_FILE_KEY} must be a path to a YAML file`]);
    const file = path.resolve(projectDir, config.siteFile);
    let raw: unknown;
    try {
        raw = parseYaml(fs.readFileSync(file, "utf8"));
    } catch (err) {
        throw new SiteConfigError(source, [`${SITE_FILE_KEY} = ${JSON.stringify(config.siteFile)}: cannot read ${file}: ${(err as Error).message}`]);
    }
    return parseSite(raw, `${source} (${SITE_FILE_KEY} ${config.siteFile})`);
}
