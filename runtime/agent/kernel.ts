// The agent's kernel shell: IPv6 routes, addresses and link events over rtnetlink, with the
// npm `netlink` package. It runs inside the node's network namespace (sockets bind to the
// namespace of the process that opens them). Decisions live in reconcile.ts; this only
// reads and writes kernel state.
import { performance } from "node:perf_hooks";
import { IPv6 } from "ip-num";
import { createRtNetlink, FlagsNew, rt, type RtNetlinkSocket } from "netlink";
import { formatIpv6 } from "../../model/network/addressing";
import type { RouteEvent } from "../../model/vocabulary";

const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const FOREVER = 0xffffffff;

/** A route as the kernel holds it, in the planner's terms. */
export interface InstalledRoute {
    destination: string;
    source?: string;
    metric: number;
    via: string;
    dev: string;
    preferredSource?: string;
    /** The raw message fields, to delete exactly this route. */
    raw: { data: any; attrs: rt.RouteAttrs };
}

export type LinkEvent = "link-up" | "link-down";

/** What rtnetlink says happened: to a route (model/vocabulary.ts ROUTE_EVENTS), or to a link. */
export type KernelEvent =
    | {
        kind: RouteEvent;
        /** Milliseconds since the epoch, sub-millisecond (taken when the message arrived). */
        at: number;
        route: { destination: string; source?: string; metric: number; dev?: string; protocol: number };
    }
    | { kind: LinkEvent; at: number; link?: string };

/** The route event of each rtnetlink route message. */
const ROUTE_EVENT_OF: Readonly<Record<"NEWROUTE" | "DELROUTE", RouteEvent>> = { NEWROUTE: "route-added", DELROUTE: "route-removed" };

export function addressBytes(address: string): Buffer {
    const value = IPv6.fromString(address).getValue();
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(value >> 64n, 0);
    b.writeBigUInt64BE(value & 0xffffffffffffffffn, 8);
    return b;
}

export function addressText(b: Buffer | undefined): string | undefined {
    if (!b || b.length !== 16) return undefined;
    return formatIpv6((b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8));
}

function splitPrefix(cidr: string): { address: string; length: number } {
    const [address, len] = cidr.split("/");
    return { address, length: len === undefined ? 128 : Number(len) };
}

const protocolNumber = (p: unknown): number => (typeof p === "number" ? p : (rt.RouteProtocol as any)[p as string] ?? -1);

export class Kernel {
    /**
     * One request at a time: the netlink package matches replies by sequence number but
     * cannot interleave two multipart dumps on one socket (they fail with EBUSY or a broken
     * multipart message), so requests queue here.
     */
    private queue: Promise<unknown> = Promise.resolve();
    private readonly links = new Map<string, number>();
    private readonly names = new Map<number, string>();
    private events?: RtNetlinkSocket;

    private constructor(private readonly nl: RtNetlinkSocket) {}

    private serial<T>(fn: () => Promise<T>): Promise<T> {
        const run = this.queue.then(fn, fn);
        this.queue = run.catch(() => undefined);
        return run;
    }

    static async open(): Promise<Kernel> {
        const k = new Kernel(createRtNetlink({ recvBufferSize: 0, sendBufferSize: 0 } as any));
        k.nl.socket.on("error", () => undefined);
        await k.refreshLinks();
        return k;
    }

    async refreshLinks(): Promise<void> {
        this.links.clear();
        this.names.clear();
        for (const l of await this.serial(() => this.nl.getLinks())) {
            if (l.attrs.ifname === undefined || l.data.index === undefined) continue;
            this.links.set(l.attrs.ifname, l.data.index);
            this.names.set(l.data.index, l.attrs.ifname);
        }
    }

    ifindex(name: string): number {
        const i = this.links.get(name);
        if (i === undefined) throw new Error(`no interface '${name}' in this namespace`);
        return i;
    }

    /** IPv6 routes in the main table carrying `protocol`. */
    async routes(protocol: number): Promise<InstalledRoute[]> {
        const out: InstalledRoute[] = [];
        for (const r of await this.serial(() => this.nl.getRoutes({ family: AF_INET6 } as any))) {
            if (protocolNumber(r.data.protocol) !== protocol) continue;
            if ((r.attrs.table ?? r.data.table) !== RT_TABLE_MAIN) continue;
            const dst = addressText(r.attrs.dst) ?? "::";
            out.push({
                destination: `${dst}/${r.data.dstLen}`,
                source: r.data.srcLen ? `${addressText(r.attrs.src)}/${r.data.srcLen}` : undefined,
                metric: r.attrs.priority ?? 0,
                via: addressText(r.attrs.gateway) ?? "",
                dev: this.names.get(r.attrs.oif ?? -1) ?? `if${r.attrs.oif}`,
                preferredSource: addressText(r.attrs.prefsrc),
                raw: { data: r.data, attrs: r.attrs },
            });
        }
        return out;
    }

