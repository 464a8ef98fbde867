# Hardened sshd: keys only, ed25519 host key only, modern algorithms. Deploys log in as root
# with the keys listed in the node's data.
{ config, lib, ... }:
let
  cfg = config.nublar.sshd;
  node = config.nublar.node;
in
{
  imports = [ ./node-data.nix ];

  options.nublar.sshd.enable = lib.mkEnableOption "nublar's hardened sshd";

  config = lib.mkIf cfg.enable {
    services.openssh = {
      enable = true;
      ports = [ node.sshPort ];
      # nftables.nix opens the port; NixOS's firewall is off.
      openFirewall = false;
      # The key the site pins (site model: nodes[].ssh.hostKey) is ed25519: no other host key.
      hostKeys = [{ path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; }];
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
        X11Forwarding = false;
        AllowAgentForwarding = false;
        MaxAuthTries = 3;
        LoginGraceTime = 20;
        # Post-quantum hybrid first, then X25519. Only what every OpenSSH NixOS ships knows
        # (sshd refuses to start on an unknown name).
        KexAlgorithms = [ "sntrup761x25519-sha512@openssh.com" "curve25519-sha256" "curve25519-sha256@libssh.org" ];
        Ciphers = [ "chacha20-poly1305@openssh.com" "aes256-gcm@openssh.com" "aes128-gcm@openssh.com" ];
        Macs = [ "hmac-sha2-512-etm@openssh.com" "hmac-sha2-256-etm@openssh.com" ];
      };
    };
    users.users.root.openssh.authorizedKeys.keys = node.authorizedKeys;
  };
}
