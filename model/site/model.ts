// The one site model. Every planner, component, the CLI and (later) the agent
// take a `Site` from here; nothing else defines the shape of a site.
//
// The schema is written with zod so that bad stack config is rejected before any
// resource exists, with an error naming the key, the value and the rule
// (see ./load.ts for the formatting).
import { z } from "zod";
import { SHARD_NAME } from "../vocabulary";
import { canonicalAddress, canonicalPrefix, parseIpv6Address, parseIpv6Prefix, prefixBounds } from "./ipv6";
import { findControlChar, listNames, showName } from "./text";

/** DNS-label-like names: they end up in hostnames, namespace and unit names. */
const Name = z
    .string()
    .regex(/^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$/, "must be 1-32 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'");

const Ipv4Like = /^\d{1,3}(\.\d{1,3}){3}(\/\d+)?$/;

/**
 * Free text of at most `max` characters on one line: no control characters (an ESC would reach
 * the terminal of whoever runs `nublar site show`), no bidi overrides (see ./text.ts).
 */
function oneLineText(max: number) {
    return z.string().max(max).superRefine(noControlChars);
}

function noControlChars(value: string, ctx: z.RefinementCtx): void {
    const found = findControlChar(value);
    if (found) ctx.addIssue({ code: "custom", message: `must be one line of text without control characters (found ${found}); in YAML, write a block scalar as '>-', not '>'` });
}

/**
 * An IPv6 prefix in CIDR form (hex groups only: no zone, no brackets, no spaces, no dotted
 * IPv4), network-aligned, of exactly `length` bits (any length when absent). Parsed as its
 * canonical text (RFC 5952: `2001:DB8:A:0::/48` is `2001:db8:a::/48`), which is what the
 * planners copy into configs and firewall rules.
 */
function ipv6Prefix(length?: number) {
    return z.string().superRefine((value, ctx) => {
        if (Ipv4Like.test(value)) {
            ctx.addIssue({ code: "custom", message: "the site is IPv6-only; IPv4 prefixes are not allowed" });
            return;
        }
        const parsed = parseIpv6Prefix(value);
        if (!parsed.ok) {
            ctx.addIssue({ code: "custom", message: parsed.reason });
            return;
        }
        if (length !== undefined && parsed.value.length !== length) {
            ctx.addIssue({ code: "custom", message: `must be a /${length}` });
        }
    }).transform(canonicalPrefix);
}

/** An IPv6 prefix of any length, network-aligned (a firewall source, say). */
const Ipv6AnyPrefix = ipv6Prefix();

/**
 * A DNS host name of RFC 1123 labels: letters, digits and '-', not starting or ending with '-',
 * 1-63 characters each, 253 in all. Its last label starts with a letter: all-numeric and 0x
 * forms (`167772163`, `10.0.0.3`, `0xa000003`) are IPv4 addresses to the resolver.
 */
const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why `host` is not a DNS host name or an IPv6 address the site may name, or undefined. */
function hostProblem(host: string): string | undefined {
    if (host.includes(":")) {
        const parsed = parseIpv6Address(host);
        return parsed.ok ? undefined : parsed.reason;
    }
    const labels = host.split(".");
    if (host.length <= 253 && labels.every((l) => DNS_LABEL.test(l))) {
        if (/^[A-Za-z]/.test(labels[labels.length - 1])) return undefined;
        return "the site is IPv6-only, and a numeric host is an IPv4 address; use an IPv6 address or a DNS name";
    }
    if (Ipv4Like.test(host)) return "the site is IPv6-only; use an IPv6 address or a DNS name";
    return "must be a DNS name (dot-separated labels of letters, digits and '-', RFC 1123) or an IPv6 address";
}

/**
 * A host or address to reach over SSH: a DNS name (RFC 1123) or an IPv6 address (parsed as its
 * canonical text), never IPv4 (dotted, numeric or IPv4-mapped). It is pasted into ssh command
 * lines and known_hosts lines, so nothing else: no spaces, no ';', no leading '-', no zone.
 */
const SshHost = z.string().max(253).superRefine((host, ctx) => {
    const problem = hostProblem(host);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
}).transform((host) => (host.includes(":") ? canonicalAddress(host) : host));

/**
 * The alerts' webhook: an https URL (it carries the routing key). Plain http only to the
 * loopback address [::1], for a receiver on this machine (the events tests run one).
 */
const WebhookUrl = z.string().max(2048).superRefine((value, ctx) => {
    const bad = (message: string) => ctx.addIssue({ code: "custom", message });
    const found = findControlChar(value);
    if (found || /[\s\\]/.test(value)) return bad(`must be a URL without spaces, backslashes or control characters${found ? ` (found ${found})` : ""}`);
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        return bad("must be an https URL, like https://events.pagerduty.com/v2/enqueue");
    }
    const loopback = url.hostname === "[::1]";
    if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
        return bad("must be an https URL (plain http only to [::1], a receiver on this machine), like https://events.pagerduty.com/v2/enqueue");
    }
    if (url.username || url.password) return bad("must not carry credentials (user:password@): alerts authenticate with the routing key (nublar:pagerDutyRoutingKey)");
    if (url.hostname.startsWith("[")) {
        const problem = hostProblem(url.hostname.slice(1, -1));
        if (problem && !loopback) return bad(`host ${url.hostname}: ${problem}`);
    } else {
        const problem = hostProblem(url.hostname);
        if (problem) return bad(`host '${url.hostname}': ${problem}`);
    }
});

