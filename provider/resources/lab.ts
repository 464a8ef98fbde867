// The lab's machine-local resources: namespaces, links, SSH keys, sshd, small files, daemons.
// Each method calls one idempotent operation of lab/ops.ts or lab/daemons.ts (loaded when first
// used, so a preview's provider starts fast). Any change to an input replaces the resource.
import * as fs from "node:fs";
import { z } from "zod";
import type { LinkEnd, SshdSpec } from "../../lab/ops";
import { absolutePath, ifname, netnsName, replaceOnAnyChange, type Handler } from "../handler";
import { canonical } from "../wire";
import { RESOURCE_TYPES } from "../tokens";

const ops = () => import("../../lab/ops");
const daemons = () => import("../../lab/daemons");

const same = (a: unknown, b: unknown) => canonical(a) === canonical(b);
const replaceOnChange = (olds: object, news: object) => replaceOnAnyChange(olds, news, same);

// ---- Namespace ----

export interface NetnsInputs {
    netns: string;
    forwarding: boolean;
}

export const netns: Handler<NetnsInputs, NetnsInputs> = {
    schema: z.object({ netns: netnsName, forwarding: z.boolean() }),
    diff: replaceOnChange,
    async create(i) {
        (await ops()).createNetns(i.netns, i.forwarding);
        return { id: i.netns, outs: { ...i } };
    },
    async exists(_id, p) {
        return (await ops()).netnsExists(p.netns);
    },
    async delete(_id, p) {
        (await ops()).deleteNetns(p.netns);
    },
};

// ---- Veth pair ----

const linkEnd = z.object({
    netns: netnsName.optional(),
    ifname,
    addresses: z.array(z.string().regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, "an address with its prefix length, e.g. 2001:db8::2/64")),
    master: ifname.optional(),
}) satisfies z.ZodType<LinkEnd>;

export interface VethInputs {
    a: LinkEnd;
    b: LinkEnd;
}

export const veth: Handler<VethInputs, VethInputs> = {
    schema: z.object({ a: linkEnd, b: linkEnd }),
    diff: replaceOnChange,
    async create(i) {
        (await ops()).createVeth(i.a, i.b);
        return { id: `${i.a.netns ?? "root"}/${i.a.ifname}`, outs: { ...i } };
    },
    async exists(_id, p) {
        return (await ops()).linkExists(p.a.netns, p.a.ifname);
    },
    async delete(_id, p) {
        (await ops()).deleteLink(p.a.netns, p.a.ifname);
    },
};

// ---- Management bridge (root namespace) ----

export interface BridgeInputs {
    ifname: string;
    address: string;
}

export const bridge: Handler<BridgeInputs, BridgeInputs> = {
    schema: z.object({ ifname, address: linkEnd.shape.addresses.element }),
    diff: replaceOnChange,
    async create(i) {
        (await ops()).createBridge(i.ifname, i.address);
        return { id: i.ifname, outs: { ...i } };
    },
    async exists(_id, p) {
        return (await ops()).linkExists(undefined, p.ifname);
    },
    async delete(_id, p) {
        (await ops()).deleteLink(undefined, p.ifname);
    },
};

// ---- SSH key pair on disk (only the public half enters the state) ----

export interface SshKeyInputs {
    file: string;
    comment: string;
}

export const sshKey: Handler<SshKeyInputs, SshKeyInputs & { publicKey: string }> = {
    schema: z.object({ file: absolutePath, comment: z.string().regex(/^[^\n]*$/, "one line") }),
    diff: replaceOnChange,
    async create(i) {
        const publicKey = (await ops()).ensureSshKey(i.file, i.comment);
        return { id: i.file, outs: { ...i, publicKey } };
    },
    async exists(_id, p) {
        return (await ops()).sshKeyMatches(p.file, p.publicKey);
    },
    async delete(_id, p) {
        (await ops()).removeFiles(p.file, `${p.file}.pub`);
    },
};

// ---- sshd in a namespace ----

