// The first boot of an EC2 NixOS node, from its user data. It does only what must exist before
// the first deploy can reach the node, and only once:
//   - first of all, at every boot until the first deploy (the hardware configuration holds it
//     from then on): the instance metadata service, which serves the user data and so the host's
//     private key, for root only (nftables, or iptables where the image has no nft), and the
//     image's copy of the user data (/etc/ec2-metadata/user-data) rewritten without the key.
//     If no rule can be installed, the script stops there: no key, nothing else;
//   - the SSH host key nublar generated, so that the deploy pins it from the first connection.
//     NixOS's own apply-ec2-data installs it before sshd starts, from the SSH_HOST_ED25519_KEY
//     lines at the end (after `exit`, where the shell never reads); the script installs it too,
//     and restarts sshd, where an older image did not;
//   - the operators' keys for root, until the first deploy declares them (from then on sshd
//     reads the declared keys only: a key revoked later must not linger);
//   - the uplink NICs named as the plan names them (up0, up1, ...) by MAC address, at every
//     boot until the first deploy, waiting for interfaces attached after launch (NixOS's udev
//     rule then names them as they appear);
//   - /etc/nixos/hardware-configuration.nix, which the deploy's configuration.nix imports
//     (model/nix/README.md): the AMI's EC2 module, the NIC names, and EC2 specifics (below).
// The image's amazon-init runs a "#!" script at every boot; a marker file keeps the key and file
// writing to the first, and the hardware configuration turns amazon-init off once nublar owns
// the node. amazon-init's PATH has no iproute2: the script takes the system's.
// Pure: the component passes the values in.

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

/** EC2's limit on user data, before base64. */
export const USER_DATA_MAX_BYTES = 16 * 1024;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const DONE = "/var/lib/nublar/first-boot.done";

function macs(input: Pick<UserDataInput, "node" | "uplinkMacs">): [string, string][] {
    return Object.entries(input.uplinkMacs).map(([ifname, mac]) => {
        const m = mac.toLowerCase();
        if (!/^up\d+$/.test(ifname) || !MAC.test(m)) throw new Error(`node '${input.node}': cannot name NIC '${ifname}' by MAC '${mac}'`);
        return [ifname, m];
    });
}

/** The NixOS hardware configuration of an EC2 node. */
export function ec2HardwareConfiguration(input: Pick<UserDataInput, "site" | "node" | "uplinkMacs">): string {
    return [
        `# EC2 hardware of ${input.node} (site ${input.site}): written at first boot by nublar (components/aws/user-data.ts).`,
        "{ modulesPath, lib, options, ... }:",
        "{",
        '  imports = [ "${modulesPath}/virtualisation/amazon-image.nix" ];',
        "  # UEFI images (Graviton, and some x86 types) boot from an EFI partition.",
        '  ec2.efi = builtins.pathExists "/sys/firmware/efi";',
        "  nublar.overlay.uplinkMacs = {",
        ...macs(input).map(([ifname, mac]) => `    ${ifname} = "${mac}";`),
        "  };",
        "  # From here on the deploy owns the node: no more user-data scripts, and root's declared keys",
        "  # only (NixOS 24.11 and later; a rollback to the image's own system still reads the",
        "  # launch-time file, so that a failed first deploy never locks the operators out).",
        "  virtualisation.amazon-init.enable = false;",
        "  services.openssh = lib.optionalAttrs (options.services.openssh ? authorizedKeysInHomedir) { authorizedKeysInHomedir = false; };",
        "  # The Amazon Time Sync Service over IPv6 (the image's default is its IPv4 address).",
        '  networking.timeServers = lib.mkForce [ "fd00:ec2::123" ];',
        "  # The user data holds the host's private key: only root may ask the instance metadata service",
        "  # (the first-boot script installed the same table at every boot until now), and the image",
        "  # copies the user data to /etc/ec2-metadata no more (the script left a copy without the key).",
        "  networking.nftables.tables.nublar-imds = {",
        '    family = "inet";',
        "    content = ''",
        ...IMDS_NFT_CHAIN.map((l) => `      ${l}`),
        "    '';",
        "  };",
        "  systemd.services.fetch-ec2-metadata.enable = false;",
        "}",
        "",
    ].join("\n");
}

