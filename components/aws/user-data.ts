// The first-boot script of an EC2 NixOS node (the NixOS AMI's amazon-init runs user data that
// starts with "#!"). It does only what must exist before the first deploy can reach the node:
//   - the SSH host key nublar generated, so that the deploy pins it from the first connection;
//   - the operators' keys for root;
//   - /etc/nixos/hardware-configuration.nix: the AMI's EC2 module, and the uplink NICs named as
//     the plan names them (up0, up1, ...) by their MAC addresses. The deploy's configuration.nix
//     imports it (nix/README.md).
// Everything else arrives with the deploy. Pure: the component passes the values in.

export interface UserDataInput {
    site: string;
    node: string;
    /** OpenSSH ed25519 private key (secret) and its public line. */
    hostPrivateKey: string;
    hostPublicKey: string;
    authorizedKeys: string[];
    /** ifname -> MAC of the ENI that the plan calls so. */
    uplinkMacs: Record<string, string>;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The NixOS hardware configuration of an EC2 node. */
export function ec2HardwareConfiguration(input: Pick<UserDataInput, "site" | "node" | "uplinkMacs">): string {
    const macs = Object.entries(input.uplinkMacs).map(([ifname, mac]) => {
        const m = mac.toLowerCase();
        if (!/^up\d+$/.test(ifname) || !MAC.test(m)) throw new Error(`node '${input.node}': cannot name NIC '${ifname}' by MAC '${mac}'`);
        return `    ${ifname} = "${m}";`;
    });
    return [
        `# EC2 hardware of ${input.node} (site ${input.site}): written at first boot by nublar (components/aws/user-data.ts).`,
        "{ modulesPath, ... }:",
        "{",
        '  imports = [ "${modulesPath}/virtualisation/amazon-image.nix" ];',
        "  nublar.overlay.uplinkMacs = {",
        ...macs,
        "  };",
        "}",
        "",
    ].join("\n");
}

/** A here-document body, refused if it could end the here-document early. */
function heredoc(tag: string, body: string): string {
    if (body.split("\n").some((l) => l.trim() === tag)) throw new Error(`user data: a value contains the line '${tag}'`);
    return `<<'${tag}'\n${body.endsWith("\n") ? body : `${body}\n`}${tag}`;
}

export function renderUserData(input: UserDataInput): string {
    for (const k of input.authorizedKeys) if (/[\r\n]/.test(k)) throw new Error(`node '${input.node}': an authorized key spans lines`);
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+( .*)?$/.test(input.hostPublicKey.trim())) throw new Error(`node '${input.node}': the host key is not an ed25519 public key line`);
    return [
        "#!/bin/sh",
        `# First boot of ${input.node} (site ${input.site}), written by nublar (components/aws/user-data.ts).`,
        "set -eu",
        "umask 077",
        "mkdir -p /etc/ssh /root/.ssh /etc/nixos",
        `cat > /etc/ssh/ssh_host_ed25519_key ${heredoc("NUBLAR_KEY", input.hostPrivateKey)}`,
        `cat > /etc/ssh/ssh_host_ed25519_key.pub ${heredoc("NUBLAR_KEY", input.hostPublicKey)}`,
        "chmod 600 /etc/ssh/ssh_host_ed25519_key",
        "chmod 644 /etc/ssh/ssh_host_ed25519_key.pub",
        `cat > /root/.ssh/authorized_keys ${heredoc("NUBLAR_KEYS", input.authorizedKeys.join("\n"))}`,
        "chmod 600 /root/.ssh/authorized_keys",
        `cat > /etc/nixos/hardware-configuration.nix ${heredoc("NUBLAR_NIX", ec2HardwareConfiguration(input))}`,
        "chmod 644 /etc/nixos/hardware-configuration.nix",
        // sshd may have started before this script, with keys of its own making.
        "systemctl restart sshd.service || true",
        "",
    ].join("\n");
}
