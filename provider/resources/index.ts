// Every resource type the provider serves, by type token.
import type { AnyHandler } from "../provider";
import { RESOURCE_TYPES, type ResourceType } from "../tokens";
import { DEPLOYMENT_HANDLERS } from "./deployment";
import { KEY_HANDLERS } from "./keys";
import { KUBE_HANDLERS } from "./kube";
import { LAB_HANDLERS } from "./lab";
import { SERVICE_HANDLERS } from "./services";

export const HANDLERS: Readonly<Record<ResourceType, AnyHandler>> = {
    ...LAB_HANDLERS,
    ...SERVICE_HANDLERS,
    ...KUBE_HANDLERS,
    ...KEY_HANDLERS,
    ...DEPLOYMENT_HANDLERS,
};

/** Types in the token table that no handler serves (a unit test keeps this empty). */
export const UNSERVED = Object.values(RESOURCE_TYPES).filter((t) => !(t in HANDLERS));
