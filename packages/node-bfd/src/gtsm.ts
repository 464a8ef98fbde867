// GTSM for single-hop BFD (RFC 5881 §5): accept packets to port 3784 only with a hop
// limit (TTL) of 255, i.e. sent from a directly connected neighbour. Node's dgram cannot
// read a received packet's hop limit, so the kernel enforces it with this nftables table,
// installed by the agent (and by the NixOS module) in the node's network namespace.

export const GTSM_TABLE = "nublar_bfd_gtsm";

/** An nftables ruleset (for `nft -f -`) that drops single-hop BFD not sent with hop limit 255. */
export function gtsmRuleset(port = 3784): string {
    return [
        `table inet ${GTSM_TABLE} {`,
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        `    meta nfproto ipv6 udp dport ${port} ip6 hoplimit != 255 counter drop`,
        `    meta nfproto ipv4 udp dport ${port} ip ttl != 255 counter drop`,
        "  }",
        "}",
        "",
    ].join("\n");
}
