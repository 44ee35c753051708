-- True when no money and no row was lost: balances_v1 holds what the workload
-- committed, and, where balances_v2 exists, every v1 row equals its v2 row
-- (amount = cents / 100, same updated_at) and v2 has no other rows.
CREATE FUNCTION pg_temp.balances_ok() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  bad bigint;
BEGIN
  IF (SELECT sum(amount_cents) FROM balances_v1) <> (SELECT sum(cents) FROM tally)
     OR (SELECT count(*) FROM balances_v1) <> (SELECT sum(rows) FROM tally) THEN
    RETURN false;
  END IF;
  IF to_regclass('balances_v2') IS NOT NULL THEN
    EXECUTE 'SELECT count(*) FROM balances_v1 v1 FULL JOIN balances_v2 v2 USING (account_id, currency)
              WHERE v1.account_id IS NULL OR v2.account_id IS NULL
                 OR v2.amount * 100 <> v1.amount_cents OR v2.updated_at <> v1.updated_at'
      INTO bad;
    IF bad > 0 THEN RETURN false; END IF;
  END IF;
  RETURN true;
END $$;
SELECT pg_temp.balances_ok() AS ok;
