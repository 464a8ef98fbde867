# Everything a nublar node runs. Each module has its own enable switch; the bundle's
# configuration.nix turns on the ones the node needs.
{
  imports = [
    ./node-data.nix
    ./nublar-agent.nix
    ./nginx.nix
    ./overlay.nix
    ./nftables.nix
    ./sshd.nix
    ./profile.nix
  ];
}
