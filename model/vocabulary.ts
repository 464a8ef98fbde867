// nublar's one vocabulary: the names that cross a boundary between the agent, the event bus,
// the ledger, the alerts and the dashboard. Each is defined here once, as a table whose keys
// or values are the TypeScript type used everywhere else.

/** A ledger shard's name: also its database (`unicorn_<shard>`), so lowercase and short. */
export const SHARD_NAME = /^[a-z][a-z0-9_]{0,39}$/;