export const sshd: Handler<SshdSpec, SshdSpec & { pid: number }> = {
    schema: z.object({
        netns: netnsName,
        hostname: z.string().regex(/^[A-Za-z0-9-]{1,63}$/, "a host name"),
        dir: absolutePath,
        hostKeyFile: absolutePath,
        listen: z.array(z.string().min(1)).min(1),
        authorizedKeys: z.array(z.string().regex(/^[^\n]+$/, "one key per line")).min(1),
    }) satisfies z.ZodType<SshdSpec>,
    diff: replaceOnChange,
    async create(i) {
        const pid = (await ops()).startSshd(i);
        return { id: `${i.netns}/sshd`, outs: { ...i, pid } };
    },
    async exists(_id, p) {
        return (await ops()).sshdPid(p.dir) === p.pid;
    },
    async delete(_id, p) {
        (await ops()).stopSshd(p.dir);
    },
};

// ---- A small file (ssh_config, known_hosts) ----

export interface FileInputs {
    file: string;
    content: string;
    mode: number;
}

export const file: Handler<FileInputs, FileInputs> = {
    schema: z.object({ file: absolutePath, content: z.string(), mode: z.number().int().min(0).max(0o777) }),
    // Another path is another file; new content or mode is written over the old in place.
    diff(olds, news) {
        const d = replaceOnChange({ file: olds.file }, { file: news.file });
        return d.changes ? d : { changes: olds.content !== news.content || olds.mode !== news.mode, replaces: [] };
    },
    async create(i) {
        (await ops()).writeFile(i.file, i.content, i.mode);
        return { id: i.file, outs: { ...i } };
    },
    async update(_id, _olds, news) {
        (await ops()).writeFile(news.file, news.content, news.mode);
        return { ...news };
    },
    async exists(_id, p) {
        return (await ops()).fileHas(p.file, p.content);
    },
    async delete(_id, p) {
        (await ops()).removeFiles(p.file);
    },
};

// ---- Daemons: FRR's bfdd on the provider routers, the small HTTP service on nodes ----
// (A node's agent and Nginx are its system: the nixos Deployment deploys them over SSH.)

export const DAEMON_KINDS = ["bfdd", "hello"] as const;

export interface DaemonInputs {
    kind: (typeof DAEMON_KINDS)[number];
    netns: string;
    /** The daemon's folder (pid file, config, log). */
    dir: string;
    /** Its config file's content (bfdd.conf); unused by hello. */
    config: string;
    /** hello: port and node name. */
    port?: number;
    name?: string;
}

async function running(i: DaemonInputs): Promise<number | undefined> {
    const d = await daemons();
    switch (i.kind) {
        case "bfdd": return d.daemonPid(d.bfddDaemon(i.dir), d.bfddPidFile(i.dir));
        case "hello": return d.daemonPid(d.helloDaemon(i.dir));
    }
}

export const daemon: Handler<DaemonInputs, DaemonInputs & { pid: number }> = {
    schema: z.object({
        kind: z.enum(DAEMON_KINDS),
        netns: netnsName,
        dir: absolutePath,
        config: z.string(),
        port: z.number().int().min(1).max(65535).optional(),
        name: z.string().min(1).optional(),
    }),
    diff: replaceOnChange,
    async create(i) {
        const d = await daemons();
        let pid: number;
        switch (i.kind) {
            case "bfdd":
                pid = d.startBfdd(i.netns, i.dir, i.config);
                break;
            case "hello":
                if (i.port === undefined || i.name === undefined) throw new Error(`hello daemon in ${i.netns}: port and name are required`);
                pid = d.startHello(i.netns, i.dir, i.port, i.name);
                break;
        }
        return { id: `${i.netns}/${i.kind}`, outs: { ...i, pid } };
    },
    async exists(_id, p) {
        // Running, and in the namespace it was started in (not one lost and rebuilt since).
        return (await running(p)) === p.pid && (await daemons()).inNetns(p.pid, p.netns);
    },
    async delete(_id, p) {
        const d = await daemons();
        switch (p.kind) {
            case "bfdd": d.stopBfdd(p.dir); break;
            case "hello": d.stopDaemon(d.helloDaemon(p.dir)); break;
        }
        // The folder is the daemon's own (config, pid file, logs, sockets).
        fs.rmSync(p.dir, { recursive: true, force: true });
    },
};

export const LAB_HANDLERS = {
    [RESOURCE_TYPES.labNetns]: netns,
    [RESOURCE_TYPES.labVeth]: veth,
    [RESOURCE_TYPES.labBridge]: bridge,
    [RESOURCE_TYPES.labSshKey]: sshKey,
    [RESOURCE_TYPES.labSshd]: sshd,
    [RESOURCE_TYPES.labFile]: file,
    [RESOURCE_TYPES.labDaemon]: daemon,
};
