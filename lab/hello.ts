// The lab's small HTTP service: answers every request with the node's name, so a client
// can tell which backend served it. Usage: hello.ts DIR PORT NAME (listens on [::]:PORT).
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

const [dir, port, name] = process.argv.slice(2);
let served = 0;
const server = http.createServer((req, res) => {
    served++;
    res.writeHead(200, { "content-type": "text/plain", "x-served-by": name });
    res.end(`hello from ${name} (${served})\n`);
});
server.keepAliveTimeout = 65_000;
server.listen({ port: Number(port), host: "::" }, () => fs.writeFileSync(path.join(dir, "ready"), `${process.pid}\n`));
process.on("SIGTERM", () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
});
