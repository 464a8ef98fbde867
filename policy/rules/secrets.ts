// Secrets stay Pulumi secrets, and every SSH connection checks a pinned host key.
//
// A limit of CrossGuard: @pulumi/policy hands validations the inputs with secrets already
// unwrapped, so a policy cannot ask "was this value marked secret?". This rule therefore looks
// for secret material (private keys, passwords, tokens) anywhere except in the inputs that are
// always secret: the ones nublar's components wrap with pulumi.secret (tested in components/)
// and the ones providers encrypt themselves (Kubernetes Secret data).
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { BFD_KEY_RULE, bfdKeyProblem } from "../../model/network/agent-config";
import { HostKey } from "../../model/site/model";
import { configOf, isUnknown, isUnknownValue, known, rawProps, siteOf, TYPES } from "./resources";

/** Inputs that are secret by construction: type -> top-level property names. */
const SECRET_SLOTS: Record<string, string[]> = {
    [TYPES.deployment]: ["secrets"],
    [TYPES.labLedger]: ["passwords", "signingKey"],
    [TYPES.k8sSecret]: ["data", "stringData"],
};

const PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;
const AWS_ACCESS_KEY = /\b(AKIA|ASIA)[0-9A-Z]{16}\b/;
const SECRET_NAMES = ["password", "passwd", "passphrase", "secret", "secretkey", "token", "apikey", "privatekey", "accesskey", "clientsecret", "credentials"];

function secretName(key: string): boolean {
    const k = key.toLowerCase().replace(/[^a-z0-9]/g, "");
    return SECRET_NAMES.some((n) => k.endsWith(n));
}

/** Where secret material sits in a value: paths like `spec.env[2].value`. */
export function findSecretMaterial(value: unknown, path: string, out: string[], depth = 0): void {
    if (depth > 40 || out.length > 50) return;
    if (typeof value === "string") {
        if (isUnknownValue(value)) return;
        const last = path.split(/[.[]/).pop() ?? "";
        if (PRIVATE_KEY.test(value)) out.push(`${path} holds a private key`);
        else if (AWS_ACCESS_KEY.test(value)) out.push(`${path} holds an AWS access key`);
        else if (secretName(last) && value !== "" && !value.startsWith("/") && !/^\$\{.*\}$/.test(value)) out.push(`${path} holds a plaintext value under a secret's name`);
        return;
    }
    if (Array.isArray(value)) {
        value.forEach((v, i) => {
            // Kubernetes env entries: { name: DB_PASSWORD, value: "..." } is a secret by its name.
            if (v && typeof v === "object" && typeof v.name === "string" && typeof v.value === "string" && secretName(v.name) && v.value !== "" && !isUnknownValue(v.value)) {
                out.push(`${path}[${i}] (${v.name}) holds a value in plaintext`);
            } else findSecretMaterial(v, `${path}[${i}]`, out, depth + 1);
        });
        return;
    }
    if (value && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) findSecretMaterial(v, path ? `${path}.${k}` : k, out, depth + 1);
    }
}

export const noPlaintextSecrets: ResourceValidationPolicy = {
    name: "no-plaintext-secrets",
    description: "No secret (private key, password, token, cloud access key) appears in a resource input outside the inputs that are always kept as Pulumi secrets.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Keep the value as a Pulumi secret (`pulumi config set --secret`, pulumi.secret(), or a Kubernetes Secret referenced with secretKeyRef) and pass it only through an input that stays secret.",
    configSchema: {
        properties: {
            allowedPaths: { type: "array", items: { type: "string" }, default: [], description: "Extra '<type> <property>' pairs that are secret by construction." },
        },
    },
    validateResource: (args, report) => {
        const { allowedPaths } = configOf(args, { allowedPaths: [] as string[] });
        const slots = new Set([...(SECRET_SLOTS[args.type] ?? []), ...allowedPaths.filter((p) => p.startsWith(`${args.type} `)).map((p) => p.slice(args.type.length + 1))]);
        const found: string[] = [];
        const props = rawProps(args.props);
        for (const [key, value] of Object.entries(props)) {
            if (slots.has(key)) continue;
            findSecretMaterial(value, key, found);
        }
        if (found.length) report(`plaintext secret material in inputs: ${found.slice(0, 8).join("; ")}. Fix: pass it as a Pulumi secret through a secret input.`);
    },
};

