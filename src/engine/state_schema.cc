#include "engine/state_schema.h"

#include <stdexcept>

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

// Version 7: type changes of columns that keys, indexes and constraints
// use (issue 18): the twin indexes built before a swap, the swap carrying
// keys, indexes, foreign keys and CHECKs over, the validations it leaves,
// and the sequence widened after cleanup. Every statement can run again.
const char* kVersion7 = R"SQL(
-- Constraints that a column swap re-added NOT VALID and that were valid
-- before: validated by a later step (validate_pending), each in its own
-- transaction.
CREATE TABLE IF NOT EXISTS tandem.revalidate (
  conrelid regclass NOT NULL,
  conname  name NOT NULL,
  PRIMARY KEY (conrelid, conname)
);

-- The name of the index on column `col` that stands in for index `idx` of
-- the same table while a column is swapped (ASCII, 27 bytes).
CREATE OR REPLACE FUNCTION tandem.twin_index_name(idx name, col name) RETURNS name
LANGUAGE sql IMMUTABLE AS $$ SELECT ('_tandem_ix_' || left(md5(idx || '/' || col), 16))::name $$;

-- The same, qualified with the schema of table `tbl` (where its indexes are).
CREATE OR REPLACE FUNCTION tandem.twin_index(tbl regclass, idx name, col name) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT format('%I.%I', n.nspname, tandem.twin_index_name(idx, col))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl
$$;

-- The indexes of `tbl` that use column `col` (not the twins tandem builds),
-- with the constraint each backs and whether it is the replica identity.
CREATE OR REPLACE FUNCTION tandem.column_indexes(tbl regclass, col name)
RETURNS TABLE (idx regclass, idxname name, contype "char", conname name, is_deferrable bool,
               is_deferred bool, is_replident bool)
LANGUAGE sql STABLE AS $$
  SELECT i.indexrelid::regclass, c.relname, k.contype, k.conname, k.condeferrable, k.condeferred,
         i.indisreplident
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = col AND NOT a.attisdropped
    LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                             AND k.contype IN ('p', 'u')
   WHERE i.indrelid = tbl AND a.attnum = ANY (i.indkey)
     AND c.relname NOT LIKE '\_tandem\_ix\_%'
   ORDER BY c.relname
$$;

-- CREATE INDEX CONCURRENTLY of index `idx` as it is, with column `from_col`
-- replaced by `to_col`, named `name`. Key columns keep their order, operator
-- class (the default one of the new type for the replaced column), collation,
-- direction and NULLS order; INCLUDE columns, storage parameters, tablespace,
-- predicate and NULLS NOT DISTINCT are kept.
CREATE OR REPLACE FUNCTION tandem.index_like(idx regclass, from_col name, to_col name, name name)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  i pg_index;
  c pg_class;
  keys text[] := '{}';
  incl text[] := '{}';
  k int;
  att name;
  part text;
  opc pg_opclass;
  opts text;
BEGIN
  SELECT * INTO i FROM pg_index WHERE indexrelid = idx;
  SELECT * INTO c FROM pg_class WHERE oid = idx;
  FOR k IN 0 .. i.indnatts - 1 LOOP
    IF i.indkey[k] = 0 THEN
      part := '(' || pg_get_indexdef(idx, k + 1, false) || ')';
      att := NULL;
    ELSE
      att := (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[k]);
      part := quote_ident(CASE WHEN att = from_col THEN to_col ELSE att END);
    END IF;
    IF k >= i.indnkeyatts THEN
      incl := incl || part;
      CONTINUE;
    END IF;
    IF i.indcollation[k] <> 0 AND i.indcollation[k] IS DISTINCT FROM
         (SELECT attcollation FROM pg_attribute WHERE attrelid = i.indrelid AND attname = att) THEN
      part := part || (SELECT format(' COLLATE %I.%I', n.nspname, l.collname)
                         FROM pg_collation l JOIN pg_namespace n ON n.oid = l.collnamespace
                        WHERE l.oid = i.indcollation[k]);
    END IF;
    SELECT * INTO opc FROM pg_opclass WHERE oid = i.indclass[k];
    IF NOT opc.opcdefault AND att IS DISTINCT FROM from_col THEN
      part := part || format(' %I.%I', (SELECT nspname FROM pg_namespace
                                          WHERE oid = opc.opcnamespace), opc.opcname);
    END IF;
    IF i.indoption[k] & 1 = 1 THEN
      part := part || ' DESC' || CASE WHEN i.indoption[k] & 2 = 2 THEN '' ELSE ' NULLS LAST' END;
    ELSIF i.indoption[k] & 2 = 2 THEN
      part := part || ' NULLS FIRST';
    END IF;
    keys := keys || part;
  END LOOP;
  opts := (SELECT string_agg(format('%I = %L', split_part(o, '=', 1),
                                    substr(o, strpos(o, '=') + 1)), ', ')
             FROM unnest(c.reloptions) o);
  RETURN format('CREATE %sINDEX CONCURRENTLY %I ON %s USING %I (%s)',
                CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, name,
                i.indrelid::regclass, (SELECT amname FROM pg_am WHERE oid = c.relam),
                array_to_string(keys, ', '))
      || CASE WHEN cardinality(incl) > 0
              THEN ' INCLUDE (' || array_to_string(incl, ', ') || ')' ELSE '' END
      || CASE WHEN i.indnullsnotdistinct THEN ' NULLS NOT DISTINCT' ELSE '' END
      || coalesce(' WITH (' || opts || ')', '')
      || CASE WHEN c.reltablespace <> 0 THEN format(' TABLESPACE %I',
              (SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace)) ELSE '' END
      || coalesce(' WHERE ' || pg_get_expr(i.indpred, i.indrelid), '');
END $$;

-- The statements that build what a swap of column `live` with `incoming`
-- needs and are not built yet: the twin on `incoming` of every index that
-- uses `live`, and, for a primary key or unique constraint, a twin on `live`
-- itself, under the name its twin on `outgoing` will need after the swap, so
-- the swap can be undone. An invalid twin (a build cut short) is dropped
-- first. Run again before each attempt, it yields only what is left.
CREATE OR REPLACE FUNCTION tandem.column_index_builds(tbl regclass, live name, incoming name, outgoing name)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
DECLARE
  r record;
  t record;
  valid bool;
