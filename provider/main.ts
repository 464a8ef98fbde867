// pulumi-resource-nublar: the plugin's entry. The engine starts it (through the launcher that
// scripts/build-provider installs) and talks to it over gRPC; see provider.ts.
import { main } from "@pulumi/pulumi/provider";
import { NublarProvider } from "./provider";
import { HANDLERS } from "./resources";

main(new NublarProvider(HANDLERS), process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`pulumi-resource-nublar: ${err.stack ?? err}\n`);
    process.exit(1);
});