const NO_HOST_KEY_CHECK = /StrictHostKeyChecking[\s=]+(no|off|accept-new)|UserKnownHostsFile[\s=]+\/dev\/null/i;

export const sshHostKeysPinned: ResourceValidationPolicy = {
    name: "ssh-host-keys-pinned",
    description: "Every SSH connection a deploy makes checks the host against a pinned public key; nothing turns host key checking off.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: "Set nodes[].ssh.hostKey to the node's key (`ssh-keyscan -t ed25519 <host>`, checked out of band), and remove StrictHostKeyChecking=no or UserKnownHostsFile=/dev/null from any command.",
    validateResource: (args, report) => {
        const site = siteOf(args);
        if (site) {
            if (site.kind === "lab") return; // the lab generates and pins its own nodes' keys
            // EC2 nodes: nublar generates their key and pins it (components/aws/nixos-instance.ts);
            // their deployments are checked below like any other.
            const bad = site.nodes.filter((n) => !n.ec2).filter((n) => !n.ssh?.hostKey || !HostKey.safeParse(n.ssh.hostKey).success).map((n) => n.name);
            if (bad.length) report(`nodes without a pinned SSH host key: ${bad.join(", ")}. Fix: set nodes[].ssh.hostKey from ssh-keyscan.`);
            return;
        }
        if (args.type === TYPES.deployment) {
            // The lab's access is an output of the park, unknown at preview: checked at `up`.
            const unknown = isUnknown(() => args.props.access) || isUnknown(() => args.props.access?.hostKey);
            const key = known(() => args.props.access?.hostKey);
            if (!unknown && !(typeof key === "string" && HostKey.safeParse(key).success)) {
                report(`the deployment of node ${known(() => args.props.node)} connects without a pinned host key (access.hostKey is ${JSON.stringify(key)}). Fix: pin the node's host key.`);
            }
        }
        const text = JSON.stringify(rawProps(args.props));
        const m = NO_HOST_KEY_CHECK.exec(text);
        if (m) report(`an input turns SSH host key checking off ('${m[0]}'). Fix: remove it and pin the host key.`);
    },
};

/** The BFD key's name among a deployment's secrets (model/nix/render.ts NIXOS_PATHS.bfdKeyFile's file name). */
export const BFD_KEY_SECRET = "nublar-bfd.key";

export const bfdKeyWellFormed: ResourceValidationPolicy = {
    name: "bfd-key-well-formed",
    description: "The BFD key every node's deployment delivers (the `nublar:bfdKey` secret, or the generated one) is a full 20-byte key, so that authenticated path sessions never run with an empty or padded key.",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps: `Set nublar:bfdKey to ${BFD_KEY_RULE}: \`pulumi config set --secret nublar:bfdKey 0x$(openssl rand -hex 20)\`, or remove it (\`pulumi config rm nublar:bfdKey\`) and nublar generates one.`,
    validateResource: (args, report) => {
        if (args.type !== TYPES.deployment) return;
        // The secrets are a secret input: unwrapped here (a CrossGuard limit, see above), never
        // quoted in a report. A generated key is unknown at the first preview: checked at `up`.
        const key = known(() => args.props.secrets?.[BFD_KEY_SECRET]);
        if (key === undefined || isUnknownValue(key)) return;
        const problem = bfdKeyProblem(key);
        if (problem) report(`the BFD key (nublar:bfdKey) that node ${known(() => args.props.node)}'s deployment delivers is not usable: ${problem}. It must be ${BFD_KEY_RULE}.`);
    },
};

export const secretPolicies = [noPlaintextSecrets, sshHostKeysPinned, bfdKeyWellFormed];