BEGIN
  FOR r IN SELECT * FROM tandem.column_indexes(tbl, live) LOOP
    FOR t IN SELECT incoming AS col, incoming AS named_for
             UNION ALL
             SELECT live, outgoing WHERE r.contype IS NOT NULL
    LOOP
      valid := (SELECT indisvalid FROM pg_index
                 WHERE indexrelid = to_regclass(tandem.twin_index(tbl, r.idxname, t.named_for)));
      CONTINUE WHEN valid;
      IF NOT valid THEN
        RETURN NEXT 'DROP INDEX CONCURRENTLY IF EXISTS '
                    || tandem.twin_index(tbl, r.idxname, t.named_for);
      END IF;
      RETURN NEXT tandem.index_like(r.idx, live, t.col,
                                    tandem.twin_index_name(r.idxname, t.named_for));
    END LOOP;
  END LOOP;
END $$;

-- One statement per constraint a swap involving `tbl` left to validate.
CREATE OR REPLACE FUNCTION tandem.pending_validations(tbl regclass) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
  SELECT format('SELECT tandem.validate_pending(%L::regclass, %L)', r.conrelid::text, r.conname)
    FROM tandem.revalidate r
    LEFT JOIN pg_constraint k ON k.conrelid = r.conrelid AND k.conname = r.conname
   WHERE r.conrelid = tbl OR k.confrelid = tbl
   ORDER BY r.conrelid::text, r.conname
$$;

CREATE OR REPLACE FUNCTION tandem.validate_pending(rel regclass, con name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = rel AND conname = con
                AND NOT convalidated) THEN
    EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', rel, con);
  END IF;
  DELETE FROM tandem.revalidate WHERE conrelid = rel AND conname = con;
END $$;

-- What undoes column_index_builds: validations still pending on the table
-- (left by a swap that was undone), then the twins dropped.
CREATE OR REPLACE FUNCTION tandem.column_index_drops(tbl regclass, live name, incoming name, outgoing name)
RETURNS SETOF text LANGUAGE sql STABLE AS $$
  SELECT * FROM tandem.pending_validations(tbl)
  UNION ALL
  (SELECT DISTINCT 'DROP INDEX CONCURRENTLY IF EXISTS ' || twin
     FROM tandem.column_indexes(tbl, live) i, unnest(ARRAY[incoming, outgoing]) col,
          tandem.twin_index(tbl, i.idxname, col) twin
    WHERE to_regclass(twin) IS NOT NULL
    ORDER BY 1)
$$;

