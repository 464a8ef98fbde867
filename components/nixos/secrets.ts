// Keys that nublar generates itself, kept as Pulumi secrets: encrypted in the stack's state,
// shown as [secret] in every preview and log, and delivered to nodes only into /run/keys.
//   - the site's BFD authentication key (meticulous keyed SHA1, 20 bytes);
//   - each node's WireGuard key pair per tunnel (x25519; the public half is not secret);
//   - the ledger's passwords (ingest, auditor, replication, Redis) and its checkpoint signing
//     key (ed25519; PKCS#8 PEM, with the SPKI PEM public half, which auditors get);
//   - an EC2 node's SSH host key (ed25519, OpenSSH format), so that its first deploy already
//     pins it: the public half is the node's pinned hostKey (components/aws/nixos-instance.ts).
// Generated once, at create, and kept until the resource is replaced: rotating a key is
// `pulumi up --replace <urn>`, or setting the `nublar:bfdKey` secret in the stack config.
import * as pulumi from "@pulumi/pulumi";

interface KeyInputs {
    kind: "bfd" | "wireguard" | "password" | "ed25519" | "ssh-host";
}

interface KeyOutputs extends KeyInputs {
    /** The secret: "0x<hex>" for BFD, base64 of the raw private key for WireGuard. */
    value: string;
    /** The public half: WireGuard's (base64), ed25519's (SPKI PEM), ssh-host's (an OpenSSH line); empty for BFD and passwords. */
    publicKey: string;
}

const keyProvider: pulumi.dynamic.ResourceProvider<KeyInputs, KeyOutputs> = {
    async create(inputs) {
        const crypto = require("node:crypto") as typeof import("node:crypto");
        if (inputs.kind === "bfd") {
            return { id: crypto.randomUUID(), outs: { ...inputs, value: `0x${crypto.randomBytes(20).toString("hex")}`, publicKey: "" } };
        }
        if (inputs.kind === "password") {
            return { id: crypto.randomUUID(), outs: { ...inputs, value: crypto.randomBytes(24).toString("base64url"), publicKey: "" } };
        }
        if (inputs.kind === "ed25519") {
            const pair = crypto.generateKeyPairSync("ed25519");
            return {
                id: crypto.randomUUID(),
                outs: { ...inputs, value: pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(), publicKey: pair.publicKey.export({ format: "pem", type: "spki" }).toString() },
            };
        }
        if (inputs.kind === "ssh-host") {
            // ssh2 writes OpenSSH's own private key format, which sshd reads.
            const { utils } = require("ssh2") as typeof import("ssh2");
            const pair = utils.generateKeyPairSync("ed25519");
            return { id: crypto.randomUUID(), outs: { ...inputs, value: pair.private, publicKey: pair.public } };
        }
        const { privateKey, publicKey } = crypto.generateKeyPairSync("x25519");
        // The raw 32-byte keys are the last 32 bytes of their DER (PKCS#8 / SPKI) encodings.
        const raw = (der: Buffer) => der.subarray(der.length - 32).toString("base64");
        return {
            id: crypto.randomUUID(),
            outs: { ...inputs, value: raw(privateKey.export({ format: "der", type: "pkcs8" })), publicKey: raw(publicKey.export({ format: "der", type: "spki" })) },
        };
    },
    async diff(_id, olds, news) {
        return { changes: olds.kind !== news.kind, replaces: olds.kind !== news.kind ? ["kind"] : [] };
    },
};

export class GeneratedKey extends pulumi.dynamic.Resource {
    declare readonly value: pulumi.Output<string>;
    declare readonly publicKey: pulumi.Output<string>;
    constructor(name: string, kind: KeyInputs["kind"], opts?: pulumi.CustomResourceOptions) {
        super(keyProvider, name, { kind, value: undefined, publicKey: undefined }, { ...opts, additionalSecretOutputs: ["value"] }, "nixos", "GeneratedKey");
    }
}
