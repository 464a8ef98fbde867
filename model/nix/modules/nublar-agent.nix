# nublar-agent: runs the node's BFD sessions and installs the routes they gate
# (runtime/agent). NixOS only configures addresses and tunnels; every route is the agent's.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.nublar-agent;
  node = config.nublar.node;
  agentConfig = builtins.fromJSON (builtins.readFile cfg.configFile);
  # model/nix/render.ts NIXOS_PATHS; nginx.nix serves them.
  nginxControl = "/run/nginx/nublar-control.sock";
  nginxControlToken = "/run/nublar-control-token/token";
in
{
  imports = [ ./node-data.nix ];

  options.services.nublar-agent = {
    enable = lib.mkEnableOption "nublar-agent, the node's BFD and route agent";

    # The repository does not build a Nix package yet: a deployment provides one through an
    # overlay (pkgs.nublar-agent), with bin/nublar-agent wrapping `nublar agent`.
    package = lib.mkPackageOption pkgs "nublar-agent" { };

    configFile = lib.mkOption {
      type = lib.types.path;
      description = "The agent's JSON config (agent.json in the bundle, model/network/agent-config.ts).";
    };

    bfdKeyFile = lib.mkOption {
      type = lib.types.str;
      default = "/run/keys/nublar-bfd.key";
      description = ''
        Key file for authenticated path sessions. A path string, never a Nix path: a Nix path
        would copy the secret into the world-readable store. The deploy tool puts it there,
        readable by root only; systemd hands the agent a private copy (LoadCredential=).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        # The unit's RuntimeDirectory and StateDirectory are where NixOS lets the agent write
        # (model/nix/render.ts: NIXOS_PATHS); agent.json rendered for the lab points elsewhere.
        assertion = lib.hasPrefix "/run/nublar/" agentConfig.paths.socket && lib.hasPrefix "/var/lib/nublar/" agentConfig.paths.events;
        message = "${toString cfg.configFile}: paths.socket must be under /run/nublar and paths.events under /var/lib/nublar (render it with NIXOS_PATHS)";
      }
      {
        # Nginx's control socket is in Nginx's own runtime folder, and its token comes from
        # nginx.nix's nublar-control-token.service (model/nix/render.ts: NIXOS_PATHS).
        assertion = !(agentConfig.paths ? nginxControl)
          || (agentConfig.paths.nginxControl == nginxControl && (agentConfig.paths.nginxControlToken or "") == nginxControlToken);
        message = "${toString cfg.configFile}: paths.nginxControl must be ${nginxControl} and paths.nginxControlToken ${nginxControlToken} (render it with NIXOS_PATHS)";
      }
      {
        # agent.json and this module are rendered from the same constants (model/nix/render.ts);
        # a mismatch would leave the agent reading a key file nobody provisions.
        assertion = !(agentConfig ? pathAuth) || agentConfig.pathAuth.keyFile == cfg.bfdKeyFile;
        message = "services.nublar-agent.bfdKeyFile (${cfg.bfdKeyFile}) differs from pathAuth.keyFile in ${toString cfg.configFile}";
      }
    ];

    # A dedicated user with just the capabilities it needs, rather than root: routes, nftables
    # and `ss -K` need CAP_NET_ADMIN, BFD's raw checks CAP_NET_RAW, the BFD thread's priority
    # CAP_SYS_NICE. BFD's ports (3784, 4784, sources from 49152) need no CAP_NET_BIND_SERVICE.
    # The lab runs the agent the same way (lab/daemons.ts startAgent).
    users.users.nublar = {
      isSystemUser = true;
      group = "nublar";
      description = "nublar-agent";
    };
    users.groups.nublar = { };

    boot.kernel.sysctl = {
      # The agent deprecates an uplink's addresses while the uplink is down (RFC 8678) and
      # expects to find them again when it comes back: a carrier loss must not delete them.
      "net.ipv6.conf.all.keep_addr_on_down" = 1;
      # Hubs carry traffic between spokes; every other node only originates and receives.
      "net.ipv6.conf.all.forwarding" = if node.hub then 1 else 0;
    };

    systemd.services.nublar-agent = {
      description = "nublar-agent: BFD sessions and the routes they gate";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "nftables.service" ];
      # The agent installs the GTSM table with `nft` and inspects links with `ip`.
      path = [ pkgs.nftables pkgs.iproute2 ];
      # Restart=always must never give up: routes stay installed while the agent is away
      # (fail-static), but nobody updates them until it is back.
      startLimitIntervalSec = 0;
      serviceConfig = {
        # configFile is a store path: a new agent.json changes ExecStart, so switching to a
        # generation with a new config restarts the agent.
        ExecStart = "${cfg.package}/bin/nublar-agent --config ${cfg.configFile}";
        Restart = "always";
        RestartSec = "1s";
        User = "nublar";
        Group = "nublar";
        # The BFD key stays root's (the deploy writes it 0600 under /run/keys); systemd copies it
        # into the agent's credentials folder, readable by user nublar only, for this run of the
        # unit. The agent reads $CREDENTIALS_DIRECTORY/bfd-key (runtime/agent/agent.ts readSecret).
        # A restart loads the key again: the deploy restarts the agent when the keys change.
        LoadCredential = lib.optional (agentConfig ? pathAuth) "bfd-key:${cfg.bfdKeyFile}";
        CapabilityBoundingSet = [ "CAP_NET_ADMIN" "CAP_NET_RAW" "CAP_SYS_NICE" ];
        AmbientCapabilities = [ "CAP_NET_ADMIN" "CAP_NET_RAW" "CAP_SYS_NICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        # /run/nublar: the state API socket, the agent's alone. Nothing else writes there (Nginx
        # has /run/nginx), so nobody but the agent can replace the socket the deploy's confirm
        # step and `nublar --node` ask.
        RuntimeDirectory = "nublar";
        RuntimeDirectoryMode = "0750";
        # /var/lib/nublar: the event log.
        StateDirectory = "nublar";
        StateDirectoryMode = "0750";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
      };
    };
  };
}
