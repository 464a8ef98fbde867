# The node's packet filter: nftables only, one ruleset rendered from the node's data
# (./nftables-ruleset.nix), including BFD's GTSM rule.
{ config, lib, ... }:
let
  cfg = config.nublar.firewall;
in
{
  imports = [ ./node-data.nix ];

  options.nublar.firewall.enable = lib.mkEnableOption "nublar's nftables ruleset (drops unplanned inbound traffic)";

  config = lib.mkIf cfg.enable {
    # NixOS's own firewall would be a second ruleset with a different idea of what is open;
    # this one is the whole firewall.
    networking.firewall.enable = false;
    networking.nftables = {
      enable = true;
      ruleset = import ./nftables-ruleset.nix config.nublar.node;
    };
  };
}
