// nublar's layers, bottom up (README "Layers"). `npm test` runs this check first
// (scripts/check-layers); an import that runs up a layer, or folders that import each other in
// a circle, fail it. Static imports, `require()`, `require.resolve()` and `import()` all count,
// and so do type-only imports: a type is a contract too.
//
//   model/       pure model and planning: the site model, the vocabulary, planners, renderers
//   runtime/     what runs on nodes and servers: the agent and its client, the event pipeline,
//                the ledger service, the deployer (and packages/node-bfd)
//   lab/         the lab's process supervision on this machine
//   provider/    nublar's Pulumi resource provider (the pulumi-resource-nublar plugin): serves
//                the custom resources by calling the layers below
//   components/  Pulumi components; policy/ (the nublar-sla pack) sits beside them
//   cli/         the nublar command, at the top
//
// Tests beside the code obey the rules of their folder; test/ and bench/ may use anything, and
// nothing but tests may use them.
const LAYERS = [
    { name: "model", path: "^model/" },
    { name: "runtime", path: "^(runtime|packages)/" },
    { name: "lab", path: "^lab/" },
    { name: "provider", path: "^provider/" },
    { name: "components", path: "^(components|policy)/|^index\\.ts$" },
    { name: "cli", path: "^cli/" },
];

/** One rule per layer: it may import only from itself and the layers below it. */
const upward = LAYERS.slice(0, -1).map((layer, i) => ({
    name: `${layer.name}-imports-upward`,
    comment: `${layer.name} may import only from ${LAYERS.slice(0, i + 1).map((l) => l.name).join(", ")}`,
    severity: "error",
    from: { path: layer.path },
    to: {
        path: LAYERS.slice(i + 1).map((l) => l.path).join("|"),
        // The one exception: the NixOS renderer's tests check that the firewall it renders
        // holds node-bfd's own GTSM rule verbatim, so they read it from the library.
        ...(layer.name === "model" ? { pathNot: "^packages/node-bfd/src/gtsm\\.ts$" } : {}),
    },
}));

module.exports = {
    forbidden: [
        ...upward,
        {
            name: "policy-not-components",
            comment: "the policy pack judges what components register; neither imports the other (their tests may: they run the pack on the components)",
            severity: "error",
            from: { path: "^policy/", pathNot: "\\.test\\.ts$" },
            to: { path: "^(components/|index\\.ts$)" },
        },
        {
            name: "components-not-policy",
            severity: "error",
            from: { path: "^(components/|index\\.ts$)", pathNot: "\\.test\\.ts$" },
            to: { path: "^policy/" },
        },
        {
            name: "model-is-pure",
            comment: "the model and planners load neither the Pulumi SDK nor a database, Kafka or SSH client",
            severity: "error",
            from: { path: "^model/" },
            to: { path: "node_modules/(@pulumi|pg|pg-copy-streams|ioredis|@platformatic|ssh2|netlink|@aws-sdk)/" },
        },
        {
            name: "node-bfd-stands-alone",
            comment: "node-bfd is a library of its own: it imports nothing of the project's",
            severity: "error",
            from: { path: "^packages/node-bfd/" },
            to: { path: "^(model|runtime|lab|provider|components|policy|cli|test|bench)/" },
        },
        {
            name: "only-tests-use-tests",
            comment: "test/ and bench/ are fixtures and harnesses; shipped code never loads them",
            severity: "error",
            from: { path: "^(model|runtime|lab|provider|components|policy|cli|packages)/", pathNot: "\\.test\\.ts$|/test/|/testing/" },
            to: { path: "^(test|bench)/|/test/" },
        },
        {
            name: "no-folder-cycles",
            comment: "folders must not import each other in a circle (test/ and bench/ are harnesses that everything's tests use and that use everything: a circle through them is no design debt)",
            severity: "error",
            scope: "folder",
            from: { pathNot: "^(test|bench)/" },
            to: { circular: true, pathNot: "^(test|bench)/" },
        },
        {
            name: "no-module-cycles",
            comment: "modules must not import each other in a circle",
            severity: "error",
            from: {},
            to: { circular: true },
        },
        {
            name: "no-unresolvable",
            comment: "every relative import resolves (a moved file breaks this at once, not at run time)",
            severity: "error",
            from: {},
            to: { couldNotResolve: true, path: "^\\." },
        },
    ],
    options: {
        doNotFollow: { path: "node_modules" },
        exclude: { path: "^(node_modules|\\.tools|\\.nublar|\\.build)/" },
        tsPreCompilationDeps: true,
        tsConfig: { fileName: "tsconfig.json" },
        detectJSDocImports: false,
        exoticRequireStrings: ["require.resolve"],
        metrics: true,
        moduleSystems: ["cjs", "es6"],
    },
};
