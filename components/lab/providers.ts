// The lab's machine-local resources: namespaces, links, SSH keys, sshd, small files and daemons.
// They make `pulumi up` create, diff and `pulumi destroy` delete the park like any other
// resource. nublar's provider plugin serves them (provider/resources/lab.ts), with the lab's own
// operations (lab/ops.ts, lab/daemons.ts); any change to an input replaces one.
import type * as pulumi from "@pulumi/pulumi";
import type { LinkEnd, SshdSpec } from "../../lab/ops";
import type { BridgeInputs, DaemonInputs, FileInputs, NetnsInputs, SshKeyInputs } from "../../provider/resources/lab";
import { NublarResource } from "../resource";

type Args<T> = { [K in keyof T]: pulumi.Input<T[K]> };

export class LabNetns extends NublarResource {
    declare readonly netns: pulumi.Output<string>;
    constructor(name: string, args: Args<NetnsInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labNetns", name, args, opts);
    }
}

export class LabVeth extends NublarResource {
    constructor(name: string, args: { a: pulumi.Input<LinkEnd>; b: pulumi.Input<LinkEnd> }, opts?: pulumi.CustomResourceOptions) {
        super("labVeth", name, args, opts);
    }
}

/** The management bridge (root namespace). */
export class LabBridge extends NublarResource {
    constructor(name: string, args: Args<BridgeInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labBridge", name, args, opts);
    }
}

/** An ed25519 key pair in the lab's state folder. Only the public half enters Pulumi state. */
export class LabSshKey extends NublarResource {
    declare readonly publicKey: pulumi.Output<string>;
    declare readonly file: pulumi.Output<string>;
    constructor(name: string, args: Args<SshKeyInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labSshKey", name, { ...args, publicKey: undefined }, opts);
    }
}

export class LabSshd extends NublarResource {
    declare readonly pid: pulumi.Output<number>;
    constructor(name: string, args: Args<SshdSpec>, opts?: pulumi.CustomResourceOptions) {
        super("labSshd", name, { ...args, pid: undefined }, opts);
    }
}

/** A small file (ssh_config, known_hosts). */
export class LabFile extends NublarResource {
    constructor(name: string, args: Args<FileInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labFile", name, args, opts);
    }
}

/** FRR's bfdd on the provider routers, the small HTTP service on nodes. */
export class LabDaemon extends NublarResource {
    declare readonly pid: pulumi.Output<number>;
    constructor(name: string, args: Args<DaemonInputs>, opts?: pulumi.CustomResourceOptions) {
        super("labDaemon", name, { ...args, pid: undefined }, opts);
    }
}