-- Takes `mode` on `rel` within what is left of the lock timeout when the
-- statement began, and leaves lock_timeout (SET LOCAL) at what is left
-- after: the executor sets it to what its own first locks left over, so a
-- step that locks several tables waits at most one lock timeout in all.
CREATE OR REPLACE FUNCTION tandem.lock_within_budget(rel regclass, mode text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  budget interval := current_setting('lock_timeout')::interval;
  left_ms bigint;
BEGIN
  IF budget > interval '0' THEN
    left_ms := floor(extract(epoch FROM budget - (clock_timestamp() - statement_timestamp()))
                     * 1000);
    IF left_ms < 1 THEN
      RAISE EXCEPTION 'could not lock % within the lock timeout', rel USING ERRCODE = '55P03';
    END IF;
    PERFORM set_config('lock_timeout', left_ms || 'ms', true);
  END IF;
  EXECUTE format('LOCK TABLE %s IN %s MODE', rel, mode);
END $$;

-- Every lock a swap of column `col` needs, in one order, within one lock
-- timeout: the tables its foreign keys reference, then the table, then the
-- tables whose foreign keys reference it (the order writers take them in:
-- the referenced row first), each in name order. ACCESS EXCLUSIVE on each:
-- dropping a foreign key takes it on both of its tables.
CREATE OR REPLACE FUNCTION tandem.lock_for_swap(tbl regclass, col name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  num int2 := (SELECT attnum FROM pg_attribute WHERE attrelid = tbl AND attname = col
                  AND NOT attisdropped);
  r record;
BEGIN
  FOR r IN SELECT rel, min(o) FROM (
             SELECT c.confrelid::regclass AS rel, 0 AS o FROM pg_constraint c
              WHERE c.conrelid = tbl AND c.contype = 'f' AND num = ANY (c.conkey)
                AND c.confrelid <> tbl
             UNION ALL SELECT tbl, 1
             UNION ALL
             SELECT c.conrelid::regclass, 2 FROM pg_constraint c
              WHERE c.confrelid = tbl AND num = ANY (c.confkey) AND c.conrelid <> tbl) x
            GROUP BY rel ORDER BY min(o), rel::text LOOP
    PERFORM tandem.lock_within_budget(r.rel, 'ACCESS EXCLUSIVE');
  END LOOP;
END $$;

-- move_sequence_owner leaves identity columns alone: their sequence is
-- the identity's own (swap_columns moves the identity itself), and
-- PostgreSQL refuses to give it another owner. Seen when a cutover of an
-- identity column was rolled back.
CREATE OR REPLACE FUNCTION tandem.move_sequence_owner(tbl regclass, from_col name, to_col name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  seq text := pg_get_serial_sequence(tbl::text, from_col);
BEGIN
  IF seq IS NOT NULL AND (SELECT attidentity FROM pg_attribute WHERE attrelid = tbl
                            AND attname = from_col AND NOT attisdropped) = '' THEN
    EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, tbl, to_col);
  END IF;
END $$;

-- Gives the sequence behind column `col` (a serial's or an identity's) the
-- column's integer type when it is narrower: after an integer key became
-- bigint, its values can go past the old type's maximum.
CREATE OR REPLACE FUNCTION tandem.fit_sequence(tbl regclass, col name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  seq regclass := pg_get_serial_sequence(tbl::text, col)::regclass;
  col_type regtype := (SELECT atttypid FROM pg_attribute WHERE attrelid = tbl AND attname = col
                          AND NOT attisdropped);
  seq_type regtype := (SELECT seqtypid FROM pg_sequence WHERE seqrelid = seq);
  width CONSTANT jsonb := '{"smallint": 2, "integer": 4, "bigint": 8}';
BEGIN
  IF seq IS NOT NULL AND (width ->> col_type::text)::int > (width ->> seq_type::text)::int THEN
    EXECUTE format('ALTER SEQUENCE %s AS %s', seq, col_type);
  END IF;
END $$;

-- swap_columns (called after lock_for_swap) now carries what uses the column over to the column that
-- takes its name: the primary key and unique constraints (onto the twin
-- index built beforehand), the other indexes (by renaming twins), and the
-- foreign keys on either side and CHECK constraints (dropped, and added
-- again NOT VALID under the same name; validated by a later step). A
-- column nothing uses swaps as before.
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
  r record;
  carried jsonb := '[]';
  keys jsonb := '[]';
  twin name;
  replident name;
BEGIN
  -- ADD CONSTRAINT ... USING INDEX says it renames the index: it is meant to.
  PERFORM set_config('client_min_messages', 'warning', true);
  SELECT attnum, attidentity, attnotnull INTO live_num, ident, not_null
    FROM pg_attribute WHERE attrelid = tbl AND attname = live AND NOT attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'column % of % does not exist', live, tbl;
  END IF;
  -- Foreign keys to or from the column, and CHECK constraints on it: their
  -- definitions name columns, so they apply to the new column once added again.
  FOR r IN SELECT c.conrelid::regclass AS rel, c.conname,
                  pg_get_constraintdef(c.oid) AS def,
                  c.convalidated OR EXISTS (SELECT 1 FROM tandem.revalidate v
                                             WHERE v.conrelid = c.conrelid
                                               AND v.conname = c.conname) AS valid
             FROM pg_constraint c
            WHERE (c.confrelid = tbl AND live_num = ANY (c.confkey))
               OR (c.conrelid = tbl AND c.contype IN ('f', 'c') AND live_num = ANY (c.conkey))
            ORDER BY c.conrelid::regclass::text, c.conname LOOP
    carried := carried || jsonb_build_object('rel', r.rel::text, 'name', r.conname,
                                             'def', r.def, 'valid', r.valid);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
  END LOOP;
  -- Keys: dropped now (their index with them), added again on the twin.
  FOR r IN SELECT * FROM tandem.column_indexes(tbl, live) LOOP
    twin := tandem.twin_index_name(r.idxname, incoming);
    IF r.is_replident THEN
      -- The index's name once the swap is done: a constraint's index takes
      -- the constraint's name.
      replident := coalesce(r.conname, r.idxname);
    END IF;
    IF to_regclass(tandem.twin_index(tbl, r.idxname, incoming)) IS NULL THEN
      RAISE EXCEPTION 'index % of % has no twin % on column %: the step that builds it has not run',
        r.idxname, tbl, twin, incoming;
    END IF;
    IF r.contype IS NOT NULL THEN
      keys := keys || jsonb_build_object('name', r.conname, 'twin', twin, 'contype', r.contype,
                                         'is_deferrable', r.is_deferrable, 'is_deferred', r.is_deferred);
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, r.conname);
    ELSE
      EXECUTE format('ALTER INDEX %s RENAME TO %I', r.idx,
                     tandem.twin_index_name(r.idxname, outgoing));
      EXECUTE format('ALTER INDEX %s RENAME TO %I', tandem.twin_index(tbl, r.idxname, incoming),
                     r.idxname);
    END IF;
  END LOOP;
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
  FOR r IN SELECT * FROM jsonb_to_recordset(keys)
                  AS k(name name, twin name, contype text, is_deferrable bool, is_deferred bool) LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I%s', tbl, r.name,
                   CASE r.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, r.twin,
                   CASE WHEN r.is_deferred THEN ' DEFERRABLE INITIALLY DEFERRED'
                        WHEN r.is_deferrable THEN ' DEFERRABLE' ELSE '' END);
  END LOOP;
  IF replident IS NOT NULL THEN
    -- The replica identity stays with the index's name (the old index goes
    -- with the old column at cleanup, and logical replication with it).
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', tbl, replident);
  END IF;
  FOR r IN SELECT * FROM jsonb_to_recordset(carried)
                  AS k(rel text, name name, def text, valid bool) LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.name,
                   CASE WHEN r.def LIKE '% NOT VALID' THEN r.def ELSE r.def || ' NOT VALID' END);
    IF r.valid THEN
      INSERT INTO tandem.revalidate VALUES (r.rel::regclass, r.name) ON CONFLICT DO NOTHING;
    END IF;
  END LOOP;
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
)SQL";

// Version 8: drop_constraint keeps what it dropped so that a rollback puts
// the constraint back as it was (issue 18), set_replica_identity and
// set_comment keep what they replaced, and rename_table's view gets the
// table's privileges. Every statement can run again.
const char* kVersion8 = R"SQL(
CREATE TABLE IF NOT EXISTS tandem.dropped_constraints (
  conrelid     regclass NOT NULL,
  conname      name NOT NULL,
  contype      "char" NOT NULL,
  definition   text NOT NULL,  -- pg_get_constraintdef: what ADD CONSTRAINT takes
  validated    bool NOT NULL,
  confrelid    regclass,       -- a foreign key's referenced table
  index_def    text,           -- a primary key's or unique constraint's index
  index_name   name,
  is_deferrable bool NOT NULL DEFAULT false,
  is_deferred  bool NOT NULL DEFAULT false,
  PRIMARY KEY (conrelid, conname)
);

