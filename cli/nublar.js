#!/usr/bin/env node
// Entry point of the `nublar` command (package.json "bin"). The CLI is TypeScript,
// loaded through tsx so that the installed command always runs the current source.
require("tsx/cjs");
require("./main.ts").main(process.argv);