/** host:port, IPv6 as [addr]:port (parsed as its canonical text): the event bus's brokers. */
const HostPort = z.string().max(300).superRefine((value, ctx) => {
    const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
    if (!m) {
        ctx.addIssue({ code: "custom", message: "must be host:port, IPv6 as [addr]:port" });
        return;
    }
    const host = m[1] ?? m[2];
    const problem = m[1] !== undefined ? (m[1].includes(":") ? hostProblem(m[1]) : "must be an IPv6 address in brackets") : host.includes(":") ? "an IPv6 address goes in brackets" : hostProblem(host);
    if (problem) ctx.addIssue({ code: "custom", message: `host '${host}': ${problem}` });
    const port = Number(m[3]);
    if (port < 1 || port > 65535) ctx.addIssue({ code: "custom", message: "port must be 1-65535" });
}).transform((value) => value.replace(/^\[([^\]]*)\]/, (_, addr: string) => `[${canonicalAddress(addr)}]`));

/** An OpenSSH public host key line, pinned: `ssh-ed25519 AAAA...`. */
export const HostKey = z
    .string()
    .regex(
        /^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/]+={0,3}( .*)?$/,
        "must be an OpenSSH public key line such as 'ssh-ed25519 AAAA...' (see ssh-keyscan)",
    )
    .max(16_384)
    // The comment is free text, and the line is written into known_hosts files.
    .superRefine(noControlChars);

export const SshEndpoint = z.strictObject({
    host: SshHost,
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a POSIX user name (at most 32 characters)").default("root"),
    /** The node's host key, pinned: deploys refuse a host presenting any other key. */
    hostKey: HostKey,
});

/** BFD timers, as RFC 5880 names them: what a system sends, what it accepts, and its multiplier. */
export const BfdTimers = z.strictObject({
    transmitIntervalMs: z.number().int().min(1).max(60_000),
    receiveIntervalMs: z.number().int().min(1).max(60_000),
    detectMultiplier: z.number().int().min(1).max(255),
});

export const Provider = z.strictObject({
    name: Name,
    /** One /48 per provider per site: uplinks, loopbacks and overlay addresses come from it. */
    prefix: ipv6Prefix(48),
    asn: z.number().int().min(1).max(4294967295).optional(),
    /**
     * The BFD timers the provider's router runs on our uplinks, as agreed with the provider.
     * Absent: it matches ours (the lab's routers are configured that way). The SLA policy
     * negotiates detection times from both ends (policy/README.md).
     */
    bfd: BfdTimers.optional(),
    /**
     * A node's address in each of its uplink /64s on this provider (the provider's router is
     * ::1). Default: ::2, or ::10 when the provider's block is an AWS VPC's (aws.vpc.uplinks),
     * since AWS reserves the first four addresses of every subnet.
     */
    uplinkHost: z.number().int().min(2).max(0xffff).optional(),
});

export const Uplink = z.strictObject({
    /** Name of one of the site's providers. */
    provider: Name,
});

export const NodeRole = z.enum(["edge", "core", "app", "ledger", "sensor-gateway"]);

export const SiteNode = z.strictObject({
    name: Name,
    role: NodeRole,
    /**
     * A stable number for the node, used to derive its addresses. Optional: by default it is
     * derived from the name, so that adding or removing a node never renumbers the others.
     */
    id: z.number().int().min(1).max(0x3fff).optional(),
    /** Rack, room or zone: replicas must spread across these. */
    failureDomain: Name,
    uplinks: z.array(Uplink).min(1),
    /**
     * How deploys reach the node. Required outside the lab, where the lab generates its own,
     * and on EC2 nodes, whose address is planned and whose host key nublar generates.
     */
    ssh: SshEndpoint.optional(),
    /**
     * Data centers: the node is an EC2 instance running NixOS in the site's VPC (aws.vpc), one
     * network interface per uplink, in the availability zone named by failureDomain.
     */
    ec2: z.strictObject({
        /** Overrides aws.nixos.instanceType for this node. */
        instanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "must be an EC2 instance type such as m7i.large").optional(),
    }).optional(),
});

export const IngressService = z.strictObject({
    name: Name,
    port: z.number().int().min(1).max(65535),
    /** Node names that serve this service; BFD state decides which are live. */
    upstreams: z.array(Name).min(1),
    /**
     * Panic routing (default false): when BFD finds no member live, send to all of them rather
     * than answer 503 "no live upstream members", as Envoy's panic threshold does. For stalls of
     * the edge's own BFD thread, which make every peer look down at once while the backends are
     * fine (bench/README.md, agent-failover). Nginx's retries (proxy_next_upstream) still skip a
     * member that really is dead. As soon as one member is live again, only live members are used.
     */
    panic: z.boolean().optional(),
});

/** How often a kind of component fails, and how long it takes to repair: the availability model's inputs. */
export const FailureRate = z.strictObject({
    perYear: z.number().min(0).max(10_000),
    repairHours: z.number().min(0).max(8760),
});

