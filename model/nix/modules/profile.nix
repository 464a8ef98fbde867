# Versioned system profiles: every deploy is a NixOS generation labelled from the site's
# revision, recorded in /etc/nublar/profile.json, and enough generations are kept that a
# rollback always has one to go back to.
{ config, lib, ... }:
let
  cfg = config.nublar.profile;
  node = config.nublar.node;
  pruneCommand = "${config.nix.package}/bin/nix-env --profile /nix/var/nix/profiles/system --delete-generations +${toString cfg.keepGenerations}";
in
{
  imports = [ ./node-data.nix ];

  options.nublar.profile = {
    enable = lib.mkEnableOption "nublar's versioned system profiles";

    keepGenerations = lib.mkOption {
      # At least 2: the running generation and one to roll back to.
      type = lib.types.ints.between 2 1000;
      default = 10;
      description = "System generations kept (boot menu entries and garbage-collection roots).";
    };
  };

  config = lib.mkIf cfg.enable {
    system.nixos.label = node.profile.label;
    system.configurationRevision = node.profile.revision;

    # Whichever boot loader the machine's hardware configuration enables.
    boot.loader.grub.configurationLimit = cfg.keepGenerations;
    boot.loader.systemd-boot.configurationLimit = cfg.keepGenerations;

    # nix-collect-garbage's --delete-older-than would delete every old generation of a node
    # that was not deployed for a while, leaving nothing to roll back to. Instead keep the
    # newest N generations by count, then collect what nothing references.
    nix.gc = {
      automatic = true;
      dates = "weekly";
      options = "";
    };
    systemd.services.nix-gc.preStart = pruneCommand;

    environment.etc."nublar/profile.json".text = builtins.toJSON {
      site = node.site;
      node = node.name;
      label = node.profile.label;
      revision = node.profile.revision;
    };

    # Set once when a machine is installed and never changed after (NixOS's data-format
    # compatibility marker); a machine's own configuration may override it.
    system.stateVersion = lib.mkDefault "24.05";
  };
}
