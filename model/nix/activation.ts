// Activation is the one step of a deploy that differs between a real NixOS node and a lab
// node. Upload, secrets, confirm and rollback (./deploy.ts) are shared; an Activation only
// says which shell commands, run on the node over SSH, switch to a generation, confirm it,
// or roll it back.
//
// Both keep generations under <root>/generations/<n>/ and the running one in <root>/current,
// and both leave a watchdog at switch time that rolls back on the node's own unless the
// deployer confirms in time (deploy-rs's "magic rollback").
export type DeployMode = "switch" | "boot" | "test" | "dry-activate";

export interface Activation {
    kind: "nixos" | "lab";
    /** Where generations live on the node. */
    root: string;
    /** Where secrets go (a tmpfs: never on disk, gone after a reboot). */
    keysDir: string;
    /** Prints {"current": n|null, "generations": [..]} as JSON. */
    statusCmd(): string;
    /** Files the activation adds to every generation (e.g. the rollback script). */
    extraFiles(gen: number, mode: DeployMode): Record<string, string>;
    /** Switch to `gen`, leaving a watchdog that rolls back after `watchdogS` unless confirmed. */
    switchCmd(gen: number, mode: DeployMode, watchdogS: number): string;
    confirmCmd(gen: number): string;
    /** Go back to the generation before `gen`, if `gen` still runs. */
    rollbackCmd(gen: number): string;
    /** Remove what deploys started (the lab only; a real node keeps its system). */
    deactivateCmd?(): string;
    /** Whether the mode changes the running system, so that it must be confirmed (or rolled back). */
    changesRunningSystem(mode: DeployMode): boolean;
}

/**
 * Point <keys>/<name> at generation n's copies (<keys>/nublar-generations/<n>/<name>), and
 * drop the copies of generations other than n and `keep`.
 */
export function linkKeysScript(keysDir: string, n: string, keep: string): string {
    const gens = `${keysDir}/nublar-generations`;
    return [
        `if [ -d ${sh(gens)}/${n} ]; then for f in ${sh(gens)}/${n}/*; do [ -e "$f" ] && ln -sfn "$f" ${sh(keysDir)}/"$(basename "$f")"; done; fi`,
        `for d in ${sh(gens)}/*; do b=$(basename "$d"); if [ "$b" != ${n} ] && [ "$b" != "${keep}" ] && [ -d "$d" ]; then rm -rf "$d"; fi; done`,
    ].join("\n");
}

/** Root's own runtime folder on a NixOS node, for what the deploy keeps between switches. */
const DEPLOY_RUN = "/run/nublar-deploy";

