#include "engine/state_schema.h"

namespace tandem {

namespace {

// Version 1: the state tables and the catalog helpers that steps call.
const char* kVersion1 = R"SQL(
CREATE TABLE tandem.migrations (
  name            text PRIMARY KEY,
  spec_text       text NOT NULL,
  spec_hash       text NOT NULL,
  -- running | waiting_approval | failed | completed | rolling_back | rolled_back
  state           text NOT NULL,
  phase           int  NOT NULL,          -- tandem::Phase, never renumbered
  approved_phases int[] NOT NULL DEFAULT '{}',
  last_step       text,
  last_error      text,
  last_sqlstate   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tandem.steps (
  migration     text NOT NULL REFERENCES tandem.migrations (name) ON DELETE CASCADE,
  step_id       text NOT NULL,
  phase         int  NOT NULL,
  seq           int  NOT NULL,
  -- pending | running | done | failed | rolled_back
  status        text NOT NULL DEFAULT 'pending',
  attempts      int  NOT NULL DEFAULT 0,
  started_at    timestamptz,
  finished_at   timestamptz,
  last_error    text,
  last_sqlstate text,
  PRIMARY KEY (migration, step_id)
);

CREATE TABLE tandem.checkpoints (
  migration   text NOT NULL,
  step_id     text NOT NULL,
  worker      int  NOT NULL DEFAULT 0,
  last_key    text[],                     -- NULL: no batch done yet
  rows_done   bigint NOT NULL DEFAULT 0,
  rows_total  bigint,
  mismatches  bigint NOT NULL DEFAULT 0,
  sample      text,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, step_id, worker),
  FOREIGN KEY (migration, step_id) REFERENCES tandem.steps ON DELETE CASCADE
);

CREATE TABLE tandem.events (
  id        bigserial PRIMARY KEY,
  migration text NOT NULL,
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind      text NOT NULL,
  phase     int,
  step_id   text,
  actor     text,
  detail    jsonb
);
CREATE INDEX events_migration_id ON tandem.events (migration, id);

-- Adds CHECK (dst IS NOT NULL) NOT VALID when src is NOT NULL; else nothing.
CREATE FUNCTION tandem.add_not_null_check(tbl regclass, src name, dst name, con name)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = tbl AND attname = src)
     AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = tbl AND conname = con) THEN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID',
                   tbl, con, dst);
  END IF;
END $$;

CREATE FUNCTION tandem.validate_constraint_if_exists(tbl regclass, con name)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = tbl AND conname = con
              AND NOT convalidated) THEN
    EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', tbl, con);
  END IF;
END $$;

-- Makes `incoming` the column called `live`, and renames the current `live`
-- to `outgoing`. The column's default, identity, owned sequence and NOT NULL
-- move with the name. Symmetric: swapping back undoes it. The caller holds
-- ACCESS EXCLUSIVE on the table.
CREATE FUNCTION tandem.swap_columns(tbl regclass, live name, incoming name, outgoing name,
                                    nn_check name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  live_num int2;
  ident "char";
  not_null bool;
  def text;
  seq text;
  last bigint;
BEGIN
  SELECT attnum, attidentity, attnotnull INTO live_num, ident, not_null
    FROM pg_attribute WHERE attrelid = tbl AND attname = live AND NOT attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'column % of % does not exist', live, tbl;
  END IF;
  def := (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
           WHERE adrelid = tbl AND adnum = live_num);
  seq := pg_get_serial_sequence(tbl::text, live);
  EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, live, outgoing);
  EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, incoming, live);
  IF not_null THEN
    -- Needs no table scan when the validated CHECK (live IS NOT NULL) exists.
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, live);
  END IF;
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', tbl, nn_check);
  IF ident IN ('a', 'd') THEN
    last := pg_sequence_last_value(seq::regclass);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY', tbl, outgoing);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (START WITH %s)',
                   tbl, live, CASE ident WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END,
                   coalesce(last + 1, 1));
  ELSIF def IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, outgoing);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', tbl, live, def);
    IF seq IS NOT NULL THEN
      EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, tbl, live);
    END IF;
  END IF;
END $$;
)SQL";

