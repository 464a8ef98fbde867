// `node --import tsx runtime/agent/daemon.ts --config FILE [--bfd-nice N]`: the agent process.
// (`nublar agent --config FILE` does the same through the CLI.)
import { parseArgs } from "node:util";
import { runAgent } from "./main";

const { values } = parseArgs({ options: { config: { type: "string" }, "bfd-nice": { type: "string" }, "bfd-realtime": { type: "string" }, help: { type: "boolean" } } });
if (values.help || !values.config) {
    process.stderr.write("usage: daemon.ts --config FILE [--bfd-nice N] [--bfd-realtime PRIO]\n  runs nublar-agent for the node that FILE describes (see model/network/agent-config.ts)\n");
    process.exit(values.help ? 0 : 2);
}
// NUBLAR_BFD_REALTIME: the same as --bfd-realtime (the lab sets it for every daemon it starts).
const realtime = values["bfd-realtime"] ?? process.env.NUBLAR_BFD_REALTIME;
runAgent(values.config, {
    bfdNiceness: values["bfd-nice"] === undefined ? undefined : Number(values["bfd-nice"]),
    bfdRealtimePriority: realtime ? Number(realtime) : undefined,
}).catch((err) => {
    process.stderr.write(`nublar-agent: ${(err as Error).message}\n`);
    process.exit(1);
});
