# The node's addresses and its overlay tunnels, from the plan (model/network/site-plan.ts):
# uplink /64 addresses, the loopback /128 on `lo`, and one tunnel per provider (WireGuard in
# production, VXLAN where the kernel has no WireGuard).
#
# No routes here, on purpose: every route (defaults, loopbacks over the tunnels, the
# underlay) is installed by nublar-agent, gated by BFD. Anything NixOS or the kernel added on
# its own (router advertisements, WireGuard's allowed-IPs routes) would bypass that gating.
{ config, lib, pkgs, ... }:
let
  cfg = config.nublar.overlay;
  node = config.nublar.node;

  wireguardOverlays = builtins.filter (o: o.transport == "wireguard") node.overlays;
  vxlanOverlays = builtins.filter (o: o.transport == "vxlan") node.overlays;

  wireguardInterface = o: lib.nameValuePair o.ifname {
    ips = [ "${o.address}/64" ];
    listenPort = o.port;
    # A path string: the private key never enters the store (model/nix/render.ts names the file).
    privateKeyFile = o.privateKeyFile;
    mtu = o.mtu;
    # Routes are the agent's job; the peers' overlay addresses are on-link through `ips`.
    allowedIPsAsRoutes = false;
    peers = map
      (p: {
        publicKey = p.publicKey;
        endpoint = "[${p.endpoint}]:${toString p.endpointPort}";
        # Cryptokey routing: what this peer may send from and what is sent to it (rendered,
        # see model/nix/render.ts for why a spoke's hub gets the loopback /64).
        allowedIPs = p.allowedIPs;
        # Spokes may sit behind stateful provider equipment; keep the path warm.
        persistentKeepalive = 25;
      })
      o.peers;
  };

  vxlanService = o: lib.nameValuePair "nublar-vxlan-${o.ifname}" {
    description = "nublar overlay ${o.ifname}: VXLAN over ${o.underlay.ifname} (${o.provider})";
    # The uplink's address must exist first (scripted networking's per-interface unit).
    requires = [ "network-addresses-${o.underlay.ifname}.service" ];
    after = [ "network-addresses-${o.underlay.ifname}.service" ];
    before = [ "network-online.target" "nublar-agent.service" ];
    wantedBy = [ "multi-user.target" "network-online.target" ];
    path = [ pkgs.iproute2 ];
    # A oneshot that stays "active": a switch restarts it (and so re-creates the tunnel,
    # taking its BFD sessions down) only when this overlay's plan changed.
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStop = "${pkgs.iproute2}/bin/ip link del dev ${o.ifname}";
    };
    script = import ./vxlan-script.nix o;
  };

  # No router advertisements (they would install default routes the agent does not gate)
  # and no SLAAC addresses (every address comes from the plan).
  noAutoconf = ifname: {
    "net.ipv6.conf.${ifname}.accept_ra" = 0;
    "net.ipv6.conf.${ifname}.autoconf" = 0;
  };
  planned = map (u: u.ifname) node.uplinks ++ map (o: o.ifname) node.overlays;
in
{
  imports = [ ./node-data.nix ];

  options.nublar.overlay = {
    enable = lib.mkEnableOption "the node's planned addresses and overlay tunnels";

    uplinkMacs = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { up0 = "52:54:00:12:34:56"; };
      description = ''
        Names the uplink NICs as the plan does (up0, up1, ...) by MAC address. Hardware
        specific, so not in the bundle: set it in the machine's hardware configuration, or
        name the NICs there some other way.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    # IPv6 only. NixOS cannot switch IPv4 off entirely (lo keeps 127.0.0.1, which local
    # software expects), but no interface gets an IPv4 address or DHCP.
    networking.enableIPv6 = true;
    networking.useDHCP = false;
    networking.tempAddresses = "disabled";

    networking.interfaces = builtins.listToAttrs
      (map
        (u: lib.nameValuePair u.ifname {
          useDHCP = false;
          ipv4.addresses = [ ];
          ipv6.addresses = [{ address = u.address; prefixLength = 64; }];
        })
        node.uplinks)
    // {
      lo.ipv6.addresses = [{ address = node.loopback; prefixLength = 128; }];
    };

    boot.kernel.sysctl = lib.mkMerge ([
      {
        "net.ipv6.conf.all.accept_ra" = 0;
        "net.ipv6.conf.default.accept_ra" = 0;
        "net.ipv6.conf.default.autoconf" = 0;
      }
    ] ++ map noAutoconf planned);

    networking.wireguard.interfaces = builtins.listToAttrs (map wireguardInterface wireguardOverlays);

    systemd.services = builtins.listToAttrs (map vxlanService vxlanOverlays);

    services.udev.extraRules = lib.concatStrings (lib.mapAttrsToList
      (ifname: mac: ''
        SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="${lib.toLower mac}", NAME="${ifname}"
      '')
      cfg.uplinkMacs);
  };
}