-- Drops constraint `con` of `rel` and keeps it in tandem.dropped_constraints,
-- taking every lock first within one lock timeout: the table a foreign key
-- references (dropping the key locks it too), then `rel`.
CREATE OR REPLACE FUNCTION tandem.drop_constraint(rel regclass, con name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  k pg_constraint;
BEGIN
  SELECT * INTO k FROM pg_constraint WHERE conrelid = rel AND conname = con;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'constraint % of % does not exist', con, rel USING ERRCODE = '42704';
  END IF;
  IF k.contype = 'f' AND k.confrelid <> rel THEN
    PERFORM tandem.lock_within_budget(k.confrelid::regclass, 'ACCESS EXCLUSIVE');
  END IF;
  PERFORM tandem.lock_within_budget(rel, 'ACCESS EXCLUSIVE');
  SELECT * INTO k FROM pg_constraint WHERE conrelid = rel AND conname = con;
  INSERT INTO tandem.dropped_constraints AS d
  VALUES (rel, con, k.contype, pg_get_constraintdef(k.oid), k.convalidated,
          NULLIF(k.confrelid, 0)::regclass,
          CASE WHEN k.contype IN ('p', 'u') THEN pg_get_indexdef(k.conindid) END,
          (SELECT relname FROM pg_class WHERE oid = k.conindid AND k.contype IN ('p', 'u')),
          k.condeferrable, k.condeferred)
  ON CONFLICT (conrelid, conname) DO UPDATE
     SET contype = EXCLUDED.contype, definition = EXCLUDED.definition,
         validated = EXCLUDED.validated, confrelid = EXCLUDED.confrelid,
         index_def = EXCLUDED.index_def, index_name = EXCLUDED.index_name,
         is_deferrable = EXCLUDED.is_deferrable, is_deferred = EXCLUDED.is_deferred;
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', rel, con);
END $$;

-- Puts back constraint `con` that drop_constraint removed from `rel`: a
-- primary key or unique constraint on its index (built again beforehand,
-- see constraint_restorations), a CHECK or foreign key NOT VALID, recorded
-- in tandem.revalidate when it was valid (validate_pending validates it).
CREATE OR REPLACE FUNCTION tandem.restore_constraint(rel regclass, con name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  d tandem.dropped_constraints;
BEGIN
  SELECT * INTO d FROM tandem.dropped_constraints WHERE conrelid = rel AND conname = con;
  IF FOUND AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = rel AND conname = con) THEN
    IF d.contype IN ('p', 'u') THEN
      PERFORM tandem.lock_within_budget(rel, 'ACCESS EXCLUSIVE');
      EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I%s', rel, con,
                     CASE d.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, d.index_name,
                     CASE WHEN d.is_deferrable THEN ' DEFERRABLE' ELSE '' END
                       || CASE WHEN d.is_deferred THEN ' INITIALLY DEFERRED' ELSE '' END);
    ELSE
      IF d.confrelid IS NOT NULL AND d.confrelid <> rel THEN
        PERFORM tandem.lock_within_budget(d.confrelid, 'SHARE ROW EXCLUSIVE');
      END IF;
      PERFORM tandem.lock_within_budget(rel, CASE d.contype WHEN 'f' THEN 'SHARE ROW EXCLUSIVE'
                                                             ELSE 'ACCESS EXCLUSIVE' END);
      EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s%s', rel, con, d.definition,
                     CASE WHEN d.validated THEN ' NOT VALID' ELSE '' END);
      IF d.validated THEN
        INSERT INTO tandem.revalidate VALUES (rel, con) ON CONFLICT DO NOTHING;
      END IF;
    END IF;
  END IF;
  DELETE FROM tandem.dropped_constraints WHERE conrelid = rel AND conname = con;
END $$;

-- The statements that undo drop_constraint and are not done yet: a primary
-- key's or unique constraint's index built again CONCURRENTLY (an invalid
-- one, from a build cut short, dropped first), the constraint put back, and
-- a CHECK or foreign key that was valid validated. Run again before each
-- attempt, it yields only what is left.
CREATE OR REPLACE FUNCTION tandem.constraint_restorations(rel regclass, con name)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
DECLARE
  d tandem.dropped_constraints;
  kept bool;
  idx text;
  valid bool;
BEGIN
  SELECT * INTO d FROM tandem.dropped_constraints WHERE conrelid = rel AND conname = con;
  kept := FOUND;
  IF kept AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = rel AND conname = con) THEN
    IF d.contype IN ('p', 'u') THEN
      idx := (SELECT format('%I.%I', n.nspname, d.index_name)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel);
      valid := (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(idx));
      IF NOT valid THEN
        RETURN NEXT 'DROP INDEX CONCURRENTLY IF EXISTS ' || idx;
      END IF;
      IF valid IS NOT TRUE THEN
        RETURN NEXT regexp_replace(d.index_def, '^CREATE (UNIQUE )?INDEX ',
                                   'CREATE \1INDEX CONCURRENTLY ');
      END IF;
    END IF;
    RETURN NEXT format('SELECT tandem.restore_constraint(%L::regclass, %L)', rel::text, con);
  END IF;
  IF (kept AND d.validated AND d.contype IN ('c', 'f'))
     OR EXISTS (SELECT 1 FROM tandem.revalidate WHERE conrelid = rel AND conname = con) THEN
    RETURN NEXT format('SELECT tandem.validate_pending(%L::regclass, %L)', rel::text, con);
  END IF;
END $$;

-- What an operation changed in place (a replica identity, a comment) and
-- the statement that puts it back, kept until a rollback runs it
-- (tandem.undo_change) or cleanup forgets it.
CREATE TABLE IF NOT EXISTS tandem.undo (
  relid     regclass NOT NULL,
  item      text NOT NULL,
  statement text NOT NULL,
  PRIMARY KEY (relid, item)
);