/** The instance metadata service's addresses: IPv4 (where an instance has it) and IPv6. */
export const IMDS_ADDRESSES = { ipv4: "169.254.169.254", ipv6: "fd00:ec2::254" } as const;
/** The chain that lets only root (uid 0) reach the metadata service. */
const IMDS_NFT_CHAIN = [
    "chain output {",
    "  type filter hook output priority 0; policy accept;",
    `  ip daddr ${IMDS_ADDRESSES.ipv4} meta skuid != 0 drop`,
    `  ip6 daddr ${IMDS_ADDRESSES.ipv6} meta skuid != 0 drop`,
    "}",
];
/** The nftables table of the hardware configuration and the first-boot script, as nft reads it (tests check it with `nft -c`). */
export const IMDS_NFT_TABLE = `table inet nublar-imds {\n${IMDS_NFT_CHAIN.map((l) => `  ${l}\n`).join("")}}\n`;
/** Where NixOS's fetch-ec2-metadata leaves the user data (root only, 0600), and amazon-init runs it from. */
export const IMAGE_USER_DATA = "/etc/ec2-metadata/user-data";

/** A here-document body, refused if it could end the here-document early. */
function heredoc(tag: string, body: string): string {
    if (body.split("\n").some((l) => l.trim() === tag)) throw new Error(`user data: a value contains the line '${tag}'`);
    return `<<'${tag}'\n${body.endsWith("\n") ? body : `${body}\n`}${tag}`;
}

