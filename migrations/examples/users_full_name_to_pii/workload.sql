-- The application before the migration: renames (some to NULL), sign-ups and
-- account deletions, each recorded in `expected` in the same transaction.
\set id random(1, 150000)
\set gone random(1, 150000)
\set r random(1, 1000000000)
BEGIN;
WITH w AS (UPDATE users SET full_name = CASE WHEN :r % 7 = 0 THEN NULL ELSE 'Renamed ' || :r END
            WHERE user_id = :id RETURNING user_id, full_name)
UPDATE expected e SET full_name = w.full_name FROM w WHERE e.user_id = w.user_id;
WITH n AS (INSERT INTO users (email, full_name) VALUES ('new' || :r || '@example.com', 'New ' || :r)
           RETURNING user_id, full_name)
INSERT INTO expected SELECT user_id, full_name FROM n;
END;
BEGIN;
WITH d AS (DELETE FROM users WHERE user_id = :gone AND :r % 5 = 0 RETURNING user_id)
DELETE FROM expected WHERE user_id IN (SELECT user_id FROM d);
END;
