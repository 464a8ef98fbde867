// The database side of a shard: one PostgreSQL database per shard (`unicorn_<shard>`), in which
// the database itself keeps the history append-only, whoever connects:
//   - triggers reject UPDATE, DELETE and TRUNCATE on entries and checkpoints, for every role
//     short of a superuser who disables them (that is what verify and the checkpoints are for);
//   - the ingest role may only SELECT and INSERT; the auditor role may only SELECT;
//   - nobody else may even connect.
// bootstrapSql() is idempotent, so it runs on every lab start and every deploy.
import { SHARD_NAME } from "../../../model/vocabulary";

export const ROLES = {
    /** Owns the schema and tables; cannot log in. */
    owner: "unicorn_owner",
    /** The ingest service's writer: SELECT and INSERT only. */
    ingest: "unicorn_ingest",
    /** Auditors and verify: SELECT only. */
    auditor: "unicorn_auditor",
    /** Streaming replication between the primary and its standbys. */
    replicator: "unicorn_replicator",
} as const;

/** Shard names become database names: the one rule (model/vocabulary.ts), used by the site schema and the service config too. */
export { SHARD_NAME };

export function checkShardName(shard: string): string {
    if (!SHARD_NAME.test(shard)) throw new Error(`shard name ${JSON.stringify(shard)} must be lowercase letters, digits and _ (at most 40), starting with a letter`);
    return shard;
}

export const databaseName = (shard: string) => `unicorn_${checkShardName(shard)}`;

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Cluster-wide: the roles, with their passwords (run once per cluster, as a superuser). */
export function rolesSql(passwords: { ingest: string; auditor: string; replicator: string }): string {
    const role = (name: string, attrs: string, password?: string) => `
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${literal(name)}) THEN
    CREATE ROLE ${name} ${attrs};
  END IF;
END $$;
ALTER ROLE ${name} ${attrs}${password ? ` PASSWORD ${literal(password)}` : ""};`;
    return [
        role(ROLES.owner, "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        // Connection limits as a safety valve: each shard's writer holds 2 connections.
        role(ROLES.ingest, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 24", passwords.ingest),
        role(ROLES.auditor, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 24", passwords.auditor),
        role(ROLES.replicator, "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE", passwords.replicator),
    ].join("\n");
}

/** Inside the shard's database (as a superuser): schema, tables, triggers, grants. */
export function shardSql(shard: string): string {
    const db = databaseName(shard);
    return `
REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
GRANT CONNECT ON DATABASE ${db} TO ${ROLES.ingest}, ${ROLES.auditor};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS ledger AUTHORIZATION ${ROLES.owner};
SET search_path = ledger, pg_catalog;

-- Which shard this database holds, and a random id that namespaces its cache entries (so a
-- rebuilt ledger can never be served a previous one's cached entries).
CREATE TABLE IF NOT EXISTS ledger.shard (
    name     text PRIMARY KEY,
    format   text NOT NULL,
    id       uuid NOT NULL DEFAULT gen_random_uuid(),
    created  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.shard (name, format) VALUES (${literal(shard)}, 'unicorn/1') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS ledger.entries (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    time       timestamptz NOT NULL,
    source     text NOT NULL,
    -- RFC 8785 canonical JSON, kept as text: these are the exact bytes that were hashed
    -- (jsonb would reorder keys and lose them). Query it with payload::jsonb.
    payload    text NOT NULL,
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    -- A caller's idempotency key: a retried append returns the entry already written.
    idem_key   text CHECK (octet_length(idem_key) <= 200)
);
-- Unique among the entries that have one; keyless entries (most agent events) cost no index entry.
CREATE UNIQUE INDEX IF NOT EXISTS entries_idem_key ON ledger.entries (idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS ledger.checkpoints (
    seq        bigint PRIMARY KEY,
    -- RFC 8785 canonical JSON of the signed checkpoint, and its ed25519 signature (base64)
    body       text NOT NULL,
    signature  text NOT NULL
);

CREATE OR REPLACE FUNCTION ledger.reject_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ledger.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Unicorn ledger entries are never changed; append a correcting entry instead.';
END
$fn$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'checkpoints', 'shard'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = t || '_append_only') THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON ledger.%I FOR EACH ROW EXECUTE FUNCTION ledger.reject_change()', t || '_append_only', t);
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON ledger.%I FOR EACH STATEMENT EXECUTE FUNCTION ledger.reject_change()', t || '_no_truncate', t);
        END IF;
    END LOOP;
END $$;

ALTER TABLE ledger.shard OWNER TO ${ROLES.owner};
ALTER TABLE ledger.entries OWNER TO ${ROLES.owner};
ALTER TABLE ledger.checkpoints OWNER TO ${ROLES.owner};
ALTER FUNCTION ledger.reject_change() OWNER TO ${ROLES.owner};
REVOKE ALL ON ALL TABLES IN SCHEMA ledger FROM PUBLIC;
GRANT USAGE ON SCHEMA ledger TO ${ROLES.ingest}, ${ROLES.auditor};
GRANT SELECT, INSERT ON ledger.entries, ledger.checkpoints TO ${ROLES.ingest};
GRANT SELECT ON ledger.shard TO ${ROLES.ingest};
GRANT SELECT ON ledger.shard, ledger.entries, ledger.checkpoints TO ${ROLES.auditor};
ALTER ROLE ${ROLES.ingest} IN DATABASE ${db} SET search_path = ledger;
ALTER ROLE ${ROLES.auditor} IN DATABASE ${db} SET search_path = ledger;
`;
}
