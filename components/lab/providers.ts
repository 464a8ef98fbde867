// Pulumi dynamic providers for the lab's machine-local resources: namespaces,
// links, SSH keys, sshd and small files. They make `pulumi up` create, diff and
// `pulumi destroy` delete the park like any other resource.
//
// Why dynamic providers: they run inside Pulumi's own Node.js provider host and
// need no plugin binary. The providers hold no logic of their own: each method
// loads ./ops (by absolute path, through tsx, because the provider host is a
// separate plain Node process) and calls one idempotent operation.
import * as pulumi from "@pulumi/pulumi";
import type * as Ops from "../../lab/ops";

// Plain strings, so Pulumi's closure serializer captures them by value.
const OPS_MODULE = require.resolve("../../lab/ops");
const TSX_HOOK = require.resolve("tsx/cjs");

function ops(): typeof Ops {
    require(TSX_HOOK);
    return require(OPS_MODULE);
}

/**
 * Any change to a lab resource's inputs replaces it; names are reused, so delete first.
 * `olds` are the previous outputs, which also hold computed fields (publicKey, pid), so
 * only the keys of the new inputs are compared.
 */
async function replaceOnChange(_id: string, olds: Record<string, unknown>, news: Record<string, unknown>): Promise<pulumi.dynamic.DiffResult> {
    const replaces = Object.keys(news).filter((k) => k !== "__provider" && JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: true };
}

/**
 * `pulumi refresh` (and `up --refresh`) asks each resource whether it still exists. An empty
 * id tells the engine it is gone, so the next update creates it again: this is how a lab
 * comes back after a reboot, or after someone deleted a namespace by hand.
 */
function present<T>(id: string, props: T | undefined, exists: (props: T) => boolean): pulumi.dynamic.ReadResult<T> {
    return props !== undefined && exists(props) ? { id, props } : { id: "", props };
}

// ---- Namespace ----

export interface NetnsInputs {
    netns: string;
    forwarding: boolean;
}

const netnsProvider: pulumi.dynamic.ResourceProvider<NetnsInputs, NetnsInputs> = {
    async create(inputs) {
        ops().createNetns(inputs.netns, inputs.forwarding);
        return { id: inputs.netns, outs: inputs };
    },
    async delete(_id, props) {
        ops().deleteNetns(props.netns);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().netnsExists(p.netns));
    },
    diff: replaceOnChange as never,
};

export class LabNetns extends pulumi.dynamic.Resource {
    declare readonly netns: pulumi.Output<string>;
    constructor(name: string, args: { netns: pulumi.Input<string>; forwarding: pulumi.Input<boolean> }, opts?: pulumi.CustomResourceOptions) {
        super(netnsProvider, name, args, opts, "lab", "Netns");
    }
}

// ---- Veth pair ----

export interface VethInputs {
    a: Ops.LinkEnd;
    b: Ops.LinkEnd;
}

const vethProvider: pulumi.dynamic.ResourceProvider<VethInputs, VethInputs> = {
    async create(inputs) {
        ops().createVeth(inputs.a, inputs.b);
        return { id: `${inputs.a.netns ?? "root"}/${inputs.a.ifname}`, outs: inputs };
    },
    async delete(_id, props) {
        ops().deleteLink(props.a.netns, props.a.ifname);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().linkExists(p.a.netns, p.a.ifname));
    },
    diff: replaceOnChange as never,
};

export class LabVeth extends pulumi.dynamic.Resource {
    constructor(name: string, args: pulumi.Inputs & { a: pulumi.Input<Ops.LinkEnd>; b: pulumi.Input<Ops.LinkEnd> }, opts?: pulumi.CustomResourceOptions) {
        super(vethProvider, name, args, opts, "lab", "Veth");
    }
}

// ---- Management bridge (root namespace) ----

export interface BridgeInputs {
    ifname: string;
    address: string;
}

const bridgeProvider: pulumi.dynamic.ResourceProvider<BridgeInputs, BridgeInputs> = {
    async create(inputs) {
        ops().createBridge(inputs.ifname, inputs.address);
        return { id: inputs.ifname, outs: inputs };
    },
    async delete(_id, props) {
        ops().deleteLink(undefined, props.ifname);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().linkExists(undefined, p.ifname));
    },
    diff: replaceOnChange as never,
};

export class LabBridge extends pulumi.dynamic.Resource {
    constructor(name: string, args: { ifname: pulumi.Input<string>; address: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super(bridgeProvider, name, args, opts, "lab", "Bridge");
    }
}

// ---- SSH key pair on disk ----

export interface SshKeyInputs {
    file: string;
    comment: string;
}

const sshKeyProvider: pulumi.dynamic.ResourceProvider<SshKeyInputs, SshKeyInputs & { publicKey: string }> = {
    async create(inputs) {
        const publicKey = ops().ensureSshKey(inputs.file, inputs.comment);
        return { id: inputs.file, outs: { ...inputs, publicKey } };
    },
    async delete(_id, props) {
        const o = ops();
        o.removeFiles(props.file, `${props.file}.pub`);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().sshKeyMatches(p.file, p.publicKey));
    },
    diff: replaceOnChange as never,
};

