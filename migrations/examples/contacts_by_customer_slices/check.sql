-- True when no write was lost or doubled: the table the application reads
-- (app_contacts once the migration completed, contacts otherwise) has every
-- contact's edits as the tally counts them, wherever they were written, and
-- exactly the contacts the workloads created; while both tables exist and
-- the migration is in flight, they are equal.
CREATE FUNCTION pg_temp.contacts_ok() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  completed boolean := false;
  truth text := 'contacts';
  edits text := 'edits';
  bad bigint;
BEGIN
  IF to_regclass('tandem.migrations') IS NOT NULL THEN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM tandem.migrations'
            ' WHERE name = ''contacts_by_customer_slices'' AND state = ''completed'')'
      INTO completed;
  END IF;
  IF completed THEN
    truth := 'app_contacts';
    edits := 'edit_count';
  ELSIF to_regclass('app_contacts') IS NOT NULL THEN
    EXECUTE 'SELECT count(*) FROM contacts o FULL JOIN app_contacts n USING (id)
              WHERE o.id IS NULL OR n.id IS NULL OR o.customer_id <> n.customer_id
                 OR o.edits <> n.edit_count OR o.full_name <> n.name'
      INTO bad;
    IF bad > 0 THEN RAISE NOTICE '% contacts differ between the tables', bad; RETURN false; END IF;
  END IF;
  -- Every contact's edits, as counted.
  EXECUTE format('SELECT count(*) FROM %I c LEFT JOIN (SELECT contact_id, count(*) AS n'
                 '  FROM write_tally WHERE kind = ''edit'' GROUP BY 1) t ON t.contact_id = c.id'
                 ' WHERE c.%I <> coalesce(t.n, 0)', truth, edits)
    INTO bad;
  IF bad > 0 THEN RAISE NOTICE '% contacts of % lost or doubled edits', bad, truth; RETURN false; END IF;
  -- The created contacts, each once, and nothing else.
  EXECUTE format('SELECT count(*) FROM (SELECT id, customer_id FROM %I WHERE id > 3000'
                 '  EXCEPT SELECT contact_id, customer_id FROM write_tally WHERE kind = ''insert'') x', truth)
    INTO bad;
  IF bad > 0 THEN RAISE NOTICE '% contacts of % were not created by the workload', bad, truth; RETURN false; END IF;
  EXECUTE format('SELECT (SELECT count(*) FROM %I) - 3000 - (SELECT count(*) FROM write_tally'
                 '  WHERE kind = ''insert'')', truth)
    INTO bad;
  IF bad <> 0 THEN RAISE NOTICE '% contacts of % lost or doubled', bad, truth; RETURN false; END IF;
  RETURN true;
END $$;
SELECT pg_temp.contacts_ok() AS ok;
