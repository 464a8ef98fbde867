# gate-2 of site isla-nublar, written by nublar (model/nix/render.ts); do not edit.
# On the node: nixos-rebuild switch -I nixos-config=<this folder>/configuration.nix
{ ... }:
{
  imports = [
    ./modules/default.nix
  ]
  # The machine's own hardware (disks, boot loader, NIC names) is not part of the site plan.
  ++ (if builtins.pathExists /etc/nixos/hardware-configuration.nix then [ /etc/nixos/hardware-configuration.nix ] else [ ]);

  nublar.node = import ./node.nix;
  networking.hostName = "gate-2";

  services.nublar-agent = {
    enable = true;
    configFile = ./agent.json;
    bfdKeyFile = "/run/keys/nublar-bfd.key";
  };
  nublar.overlay.enable = true;
  nublar.firewall.enable = true;
  nublar.sshd.enable = true;
  nublar.profile.enable = true;
  nublar.ingress = {
    enable = true;
    configFile = ./nginx.conf;
    balancer = ./balancer.lua;
  };
}
