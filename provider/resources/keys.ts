// Keys that nublar generates itself, kept as Pulumi secrets: encrypted in the stack's state,
// shown as [secret] in every preview and log, and delivered to nodes only into /run/keys.
//   - the site's BFD authentication key (meticulous keyed SHA1, 20 bytes);
//   - each node's WireGuard key pair per tunnel (x25519; the public half is not secret);
//   - the ledger's passwords and its checkpoint signing key (ed25519; PKCS#8 PEM, with the SPKI
//     PEM public half, which auditors get);
//   - an EC2 node's SSH host key (ed25519, OpenSSH format), so that its first deploy already pins it.
// Generated once, at create, and kept until the resource is replaced: rotating a key is
// `pulumi up --replace <urn>`, or setting the `nublar:bfdKey` secret in the stack config.
import * as crypto from "node:crypto";
import { z } from "zod";
import type { Handler } from "../handler";
import { RESOURCE_TYPES } from "../tokens";

export const KEY_KINDS = ["bfd", "wireguard", "password", "ed25519", "ssh-host"] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

export interface KeyInputs {
    kind: KeyKind;
}

export interface KeyOutputs extends KeyInputs {
    /** The secret: "0x<hex>" for BFD, base64 of the raw private key for WireGuard. */
    value: string;
    /** The public half: WireGuard's (base64), ed25519's (SPKI PEM), ssh-host's (an OpenSSH line); empty for BFD and passwords. */
    publicKey: string;
}

/** A new key of a kind: its secret and its public half. */
export function generateKey(kind: KeyKind): { value: string; publicKey: string } {
    switch (kind) {
        case "bfd":
            return { value: `0x${crypto.randomBytes(20).toString("hex")}`, publicKey: "" };
        case "password":
            return { value: crypto.randomBytes(24).toString("base64url"), publicKey: "" };
        case "ed25519": {
            const pair = crypto.generateKeyPairSync("ed25519");
            return { value: pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(), publicKey: pair.publicKey.export({ format: "pem", type: "spki" }).toString() };
        }
        case "ssh-host": {
            // OpenSSH's own private key format, which sshd reads (never one of ssh2's malformed ones).
            const { newSshKeyPair } = require("../../runtime/deploy/ssh-key") as typeof import("../../runtime/deploy/ssh-key");
            const pair = newSshKeyPair();
            return { value: pair.private, publicKey: pair.public };
        }
        case "wireguard": {
            const { privateKey, publicKey } = crypto.generateKeyPairSync("x25519");
            // The raw 32-byte keys are the last 32 bytes of their DER (PKCS#8 / SPKI) encodings.
            const raw = (der: Buffer) => der.subarray(der.length - 32).toString("base64");
            return { value: raw(privateKey.export({ format: "der", type: "pkcs8" })), publicKey: raw(publicKey.export({ format: "der", type: "spki" })) };
        }
    }
}

export const generatedKey: Handler<KeyInputs, KeyOutputs> = {
    schema: z.object({ kind: z.enum(KEY_KINDS) }),
    secretOutputs: ["value"],
    diff(olds, news) {
        const changed = olds.kind !== news.kind;
        return { changes: changed, replaces: changed ? ["kind"] : [] };
    },
    async create(i) {
        return { id: crypto.randomUUID(), outs: { kind: i.kind, ...generateKey(i.kind) } };
    },
};

export const KEY_HANDLERS = { [RESOURCE_TYPES.generatedKey]: generatedKey };
