-- The application before the migration: transfers between EUR balances (the
-- lower account first, so transfers never wait on each other in a cycle),
-- new accounts, closed accounts, and currency changes (the key changes).
\set a random(1, 60000)
\set b random(1, 60000)
\set c random(1, 60000)
\set amt random(1, 500)
\set lo least(:a, :b)
\set hi greatest(:a, :b)
BEGIN;
UPDATE balances_v1 SET amount_cents = amount_cents - :amt, updated_at = now()
 WHERE account_id = :lo AND currency = 'EUR';
UPDATE balances_v1 SET amount_cents = amount_cents + :amt, updated_at = now()
 WHERE account_id = :hi AND currency = 'EUR';
END;
BEGIN;
UPDATE balances_v1 SET currency = CASE currency WHEN 'USD' THEN 'GBP' ELSE 'USD' END, updated_at = now()
 WHERE account_id = :c AND currency IN ('USD', 'GBP');
END;
BEGIN;
INSERT INTO balances_v1 (account_id, currency, amount_cents) SELECT nextval('accounts_seq'), 'EUR', :amt;
UPDATE tally SET cents = cents + :amt, rows = rows + 1 WHERE client = :client_id;
END;
BEGIN;
WITH d AS (DELETE FROM balances_v1 WHERE account_id = (SELECT max(account_id) FROM balances_v1 WHERE account_id > 1000000 AND account_id % 3 = :client_id % 3) RETURNING amount_cents)
UPDATE tally SET cents = cents - coalesce((SELECT sum(amount_cents) FROM d), 0),
                 rows = rows - (SELECT count(*) FROM d)
 WHERE client = :client_id;
END;
