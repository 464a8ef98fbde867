import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LedgerConfigError, readServiceConfig, writeServiceConfig } from "./config";

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