export const Sla = z.strictObject({
    /** Availability target as a fraction, e.g. 0.999999 for "six nines". */
    availability: z.number().gt(0).lt(1),
    /** Maximum time from a path failing to traffic moving off it, in milliseconds. */
    failoverBudgetMs: z.number().int().min(1).max(60_000),
    /**
     * Stated failure rates, the inputs of the SLA policy's availability estimate (policy/README.md
     * "The availability model"). The defaults are conservative figures for owned hardware and
     * transit; state your own from your providers' contracts and your fleet's history.
     */
    failureRates: z.strictObject({
        node: FailureRate.default({ perYear: 1, repairHours: 4 }),
        provider: FailureRate.default({ perYear: 2, repairHours: 4 }),
        failureDomain: FailureRate.default({ perYear: 0.1, repairHours: 8 }),
    }).prefault({}),
    /**
     * After BFD declares a path down, the time for the agent to move routes and Nginx's members
     * (bench/agent-failover measures it; the default leaves room above the lab's median).
     */
    reactionMs: z.number().int().min(0).max(60_000).default(50),
});

export const LabSettings = z.strictObject({
    /**
     * Short tag that names everything the lab creates on this machine (namespaces `nbl-<tag>-*`,
     * bridge `nb<tag>`), so that a test lab and the user's lab never collide.
     */
    tag: z.string().regex(/^[a-z][a-z0-9]{0,7}$/, "must be 1-8 characters of a-z and 0-9, starting with a letter").default("lab"),
    /** ULA /64 for the management bridge that the host uses to reach nodes (SSH). */
    managementPrefix: ipv6Prefix(64).default("fd6e:626c:6172::/64"),
});

const awsId = (prefix: string, what: string) =>
    z.string().regex(new RegExp(`^${prefix}-[0-9a-f]{8,17}$`), `must be ${what} id such as ${prefix}-0123456789abcdef0`);

/** One of the VPC's IPv6 blocks: a site provider's /48, brought to AWS (BYOIP) and held in an IPAM pool. */
export const AwsVpcUplink = z.strictObject({
    /** The site provider whose /48 this block is; EC2 nodes' uplinks to it are subnets of it. */
    provider: Name,
    /** The IPAM pool that holds the provider's /48 (aws ec2 describe-ipam-pools). */
    ipamPoolId: awsId("ipam-pool", "an IPAM pool"),
    /**
     * Where these subnets send ::/0: the VPC's Internet gateway, or the provider's Direct Connect
     * virtual private gateway (nublar attaches it to the VPC, so it must not be attached to
     * another). Transit gateways are refused: AWS attaches them only through subnets with IPv4.
     */
    route: z.union([
        z.literal("internet-gateway"),
        z.strictObject({ virtualGatewayId: awsId("vgw", "a virtual private gateway") }),
        // Parsed only to be refused with the reason (the site's rules below).
        z.strictObject({ transitGatewayId: z.string().max(64) }),
    ]).default("internet-gateway"),
});

/** The data center's IPv6-only VPC (components/aws/vpc.ts). */
export const AwsVpc = z.strictObject({
    uplinks: z.array(AwsVpcUplink).min(1),
    /** Prefixes that may reach the nodes' SSH besides the site's own (the operators' networks). */
    sshFrom: z.array(Ipv6AnyPrefix).default([]),
});

/** EC2 NixOS nodes (components/aws/nixos-instance.ts). */
export const AwsNixos = z.strictObject({
    /** The NixOS AMI in the site's region, pinned by id (the NixOS project publishes one per release and region). */
    ami: awsId("ami", "an AMI"),
    instanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "must be an EC2 instance type such as m7i.large").default("m7i.large"),
    rootVolumeGiB: z.number().int().min(8).max(16_384).default(40),
    /** How long a new instance may take to boot and answer SSH before its first deploy fails. */
    bootTimeoutMs: z.number().int().min(10_000).max(3_600_000).default(600_000),
});

export const Aws = z.strictObject({
    region: z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, "must be an AWS region such as eu-west-1"),
    replicaRegion: z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, "must be an AWS region such as eu-central-1"),
    /**
     * Build the site's data lake in S3 (components/aws/data-lake.ts): buckets `<site>-lake-*`.
     * Off by default: it needs Pulumi's AWS provider plugin, which this repository's engine
     * build cannot fetch (README, "Kubernetes and AWS").
     */
    dataLake: z.boolean().default(false),
    /** The IPv6-only VPC that EC2 nodes (nodes[].ec2) live in. */
    vpc: AwsVpc.optional(),
    /** How EC2 nodes are built. Required when any node is an EC2 node. */
    nixos: AwsNixos.optional(),
});

/** An image reference pinned by digest: what was reviewed is what runs (policy: image-digest). */
export const PINNED_IMAGE = /^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$/;
const ImageRef = z.string().regex(PINNED_IMAGE, "must be pinned by digest: registry/name@sha256:<64 hex digits> (images/README.md)");

/**
 * The site's Kubernetes workloads (components/k8s): the ledger on CloudNativePG, the event bus
 * on Strimzi, and the legacy LAMP apps. The lab runs a single-node cluster of its own (lab/kube)
 * with images built here from Debian packages (scripts/images): there, `images` and the apps'
 * `image` may be left out (the lab's own are used), and the ledger and the event bus stay on
 * this machine.
 */
