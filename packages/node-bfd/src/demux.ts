// Which session a received packet belongs to (RFC 5880 §6.3, RFC 5881 §3, RFC 5883).
// Pure bookkeeping: a nonzero Your Discriminator selects the session; a zero one is
// matched by the peer's address, the interface and the hop mode.
import type { ControlPacket, DropReason } from "./packet";

export interface PeerKey {
    /** Peer address as text; IPv6 link-local addresses carry their zone ("fe80::1%up0"). */
    peer: string;
    /** Local address the session uses, if pinned (for a received packet: where it was sent to). */
    local?: string;
    /** Interface for single-hop sessions. */
    iface?: string;
    multihop: boolean;
}

export function peerKeyString(k: PeerKey): string {
    return `${k.multihop ? "mh" : "sh"}|${k.peer.toLowerCase()}|${(k.local ?? "").toLowerCase()}|${k.iface ?? ""}`;
}

export class Demux<Id> {
    private readonly byDiscr = new Map<number, Id>();
    private readonly byPeer = new Map<string, Id>();

    add(discr: number, key: PeerKey, id: Id): void {
        this.byDiscr.set(discr, id);
        this.byPeer.set(peerKeyString(key), id);
        // Packets to a global address arrive without an interface: also index without it.
        const loose = peerKeyString({ ...key, iface: undefined });
        if (!this.byPeer.has(loose)) this.byPeer.set(loose, id);
    }

    remove(discr: number, key: PeerKey): void {
        const id = this.byDiscr.get(discr);
        this.byDiscr.delete(discr);
        for (const k of [peerKeyString(key), peerKeyString({ ...key, iface: undefined })]) {
            if (this.byPeer.get(k) === id) this.byPeer.delete(k);
        }
    }

    hasDiscriminator(discr: number): boolean {
        return this.byDiscr.has(discr);
    }

    /** `from` is the packet's source as the transport saw it (for zero Your Discriminator). */
    lookup(packet: ControlPacket, from: PeerKey): { ok: true; id: Id } | { ok: false; reason: DropReason } {
        if (packet.yourDiscriminator !== 0) {
            const id = this.byDiscr.get(packet.yourDiscriminator);
            return id === undefined ? { ok: false, reason: "unknown-discriminator" } : { ok: true, id };
        }
        // `from.local` is the address the packet was sent to; sessions without a pinned
        // local address match any.
        const id = this.byPeer.get(peerKeyString(from)) ?? this.byPeer.get(peerKeyString({ ...from, iface: undefined })) ??
            this.byPeer.get(peerKeyString({ ...from, local: undefined })) ?? this.byPeer.get(peerKeyString({ ...from, local: undefined, iface: undefined }));
        return id === undefined ? { ok: false, reason: "no-session" } : { ok: true, id };
    }
}

/** A random nonzero discriminator not yet in use. */
export function allocateDiscriminator(inUse: (d: number) => boolean, random: () => number = Math.random): number {
    for (;;) {
        const d = Math.floor(random() * 0xffff_ffff) + 1;
        if (!inUse(d)) return d >>> 0;
    }
}
