# nginx.conf as NixOS runs it. The bundle's nginx.conf is what model/network/nginx-conf.ts
# renders (with model/nix/render.ts NIXOS_NGINX: luaDir = /etc/nublar/lua, no modules, and the
# control token read from Nginx's credential, see nginx.nix); it is written for a
# prefix folder, as the lab runs it: relative pid, log and temp paths. NixOS's nginx has no
# writable prefix and writes `pid` and `error_log` itself, so here those go and the paths
# become the unit's own directories. Pure (builtins only), so that tests can evaluate it.
conf:
let
  contains = needle: haystack: builtins.replaceStrings [ needle ] [ "" ] haystack != haystack;
  adapted = builtins.replaceStrings
    [ "pid nginx.pid;\n" "error_log logs/error.log warn;\n" "_temp_path temp/" "access_log logs/" ]
    [ "" "" "_temp_path /var/cache/nginx/" "access_log /var/log/nginx/" ]
    conf;
  problems =
    (if contains "load_module " conf then [ "it loads dynamic modules (render it with modules = [ ]: OpenResty has Lua built in)" ] else [ ])
    ++ (if !(contains ''lua_package_path "/etc/nublar/lua/?.lua;;";'' conf) then [ "its lua_package_path is not /etc/nublar/lua (render it with luaDir = NIXOS_PATHS.luaDir)" ] else [ ])
    ++ (if !(contains ''balancer.init("/run/credentials/nginx.service/nublar-control-token")'' conf) then [ "its control token is not Nginx's credential (render it with controlTokenFile = NIXOS_PATHS.nginxControlTokenCredential)" ] else [ ])
    ++ (if !(contains "listen unix:/run/nginx/nublar-control.sock;" conf) then [ "its control socket is not /run/nginx/nublar-control.sock, Nginx's own runtime folder (render it with NIXOS_PATHS.nginxControl)" ] else [ ])
    ++ (if contains "\npid " adapted || contains " temp/" adapted || contains " logs/" adapted then [ "it still has a pid line or relative paths (did renderNginxConf change?)" ] else [ ]);
in
if problems == [ ] then adapted
else throw "nublar: nginx.conf cannot run on NixOS: ${builtins.concatStringsSep "; " problems}"
