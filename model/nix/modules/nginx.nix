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

    systemd.services.nginx = {
      # The control socket lives in the agent's runtime directory (/run/nublar), which exists
      # once the agent has started once (it is preserved across agent restarts).
      wants = [ "nublar-agent.service" ];
      after = [ "nublar-agent.service" ];
      # A new balancer.lua needs a new Lua VM; the config itself is already a trigger.
      restartTriggers = [ cfg.balancer ];
      serviceConfig = {
        # Create the control socket in /run/nublar (mode 0770, group nublar).
        SupplementaryGroups = [ "nublar" ];
        ReadWritePaths = [ "/run/nublar" ];
        # The socket must be group-writable for the agent to connect (NixOS's default umask
        # 0027 would make it 0750). Logs become group-writable too, for group nginx only.
        UMask = lib.mkForce "0007";
      };
    };

    # The agent joins nginx's group to connect to the control socket: it has no
    # CAP_DAC_OVERRIDE, so file modes apply to it.
    systemd.services.nublar-agent.serviceConfig.SupplementaryGroups = [ config.services.nginx.group ];
  };
}
