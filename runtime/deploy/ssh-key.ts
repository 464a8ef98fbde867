// An ed25519 key pair in OpenSSH's own formats (the private key file sshd reads, the public line
// pinned as a node's host key), from ssh2.
//
// ssh2 1.17's generateKeyPairSync writes the 32-byte public key without its leading zero bytes,
// so about one key in 256 comes out 31 bytes long: a private key file that neither ssh2 nor
// sshd can read ("Malformed OpenSSH private key"). Such a pair is drawn again; what is returned
// always parses, and its two halves are one key.
import { utils } from "ssh2";

export interface SshKeyPair {
    /** The private key, as OpenSSH writes it (-----BEGIN OPENSSH PRIVATE KEY-----). */
    private: string;
    /** The public key line: `ssh-ed25519 <base64>`. */
    public: string;
}

/** Whether a pair from ssh2 is whole: both halves parse, and they are the same key. */
export function wholeSshKeyPair(pair: SshKeyPair): boolean {
    const priv = utils.parseKey(pair.private);
    const pub = utils.parseKey(pair.public);
    if (priv instanceof Error || pub instanceof Error) return false;
    const [a, b] = [Array.isArray(priv) ? priv[0] : priv, Array.isArray(pub) ? pub[0] : pub];
    return a.type === "ssh-ed25519" && a.getPublicSSH().equals(b.getPublicSSH()) && a.getPublicSSH().length === 51;
}

/** A new ed25519 key pair that OpenSSH and ssh2 both read. */
export function newSshKeyPair(): SshKeyPair {
    for (let attempt = 0; attempt < 32; attempt++) {
        const pair = utils.generateKeyPairSync("ed25519");
        if (wholeSshKeyPair(pair)) return { private: pair.private, public: pair.public };
    }
    // 32 malformed draws in a row (odds about 2^-256) means ssh2 itself is broken.
    throw new Error("ssh2 produced no readable ed25519 key in 32 tries: check the installed ssh2 version");
}
