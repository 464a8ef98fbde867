import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSite } from "../site/load";
import { labSiteInput } from "../site/fixtures";
import { planLedger } from "./plan";

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
