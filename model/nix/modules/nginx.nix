# Ingress on edge nodes: Nginx in front of every ingress service, balancing over the members
# that nublar-agent pushes to balancer.lua through a control socket (no reloads).
{ config, lib, pkgs, ... }:
let
  cfg = config.nublar.ingress;
in
{
  options.nublar.ingress = {
    enable = lib.mkEnableOption "Nginx with nublar's Lua balancer";

    configFile = lib.mkOption {
      type = lib.types.path;
      description = ''
        The bundle's nginx.conf (model/network/nginx-conf.ts); ./nginx-conf.nix adapts its
        paths to NixOS's nginx unit.
      '';
    };

    balancer = lib.mkOption {
      type = lib.types.path;
      description = "balancer.lua (model/network/nginx/balancer.lua, copied into the bundle).";
    };
  };

  config = lib.mkIf cfg.enable {
    services.nginx = {
      enable = true;
      # OpenResty rather than nginx with nginxModules.lua: balancer.lua needs ngx.balancer
      # (lua-resty-core) and cjson, which OpenResty ships with its Lua module and the plain
      # module does not. NixOS knows OpenResty's LuaJIT needs W+X memory and relaxes
      # MemoryDenyWriteExecute for it.
      package = pkgs.openresty;
      # `config` is NixOS's option for a verbatim nginx.conf: NixOS only puts `pid`,
      # `error_log` and `daemon off` in front of it and, when it is set, writes no events or
      # http block of its own. (appendConfig would land after NixOS's own http block, and
      # there is no option that replaces the whole file.) ./nginx-conf.nix drops the rendered
      # file's own pid and error_log and makes its paths absolute.
      config = import ./nginx-conf.nix (builtins.readFile cfg.configFile);
      logError = "stderr warn";
    };

    # nginx.conf's lua_package_path (NIXOS_PATHS.luaDir in model/nix/render.ts); the file changes
    # with the generation.
    environment.etc."nublar/lua/balancer.lua".source = cfg.balancer;

    # The control token: the secret the agent shows Nginx's control endpoint (balancer.lua
    # refuses every request without it). Written once per boot, root-only, in a folder of its
    # own; Nginx and the agent each get a private copy (LoadCredential=), so neither can read
    # the other's files and no other user can read it at all. Both load it at start, so it
    # must not change under them: it is only written when missing.
    systemd.services.nublar-control-token = {
      description = "nublar: the token that authenticates nublar-agent to Nginx's control endpoint";
      before = [ "nginx.service" "nublar-agent.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        RuntimeDirectory = "nublar-control-token";
        RuntimeDirectoryMode = "0700";
        RuntimeDirectoryPreserve = "yes";
        UMask = "0077";
      };
      # NIXOS_PATHS.nginxControlToken; 64 hex digits (balancer.lua wants at least 32 characters).
      script = ''
        f=/run/nublar-control-token/token
        if [ ! -s "$f" ]; then
          od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$f.new"
          mv "$f.new" "$f"
        fi
      '';
    };

    systemd.services.nginx = {
      requires = [ "nublar-control-token.service" ];
      after = [ "nublar-control-token.service" ];
      # A new balancer.lua needs a new Lua VM; the config itself is already a trigger.
      restartTriggers = [ cfg.balancer ];
      serviceConfig = {
        # nginx.conf reads it from /run/credentials/nginx.service/nublar-control-token
        # (NIXOS_PATHS.nginxControlTokenCredential; ./nginx-conf.nix checks) in init_by_lua,
        # at every start and reload: without it Nginx does not start.
        LoadCredential = [ "nublar-control-token:/run/nublar-control-token/token" ];
        # The control socket goes in Nginx's own runtime folder, /run/nginx (0750 nginx:nginx,
        # NixOS's RuntimeDirectory for nginx): Nginx needs no access to the agent's.
      };
    };

    systemd.services.nublar-agent = {
      requires = [ "nublar-control-token.service" ];
      after = [ "nublar-control-token.service" ];
      serviceConfig = {
        # The agent's copy of the control token ($CREDENTIALS_DIRECTORY/nginx-control-token);
        # nublar-agent.nix asserts that agent.json names this source.
        LoadCredential = [ "nginx-control-token:/run/nublar-control-token/token" ];
        # Group nginx only to pass /run/nginx (0750) to the control socket: the agent has no
        # CAP_DAC_OVERRIDE, so file modes apply to it. The token, not the group, is what the
        # control endpoint trusts.
        SupplementaryGroups = [ config.services.nginx.group ];
      };
    };
  };
}
