// Take a lab cluster down by its folder alone, from a synchronous caller (`nublar lab clean`,
// lab/inspect.ts cleanLab): the plan it was started with is recorded there (plan.json).
//   node --import tsx lab/kube/down-main.ts <cluster dir> [--purge]
import * as fs from "node:fs";
import * as path from "node:path";
import type { LabKubePlan } from "../../model/kube/plan";
import { labKubeDown, PLAN_RECORD } from "./cluster";

async function main(): Promise<void> {
    const [dir, flag] = process.argv.slice(2);
    if (!dir || (flag !== undefined && flag !== "--purge")) {
        process.stderr.write("usage: down-main.ts <cluster dir> [--purge]\n");
        process.exit(2);
    }
    const record = path.join(dir, PLAN_RECORD);
    let plan: LabKubePlan;
    try {
        plan = JSON.parse(fs.readFileSync(record, "utf8"));
    } catch (err) {
        process.stderr.write(`no lab cluster recorded in ${dir} (${(err as Error).message})\n`);
        process.exit(1);
    }
    if (path.resolve(plan.dir) !== path.resolve(dir)) {
        process.stderr.write(`${record} describes a cluster in ${plan.dir}, not ${dir}\n`);
        process.exit(1);
    }
    await labKubeDown(plan, { purge: flag === "--purge" });
}

main().catch((err) => {
    process.stderr.write(`taking the lab cluster in ${process.argv[2]} down failed: ${(err as Error).message}\n`);
    process.exit(1);
});
