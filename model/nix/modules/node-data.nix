# The node's data (the bundle's node.nix) as an option, so that every other module reads
# the same attribute set instead of importing the file itself: configuration.nix sets it
# once, and a test or another deployment tool can set it from elsewhere.
{ lib, ... }:
{
  options.nublar.node = lib.mkOption {
    # Plain data written by model/nix/render.ts; its shape is documented there (NixosNodeData).
    type = lib.types.attrs;
    description = "This node's plan: name, role, loopback, uplinks, overlays and peers, ingress ports, keys, profile.";
  };
}