// Version 2: migrations submitted to `tandemd serve`, which owns them until
// they complete or are rolled back, across restarts and between daemons.
const char* kVersion2 = R"SQL(
CREATE TABLE tandem.submissions (
  name         text PRIMARY KEY,
  spec_text    text NOT NULL,
  file         text NOT NULL,
  -- what the operator asked for last: run | pause | rollback
  desired      text NOT NULL DEFAULT 'run' CHECK (desired IN ('run', 'pause', 'rollback')),
  approved     int[] NOT NULL DEFAULT '{}',   -- phases approved through the control socket
  submitted_by text,
  submitted_at timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
)SQL";

// Version 3: what the operator changed while a migration runs (tandemctl set
// and throttle), so another daemon taking it over keeps it.
const char* kVersion3 = R"SQL(
ALTER TABLE tandem.submissions
  -- {"settings": {"batch_size": "2000", ...}, "throttle": {"until": epoch ms or null}}
  ADD COLUMN live jsonb NOT NULL DEFAULT '{}';
)SQL";

// Version 4: heartbeats, written while replica lag is watched, so a standby
// that stops replaying shows a growing lag even when the primary is idle.
const char* kVersion4 = R"SQL(
CREATE TABLE tandem.heartbeat (
  at  timestamptz NOT NULL,
  lsn pg_lsn NOT NULL        -- pg_current_wal_insert_lsn() when it was written
);
CREATE INDEX ON tandem.heartbeat (lsn);
)SQL";

// Version 5: parallel backfill workers. A step's key space is split into
// ranges when it starts, one checkpoint row each (`worker` numbers them);
// a row of an earlier version is one range over the whole table.
const char* kVersion5 = R"SQL(
ALTER TABLE tandem.checkpoints
  ADD COLUMN range_after text[],                  -- NULL: from the first key
  ADD COLUMN range_upper text[],                  -- NULL: to the last key
  ADD COLUMN finished    boolean NOT NULL DEFAULT false;
)SQL";

// Version 6: swap_columns no longer moves a serial column's sequence: the
// ALTER SEQUENCE waited for sessions that used the sequence while the
// caller held the table, and every reader queued behind it. A step of its
// own moves it, holding nothing else (move_sequence_owner).
const char* kVersion6 = R"SQL(
CREATE OR REPLACE FUNCTION tandem.swap_columns(tbl regclass, live name, incoming name,
                                               outgoing name, nn_check name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  live_num int2;
  ident "char";
  not_null bool;
  def text;
  seq text;
  last bigint;
BEGIN
  SELECT attnum, attidentity, attnotnull INTO live_num, ident, not_null
    FROM pg_attribute WHERE attrelid = tbl AND attname = live AND NOT attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'column % of % does not exist', live, tbl;
  END IF;
  def := (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
           WHERE adrelid = tbl AND adnum = live_num);
  seq := pg_get_serial_sequence(tbl::text, live);
  EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, live, outgoing);
  EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, incoming, live);
  IF not_null THEN
    -- Needs no table scan when the validated CHECK (live IS NOT NULL) exists.
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, live);
  END IF;
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', tbl, nn_check);
  IF ident IN ('a', 'd') THEN
    last := pg_sequence_last_value(seq::regclass);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY', tbl, outgoing);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (START WITH %s)',
                   tbl, live, CASE ident WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END,
                   coalesce(last + 1, 1));
  ELSIF def IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, outgoing);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', tbl, live, def);
  END IF;
END $$;

-- Gives the sequence that column `from_col` owns (a serial's), if any, to
-- `to_col`; nothing else.
CREATE OR REPLACE FUNCTION tandem.move_sequence_owner(tbl regclass, from_col name, to_col name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  seq text := pg_get_serial_sequence(tbl::text, from_col);
BEGIN
  IF seq IS NOT NULL THEN
    EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, tbl, to_col);
  END IF;
END $$;
)SQL";

}  // namespace

const std::vector<std::string>& state_schema_versions() {
  static const std::vector<std::string> kVersions = {kVersion1, kVersion2, kVersion3,
                                                     kVersion4, kVersion5, kVersion6};
  return kVersions;
}

}  // namespace tandem
