// Free TCP ports on loopback for tests' servers. The OS's answer is only true when asked: a
// port may be taken again before the server binds it, so callers start their servers at once.
import * as net from "node:net";

/** `n` distinct free ports on `host`: all held open while picking, so that they differ. */
export async function freePorts(n: number, host = "::1"): Promise<number[]> {
    const servers = await Promise.all(Array.from({ length: n }, async () => {
        const s = net.createServer();
        await new Promise<void>((resolve, reject) => s.once("error", reject).listen(0, host, resolve));
        return s;
    }));
    const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    return ports;
}

/** One free port on `host`. */
export async function freePort(host = "::1"): Promise<number> {
    return (await freePorts(1, host))[0];
}