export const KubernetesSettings = z.strictObject({
    namespace: Name.default("nublar"),
    /** Required outside the lab. */
    images: z.strictObject({ postgres: ImageRef, redis: ImageRef, cacheProxy: ImageRef }).optional(),
    /**
     * The operators the ledger and the event bus need (CloudNativePG, Strimzi; versions pinned in
     * components/k8s/operators.ts): `install` (default) has this stack install them from their
     * Helm charts, which needs the charts' repositories; `preinstalled` trusts the cluster's
     * platform team to run those versions, and installs nothing cluster-wide.
     */
    operators: z.enum(["install", "preinstalled"]).default("install"),
    /** Run the ledger's shards on CloudNativePG here (default), with backups to `ledgerBackups.destination`. */
    ledger: z.boolean().default(true),
    /** Where the ledger's backups go: s3://bucket/prefix, and the Secret with the lake's credentials. Default on a data center: its own lake. */
    ledgerBackups: z.strictObject({
        destination: z.string().max(1024).regex(/^s3:\/\/[a-z0-9.-]+(\/.*)?$/, "must be an s3://bucket/prefix URL").superRefine(noControlChars),
        /** The name of the Kubernetes Secret with the lake's S3 credentials (ACCESS_KEY_ID, ACCESS_SECRET_KEY). */
        credentialsSecretName: Name.default("lake-credentials"),
    }).optional(),
    eventBus: z.strictObject({
        topics: z.array(z.strictObject({
            // Also a Kubernetes object name (the KafkaTopic's): starts and ends with a letter or digit.
            name: z.string().regex(/^[a-z0-9]([a-z0-9.-]{0,247}[a-z0-9])?$/, "topic names are a-z, 0-9, '.' and '-', starting and ending with a letter or digit"),
            partitions: z.number().int().min(1).max(1000).optional(),
            retentionHours: z.number().int().min(1).max(87_600).optional(),
        })).min(1),
    }).optional(),
    lamp: z.array(z.strictObject({
        name: Name,
        /** Required outside the lab; the lab's default is its stand-in image (images/lab-lamp). */
        image: ImageRef.optional(),
        replicas: z.number().int().min(2).max(100).default(2),
        maxReplicas: z.number().int().min(2).max(1000).optional(),
        stateful: z.boolean().default(false),
        storageClass: Name.default("ssd"),
        size: z.string().regex(/^\d+(Mi|Gi|Ti)$/, "a size like 10Gi").default("10Gi"),
    })).default([]),
});

export const SiteKind = z.enum(["lab", "park", "datacenter"]);

/**
 * The overlay between nodes: one tunnel segment per provider, over that provider's uplinks.
 * WireGuard in production; VXLAN over IPv6 where the kernel has no WireGuard (the lab).
 * Default: `vxlan` for lab sites, `wireguard` elsewhere.
 */
export const OverlaySettings = z.strictObject({
    transport: z.enum(["wireguard", "vxlan"]).optional(),
});

/** How `pulumi up` deploys the site's nodes (components/nixos). */
export const DeploySettings = z.strictObject({
    /** `nixos`: nixos-rebuild on the node. `lab`: the lab's namespace nodes. Default: by site kind. */
    activation: z.enum(["nixos", "lab"]).optional(),
    /** What nixos-rebuild does with the new generation. */
    mode: z.enum(["switch", "boot", "test", "dry-activate"]).default("switch"),
    /** Nodes deployed at once, after the canary. */
    maxParallel: z.number().int().min(1).max(1000).default(4),
    /** Deploy one node first, and the rest only if it confirms: `true` picks the first node in the list, or name one. */
    canary: z.union([z.boolean(), Name]).default(true),
    /** After activation, the node must be reachable and its BFD sessions Up within this, or it rolls back. */
    confirmTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
});

/**
 * The Unicorn ledger (ledger/): tamper-evident telemetry history on PostgreSQL, one database per
 * vertical shard, replicated to a quorum, with signed checkpoints. In the lab it runs on this
 * machine (a primary and standbys on ::1); in parks and data centers on CloudNativePG.
 */
export const LedgerSettings = z.strictObject({
    /** Vertical shards by telemetry domain; each is its own database (and, in production, can be its own cluster). */
    shards: z.array(z.string().regex(SHARD_NAME, "shard names are lowercase letters, digits and _, starting with a letter"))
        .min(1).default(["habitat", "network", "security", "audit"])
        .refine((s) => new Set(s).size === s.length, "shard names must be unique"),
    /** PostgreSQL instances per shard cluster: a primary and (instances - 1) standbys; commits wait for ANY 1 standby. */
    instances: z.number().int().min(1).max(9).default(3),
    /** A signed checkpoint every `entries` entries or `ms` milliseconds, whichever comes first. */
    checkpoint: z.strictObject({
        entries: z.number().int().min(1).max(1_000_000).default(1000),
        ms: z.number().int().min(100).max(3_600_000).default(5000),
    }).prefault({}),
    /**
     * Commits wait for a synchronous standby. `required`: a commit waits until one acknowledges,
     * even if none is up (CloudNativePG's dataDurability). `preferred` lets the primary go on
     * alone, which can lose acknowledged entries; the SLA policy refuses it.
     */
    dataDurability: z.enum(["required", "preferred"]).default("required"),
    /** Backups (CloudNativePG's scheduled base backups and WAL archive). Required outside the lab. */
    backup: z.strictObject({
        /** Six-field cron schedule of base backups, as CloudNativePG takes it. */
        schedule: z.string().max(200).regex(/^[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){5}$/, "must be a six-field cron schedule on one line, fields separated by spaces, like '0 0 3 * * *'"),
        retentionDays: z.number().int().min(1).max(3650),
    }).optional(),
    /**
     * Where signed checkpoints are anchored: `object-lock`, the site's lake bucket under S3 Object
     * Lock (compliance mode); `directory`, a write-once local folder (the lab's lake). Default:
     * `directory` in the lab, `object-lock` elsewhere.
     */
    anchor: z.enum(["object-lock", "directory"]).optional(),
    /** Lab only: the first of the ports the ledger uses on ::1 (the PostgreSQL instances, then Redis). */
    labBasePort: z.number().int().min(1024).max(32000).default(25430),
});

