// The Unicorn ledger: a quorum that cannot lose an acknowledged entry, backups, and checkpoints
// anchored where nobody (the site's operators included) can rewrite them.
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { configOf, isUnknown, known, siteOf, TYPES } from "./resources";

export const ledgerQuorum: ResourceValidationPolicy = {
    name: "ledger-quorum",
    description: "Every ledger cluster has at least three instances and commits synchronously to a quorum with dataDurability 'required', so that losing the primary never loses an acknowledged entry.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Set ledger.instances to 3 or more and leave ledger.dataDurability at 'required' in the site description; on CloudNativePG set spec.instances >= 3 and spec.postgresql.synchronous { method: any, number: 1, dataDurability: required }.",
    configSchema: { properties: { minInstances: { type: "integer", minimum: 1, default: 3 } } },
    validateResource: (args, report) => {
        const { minInstances } = configOf(args, { minInstances: 3 });
        const site = siteOf(args);
        if (site) {
            const l = site.ledger;
            if (l.instances < minInstances) report(`ledger.instances is ${l.instances}; the ledger needs ${minInstances} (a primary and standbys for a synchronous quorum). Fix: set ledger.instances: ${minInstances}.`);
            if (l.dataDurability !== "required") report(`ledger.dataDurability is '${l.dataDurability}': the primary may acknowledge entries no standby has. Fix: set ledger.dataDurability: required.`);
            return;
        }
        if (args.type === TYPES.labLedger) {
            const n = known(() => Number(args.props.plan?.instances));
            if (n !== undefined && !(n >= minInstances)) report(`the lab ledger runs ${n} PostgreSQL instance(s); it needs ${minInstances}. Fix: set ledger.instances: ${minInstances}.`);
            return;
        }
        if (args.type === TYPES.cnpgCluster) {
            // Unknown at preview (computed from other resources): decided at `up`, never guessed.
            if (isUnknown(() => args.props.spec)) return;
            const spec = known(() => args.props.spec) ?? {};
            if (!isUnknown(() => spec.instances)) {
                const instances = Number(known(() => spec.instances));
                if (!(instances >= minInstances)) report(`spec.instances is ${known(() => spec.instances) ?? "unset"}; it needs ${minInstances}. Fix: set spec.instances: ${minInstances}.`);
            }
            if (isUnknown(() => spec.postgresql?.synchronous)) return;
            const sync = known(() => spec.postgresql?.synchronous);
            if (!sync) {
                report("spec.postgresql.synchronous is unset: commits do not wait for a standby. Fix: set synchronous { method: any, number: 1, dataDurability: required }.");
                return;
            }
            if (!isUnknown(() => sync.number) && !(Number(known(() => sync.number)) >= 1)) report(`spec.postgresql.synchronous.number is ${known(() => sync.number) ?? "unset"}; it must be at least 1. Fix: set number: 1.`);
            // CloudNativePG's default for dataDurability is `required`.
            const durability = known(() => sync.dataDurability);
            if (!isUnknown(() => sync.dataDurability) && durability !== undefined && durability !== "required") report(`spec.postgresql.synchronous.dataDurability is '${durability}'. Fix: set dataDurability: required.`);
        }
    },
};

export const ledgerBackups: ResourceValidationPolicy = {
    name: "ledger-backups",
    description: "Every ledger cluster is backed up: scheduled base backups and a WAL archive, with a retention.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Set ledger.backup { schedule, retentionDays } in the site description; on CloudNativePG configure spec.backup (barmanObjectStore with retentionPolicy) or the barman-cloud plugin, and a ScheduledBackup.",
    validateResource: (args, report) => {
        const site = siteOf(args);
        if (site) {
            if (site.kind === "lab") args.notApplicable("the lab's ledger is rebuilt from scratch with the lab; it keeps no backups");
            if (!site.ledger.backup) report("ledger.backup is not set: the ledger has no backups. Fix: set ledger.backup { schedule: '0 0 3 * * *', retentionDays: 30 }.");
            return;
        }
        if (args.type === TYPES.cnpgCluster) {
            // The label UnicornLedgerCluster puts on a lab's clusters (components/k8s/ledger-cluster.ts);
            // a park's site is still checked above, whatever its clusters' labels say.
            if (known(() => args.props.metadata?.labels?.["nublar/site-kind"]) === "lab") args.notApplicable("a lab's ledger cluster (label nublar/site-kind=lab): the lab is rebuilt from scratch and keeps no backups");
            if (isUnknown(() => args.props.spec) || isUnknown(() => args.props.spec?.backup) || isUnknown(() => args.props.spec?.plugins)) return;
            const spec = known(() => args.props.spec) ?? {};
            const backup = known(() => spec.backup);
            const plugin = known(() => (Array.isArray(spec.plugins) ? spec.plugins : []).some((p: any) => String(p?.name ?? "").startsWith("barman-cloud")));
            if (backup === undefined && !plugin) report("the cluster has no backup configuration (spec.backup or the barman-cloud plugin). Fix: add spec.backup.barmanObjectStore with a retentionPolicy.");
            else if (backup && !backup.barmanObjectStore && !backup.volumeSnapshot && !plugin) report("spec.backup names no destination. Fix: add spec.backup.barmanObjectStore.");
            else if (backup && !backup.retentionPolicy) report("spec.backup has no retentionPolicy. Fix: set retentionPolicy, e.g. '30d'.");
        }
    },
};

export const ledgerAnchor: ResourceValidationPolicy = {
    name: "ledger-anchor",
    description: "Signed ledger checkpoints are anchored in object-locked storage (S3 Object Lock), where not even the site's operators can replace them.",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps: "Set ledger.anchor: object-lock (the default outside the lab) and give the site's lake bucket Object Lock in compliance mode (see the lake rules).",
    validateResource: (args, report) => {
        const site = siteOf(args);
        if (!site) return;
        if (site.kind === "lab" && site.ledger.anchor === "directory") args.notApplicable("the lab anchors checkpoints in a write-once local folder (mode 0444); there is no object storage on the lab machine");
        if (site.ledger.anchor !== "object-lock") report(`ledger.anchor is '${site.ledger.anchor}': checkpoints can be rewritten by whoever owns that storage. Fix: set ledger.anchor: object-lock.`);
    },
};

export const ledgerPolicies = [ledgerQuorum, ledgerBackups, ledgerAnchor];