CREATE OR REPLACE FUNCTION tandem.undo_change(tbl regclass, what text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  s text;
BEGIN
  DELETE FROM tandem.undo WHERE relid = tbl AND item = what RETURNING statement INTO s;
  IF s IS NOT NULL THEN
    EXECUTE s;
  END IF;
END $$;

-- The statement that sets the replica identity of `tbl` as it is now.
CREATE OR REPLACE FUNCTION tandem.replica_identity_statement(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT format('ALTER TABLE %s REPLICA IDENTITY %s', c.oid::regclass,
                CASE c.relreplident WHEN 'd' THEN 'DEFAULT' WHEN 'f' THEN 'FULL'
                                    WHEN 'n' THEN 'NOTHING'
                     ELSE format('USING INDEX %I', (SELECT i.relname FROM pg_index x
                                                      JOIN pg_class i ON i.oid = x.indexrelid
                                                     WHERE x.indrelid = c.oid
                                                       AND x.indisreplident)) END)
    FROM pg_class c WHERE c.oid = tbl
$$;

-- The statement that sets the comment on `tbl` (or on its column `col`) as
-- it is now (IS NULL when there is none).
CREATE OR REPLACE FUNCTION tandem.comment_statement(tbl regclass, col name) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN col IS NULL
              THEN format('COMMENT ON TABLE %s IS %L', tbl, obj_description(tbl, 'pg_class'))
              ELSE format('COMMENT ON COLUMN %s.%I IS %L', tbl, col,
                          col_description(tbl, (SELECT attnum FROM pg_attribute
                                                 WHERE attrelid = tbl AND attname = col)))
         END
$$;

-- Grants on `target` every privilege that roles hold on `source`, as they
-- hold it (a view standing in for a table serves the same roles).
CREATE OR REPLACE FUNCTION tandem.copy_grants(source regclass, target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  g record;
BEGIN
  FOR g IN SELECT a.privilege_type, a.grantee, a.is_grantable
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = source AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, target,
                   CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                   CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END $$;
)SQL";

// Version 10: add_primary_key with `replace: true` swaps a table's primary
// key for another, and create_index builds indexes on partitioned tables
// (issue 18). The outgoing key's columns stay unique through
// a twin index built beforehand; the foreign keys that reference them move to
// it. One function serves both ways: the rollback is the same swap back.
const char* kVersion10 = R"SQL(
-- The statements that build `twin`, a unique index like the one of the
-- primary key of `tbl` (CONCURRENTLY; an invalid leftover dropped first):
-- none when it exists or the table has no primary key.
CREATE OR REPLACE FUNCTION tandem.primary_key_index_builds(tbl regclass, twin name)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
DECLARE
  qualified text := (SELECT format('%I.%I', n.nspname, twin) FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl);
  valid bool := (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(qualified));
  pk_index oid := (SELECT conindid FROM pg_constraint WHERE conrelid = tbl AND contype = 'p');
BEGIN
  IF valid THEN
    RETURN;
  END IF;
  IF valid IS NOT NULL THEN
    RETURN NEXT 'DROP INDEX CONCURRENTLY IF EXISTS ' || qualified;
  END IF;
  IF pk_index IS NOT NULL THEN
    RETURN NEXT regexp_replace(pg_get_indexdef(pk_index),
                               '^CREATE UNIQUE INDEX ("(?:[^"]|"")+"|\S+) ON ',
                               format('CREATE UNIQUE INDEX CONCURRENTLY %I ON ', twin));
  END IF;
END $$;

-- Adds again, NOT VALID, the constraints in `carried` ([{rel, name, def,
-- valid}], as swap_columns keeps them), recording those that were valid for
-- validate_pending.
CREATE OR REPLACE FUNCTION tandem.add_again_not_valid(carried jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM jsonb_to_recordset(carried)
                  AS k(rel text, name name, def text, valid bool) LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.name,
                   CASE WHEN r.def LIKE '% NOT VALID' THEN r.def ELSE r.def || ' NOT VALID' END);
    IF r.valid THEN
      INSERT INTO tandem.revalidate VALUES (r.rel::regclass, r.name) ON CONFLICT DO NOTHING;
    END IF;
  END LOOP;
END $$;

-- Makes index `incoming` of `tbl` its primary key `incoming_name`, in place
-- of the primary key it has. The foreign keys that reference the outgoing
-- key are dropped and added again NOT VALID (recorded for validate_pending),
-- which binds them to `outgoing_twin`, the unique index on the outgoing
-- key's columns that must exist when any does. Takes every lock first, in
-- one order within one lock timeout: the table, then the tables whose
-- foreign keys reference the key, by name. Keeps in tandem.undo the call
-- that swaps back (unless `keep_undo` is false: it is that call). Nothing
-- to do when `incoming_name` is the key already.
CREATE OR REPLACE FUNCTION tandem.replace_primary_key(tbl regclass, incoming name,
                                                      incoming_name name, outgoing_twin name,
                                                      keep_undo bool DEFAULT true)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  pk pg_constraint;
  r record;
  carried jsonb := '[]';
  schema_name name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n
                         ON n.oid = c.relnamespace WHERE c.oid = tbl);
BEGIN
  -- ADD CONSTRAINT ... USING INDEX says it renames the index: it is meant to.
  PERFORM set_config('client_min_messages', 'warning', true);
  PERFORM tandem.lock_within_budget(tbl, 'ACCESS EXCLUSIVE');
  FOR r IN SELECT rel FROM (SELECT DISTINCT c.conrelid::regclass AS rel FROM pg_constraint c
                             WHERE c.confrelid = tbl AND c.contype = 'f' AND c.conrelid <> tbl
                               AND c.conindid = (SELECT conindid FROM pg_constraint
                                                  WHERE conrelid = tbl AND contype = 'p')) x
            ORDER BY rel::text LOOP
    PERFORM tandem.lock_within_budget(r.rel, 'ACCESS EXCLUSIVE');
  END LOOP;
  SELECT * INTO pk FROM pg_constraint WHERE conrelid = tbl AND contype = 'p';
  IF NOT FOUND THEN
    RAISE EXCEPTION '% has no primary key to replace', tbl USING ERRCODE = '42P16';
  END IF;
  IF pk.conname = incoming_name
     AND to_regclass(format('%I.%I', schema_name, incoming)) IS NULL THEN
    RETURN;  -- done by an earlier attempt
  END IF;
  IF to_regclass(format('%I.%I', schema_name, incoming)) IS NULL THEN
    RAISE EXCEPTION 'index % of % does not exist: the step that builds it has not run',
      incoming, tbl USING ERRCODE = '42704';
  END IF;
  FOR r IN SELECT c.conrelid::regclass AS rel, c.conname, pg_get_constraintdef(c.oid) AS def,
                  c.convalidated OR EXISTS (SELECT 1 FROM tandem.revalidate v
                                             WHERE v.conrelid = c.conrelid
                                               AND v.conname = c.conname) AS valid
             FROM pg_constraint c
            WHERE c.contype = 'f' AND c.confrelid = tbl AND c.conindid = pk.conindid
            ORDER BY c.conrelid::regclass::text, c.conname LOOP
    IF to_regclass(format('%I.%I', schema_name, outgoing_twin)) IS NULL THEN
      RAISE EXCEPTION 'foreign key % of % references the primary key % of %, and % has no index % '
                      'to carry it', r.conname, r.rel, pk.conname, tbl, tbl, outgoing_twin
        USING ERRCODE = '2BP01';
    END IF;
    carried := carried || jsonb_build_object('rel', r.rel::text, 'name', r.conname,
                                             'def', r.def, 'valid', r.valid);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
  END LOOP;
  IF keep_undo THEN
    INSERT INTO tandem.undo VALUES (tbl, 'primary key',
      format('SELECT tandem.replace_primary_key(%L::regclass, %L, %L, %L, false)', tbl::text,
             outgoing_twin, pk.conname, incoming))
    ON CONFLICT (relid, item) DO UPDATE SET statement = EXCLUDED.statement;
  END IF;
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, pk.conname);
  EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I', tbl,
                 incoming_name, incoming);
  PERFORM tandem.add_again_not_valid(carried);
END $$;

