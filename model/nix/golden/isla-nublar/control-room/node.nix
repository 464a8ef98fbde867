# control-room of site isla-nublar: pure data, written by nublar (model/nix/render.ts); do not edit.
{
  site = "isla-nublar";
  name = "control-room";
  id = 4941;
  role = "core";
  failureDomain = "control-building";
  hub = true;
  loopback = "2001:db8:1100::134d";
  loopbackPrefix = "2001:db8:1100::/64";
  sitePrefixes = [ "2001:db8:1100::/48" "2001:db8:1200::/48" ];
  sshPort = 22;
  uplinks = [
    {
      provider = "costa-rica-telecom";
      ifname = "up0";
      prefix = "2001:db8:1100:134d::/64";
      address = "2001:db8:1100:134d::2";
      gateway = "2001:db8:1100:134d::1";
    }
    {
      provider = "pacific-fiber";
      ifname = "up1";
      prefix = "2001:db8:1200:134d::/64";
      address = "2001:db8:1200:134d::2";
      gateway = "2001:db8:1200:134d::1";
    }
  ];
  overlays = [
    {
      provider = "costa-rica-telecom";
      transport = "wireguard";
      ifname = "ov0";
      underlay = {
        ifname = "up0";
        local = "2001:db8:1100:134d::2";
      };
      vni = 104748;
      mac = "02:6e:99:2c:13:4d";
      port = 51820;
      mtu = 1420;
      prefix = "2001:db8:1100:4000::/64";
      address = "2001:db8:1100:4000::134d";
      peers = [
        {
          node = "gate";
          endpoint = "2001:db8:1100:3d76::2";
          address = "2001:db8:1100:4000::3d76";
          loopback = "2001:db8:1100::3d76";
          hub = true;
          endpointPort = 51820;
          publicKey = "RkFLRSBnYXRlIGNvc3RhLXJpY2EtdGVsZWNvbS4uLi4=";
          allowedIPs = [ "2001:db8:1100:4000::3d76/128" "2001:db8:1100::3d76/128" ];
        }
        {
          node = "gate-2";
          endpoint = "2001:db8:1100:2c9b::2";
          address = "2001:db8:1100:4000::2c9b";
          loopback = "2001:db8:1100::2c9b";
          hub = true;
          endpointPort = 51820;
          publicKey = "RkFLRSBnYXRlLTIgY29zdGEtcmljYS10ZWxlY29tLi4=";
          allowedIPs = [ "2001:db8:1100:4000::2c9b/128" "2001:db8:1100::2c9b/128" ];
        }
        {
          node = "visitor-app";
          endpoint = "2001:db8:1100:2a37::2";
          address = "2001:db8:1100:4000::2a37";
          loopback = "2001:db8:1100::2a37";
          hub = false;
          endpointPort = 51820;
          publicKey = "RkFLRSB2aXNpdG9yLWFwcCBjb3N0YS1yaWNhLXRlbGU=";
          allowedIPs = [ "2001:db8:1100:4000::2a37/128" "2001:db8:1100::2a37/128" ];
        }
        {
          node = "ledger-1";
          endpoint = "2001:db8:1100:e2c::2";
          address = "2001:db8:1100:4000::e2c";
          loopback = "2001:db8:1100::e2c";
          hub = false;
          endpointPort = 51820;
          publicKey = "RkFLRSBsZWRnZXItMSBjb3N0YS1yaWNhLXRlbGVjb20=";
          allowedIPs = [ "2001:db8:1100:4000::e2c/128" "2001:db8:1100::e2c/128" ];
        }
      ];
      providerPrefix = "2001:db8:1100::/48";
      privateKeyFile = "/run/keys/nublar-wg-ov0.key";
    }
    {
      provider = "pacific-fiber";
      transport = "wireguard";
      ifname = "ov1";
      underlay = {
        ifname = "up1";
        local = "2001:db8:1200:134d::2";
      };
      vni = 76150;
      mac = "02:6e:29:76:13:4d";
      port = 51821;
      mtu = 1420;
      prefix = "2001:db8:1200:4000::/64";
      address = "2001:db8:1200:4000::134d";
      peers = [
        {
          node = "gate";
          endpoint = "2001:db8:1200:3d76::2";
          address = "2001:db8:1200:4000::3d76";
          loopback = "2001:db8:1100::3d76";
          hub = true;
          endpointPort = 51821;
          publicKey = "RkFLRSBnYXRlIHBhY2lmaWMtZmliZXIuLi4uLi4uLi4=";
          allowedIPs = [ "2001:db8:1200:4000::3d76/128" "2001:db8:1100::3d76/128" ];
        }
        {
          node = "gate-2";
          endpoint = "2001:db8:1200:2c9b::2";
          address = "2001:db8:1200:4000::2c9b";
          loopback = "2001:db8:1100::2c9b";
          hub = true;
          endpointPort = 51821;
          publicKey = "RkFLRSBnYXRlLTIgcGFjaWZpYy1maWJlci4uLi4uLi4=";
          allowedIPs = [ "2001:db8:1200:4000::2c9b/128" "2001:db8:1100::2c9b/128" ];
        }
        {
          node = "visitor-app";
          endpoint = "2001:db8:1200:2a37::2";
          address = "2001:db8:1200:4000::2a37";
          loopback = "2001:db8:1100::2a37";
          hub = false;
          endpointPort = 51821;
          publicKey = "RkFLRSB2aXNpdG9yLWFwcCBwYWNpZmljLWZpYmVyLi4=";
          allowedIPs = [ "2001:db8:1200:4000::2a37/128" "2001:db8:1100::2a37/128" ];
        }
        {
          node = "ledger-1";
          endpoint = "2001:db8:1200:e2c::2";
          address = "2001:db8:1200:4000::e2c";
          loopback = "2001:db8:1100::e2c";
          hub = false;
          endpointPort = 51821;
          publicKey = "RkFLRSBsZWRnZXItMSBwYWNpZmljLWZpYmVyLi4uLi4=";
          allowedIPs = [ "2001:db8:1200:4000::e2c/128" "2001:db8:1100::e2c/128" ];
        }
      ];
      providerPrefix = "2001:db8:1200::/48";
      privateKeyFile = "/run/keys/nublar-wg-ov1.key";
    }
  ];
  sensors = [
    {
      provider = "costa-rica-telecom";
      prefix = "2001:db8:1100:934d::/64";
    }
    {
      provider = "pacific-fiber";
      prefix = "2001:db8:1200:934d::/64";
    }
  ];
  ingressPorts = [ ];
  upstreamPorts = [ 443 ];
  authorizedKeys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdvbGRlbi10ZXN0LWtleS1ub3QtYS1yZWFsLWtleQ operator@golden"
  ];
  profile = {
    label = "golden";
    revision = null;
  };
}