/**
 * The event pipeline (events/): the Kafka bus every event flows over, the sensor gateway, the
 * ledger and lake consumers, the alerts and the dashboard. In the lab the bus is one KRaft
 * broker on this machine; in parks and data centers, the Strimzi cluster (components/k8s).
 */
export const EventSettings = z.strictObject({
    /** Run the pipeline. Off: agents' events reach the ledger by the ledger's own file collector. */
    enabled: z.boolean().default(true),
    /**
     * Partitions per topic. Kafka orders events within a partition only, so with one partition
     * a replay re-derives exactly the same ledger chain; more partitions spread load but only
     * keep each sensor's and each node's own order.
     */
    partitions: z.number().int().min(1).max(128).default(1),
    /** Where agents and consumers reach the bus outside the lab (host:port, IPv6 as [addr]:port). */
    brokers: z.array(HostPort).optional(),
    /** The sensor gateway's HTTP port. */
    gatewayPort: z.number().int().min(1).max(65535).default(8470),
    /** The dashboard's port on ::1 (`nublar dashboard`). */
    dashboardPort: z.number().int().min(1).max(65535).default(8480),
    /** Alerts go to PagerDuty (Events v2) when a routing key is set: `pulumi config set --secret nublar:pagerDutyRoutingKey`. */
    alerts: z.strictObject({
        /** The Events v2 endpoint; another URL for a PagerDuty-compatible receiver. */
        url: WebhookUrl.default("https://events.pagerduty.com/v2/enqueue"),
    }).prefault({}),
    /** Lab only: the broker's first port (then its controller port, then its management-bridge port). */
    labBasePort: z.number().int().min(1024).max(32000).default(19092),
});

/** The longest site description, in characters. */
export const MAX_DESCRIPTION = 500;

const SiteBase = z.strictObject({
    name: Name,
    kind: SiteKind,
    /** One line for people (`nublar site show`). */
    description: oneLineText(MAX_DESCRIPTION).optional(),
    sla: Sla,
    providers: z.array(Provider).min(1),
    nodes: z.array(SiteNode).min(1),
    ingress: z.array(IngressService).default([]),
    overlay: OverlaySettings.default({}),
    deploy: DeploySettings.default({ mode: "switch", maxParallel: 4, canary: true, confirmTimeoutMs: 60_000 }),
    lab: LabSettings.optional(),
    // prefault: an absent `ledger` is parsed as {}, so the defaults live in one place (above).
    ledger: LedgerSettings.prefault({}),
    aws: Aws.optional(),
    kubernetes: KubernetesSettings.optional(),
    events: EventSettings.prefault({}),
});

// ---- Cross-field rules ----
//
// The rules no single field can check, as small named checks (the way pulumi-awsx's vpc.ts has
// validateSubnets and validateNoGaps). Each takes the parsed site and reports through `issue`;
// SiteSchema runs SITE_CHECKS in order, so the problems come out in the order listed here. Rules
// about one node are NODE_CHECKS, run node by node (a node's problems stay together).
// They live in this file because they read the parsed site's type: a checks.ts beside it would
// import that type from here while this file imports the checks, a module cycle that
// scripts/check-layers refuses.

/** The site as parsed field by field, before the cross-field rules and the defaults by kind. */
export type ParsedSite = z.output<typeof SiteBase>;
type ParsedNode = ParsedSite["nodes"][number];
/** Reports one problem at a path in the site description. */
export type Issue = (path: (string | number)[], message: string) => void;
export type SiteCheck = (site: ParsedSite, issue: Issue) => void;
type NodeCheck = (site: ParsedSite, node: ParsedNode, i: number, issue: Issue) => void;

/** Providers, nodes and ingress services each have distinct names. */
function checkUniqueNames(site: ParsedSite, issue: Issue): void {
    uniqueNames(site.providers, ["providers"], "provider", issue);
    uniqueNames(site.nodes, ["nodes"], "node", issue);
    uniqueNames(site.ingress, ["ingress"], "ingress service", issue);
}

/** The providers' prefixes, parsed once; those the field rules refused are left out. */
function parsedProviderPrefixes(site: ParsedSite): { index: number; first: bigint; last: bigint }[] {
    const out: { index: number; first: bigint; last: bigint }[] = [];
    site.providers.forEach((p, index) => {
        const parsed = parseIpv6Prefix(p.prefix);
        if (parsed.ok) out.push({ index, ...prefixBounds(parsed.value) });
    });
    return out;
}

