# The start script of one VXLAN overlay (the lab's transport, lab/overlay.ts does
# the same with `ip`): a VXLAN device over the provider's uplink, the node's overlay address,
# and one all-zero FDB entry per peer (head-end replication: no multicast needed; remote MACs
# are learned from traffic). Pure (builtins only) so that tests can evaluate it without
# nixpkgs; overlay.nix puts iproute2 on the unit's PATH.
overlay:
let
  peerLines = map
    (peer: "bridge fdb append 00:00:00:00:00:00 dev ${overlay.ifname} dst ${peer.endpoint}")
    overlay.peers;
in
''
  set -eu
  # The VXLAN socket binds the local address, which it cannot do while that address is
  # still tentative (duplicate address detection on the uplink): wait up to 10 s.
  tries=0
  while [ -n "$(ip -6 addr show dev ${overlay.underlay.ifname} tentative)" ] && [ "$tries" -lt 50 ]; do
    sleep 0.2
    tries=$((tries + 1))
  done
  ip link del dev ${overlay.ifname} 2>/dev/null || true
  ip link add ${overlay.ifname} address ${overlay.mac} type vxlan id ${toString overlay.vni} local ${overlay.underlay.local} dstport ${toString overlay.port} dev ${overlay.underlay.ifname}
  ip link set dev ${overlay.ifname} mtu ${toString overlay.mtu} up
  ip -6 addr replace ${overlay.address}/64 dev ${overlay.ifname} nodad
  ${builtins.concatStringsSep "\n" peerLines}
''
