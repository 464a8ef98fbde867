// node-bfd: BFD (RFC 5880, 5881, 5883) for Node.js.
// The protocol core (packet, auth, session, demux, profile) is pure and usable on its own;
// BfdService runs sessions over UDP in a worker thread.
export * from "./packet";
export * from "./auth";
export * from "./session";
export * from "./demux";
export { DEFAULT_TIMERS, mergeOptions, resolveSessionConfig, type MergedOptions, type OptionError, type OptionName, type ResolveResult } from "./profile";
export * from "./types";
export { BfdService, BfdError, type ServiceOptions } from "./service";
export type { Snapshot } from "./protocol";
export { BfdGtsmError, gtsmRuleset, GTSM_MODES, GTSM_OWN_TABLE_PREFIX, GTSM_TABLE, type GtsmMode, type GtsmStatus } from "./gtsm";