/** Quote for a POSIX shell. */
export function sh(value: string): string {
    return `'${value.replace(/'/g, `'\\''`)}'`;
}

const statusScript = (root: string) =>
    `mkdir -p ${sh(`${root}/generations`)} && printf '{"current":%s,"generations":[%s]}\\n' ` +
    `"$(cat ${sh(`${root}/current`)} 2>/dev/null || echo null)" "$(ls ${sh(`${root}/generations`)} | sort -n | paste -sd, -)"`;

/**
 * A NixOS node: `nixos-rebuild <mode>` on the uploaded configuration.nix. The rollback
 * script goes back to the system profile that ran before (recorded at switch time), the way
 * `nixos-rebuild switch --rollback` would, but to exactly that generation.
 * Not exercised on this machine: there is no NixOS here (see README, "Deploys").
 */
export function nixosActivation(root = "/var/lib/nublar/system"): Activation {
    const gen = (n: number) => `${root}/generations/${n}`;
    return {
        kind: "nixos",
        root,
        keysDir: "/run/keys",
        statusCmd: () => statusScript(root),
        changesRunningSystem: (mode) => mode === "switch" || mode === "test",
        extraFiles: (n, mode) => ({
            "nublar-rollback.sh": [
                "#!/bin/sh",
                "# Written by nublar's deploy: go back to the system that ran before this generation.",
                "set -eu",
                `R=${sh(root)}; G=${sh(gen(n))}`,
                `[ "$(cat "$R/current" 2>/dev/null)" = "${n}" ] || exit 0`,
                `prev=$(cat "$G/previous-system")`,
                // `switch` made a new profile generation: point the profile back too, so a reboot keeps the old one.
                ...(mode === "switch" || mode === "boot" ? [`nix-env -p /nix/var/nix/profiles/system --set "$prev"`] : []),
                `"$prev/bin/switch-to-configuration" ${mode === "boot" ? "boot" : "switch"}`,
                `if [ -f "$G/previous" ]; then cp "$G/previous" "$R/current"; else rm -f "$R/current"; fi`,
                // The previous generation's keys, and a restart of what reads them.
                `if [ -f "$G/previous" ]; then p=$(cat "$G/previous"); ${linkKeysScript("/run/keys", "$p", "$p").split("\n").join("; ")}; systemctl restart nublar-agent.service 'wireguard-*.service' || true; fi`,
                `date -u +%FT%TZ > "$G/rolled-back"`,
                "",
            ].join("\n"),
        }),
        switchCmd: (n, mode, watchdogS) => [
            "set -e",
            `R=${sh(root)}; G=${sh(gen(n))}`,
            `readlink -f /nix/var/nix/profiles/system > "$G/previous-system"`,
            `cur=$(cat "$R/current" 2>/dev/null || true); if [ -n "$cur" ]; then echo "$cur" > "$G/previous"; fi`,
            `echo ${n} > "$R/current"`,
            // Only when the running system changes: under `boot` or `dry-activate`, the running
            // services must keep reading the keys of the generation they run.
            ...(mode === "switch" || mode === "test" ? [linkKeysScript("/run/keys", String(n), "${cur:-none}")] : []),
            // The watchdog: a transient timer that outlives this SSH session and any network change.
            ...(watchdogS > 0 ? [`systemd-run --quiet --unit=nublar-rollback-${n} --on-active=${watchdogS}s /bin/sh "$G/nublar-rollback.sh"`] : []),
            `nixos-rebuild ${mode} -I nixos-config="$G/configuration.nix"`,
            // Keys are not part of the system closure: a new key alone changes no unit, so
            // restart what reads them (the agent loads its credential copy at start) when their
            // fingerprints changed. The fingerprints are kept on the node only, in root's own
            // folder: /run/nublar is the agent's, and goes when the agent stops.
            ...(mode === "switch" || mode === "test" ? [
                `(umask 077 && mkdir -p ${DEPLOY_RUN}) && new=$(sha256sum /run/keys/nublar-* 2>/dev/null || true)`,
                `if [ "$new" != "$(cat ${DEPLOY_RUN}/keys.sha256 2>/dev/null || true)" ]; then systemctl restart nublar-agent.service 'wireguard-*.service' || true; printf '%s' "$new" > ${DEPLOY_RUN}/keys.sha256; fi`,
            ] : []),
        ].join("\n"),
        confirmCmd: (n) => `set -e; touch ${sh(`${gen(n)}/confirmed`)}; systemctl stop nublar-rollback-${n}.timer 2>/dev/null || true`,
        rollbackCmd: (n) => `systemctl stop nublar-rollback-${n}.timer 2>/dev/null || true; /bin/sh ${sh(`${gen(n)}/nublar-rollback.sh`)}`,
    };
}

/**
 * A lab node: lab/node-system.ts, run on the node (inside its namespace) by the
 * same Node.js and project checkout as the deployer, since the lab shares this machine's disk.
 */
export function labActivation(opts: { root: string; nodeDir: string; projectDir: string; nodeBinary: string }): Activation {
    const run = (verb: string, extra = "") =>
        `cd ${sh(opts.projectDir)} && exec ${sh(opts.nodeBinary)} --import tsx lab/node-system.ts ${verb} --root ${sh(opts.root)} --node-dir ${sh(opts.nodeDir)}${extra}`;
    return {
        kind: "lab",
        root: opts.root,
        keysDir: "/run/keys",
        statusCmd: () => statusScript(opts.root),
        changesRunningSystem: (mode) => mode === "switch" || mode === "test",
        extraFiles: () => ({}),
        switchCmd: (n, mode, watchdogS) => {
            if (mode === "boot") return `echo "the lab has no boot loader: use mode switch, test or dry-activate" >&2; exit 2`;
            if (mode === "dry-activate") return `echo "dry-activate: generation ${n} uploaded, nothing switched"`;
            return run("switch", ` --gen ${n} --watchdog-s ${watchdogS}`);
        },
        confirmCmd: (n) => run("confirm", ` --gen ${n}`),
        rollbackCmd: (n) => run("rollback", ` --gen ${n}`),
        deactivateCmd: () => run("deactivate"),
    };
}