/**
 * Provider prefixes do not overlap (nor nest, nor repeat): the planner carves disjoint subnets
 * from them. Each prefix is parsed once and the blocks sorted (O(n log n)); as CIDR blocks are
 * either nested or disjoint, a walk in that order with a stack of the blocks that contain the
 * current one finds, for each block, the nearest block that holds it (the first equal one, if any).
 * Each such pair is reported at the provider later in the list, naming the earlier one.
 */
function checkProviderPrefixesDisjoint(site: ParsedSite, issue: Issue): void {
    const blocks = parsedProviderPrefixes(site).sort((a, b) =>
        a.first < b.first ? -1 : a.first > b.first ? 1 : a.last > b.last ? -1 : a.last < b.last ? 1 : a.index - b.index);
    const overlaps: [later: number, earlier: number][] = [];
    const holding: typeof blocks = [];
    for (const b of blocks) {
        while (holding.length && holding[holding.length - 1].last < b.first) holding.pop();
        const outer = holding[holding.length - 1];
        if (outer) overlaps.push(b.index > outer.index ? [b.index, outer.index] : [outer.index, b.index]);
        // A repeat of the block that holds it stays out of the stack: later repeats name the first.
        if (!outer || outer.first !== b.first || outer.last !== b.last) holding.push(b);
    }
    overlaps.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    for (const [j, i] of overlaps) {
        const a = site.providers[i];
        issue(["providers", j, "prefix"], `overlaps providers[${i}] '${showName(a.name)}' (${a.prefix})`);
    }
}

/**
 * The lab's management /64 lies outside every provider's /48: the planners carve those into
 * loopbacks, uplinks, overlay segments and sensor subnets, and the lab's host takes ::1 of it.
 * Also the default one, which a provider's block could hold.
 */
function checkManagementPrefixOutsideProviders(site: ParsedSite, issue: Issue): void {
    const given = site.lab?.managementPrefix;
    const prefix = given ?? (site.kind === "lab" ? LabSettings.parse({}).managementPrefix : undefined);
    if (prefix === undefined) return;
    const parsed = parseIpv6Prefix(prefix);
    // The field rules already reported a malformed prefix.
    if (!parsed.ok) return;
    const mgmt = prefixBounds(parsed.value);
    for (const block of parsedProviderPrefixes(site)) {
        if (block.first <= mgmt.last && mgmt.first <= block.last) {
            const p = site.providers[block.index];
            issue(["lab", "managementPrefix"], `${given === undefined ? `the default, ${prefix}, ` : ""}overlaps providers[${block.index}] '${showName(p.name)}' (${p.prefix}), whose block the planners carve into loopbacks, uplinks and overlay segments: give the management bridge a /64 of its own (a ULA)`);
        }
    }
}

/** Every uplink names one of the site's providers. */
function checkUplinkProvidersExist(site: ParsedSite, node: ParsedNode, i: number, issue: Issue): void {
    const providerNames = namesOf(site.providers);
    node.uplinks.forEach((up, k) => {
        if (!providerNames.has(up.provider)) {
            issue(["nodes", i, "uplinks", k, "provider"], `must name one of the site's providers (${listNames(providerNames)})`);
        }
    });
}

/** A node has at most one uplink per provider. */
function checkOneUplinkPerProvider(_site: ParsedSite, node: ParsedNode, i: number, issue: Issue): void {
    const seen = new Set<string>();
    node.uplinks.forEach((up, k) => {
        if (seen.has(up.provider)) issue(["nodes", i, "uplinks", k, "provider"], "a node has at most one uplink per provider");
        seen.add(up.provider);
    });
}

/** An EC2 node is in a data center with a VPC, has no SSH endpoint of its own, and sits in one of the region's zones. */
function checkEc2Node(site: ParsedSite, node: ParsedNode, i: number, issue: Issue): void {
    if (!node.ec2) return;
    // EC2 nodes: planned addresses in the VPC, generated host keys (components/aws).
    if (site.kind !== "datacenter") issue(["nodes", i, "ec2"], "EC2 nodes belong to datacenter sites");
    if (node.ssh) issue(["nodes", i, "ssh"], "is derived on an EC2 node (its planned address and the host key nublar generates); remove it");
    if (!site.aws?.vpc) issue(["nodes", i, "ec2"], "needs the site's VPC: give aws.vpc.uplinks");
    const region = site.aws?.region;
    const zone = node.failureDomain;
    if (region !== undefined && !(zone.length === region.length + 1 && zone.startsWith(region) && /[a-z]$/.test(zone))) {
        issue(["nodes", i, "failureDomain"], `must be an availability zone of ${showName(region)} (like ${showName(region)}a) on an EC2 node`);
    }
}

