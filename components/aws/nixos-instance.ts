// NixosInstance: one EC2 node, applied from its plan (model/network/aws-plan.ts). An interface per
// uplink at the planned address, the NixOS AMI, and a first-boot script (./user-data.ts) with
// the host key nublar generated: the key is a Pulumi secret, and its public half is what the
// node's deploys pin. The deploy itself (components/nixos) is the same as a park node's.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { AwsInstancePlan } from "../../model/network/aws-plan";
import { GeneratedKey } from "../nixos/secrets";
import { renderUserData } from "./user-data";

export interface NixosInstanceArgs {
    site: string;
    region: string;
    plan: AwsInstancePlan;
    /** Subnet key -> id (DataCenterNetwork.subnetIds). */
    subnetIds: Record<string, pulumi.Input<string>>;
    securityGroupIds: pulumi.Input<string>[];
    /** Public keys allowed to log in as root (the operators'), until the first deploy sets its own. */
    authorizedKeys: pulumi.Input<string[]>;
}

export class NixosInstance extends pulumi.ComponentResource {
    readonly instanceId: pulumi.Output<string>;
    /** The pinned host key: `ssh-ed25519 AAAA...`. */
    readonly hostKey: pulumi.Output<string>;
    readonly sshAddress: string;

    constructor(name: string, args: NixosInstanceArgs, opts?: pulumi.ComponentResourceOptions) {
        super("nublar:aws:NixosInstance", name, {}, opts);
        const { plan, region } = args;
        const child = { parent: this };
        const tags = { Name: `${args.site}-${plan.node}`, "nublar:site": args.site, "nublar:node": plan.node, "nublar:role": plan.role };

        const hostKey = new GeneratedKey(`${name}-host-key`, "ssh-host", child);
        const interfaces = plan.interfaces.map((i) => new aws.ec2.NetworkInterface(`${name}-${i.ifname}`, {
            region,
            subnetId: args.subnetIds[i.subnet],
            ipv6Addresses: [i.address],
            securityGroups: args.securityGroupIds,
            // Hubs forward other nodes' packets; AWS drops them unless this check is off.
            sourceDestCheck: !plan.forwards,
            description: `${plan.node} ${i.ifname} (${i.provider})`,
            tags: { ...tags, Name: `${args.site}-${plan.node}-${i.ifname}` },
        }, child));

        const userData = pulumi.all([hostKey.value, hostKey.publicKey, args.authorizedKeys, pulumi.all(interfaces.map((e) => e.macAddress))])
            .apply(([priv, pub, keys, macs]) => renderUserData({
                site: args.site, node: plan.node, hostPrivateKey: priv, hostPublicKey: pub, authorizedKeys: keys,
                uplinkMacs: Object.fromEntries(plan.interfaces.map((i, k) => [i.ifname, macs[k]])),
            }));

        const instance = new aws.ec2.Instance(name, {
            region,
            ami: plan.ami,
            instanceType: plan.instanceType,
            availabilityZone: plan.availabilityZone,
            primaryNetworkInterface: { networkInterfaceId: interfaces[0].id },
            rootBlockDevice: { volumeSize: plan.rootVolumeGiB, volumeType: "gp3", encrypted: true },
            // IMDSv2 only, over IPv6 (the subnets have no IPv4), one hop: containers cannot reach it.
            metadataOptions: { httpEndpoint: "enabled", httpProtocolIpv6: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
            // The host's private key is in it: a secret in state. Changing it later must not
            // replace a running node; the deploy owns the node from then on. So the key stays in
            // the instance's user data for its life: on the node, the first-boot script makes the
            // metadata service root's alone before anything else, at every boot until the first
            // deploy (its hardware configuration from then on), and rewrites the image's copy
            // without the key; outside, ec2:DescribeInstanceAttribute still reads it (README).
            userData: pulumi.secret(userData),
            userDataReplaceOnChange: false,
            tags,
            // A replacement takes over the same interfaces, which cannot be attached to two
            // instances: the old one goes first.
        }, { ...child, ignoreChanges: ["userData"], deleteBeforeReplace: true });
        interfaces.slice(1).forEach((eni, k) => new aws.ec2.NetworkInterfaceAttachment(`${name}-${plan.interfaces[k + 1].ifname}`, {
            region, instanceId: instance.id, networkInterfaceId: eni.id, deviceIndex: plan.interfaces[k + 1].deviceIndex,
        }, child));

        this.instanceId = instance.id;
        this.hostKey = hostKey.publicKey;
        this.sshAddress = plan.sshAddress;
        this.registerOutputs({ instanceId: this.instanceId, hostKey: this.hostKey, sshAddress: this.sshAddress });
    }
}
