// Worker bootstrap: load the TypeScript worker through tsx (workers do not inherit a
// require hook registered in the main thread).
require("tsx/cjs");
require("./worker.ts");