    /** Add or replace one route (same destination, source and metric). */
    async setRoute(r: { destination: string; source?: string; preferredSource?: string; via: string; dev: string; metric: number }, protocol: number): Promise<void> {
        const dst = splitPrefix(r.destination);
        const src = r.source ? splitPrefix(r.source) : undefined;
        const attrs: rt.RouteAttrs = { gateway: addressBytes(r.via), oif: this.ifindex(r.dev), priority: r.metric };
        if (dst.length > 0) attrs.dst = addressBytes(dst.address);
        if (src && src.length > 0) attrs.src = addressBytes(src.address);
        if (r.preferredSource) attrs.prefsrc = addressBytes(r.preferredSource);
        await this.serial(() => this.nl.newRoute({
            family: AF_INET6, table: RT_TABLE_MAIN, protocol, type: rt.RouteType.UNICAST, scope: rt.RouteScope.UNIVERSE,
            dstLen: dst.length, srcLen: src?.length ?? 0,
        } as any, attrs, { flags: FlagsNew.REPLACE | FlagsNew.CREATE } as any));
    }

    async deleteRoute(r: InstalledRoute): Promise<void> {
        const { data, attrs } = r.raw;
        await this.serial(() => this.nl.delRoute({ ...data } as any, { dst: attrs.dst, src: attrs.src, priority: attrs.priority, gateway: attrs.gateway, oif: attrs.oif } as any));
    }

    /** Global IPv6 addresses on a link (address/prefix length). */
    async addresses(ifname: string): Promise<{ address: string; prefixLength: number; deprecated: boolean }[]> {
        const index = this.ifindex(ifname);
        const out = [];
        for (const a of await this.serial(() => this.nl.getAddresses({ family: AF_INET6 } as any))) {
            if (a.data.index !== index || a.data.scope !== 0 && (a.data.scope as unknown) !== "UNIVERSE") continue;
            const address = addressText(a.attrs.address);
            if (!address) continue;
            out.push({ address, prefixLength: a.data.prefixlen ?? 128, deprecated: a.attrs.cacheInfo?.ifaPrefered === 0 });
        }
        return out;
    }

    /**
     * Set an address's preferred lifetime to 0 (deprecated: kept, but not chosen as a source
     * for new flows, RFC 8678) or back to forever.
     */
    async setDeprecated(ifname: string, address: string, prefixLength: number, deprecated: boolean): Promise<void> {
        await this.serial(() => this.nl.newAddress(
            { family: AF_INET6, prefixlen: prefixLength, index: this.ifindex(ifname) } as any,
            { address: addressBytes(address), flags: { nodad: true }, cacheInfo: { ifaPrefered: deprecated ? 0 : FOREVER, ifaValid: FOREVER } } as any,
            { flags: FlagsNew.REPLACE } as any,
        ));
    }

    /** Make sure an address is on a link (the loopback on `lo`). */
    async ensureAddress(ifname: string, address: string, prefixLength: number): Promise<void> {
        if ((await this.addresses(ifname)).some((a) => a.address === address)) return;
        await this.serial(() => this.nl.newAddress(
            { family: AF_INET6, prefixlen: prefixLength, index: this.ifindex(ifname) } as any,
            { address: addressBytes(address), flags: { nodad: true }, cacheInfo: { ifaPrefered: FOREVER, ifaValid: FOREVER } } as any,
            { flags: FlagsNew.REPLACE | FlagsNew.CREATE } as any,
        ));
    }

    /** Route and link events, timestamped on arrival. */
    watch(onEvent: (e: KernelEvent) => void): void {
        const ev = createRtNetlink({ ref: false, recvBufferSize: 1 << 20, sendBufferSize: 0 } as any);
        this.events = ev;
        ev.socket.on("error", () => undefined);
        ev.addMembership("IPV6_ROUTE" as any);
        ev.addMembership("LINK" as any);
        ev.socket.on("message", (msgs: { type: number; data: Buffer }[]) => {
            const at = performance.timeOrigin + performance.now();
            for (const m of msgs) {
                try {
                    const type = (rt.MessageType as any)[m.type];
                    if (type === "NEWROUTE" || type === "DELROUTE") {
                        const r = rt.parseMessage(m.type, m.data) as any;
                        const d = r.data;
                        if ((d.family as unknown) !== AF_INET6 && (d.family as unknown) !== "INET6") continue;
                        onEvent({
                            kind: ROUTE_EVENT_OF[type as "NEWROUTE" | "DELROUTE"], at,
                            route: {
                                destination: `${addressText(r.attrs.dst) ?? "::"}/${d.dstLen}`,
                                source: d.srcLen ? `${addressText(r.attrs.src)}/${d.srcLen}` : undefined,
                                metric: r.attrs.priority ?? 0,
                                dev: this.names.get(r.attrs.oif ?? -1),
                                protocol: protocolNumber(d.protocol),
                            },
                        });
                    } else if (type === "NEWLINK") {
                        const l = rt.parseMessage(m.type, m.data) as any;
                        const name = l.attrs.ifname ?? this.names.get(l.data.index);
                        if (l.attrs.ifname) { this.links.set(l.attrs.ifname, l.data.index); this.names.set(l.data.index, l.attrs.ifname); }
                        onEvent({ kind: l.data.flags?.up && l.data.flags?.running ? "link-up" : "link-down", at, link: name });
                    }
                } catch {
                    // A message this package cannot parse is not ours to act on.
                }
            }
        });
    }

    close(): void {
        this.events?.socket.close();
        this.nl.socket.close();
    }
}