/** An ed25519 key pair in the lab's state folder. Only the public half enters Pulumi state. */
export class LabSshKey extends pulumi.dynamic.Resource {
    declare readonly publicKey: pulumi.Output<string>;
    declare readonly file: pulumi.Output<string>;
    constructor(name: string, args: { file: pulumi.Input<string>; comment: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
        super(sshKeyProvider, name, { ...args, publicKey: undefined }, opts, "lab", "SshKey");
    }
}

// ---- sshd in a namespace ----

const sshdProvider: pulumi.dynamic.ResourceProvider<Ops.SshdSpec, Ops.SshdSpec & { pid: number }> = {
    async create(inputs) {
        const o = ops();
        const pid = o.startSshd(inputs);
        return { id: `${inputs.netns}/sshd`, outs: { ...inputs, pid } };
    },
    async delete(_id, props) {
        ops().stopSshd(props.dir);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().sshdPid(p.dir) === p.pid);
    },
    diff: replaceOnChange as never,
};

export class LabSshd extends pulumi.dynamic.Resource {
    declare readonly pid: pulumi.Output<number>;
    constructor(name: string, args: pulumi.Inputs & { [K in keyof Ops.SshdSpec]: pulumi.Input<Ops.SshdSpec[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(sshdProvider, name, { ...args, pid: undefined }, opts, "lab", "Sshd");
    }
}

// ---- A small file (ssh_config, known_hosts) ----

export interface FileInputs {
    file: string;
    content: string;
    mode: number;
}

const fileProvider: pulumi.dynamic.ResourceProvider<FileInputs, FileInputs> = {
    async create(inputs) {
        ops().writeFile(inputs.file, inputs.content, inputs.mode);
        return { id: inputs.file, outs: inputs };
    },
    async delete(_id, props) {
        ops().removeFiles(props.file);
    },
    async read(id, props) {
        return present(id, props, (p) => ops().fileHas(p.file, p.content));
    },
    diff: replaceOnChange as never,
};

export class LabFile extends pulumi.dynamic.Resource {
    constructor(name: string, args: { file: pulumi.Input<string>; content: pulumi.Input<string>; mode: pulumi.Input<number> }, opts?: pulumi.CustomResourceOptions) {
        super(fileProvider, name, args, opts, "lab", "File");
    }
}

// ---- daemons: FRR's bfdd on the provider routers, the small HTTP service on nodes ----
// (A node's agent and Nginx are its system: components/nixos deploys them over SSH.)

const DAEMONS_MODULE = require.resolve("../../lab/daemons");

function daemons(): typeof import("../../lab/daemons") {
    require(TSX_HOOK);
    return require(DAEMONS_MODULE);
}

export interface DaemonInputs {
    kind: "bfdd" | "hello";
    netns: string;
    /** The daemon's folder (pid file, config, log). */
    dir: string;
    /** Its config file's content (bfdd.conf); unused by hello. */
    config: string;
    /** hello: port and node name. */
    port?: number;
    name?: string;
}

function startDaemon(i: DaemonInputs): number {
    const d = daemons();
    switch (i.kind) {
        case "bfdd":
            return d.startBfdd(i.netns, i.dir, i.config);
        case "hello":
            return d.startHello(i.netns, i.dir, i.port!, i.name!);
    }
}

function daemonRunning(i: DaemonInputs): number | undefined {
    const d = daemons();
    switch (i.kind) {
        case "bfdd": return d.daemonPid(d.bfddDaemon(i.dir), d.bfddPidFile(i.dir));
        case "hello": return d.daemonPid(d.helloDaemon(i.dir));
    }
}

const daemonProvider: pulumi.dynamic.ResourceProvider<DaemonInputs, DaemonInputs & { pid: number }> = {
    async create(inputs) {
        const pid = startDaemon(inputs);
        return { id: `${inputs.netns}/${inputs.kind}`, outs: { ...inputs, pid } };
    },
    async delete(_id, props) {
        const d = daemons();
        switch (props.kind) {
            case "bfdd": d.stopBfdd(props.dir); break;
            case "hello": d.stopDaemon(d.helloDaemon(props.dir)); break;
        }
        // The folder is the daemon's own (config, pid file, logs, sockets).
        (require("node:fs") as typeof import("node:fs")).rmSync(props.dir, { recursive: true, force: true });
    },
    async read(id, props) {
        // Running, and in the namespace it was started in (not one lost and rebuilt since).
        return present(id, props, (p) => daemonRunning(p) === p.pid && daemons().inNetns(p.pid, p.netns));
    },
    diff: replaceOnChange as never,
};

export class LabDaemon extends pulumi.dynamic.Resource {
    declare readonly pid: pulumi.Output<number>;
    constructor(name: string, args: { [K in keyof DaemonInputs]: pulumi.Input<DaemonInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(daemonProvider, name, { ...args, pid: undefined }, opts, "lab", "Daemon");
    }
}
