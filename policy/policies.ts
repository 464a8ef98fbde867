// Every policy of the nublar-sla pack, by domain. index.ts serves them to the engine; tests and
// `nublar audit` import them from here without starting the pack's server.
import type { Policies } from "@pulumi/policy";
import { eventPolicies } from "./rules/events";
import { ingressPolicies } from "./rules/ingress";
import { lakePolicies } from "./rules/lake";
import { lampPolicies, lampStackPolicies } from "./rules/lamp";
import { ledgerPolicies } from "./rules/ledger";
import { networkPolicies } from "./rules/network";
import { secretPolicies } from "./rules/secrets";
import { slaPolicies } from "./rules/sla";

export const PACK_NAME = "nublar-sla";

export const policies: Policies = [
    ...networkPolicies,
    ...ingressPolicies,
    ...ledgerPolicies,
    ...eventPolicies,
    ...lampPolicies,
    ...lampStackPolicies,
    ...lakePolicies,
    ...secretPolicies,
    ...slaPolicies,
];