-- Validates, one after the other, what a swap involving `tbl` left to validate.
CREATE OR REPLACE FUNCTION tandem.validate_all_pending(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  s text;
BEGIN
  FOR s IN SELECT * FROM tandem.pending_validations(tbl) LOOP
    EXECUTE s;
  END LOOP;
END $$;

-- What undoes replace_primary_key: when foreign keys reference the key it
-- made, a unique index `incoming` on its columns again (CONCURRENTLY) to
-- carry them; the swap back (kept in tandem.undo); the validations.
CREATE OR REPLACE FUNCTION tandem.primary_key_restorations(tbl regclass, incoming name)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM tandem.undo WHERE relid = tbl AND item = 'primary key') THEN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = tbl
                  AND conindid = (SELECT conindid FROM pg_constraint
                                   WHERE conrelid = tbl AND contype = 'p')) THEN
      RETURN QUERY SELECT * FROM tandem.primary_key_index_builds(tbl, incoming);
    END IF;
    RETURN NEXT format('SELECT tandem.undo_change(%L::regclass, %L)', tbl::text, 'primary key');
  END IF;
  RETURN NEXT format('SELECT tandem.validate_all_pending(%L::regclass)', tbl::text);
END $$;

-- The name of the index that stands for index `idx` on partition `part`:
-- the partition's name, the index's, and a hash of both (at most 59
-- characters).
CREATE OR REPLACE FUNCTION tandem.partition_index_name(part regclass, idx name) RETURNS name
LANGUAGE sql STABLE AS $$
  SELECT (left(c.relname || '_' || idx, 50) || '_' || left(md5(c.relname || '/' || idx), 8))::name
    FROM pg_class c WHERE c.oid = part
$$;

-- Each index of create_index `idx` on `tbl` and its partitions: the
-- partition (level 0: the table), its index's name and qualified name, the
-- parent partition's index (qualified; NULL for the table's), whether it is
-- a leaf (a plain table: one row, a leaf).
CREATE OR REPLACE FUNCTION tandem.index_tree(tbl regclass, idx name)
RETURNS TABLE (rel regclass, level int, isleaf bool, ixname name, ix text, parent_ix text)
LANGUAGE sql STABLE AS $$
  WITH tree AS (
    SELECT t.relid, t.parentrelid, t.isleaf, t.level FROM pg_partition_tree(tbl) t
    UNION ALL
    SELECT tbl, NULL, true, 0 WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree(tbl)))
  SELECT tree.relid, tree.level, tree.isleaf, x.ixname,
         format('%I.%I', n.nspname, x.ixname),
         CASE WHEN tree.level > 0 THEN format('%I.%I', pn.nspname,
           CASE WHEN tree.level = 1 THEN idx ELSE tandem.partition_index_name(tree.parentrelid, idx) END)
         END
    FROM tree
    JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_class pc ON pc.oid = tree.parentrelid
    LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace,
    LATERAL (SELECT CASE WHEN tree.level = 0 THEN idx
                         ELSE tandem.partition_index_name(tree.relid, idx) END AS ixname) x
$$;

-- The statements that build index `idx` of `tbl` (`definition`: what
-- follows ON <table>) while reads and writes go on, each run on its own,
-- skipping what is built already. A plain table: CREATE INDEX CONCURRENTLY
-- (an invalid leftover dropped first). A partitioned table: the index ON
-- ONLY the table and each partitioned partition, each leaf partition's
-- CONCURRENTLY, then each attached to its parent's, deepest first (the
-- table's index is valid once every partition's is attached).
CREATE OR REPLACE FUNCTION tandem.index_builds(tbl regclass, idx name, is_unique bool,
                                               definition text)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
DECLARE
  kind text := CASE WHEN is_unique THEN 'UNIQUE INDEX' ELSE 'INDEX' END;
  r record;
  valid bool;
BEGIN
  FOR r IN SELECT * FROM tandem.index_tree(tbl, idx) t ORDER BY t.level, t.rel::text LOOP
    valid := (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(r.ix));
    IF NOT r.isleaf THEN
      IF valid IS NULL THEN
        RETURN NEXT format('CREATE %s %I ON ONLY %s %s', kind, r.ixname, r.rel, definition);
      END IF;
    ELSE
      IF NOT valid THEN
        RETURN NEXT 'DROP INDEX CONCURRENTLY IF EXISTS ' || r.ix;
      END IF;
      IF valid IS NOT TRUE THEN
        RETURN NEXT format('CREATE %s CONCURRENTLY %I ON %s %s', kind, r.ixname, r.rel,
                           definition);
      END IF;
    END IF;
  END LOOP;
  FOR r IN SELECT * FROM tandem.index_tree(tbl, idx) t WHERE t.level > 0
            ORDER BY t.level DESC, t.rel::text LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(r.ix)) THEN
      RETURN NEXT format('ALTER INDEX %s ATTACH PARTITION %s', r.parent_ix, r.ix);
    END IF;
  END LOOP;
END $$;

-- What undoes index_builds: the partitions' indexes not attached yet (a
-- build cut short), then the index: CONCURRENTLY on a plain table; a
-- partitioned index cannot be, DROP INDEX takes it and the partitions'
-- indexes attached to it (brief ACCESS EXCLUSIVE: no scan).
CREATE OR REPLACE FUNCTION tandem.index_drops(tbl regclass, idx name)
RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM tandem.index_tree(tbl, idx) t
            ORDER BY t.level DESC, t.rel::text LOOP
    CONTINUE WHEN to_regclass(r.ix) IS NULL
               OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(r.ix));
    RETURN NEXT CASE WHEN (SELECT relkind FROM pg_class WHERE oid = to_regclass(r.ix)) = 'I'
                     THEN 'DROP INDEX IF EXISTS ' ELSE 'DROP INDEX CONCURRENTLY IF EXISTS ' END
                || r.ix;
  END LOOP;
END $$;

