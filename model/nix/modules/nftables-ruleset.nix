# The node's nftables ruleset, from its data (node.nix). Pure (builtins only) so that tests
# evaluate it without nixpkgs and check it with `nft -c`.
#
# Interfaces are matched by name (iifname), never by index (iif): the ruleset is checked at
# build time in a sandbox where the node's interfaces do not exist.
node:
let
  join = builtins.concatStringsSep;
  set = items: "{ ${join ", " (map toString items)} }";
  lines = join "\n";
  optional = cond: item: if cond then [ item ] else [ ];

  # GTSM for single-hop BFD (RFC 5881 section 5): a packet to port 3784 that was not sent
  # with hop limit 255 did not come from a directly connected neighbour. This table is
  # byte for byte what nublar-agent installs itself (packages/node-bfd/src/gtsm.ts, checked
  # by model/nix/render.test.ts): the agent's replace and NixOS's reload (which flushes the whole
  # ruleset) leave the same table behind.
  gtsm = ''
    table inet nublar_bfd_gtsm {
      chain input {
        type filter hook input priority filter; policy accept;
        meta nfproto ipv6 udp dport 3784 ip6 hoplimit != 255 counter drop
        meta nfproto ipv4 udp dport 3784 ip ttl != 255 counter drop
      }
    }
  '';

  # Neighbour discovery, MLD (switches with MLD snooping drop multicast, and so NDP, for
  # hosts that never report) and the error messages path MTU discovery and traceroute need.
  icmpv6Types = [
    "destination-unreachable" "packet-too-big" "time-exceeded" "parameter-problem"
    "echo-request" "echo-reply"
    "nd-router-solicit" "nd-router-advert" "nd-neighbor-solicit" "nd-neighbor-advert"
    "mld-listener-query" "mld-listener-report" "mld-listener-done" "mld2-listener-report"
  ];

  # Single-hop BFD: gateway sessions with the provider router on each uplink's /64, path
  # sessions with the peers inside each tunnel's /64.
  singleHopBfd =
    map (u: ''iifname "${u.ifname}" ip6 saddr ${u.prefix} udp dport 3784 accept'') node.uplinks
    ++ map (o: ''iifname "${o.ifname}" ip6 saddr ${o.prefix} udp dport 3784 accept'') node.overlays;

  # Tunnel packets (WireGuard or VXLAN) arrive over the provider's uplink, from other
  # nodes' uplinks on that provider: all of them are in the provider's block.
  tunnels = map
    (o: ''iifname "${o.underlay.ifname}" ip6 saddr ${o.providerPrefix} udp dport ${toString o.port} accept'')
    node.overlays;

  # Nginx on edge nodes serves clients from anywhere.
  ingress = optional (node.ingressPorts != [ ]) "tcp dport ${set node.ingressPorts} accept";
  # This node as an upstream member: edge nodes' Nginx dials its loopback from theirs.
  upstream = optional (node.upstreamPorts != [ ])
    "ip6 saddr ${node.loopbackPrefix} tcp dport ${set node.upstreamPorts} accept";

  # Hubs carry spoke-to-spoke traffic between tunnels, and nothing else.
  hubForwarding = optional node.hub ''iifname "ov*" oifname "ov*" accept'';

  indent = prefix: rules: lines (map (r: "${prefix}${r}") rules);

  input = [
    "ct state invalid drop"
    "ct state established,related accept"
    ''iifname "lo" accept''
    "icmpv6 type ${set icmpv6Types} accept"
  ] ++ singleHopBfd ++ [
    # Multihop BFD, from the site's blocks only.
    "ip6 saddr ${set node.sitePrefixes} udp dport 4784 accept"
  ] ++ tunnels ++ [
    "tcp dport ${toString node.sshPort} accept"
  ] ++ ingress ++ upstream;

  forward = [
    "ct state established,related accept"
    "icmpv6 type ${set icmpv6Types} accept"
  ] ++ hubForwarding;

  firewall = ''
    table inet nublar_firewall {
      chain input {
        type filter hook input priority filter; policy drop;
    ${indent "    " input}
      }
      chain forward {
        type filter hook forward priority filter; policy drop;
    ${indent "    " forward}
      }
    }
  '';
in
gtsm + firewall