export function renderUserData(input: UserDataInput): string {
    // NixOS reads the SSH_HOST_* lines with sed, turning every '|' in the user data into a new
    // line: nothing else may contain one.
    for (const k of input.authorizedKeys) if (/[\r\n|]/.test(k)) throw new Error(`node '${input.node}': an authorized key spans lines or holds '|'`);
    const pub = input.hostPublicKey.trim();
    // Quoted into the script as '...': no quote, '|' or new line can be in it.
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+( [A-Za-z0-9@._:-]*)?$/.test(pub)) throw new Error(`node '${input.node}': the host key is not an ed25519 public key line`);
    const priv = input.hostPrivateKey.trim();
    if (priv.includes("|")) throw new Error(`node '${input.node}': the host's private key holds '|'`);
    const pairs = macs(input);
    // Idempotent, so it runs at every boot until the first deploy: an interface attached after
    // launch may appear late, and a reboot undoes names given by hand.
    const rename = [
        "name_nic() {",
        '  for _ in $(seq 120); do',
        "    for dev in /sys/class/net/*; do",
        '      if [ "$(cat "$dev/address" 2>/dev/null)" = "$2" ]; then',
        '        [ "${dev##*/}" = "$1" ] && return 0',
        '        if ip link set dev "${dev##*/}" down && ip link set dev "${dev##*/}" name "$1" && ip link set dev "$1" up; then return 0; fi',
        '        echo "nublar: cannot name ${dev##*/} $1" >&2; return 1',
        "      fi",
        "    done",
        "    sleep 1",
        "  done",
        '  echo "nublar: no interface with MAC $2 (for $1) after 120 s" >&2; return 1',
        "}",
        ...pairs.map(([ifname, mac]) => `name_nic ${ifname} ${mac}`),
    ];
    // Before anything else, at every boot until the first deploy (nothing keeps a rule over a
    // reboot until then): non-root processes must not read the user data from the metadata
    // service. One nft transaction (replacing the table if it is there), else iptables' owner
    // match; neither: stop here, before the key or anything else is handled.
    const blockImds = [
        "imds_ipt() {",
        '  if "$1" -w -C OUTPUT -d "$2" -m owner ! --uid-owner 0 -j DROP 2>/dev/null; then return 0; fi',
        '  "$1" -w -I OUTPUT 1 -d "$2" -m owner ! --uid-owner 0 -j DROP',
        "}",
        `if nft -f - 2>/dev/null ${heredoc("NUBLAR_NFT", `add table inet nublar-imds\ndelete table inet nublar-imds\n${IMDS_NFT_TABLE}`)}`,
        "then :",
        `elif imds_ipt iptables ${IMDS_ADDRESSES.ipv4} && imds_ipt ip6tables ${IMDS_ADDRESSES.ipv6}; then :`,
        "else",
        '  echo "nublar: cannot block the instance metadata service to non-root processes (no nft, no iptables owner match): stopping before the host key" >&2',
        "  exit 1",
        "fi",
    ];
    // The image fetched the user data, key and all, to a root-only file at this boot, and runs
    // it from there: rewrite it without the key. A new file renamed over it, so that the shell
    // running this script reads on from the old one, which goes when the shell is done.
    // ([:], not ':': apply-ec2-data takes every line holding 'SSH_HOST_ED25519_KEY:' for the key.)
    const scrub = [
        `if [ -f ${IMAGE_USER_DATA} ] && grep -q '^SSH_HOST_ED25519_KEY[:]' ${IMAGE_USER_DATA}; then`,
        `  sed -e "/<<'NUBLAR_KEY'\\$/,/^NUBLAR_KEY\\$/d" -e '/^SSH_HOST_ED25519_KEY[:]/d' ${IMAGE_USER_DATA} > ${IMAGE_USER_DATA}.nublar`,
        `  chmod 600 ${IMAGE_USER_DATA}.nublar`,
        `  mv -f ${IMAGE_USER_DATA}.nublar ${IMAGE_USER_DATA}`,
        "fi",
    ];
    const script = [
        "#!/bin/sh",
        `# First boot of ${input.node} (site ${input.site}), written by nublar (components/aws/user-data.ts).`,
        "set -eu",
        "PATH=/run/current-system/sw/bin:$PATH",
        "export PATH",
        "umask 077",
        ...blockImds,
        ...scrub,
        ...rename,
        `if [ -e ${DONE} ]; then exit 0; fi`,
        "mkdir -p /etc/ssh /root/.ssh /etc/nixos /var/lib/nublar",
        `pub='${pub}'`,
        // apply-ec2-data has installed it before sshd started, unless this image predates that.
        'if [ "$(cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null)" != "$pub" ]; then',
        `  cat > /etc/ssh/ssh_host_ed25519_key ${heredoc("NUBLAR_KEY", priv)}`,
        '  printf "%s\\n" "$pub" > /etc/ssh/ssh_host_ed25519_key.pub',
        "  chmod 600 /etc/ssh/ssh_host_ed25519_key",
        "  chmod 644 /etc/ssh/ssh_host_ed25519_key.pub",
        '  if ! systemctl restart sshd.service; then echo "nublar: sshd did not restart" >&2; fi',
        "fi",
        `cat > /root/.ssh/authorized_keys ${heredoc("NUBLAR_KEYS", input.authorizedKeys.join("\n"))}`,
        "chmod 600 /root/.ssh/authorized_keys",
        `cat > /etc/nixos/hardware-configuration.nix ${heredoc("NUBLAR_NIX", ec2HardwareConfiguration(input))}`,
        "chmod 644 /etc/nixos/hardware-configuration.nix",
        `touch ${DONE}`,
        "exit 0",
        // Read by NixOS's apply-ec2-data (sed), never by the shell.
        `SSH_HOST_ED25519_KEY:${priv.split("\n").join("|")}`,
        `SSH_HOST_ED25519_KEY_PUB:${pub}`,
        "",
    ].join("\n");
    const bytes = Buffer.byteLength(script);
    if (bytes > USER_DATA_MAX_BYTES) throw new Error(`node '${input.node}': the first-boot script is ${bytes} bytes, over EC2's ${USER_DATA_MAX_BYTES}-byte user data limit (fewer operator keys?)`);
    if (script.split("\n").some((l) => l.includes("|") && !l.startsWith("SSH_HOST_ED25519_KEY:"))) throw new Error(`node '${input.node}': '|' outside the host key line of the user data`);
    // apply-ec2-data (sed) takes every line holding these for the key: one each, the last two.
    for (const tag of ["SSH_HOST_ED25519_KEY:", "SSH_HOST_ED25519_KEY_PUB:"]) {
        if (script.split("\n").filter((l) => l.includes(tag)).length !== 1) throw new Error(`node '${input.node}': '${tag}' not on exactly one line of the user data`);
    }
    return script;
}
