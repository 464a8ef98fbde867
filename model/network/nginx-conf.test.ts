// The rendered Nginx config is checked by Nginx itself (`nginx -t`), with the Lua module
// loaded, for the balancer and for the benchmark's passive-health baseline.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { nginxTest as nginxTestIn } from "../../test/helpers/nginx";
import { labSiteInput } from "../site/fixtures";
import { parseSite } from "../site/load";
import { planAgent } from "./agent-plan";
import { defaultControlTokenFile, renderNginxConf } from "./nginx-conf";

function ingress() {
    const raw = labSiteInput(["gate", "visitor-center", "control-room"], { lab: { tag: "t1" } });
    raw.nodes[0].role = "edge";
    raw.ingress = [
        { name: "web", port: 8080, upstreams: ["visitor-center", "control-room"] },
        { name: "tickets", port: 8080, upstreams: ["control-room"] },
        { name: "api", port: 9090, upstreams: ["visitor-center"] },
    ];
    return planAgent(parseSite(raw), "gate", { paths: (n) => ({ socket: `/run/${n}.sock`, events: `/run/${n}.jsonl`, nginxControl: "/tmp/x.sock" }) }).ingress;
}

/** `nginx -t` with the control socket and its token in the scratch folder; `token` null: no token file. */
function nginxTest(conf: string, token: string | null = "0123456789abcdef".repeat(4)) {
    return nginxTestIn(conf, (c, dir) => {
        if (token !== null) fs.writeFileSync(path.join(dir, "control.token"), `${token}\n`, { mode: 0o600 });
        return c.replace("/tmp/x.sock", path.join(dir, "control.sock")).replace(`"${defaultControlTokenFile("/tmp/x.sock")}"`, `"${path.join(dir, "control.token")}"`);
    });
}

test("the balancer config passes `nginx -t`, one server per service, the control server on a unix socket only", () => {
    const conf = renderNginxConf({ upstreams: ingress(), controlSocket: "/tmp/x.sock" });
    const r = nginxTest(conf);
    assert.equal(r.status, 0, r.output);
    assert.equal((conf.match(/set \$nublar_upstream /g) ?? []).length, 3);
    assert.equal((conf.match(/listen \[::\]:8080 default_server;/g) ?? []).length, 1, "one default server per port");
    assert.match(conf, /listen unix:\/tmp\/x\.sock;/);
    assert.doesNotMatch(conf, /listen [^u\[]/, "no listener outside the service ports and the unix socket");
    assert.match(conf, /proxy_next_upstream error timeout/);
});

test("the control token: read at start from beside the socket, or from the file given", () => {
    const conf = renderNginxConf({ upstreams: ingress(), controlSocket: "/tmp/x.sock" });
    assert.match(conf, /init_by_lua_block \{ balancer = require "balancer"; balancer\.init\("\/tmp\/control\.token"\) \}/);
    assert.match(renderNginxConf({ upstreams: ingress(), controlSocket: "/tmp/x.sock", controlTokenFile: "/run/credentials/nginx.service/t" }), /balancer\.init\("\/run\/credentials\/nginx\.service\/t"\)/);
    assert.throws(() => renderNginxConf({ upstreams: ingress(), controlSocket: "/tmp/x.sock", controlTokenFile: "/tmp/a\nb" }), /control characters/);
    // (`nginx -t` does not run init_by_lua: that Nginx refuses to start without a token, and
    // refuses control requests without it, is shown by a real Nginx in test/network/nginx-control.test.ts.)
});

test("the passive-health baseline config passes `nginx -t` and lists every member with max_fails and fail_timeout", () => {
    const ups = ingress();
    const conf = renderNginxConf({ upstreams: ups, controlSocket: "/tmp/x.sock", passive: { maxFails: 1, failTimeoutS: 10 } });
    const r = nginxTest(conf);
    assert.equal(r.status, 0, r.output);
    assert.doesNotMatch(conf, /balancer_by_lua|access_by_lua/);
    for (const m of ups.flatMap((u) => u.members)) assert.ok(conf.includes(`server ${m.address} max_fails=1 fail_timeout=10s;`), m.address);
});
