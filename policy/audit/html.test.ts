// report.html in a real browser: Debian's Chromium, headless, through playwright-core. The
// summary must render first, be readable, and carry the verdict's colour in its pixels.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PNG } from "pngjs";
import { chromium } from "playwright-core";
import { loadSiteFromStackFile } from "../../model/site/load";
import { buildReport, findingOf, writeReport } from "./run";
import { PROJECT_ROOT } from "../../model/project";

const CHROMIUM = process.env.NUBLAR_CHROMIUM ?? "/usr/bin/chromium";
const ROOT = PROJECT_ROOT;

/** Pixels of a PNG within `tolerance` of an RGB colour. */
function countColour(png: PNG, [r, g, b]: [number, number, number], tolerance = 12): number {
    let n = 0;
    for (let i = 0; i < png.data.length; i += 4) {
        if (Math.abs(png.data[i] - r) <= tolerance && Math.abs(png.data[i + 1] - g) <= tolerance && Math.abs(png.data[i + 2] - b) <= tolerance) n++;
    }
    return n;
}

test("the report's summary renders in headless Chromium: verdict, counts and SLA headline, first on the page", async (t) => {
    assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run npm run setup (Debian package chromium)`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-audit-html-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
    t.after(() => browser.close());
    const site = loadSiteFromStackFile(path.join(ROOT, "stacks", "Pulumi.lab.yaml"));
    const findings = [findingOf({ policyName: "ingress-redundancy", policyPackName: "nublar-sla", policyPackVersion: "1.0.0", enforcementLevel: "mandatory", resourceUrn: "urn:pulumi:lab::nublar::nublar:site:Site::lab", message: "ingress is not redundant" })];
    writeReport(buildReport("lab", ROOT, { findings, site, resources: 47, changes: {}, ok: false, error: "blocked by mandatory policy findings", pulumiVersion: "v3.259.0" }),
        dir, crypto.generateKeyPairSync("ed25519").privateKey);

    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`file://${path.join(dir, "report.html")}`);
    const summary = page.locator("#summary");
    assert.ok(await summary.isVisible(), "the summary is visible");
    const box = (await summary.boundingBox())!;
    assert.ok(box.y < 100 && box.height > 150, `the summary is first and has content (${JSON.stringify(box)})`);
    const text = await summary.innerText();
    assert.match(text, /Audit of stack lab/);
    assert.match(text, /FAIL/);
    assert.match(text, /1\s*mandatory/);
    assert.match(text, /estimated availability/);
    // The summary comes before every finding on the page.
    const order: number[] = [];
    for (const id of ["summary", "by-rule", "by-resource", "sla", "rules"]) order.push((await page.locator(`#${id}`).boundingBox())!.y);
    assert.deepEqual([...order].sort((a, b) => a - b), order);

    // Pixels, not just the DOM: the red FAIL badge and dark text are drawn in the summary.
    const shot = PNG.sync.read(await summary.screenshot());
    const red = countColour(shot, [0xb3, 0x2d, 0x2e]);
    const ink = countColour(shot, [0x1d, 0x23, 0x27], 40);
    assert.ok(red > 500, `the FAIL badge is drawn (${red} red pixels)`);
    assert.ok(ink > 2000, `text is drawn (${ink} dark pixels)`);
    if (process.env.NUBLAR_KEEP_SCREENSHOT) fs.writeFileSync(process.env.NUBLAR_KEEP_SCREENSHOT, await page.screenshot({ fullPage: true }));
});
