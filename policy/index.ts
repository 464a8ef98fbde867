// The nublar-sla policy pack: CrossGuard rules that block a site that cannot meet its SLA.
// `pulumi preview --policy-pack policy` runs it (through bin/pulumi-analyzer-policy-nublar; see
// README.md for why); the rules are in rules/, one file per domain.
import { PolicyPack } from "@pulumi/policy";
import { PACK_NAME, policies } from "./policies";

new PolicyPack(PACK_NAME, {
    description: "nublar's SLA rules: fast and covered BFD failover, multihoming, redundant ingress, a durable ledger and event bus, hardened LAMP pods, a locked data lake, and no plaintext secrets.",
    displayName: "nublar SLA",
    enforcementLevel: "mandatory",
    policies,
});