/** With a VPC: an EC2 node's uplinks are all in the VPC's blocks, and no other node's uplink is. */
function checkUplinksAgainstVpc(site: ParsedSite, node: ParsedNode, i: number, issue: Issue): void {
    if (!site.aws?.vpc) return;
    const vpcBlocks = vpcProviders(site);
    node.uplinks.forEach((up, k) => {
        const inVpc = vpcBlocks.has(up.provider);
        if (node.ec2 && !inVpc) {
            issue(["nodes", i, "uplinks", k, "provider"], `an EC2 node's uplinks are subnets of the VPC's blocks; list '${showName(up.provider)}' in aws.vpc.uplinks or remove this uplink`);
        } else if (!node.ec2 && inVpc) {
            // The VPC routes a whole block to itself: a /64 of it elsewhere is unreachable from it.
            issue(["nodes", i, "uplinks", k, "provider"], `'${showName(up.provider)}' is one of the VPC's blocks (aws.vpc.uplinks): only EC2 nodes (nodes[].ec2) can have uplinks in it`);
        }
    });
}

/** Outside the lab, a node that is not an EC2 node has an SSH endpoint. */
function checkSshOutsideLab(site: ParsedSite, node: ParsedNode, i: number, issue: Issue): void {
    if (!node.ec2 && site.kind !== "lab" && !node.ssh) {
        issue(["nodes", i, "ssh"], "is required outside the lab: give host, user and the pinned hostKey");
    }
}

/** The rules about one node, in the order its problems are reported. */
const NODE_CHECKS: readonly NodeCheck[] = [
    checkUplinkProvidersExist,
    checkOneUplinkPerProvider,
    checkEc2Node,
    checkUplinksAgainstVpc,
    checkSshOutsideLab,
];

/** Each node, by NODE_CHECKS. */
function checkEachNode(site: ParsedSite, issue: Issue): void {
    site.nodes.forEach((node, i) => {
        for (const check of NODE_CHECKS) check(site, node, i, issue);
    });
}

/** EC2 nodes, together: the site says how to build them (aws.nixos), and they span two or more zones. */
function checkEc2Fleet(site: ParsedSite, issue: Issue): void {
    const ec2Nodes = site.nodes.filter((n) => n.ec2);
    if (!ec2Nodes.length) return;
    if (site.aws && !site.aws.nixos) issue(["aws", "nixos"], "is required when nodes are EC2 nodes: give ami (the NixOS AMI in the region)");
    const zones = new Set(ec2Nodes.map((n) => n.failureDomain));
    if (zones.size < 2) issue(["nodes"], `EC2 nodes must span at least two availability zones (all are in ${showName([...zones][0])})`);
}

/** The VPC's blocks: each names a provider, once, routes without a transit gateway, and leaves AWS its reserved addresses. */
function checkVpcBlocks(site: ParsedSite, issue: Issue): void {
    if (!site.aws?.vpc) return;
    const providerNames = namesOf(site.providers);
    const providerIndex = new Map<string, number>();
    site.providers.forEach((p, i) => {
        if (!providerIndex.has(p.name)) providerIndex.set(p.name, i);
    });
    const seenVpc = new Set<string>();
    site.aws.vpc.uplinks.forEach((v, k) => {
        if (!providerNames.has(v.provider)) issue(["aws", "vpc", "uplinks", k, "provider"], `must name one of the site's providers (${listNames(providerNames)})`);
        if (seenVpc.has(v.provider)) issue(["aws", "vpc", "uplinks", k, "provider"], `'${showName(v.provider)}' is listed twice`);
        if (typeof v.route === "object" && "transitGatewayId" in v.route) {
            issue(["aws", "vpc", "uplinks", k, "route"], "transit gateways attach only through subnets with IPv4 (an AWS rule), and the VPC is IPv6-only: route this provider through its Direct Connect virtual private gateway ({ virtualGatewayId })");
        }
        seenVpc.add(v.provider);
        const index = providerIndex.get(v.provider);
        const host = index === undefined ? undefined : site.providers[index].uplinkHost;
        if (index !== undefined && host !== undefined && host < 4) {
            issue(["providers", index, "uplinkHost"], "AWS reserves the first four addresses of every subnet (::0 to ::3); use 4 or more");
        }
    });
}

/** Every ingress upstream names one of the site's nodes, once. */
function checkIngressUpstreams(site: ParsedSite, issue: Issue): void {
    const nodeNames = namesOf(site.nodes);
    site.ingress.forEach((svc, i) => {
        const seen = new Set<string>();
        svc.upstreams.forEach((u, k) => {
            if (!nodeNames.has(u)) issue(["ingress", i, "upstreams", k], `must name one of the site's nodes (${listNames(nodeNames)})`);
            // A repeated node is not redundancy; the policy pack and the SLA estimate count upstreams.
            if (seen.has(u)) issue(["ingress", i, "upstreams", k], `'${showName(u)}' is listed twice`);
            seen.add(u);
        });
    });
}

/** Deploys: a named canary is one of the site's nodes, and 'lab' activation is for the lab. */
function checkDeploy(site: ParsedSite, issue: Issue): void {
    if (typeof site.deploy.canary === "string" && !namesOf(site.nodes).has(site.deploy.canary)) {
        issue(["deploy", "canary"], `must name one of the site's nodes (${listNames(namesOf(site.nodes))}), or be true or false`);
    }
    if (site.deploy.activation === "lab" && site.kind !== "lab") issue(["deploy", "activation"], "'lab' activation only deploys to the lab's namespace nodes; use 'nixos'");
}

/**
 * Settings that belong to some kinds of site: lab settings to labs, AWS to data centers
 * (required). The lab's event bus runs on this machine, never on its cluster; outside the lab,
 * every image is given, pinned.
 */