-- After cleanup: the unique index `twin` on the replaced key's columns made
-- a UNIQUE constraint, named `con` or, when NULL, <table>_<columns>_key.
CREATE OR REPLACE FUNCTION tandem.keep_old_key(tbl regclass, twin name, con name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  idx regclass := to_regclass((SELECT format('%I.%I', n.nspname, twin) FROM pg_class c
                                 JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE c.oid = tbl));
BEGIN
  IF idx IS NULL OR EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = idx
                               AND contype IN ('p', 'u')) THEN
    RETURN;
  END IF;
  IF con IS NULL THEN
    con := (SELECT left(c.relname || '_' || string_agg(a.attname, '_' ORDER BY k.n) || '_key', 63)
              FROM pg_class c, pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n),
                   pg_attribute a
             WHERE c.oid = tbl AND i.indexrelid = idx AND k.n <= i.indnkeyatts
               AND a.attrelid = tbl AND a.attnum = k.attnum
             GROUP BY c.relname);
  END IF;
  PERFORM set_config('client_min_messages', 'warning', true);
  PERFORM tandem.lock_within_budget(tbl, 'ACCESS EXCLUSIVE');
  EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE USING INDEX %s', tbl, con, idx);
END $$;
)SQL";

}  // namespace

// Version 9: alter_column sets or drops NOT NULL with the swap (issue 18):
// swap_columns takes `set_not_null` (absent or NULL: the incoming column
// gets NOT NULL when the live one has it, as before; true: it gets it,
// without a scan when the validated check `nn_check` exists; false: it keeps
// what it has), and moves column comments with the names. Version 7's
// function with those changes, so the two cannot drift apart.
static std::string version9() {
  const std::string v7 = kVersion7;
  const std::string head = "CREATE OR REPLACE FUNCTION tandem.swap_columns(";
  const size_t start = v7.find(head);
  const size_t end = v7.find("END $$;", start);
  if (start == std::string::npos || end == std::string::npos) {
    throw std::logic_error("state schema version 7 has no swap_columns");
  }
  std::string fn = v7.substr(start, end + 7 - start);
  auto replace_once = [&fn](const std::string& from, const std::string& to) {
    const size_t at = fn.find(from);
    if (at == std::string::npos || fn.find(from, at + 1) != std::string::npos) {
      throw std::logic_error("swap_columns of version 7 changed: \"" + from + "\"");
    }
    fn.replace(at, from.size(), to);
  };
  replace_once("outgoing name, nn_check name)",
               "outgoing name, nn_check name,\n    set_not_null bool DEFAULT NULL)");
  replace_once("  IF not_null THEN", "  IF coalesce(set_not_null, not_null) THEN");
  // Column comments go with the name too (they stayed behind with the
  // column's number: a comment was lost at cutover).
  replace_once("  replident name;\nBEGIN\n",
               "  replident name;\n  live_comment text;\n  incoming_comment text;\nBEGIN\n");
  replace_once("  seq := pg_get_serial_sequence(tbl::text, live);\n",
               "  seq := pg_get_serial_sequence(tbl::text, live);\n"
               "  live_comment := col_description(tbl, live_num);\n"
               "  incoming_comment := col_description(tbl, (SELECT attnum FROM pg_attribute\n"
               "    WHERE attrelid = tbl AND attname = incoming AND NOT attisdropped));\n");
  replace_once(
      "  IF coalesce(set_not_null, not_null) THEN",
      "  EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', tbl, live, live_comment);\n"
      "  EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', tbl, outgoing, incoming_comment);\n"
      "  IF coalesce(set_not_null, not_null) THEN");
  return "DROP FUNCTION IF EXISTS tandem.swap_columns(regclass, name, name, name, name);\n" + fn +
         "\n";
}

// Version 11: the samples of shadow-read pairs, drawn once per step (so a
// resumed run compares the same parameter sets and none twice) and the
// outcome of each.
static const char* kVersion11 = R"SQL(
CREATE TABLE IF NOT EXISTS tandem.shadow_samples (
  migration text NOT NULL,
  step_id   text NOT NULL,
  ordinal   int  NOT NULL,
  params    text[] NOT NULL,
  done_at   timestamptz,
  old_ms    double precision,
  new_ms    double precision,
  diff      text,                     -- NULL: both answered alike
  PRIMARY KEY (migration, step_id, ordinal),
  FOREIGN KEY (migration, step_id) REFERENCES tandem.steps ON DELETE CASCADE
);
)SQL";

// Version 12: rounds. Round 0 is the shadow_read phase's sample; while a
// migration waits at the cutover gate, each later round draws a new sample
// of every pair (with the seed moved on by the round) and is judged by the
// same gate on its own.
static const char* kVersion12 = R"SQL(
ALTER TABLE tandem.shadow_samples ADD COLUMN IF NOT EXISTS round int NOT NULL DEFAULT 0;
ALTER TABLE tandem.shadow_samples DROP CONSTRAINT shadow_samples_pkey,
  ADD PRIMARY KEY (migration, step_id, round, ordinal);
CREATE TABLE IF NOT EXISTS tandem.shadow_rounds (
  migration   text NOT NULL REFERENCES tandem.migrations (name) ON DELETE CASCADE,
  round       int NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,              -- NULL: not every pair is compared yet
  PRIMARY KEY (migration, round)
);
)SQL";

