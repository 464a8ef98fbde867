import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseSite } from "../site/load";
import { labSiteInput } from "../site/fixtures";
import { planLedger } from "./plan";
import { LedgerConfigError, readServiceConfig, writeServiceConfig } from "./config";

test("the lab's ledger plan: default shards, ports from the base; agents' events come over the event bus, or, with it off, from their files", () => {
    const withBus = planLedger(parseSite(labSiteInput(["gate"])), { stateDir: "/state/lab/lab", agentEventsFile: (n) => `/state/${n}/events.jsonl` });
    assert.equal(withBus.collect, undefined, "the bus's ledger consumer writes them (events/)");
    const site = parseSite(labSiteInput(["gate", "visitor-center", "control-room"], { events: { enabled: false } }));
    const plan = planLedger(site, { stateDir: "/state/lab/lab", agentEventsFile: (n) => `/state/${n}/events.jsonl` });
    assert.deepEqual(plan.shards, ["habitat", "network", "security", "audit"]);
    assert.deepEqual(plan.lab!.pgPorts, [25430, 25431, 25432]);
    assert.equal(plan.lab!.redisPort, 25433);
    assert.equal(plan.lab!.dir, "/state/lab/lab/ledger");
    assert.deepEqual(plan.collect, { shard: "network", files: ["gate", "visitor-center", "control-room"].map((n) => ({ node: n, file: `/state/${n}/events.jsonl` })) });
    assert.deepEqual(plan.checkpoint, { entries: 1000, ms: 5000 });
});

test("no lab layout and no collector outside the lab; no network shard, no collector", () => {
    const site = parseSite(labSiteInput(["gate"], { ledger: { shards: ["habitat", "audit"], instances: 5 } }));
    const plan = planLedger(site);
    assert.equal(plan.lab, undefined);
    assert.equal(plan.collect, undefined);
    assert.equal(plan.instances, 5);
    const lab = planLedger(site, { stateDir: "/s", agentEventsFile: () => "/e" });
    assert.equal(lab.collect, undefined, "no network shard to collect into");
    assert.deepEqual(lab.lab!.pgPorts.length, 5);
});

test("the site schema rejects bad shard names, duplicates and too few instances, naming the key", () => {
    assert.throws(() => parseSite(labSiteInput(["gate"], { ledger: { shards: ["Network"] } })), /ledger\.shards\[0\] = "Network": shard names are lowercase/);
    assert.throws(() => parseSite(labSiteInput(["gate"], { ledger: { shards: ["a", "a"] } })), /unique/);
    assert.throws(() => parseSite(labSiteInput(["gate"], { ledger: { instances: 0 } })), /ledger\.instances/);
    assert.throws(() => parseSite(labSiteInput(["gate"], { ledger: { checkpoint: { entries: 0 } } })), /ledger\.checkpoint\.entries/);
});

test("a bad service config is refused with the key and the rule; a good one round-trips, mode 0600", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nublar-ledger-config-"));
    try {
        const file = path.join(dir, "service.json");
        assert.throws(() => readServiceConfig(file), /no ledger config at .*npm run lab/);
        fs.writeFileSync(file, "{not json");
        assert.throws(() => readServiceConfig(file), LedgerConfigError);
        const good = {
            site: "lab", shards: ["network"], endpoints: [{ host: "::1", port: 5432 }],
            ingest: { user: "i", password: "p" }, auditor: { user: "a", password: "p" },
            checkpoint: { entries: 10, ms: 1000 }, signingKeyFile: "/k", publicKeyFile: "/k.pub", lakeDir: "/lake",
            listen: { socket: "/s.sock" }, maxBatch: 100,
        };
        fs.writeFileSync(file, JSON.stringify({ ...good, endpoints: [{ host: "::1", port: 99999 }] }));
        assert.throws(() => readServiceConfig(file), /endpoints\.0\.port/);
        fs.writeFileSync(file, JSON.stringify({ ...good, collect: { shard: "habitat", stateFile: "/x", files: [] } }));
        assert.throws(() => readServiceConfig(file), /collect\.shard habitat is not one of the shards/);
        writeServiceConfig(file, good);
        assert.deepEqual(readServiceConfig(file), good);
        assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