function checkSettingsForKind(site: ParsedSite, issue: Issue): void {
    if (site.kind !== "lab" && site.lab) issue(["lab"], "is only allowed on sites of kind 'lab'");
    if (site.kind === "datacenter" && !site.aws) issue(["aws"], "is required for a datacenter site: give region and replicaRegion");
    const k = site.kubernetes;
    if (!k) return;
    if (site.kind === "lab") {
        if (k.eventBus) issue(["kubernetes", "eventBus"], "is not allowed in the lab: the lab's event bus runs on this machine (lab/event-bus.ts)");
        return;
    }
    if (!k.images) issue(["kubernetes", "images"], "is required outside the lab: give postgres, redis and cacheProxy, pinned by digest (images/README.md)");
    k.lamp.forEach((app, i) => {
        if (!app.image) issue(["kubernetes", "lamp", i, "image"], "is required outside the lab: the app's image, pinned by digest (images/centos7-lamp)");
    });
}

/** Kubernetes: the ledger there has backups and a place for them; LAMP apps and topics have distinct names; maxReplicas is not below replicas. */
function checkKubernetes(site: ParsedSite, issue: Issue): void {
    const k = site.kubernetes;
    // The lab's ledger keeps no backups (the policy pack exempts it): its CloudNativePG clusters have none.
    if (site.kind !== "lab" && k?.ledger && !k.ledgerBackups && !site.aws?.dataLake) issue(["kubernetes", "ledgerBackups"], "is required when the ledger runs on Kubernetes and the site builds no data lake (aws.dataLake): give destination (s3://bucket/prefix)");
    if (site.kind !== "lab" && k?.ledger && !site.ledger.backup) issue(["ledger", "backup"], "is required when the ledger runs on Kubernetes: give schedule and retentionDays");
    if (!k) return;
    uniqueNames(k.lamp, ["kubernetes", "lamp"], "LAMP app", issue);
    if (k.eventBus) uniqueNames(k.eventBus.topics, ["kubernetes", "eventBus", "topics"], "topic", issue);
    k.lamp.forEach((app, i) => {
        if (app.maxReplicas !== undefined && app.maxReplicas < app.replicas) issue(["kubernetes", "lamp", i, "maxReplicas"], `is below replicas (${app.replicas})`);
    });
}

/** The cross-field rules, in the order SiteSchema runs them (and reports their problems). */
export const SITE_CHECKS: readonly SiteCheck[] = [
    checkUniqueNames,
    checkProviderPrefixesDisjoint,
    checkManagementPrefixOutsideProviders,
    checkEachNode,
    checkEc2Fleet,
    checkVpcBlocks,
    checkIngressUpstreams,
    checkDeploy,
    checkSettingsForKind,
    checkKubernetes,
];

/** The site: each field by its own rule, then the cross-field rules (SITE_CHECKS), then the defaults that depend on the kind of site. */
export const SiteSchema = SiteBase.superRefine((site, ctx) => {
    const issue: Issue = (path, message) => ctx.addIssue({ code: "custom", path, message });
    for (const check of SITE_CHECKS) check(site, issue);
}).transform((site) => {
    const blocks = vpcProviders(site);
    return {
        ...site,
        providers: site.providers.map((p) => ({ ...p, uplinkHost: p.uplinkHost ?? (blocks.has(p.name) ? 0x10 : 2) })),
        lab: site.kind === "lab" ? site.lab ?? LabSettings.parse({}) : site.lab,
        overlay: { transport: site.overlay.transport ?? (site.kind === "lab" ? "vxlan" as const : "wireguard" as const) },
        deploy: { ...site.deploy, activation: site.deploy.activation ?? (site.kind === "lab" ? "lab" as const : "nixos" as const) },
        ledger: { ...site.ledger, anchor: site.ledger.anchor ?? (site.kind === "lab" ? "directory" as const : "object-lock" as const) },
    };
});

export type Site = z.output<typeof SiteSchema>;
export type SiteInput = z.input<typeof SiteSchema>;
export type SiteNode = z.output<typeof SiteNode>;
export type Provider = z.output<typeof Provider>;
export type LabSettings = z.output<typeof LabSettings>;

/**
 * The distinct names of a list (the site's providers or nodes), built once per list: the node
 * checks ask for the providers' names once per node, and a site may have 60,000 nodes.
 */
const nameSets = new WeakMap<readonly { name: string }[], Set<string>>();
function namesOf(items: readonly { name: string }[]): Set<string> {
    let names = nameSets.get(items);
    if (!names) {
        names = new Set(items.map((i) => i.name));
        nameSets.set(items, names);
    }
    return names;
}

/** The providers whose /48 is one of the data center VPC's blocks (aws.vpc.uplinks). */
function vpcProviders(site: { aws?: { vpc?: { uplinks: { provider: string }[] } } }): Set<string> {
    return new Set(site.aws?.vpc?.uplinks.map((v) => v.provider));
}

function uniqueNames(
    items: { name: string }[],
    path: string[],
    what: string,
    issue: Issue,
): void {
    const first = new Map<string, number>();
    items.forEach((item, i) => {
        const j = first.get(item.name);
        if (j !== undefined) issue([...path, i, "name"], `duplicate ${what} name (also ${path.join(".")}[${j}])`);
        else first.set(item.name, i);
    });
}