// Version 13: migrations in slices (docs/slices.md). The routes an
// application asks tandem.route() for: per migration its routing column, the
// side of keys created after the slices were defined, and whether routes are
// closed (every key old), open (each slice by its stage) or cut over (every
// key new); per slice its stage; per routing key its slice, fixed when the
// slices were defined.
static const char* kVersion13 = R"SQL(
CREATE TABLE IF NOT EXISTS tandem.slice_plans (
  migration text PRIMARY KEY,
  by_column text NOT NULL,
  new_keys  text NOT NULL CHECK (new_keys IN ('old', 'new')),
  routes    text NOT NULL DEFAULT 'closed' CHECK (routes IN ('closed', 'open', 'cut_over')),
  since     timestamptz NOT NULL DEFAULT now(),
  held      text                        -- why no slice may go live (the canary), until resumed
);
CREATE TABLE IF NOT EXISTS tandem.slices (
  migration text NOT NULL REFERENCES tandem.slice_plans ON DELETE CASCADE,
  slice     text NOT NULL,
  ordinal   int NOT NULL,
  predicate text,                       -- NULL: the rest
  keys      bigint NOT NULL DEFAULT 0,
  stage     text NOT NULL DEFAULT 'old' CHECK (stage IN ('old', 'shadow', 'live', 'complete')),
  since     timestamptz NOT NULL DEFAULT now(),
  actor     text NOT NULL DEFAULT '',
  checked_at timestamptz,               -- the last check of the slice's copy
  differing bigint,                     -- what it found
  PRIMARY KEY (migration, slice)
);
CREATE TABLE IF NOT EXISTS tandem.slice_members (
  migration text NOT NULL,
  key       text NOT NULL,
  slice     text NOT NULL,
  PRIMARY KEY (migration, key),
  FOREIGN KEY (migration, slice) REFERENCES tandem.slices ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS slice_members_slice ON tandem.slice_members (migration, slice);

-- The advisory lock of a slice's routes ('' : the keys of no slice).
CREATE OR REPLACE FUNCTION tandem.slice_lock_key(migration text, slice text) RETURNS bigint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT hashtextextended('tandem.slice/' || migration || '/' || slice, 0) $$;

-- 'old' or 'new': the side that serves `key` (a value of the routing column,
-- as text) of `migration`. Holds the key's routing lock, shared, until the
-- caller's transaction ends: call it in the transaction that reads or
-- writes the key, so that no change of stage happens in between.
CREATE OR REPLACE FUNCTION tandem.route(migration text, key text) RETURNS text
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  member text;
  plan_routes text;
  plan_new_keys text;
  slice_stage text;
BEGIN
  SELECT m.slice INTO member FROM tandem.slice_members m
   WHERE m.migration = route.migration AND m.key = route.key;
  PERFORM pg_advisory_xact_lock_shared(tandem.slice_lock_key(route.migration, coalesce(member, '')));
  -- Read after the lock (a fresh snapshot per statement): a change of stage
  -- that made this call wait is seen.
  SELECT p.routes, p.new_keys INTO plan_routes, plan_new_keys FROM tandem.slice_plans p
   WHERE p.migration = route.migration;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tandem.route: migration % has no slices', route.migration
      USING ERRCODE = '42704';
  END IF;
  IF plan_routes = 'closed' THEN RETURN 'old'; END IF;
  IF plan_routes = 'cut_over' THEN RETURN 'new'; END IF;
  IF member IS NULL THEN RETURN plan_new_keys; END IF;
  SELECT s.stage INTO slice_stage FROM tandem.slices s
   WHERE s.migration = route.migration AND s.slice = member;
  RETURN CASE WHEN slice_stage IN ('live', 'complete') THEN 'new' ELSE 'old' END;
END $$;
)SQL";

// Version 14: fleets (docs/fleet.md), kept in a control database: one row
// per fleet and one per target, with what the runners did to it; a fleet's
// own event log; the waves (or whole fleets) an operator paused. A target's migration state stays in its own database.
static const char* kVersion14 = R"SQL(
CREATE TABLE IF NOT EXISTS tandem.fleets (
  fleet            text PRIMARY KEY,
  migration        text NOT NULL,
  spec_hash        text NOT NULL,       -- the migration spec's
  reference        text,                -- the schema fingerprint targets must match
  reference_target text,                -- whose it is (the first wave's first target)
  reference_text   text,                -- what it covers, as text
  cleanup_approved_by text,
  cleanup_approved_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tandem.fleet_targets (
  fleet        text NOT NULL REFERENCES tandem.fleets ON DELETE CASCADE,
  target       text NOT NULL,
  wave         text NOT NULL,
  wave_ordinal int  NOT NULL,
  ordinal      int  NOT NULL,
  server       text NOT NULL,           -- host:port, for the per-host limit
  dsn          text NOT NULL,           -- with the password hidden
  state        text NOT NULL DEFAULT 'pending' CHECK (state IN (
                 'pending', 'running', 'ready', 'cutting_over', 'cut_over', 'cleaning_up',
                 'completed', 'waiting_approval', 'failed', 'held', 'rolling_back',
                 'rolled_back')),
  phase        text,
  step         text,
  rows_done    bigint NOT NULL DEFAULT 0,
  last_error   text,
  owner        text,                    -- the runner working on it (host:pid), or NULL
  since        timestamptz NOT NULL DEFAULT clock_timestamp(),  -- in this state
  updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at   timestamptz,
  ready_at     timestamptz,             -- passed its checks, waiting at the cutover barrier
  cutover_started_at timestamptz,
  cut_over_at  timestamptz,
  completed_at timestamptz,
  fingerprint  text,
  PRIMARY KEY (fleet, target)
);
CREATE TABLE IF NOT EXISTS tandem.fleet_events (
  id      bigserial PRIMARY KEY,
  fleet   text NOT NULL,
  target  text,
  wave    text,
  at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind    text NOT NULL,
  detail  text,
  actor   text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS fleet_events_fleet ON tandem.fleet_events (fleet, id);
CREATE TABLE IF NOT EXISTS tandem.fleet_pauses (
  fleet  text NOT NULL REFERENCES tandem.fleets ON DELETE CASCADE,
  wave   text NOT NULL,                 -- '' : the whole fleet
  actor  text NOT NULL,
  since  timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (fleet, wave)
);
)SQL";

// Version 10 (kVersion10) and lock_within_budget of version 7 returning at
// once when the session holds the lock already: the executor takes a step's
// locks first, and the step's budget may be spent by then.
static std::string version10() {
  const std::string v7 = kVersion7;
  const std::string head = "CREATE OR REPLACE FUNCTION tandem.lock_within_budget(";
  const size_t start = v7.find(head);
  const size_t end = v7.find("END $$;", start);
  const std::string begin = "BEGIN\n  IF budget > interval '0' THEN";
  std::string fn = start == std::string::npos || end == std::string::npos
                       ? std::string()
                       : v7.substr(start, end + 7 - start);
  const size_t at = fn.find(begin);
  if (at == std::string::npos) {
    throw std::logic_error("lock_within_budget of version 7 changed");
  }
  fn.replace(at, begin.size(),
             "BEGIN\n"
             "  IF EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'relation' AND l.relation = "
             "rel\n"
             "                AND l.pid = pg_backend_pid() AND l.granted\n"
             "                AND l.mode = replace(initcap(lock_within_budget.mode), ' ', '') || "
             "'Lock') THEN\n"
             "    RETURN;\n"
             "  END IF;\n"
             "  IF budget > interval '0' THEN");
  return std::string(kVersion10) + fn + "\n";
}

const std::vector<std::string>& state_schema_versions() {
  static const std::vector<std::string> kVersions = {
      kVersion1, kVersion2,  kVersion3,   kVersion4,  kVersion5,  kVersion6, kVersion7,
      kVersion8, version9(), version10(), kVersion11, kVersion12, kVersion13, kVersion14};
  return kVersions;
}

}  // namespace tandem
