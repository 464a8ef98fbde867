# Sourced by the scripts in this folder: where things live, and the Pulumi engine's settings.
# shellcheck shell=bash

NUBLAR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NUBLAR_ROOT

# Pinned engine versions. The npm @pulumi/pulumi in package.json matches PULUMI_VERSION.
export PULUMI_VERSION="v3.259.0"
# The Node.js language host, built from the sdk/v3 module (see scripts/engine/README.md for why this version).
export PULUMI_LANGHOST_VERSION="v3.68.0"

# Built tools are cached per user, outside the clone, so a fresh clone does not rebuild them.
export NUBLAR_CACHE="${NUBLAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nublar}"
export NUBLAR_TOOLS="$NUBLAR_ROOT/.tools"

# Everything Pulumi keeps (state, plugins, credentials) stays in the ignored .nublar folder.
export PULUMI_HOME="${PULUMI_HOME:-$NUBLAR_ROOT/.nublar/pulumi-home}"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$NUBLAR_ROOT/.nublar/state}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PATH="$NUBLAR_TOOLS/bin:$NUBLAR_ROOT/policy/bin:$NUBLAR_ROOT/node_modules/.bin:$PATH"

# The lab's passphrase is well known on purpose: lab secrets never leave this machine.
# Real sites must bring their own (PULUMI_CONFIG_PASSPHRASE or a KMS secrets provider).
export NUBLAR_LAB_PASSPHRASE="nublar-lab"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }
