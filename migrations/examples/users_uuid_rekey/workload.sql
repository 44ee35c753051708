-- The application before the migration, writing by username: new users,
-- orders and comments, amount updates, comment deletes, and username changes
-- (the key changes; ON UPDATE CASCADE carries them to the dependents).
-- Every transaction first locks the one user it works on, so two clients
-- never wait on each other in a cycle.
\set n random(1, 100000)
\set r random(1, 1000000000)
BEGIN;
SELECT username FROM users WHERE n = :n FOR UPDATE;
INSERT INTO orders (username, amount_cents) SELECT username, :r % 10000 FROM users WHERE n = :n;
UPDATE tally SET orders = orders + (SELECT count(*) FROM users WHERE n = :n) WHERE client = :client_id;
UPDATE orders SET amount_cents = amount_cents + 1
 WHERE id = (SELECT min(o.id) FROM orders o JOIN users u USING (username) WHERE u.n = :n);
WITH d AS (DELETE FROM comments WHERE id = (SELECT max(c.id) FROM comments c JOIN users u USING (username) WHERE u.n = :n) RETURNING 1)
UPDATE tally SET comments = comments - (SELECT count(*) FROM d) WHERE client = :client_id;
INSERT INTO comments (username, body) SELECT username, 'c' || :r FROM users WHERE n = :n;
UPDATE tally SET comments = comments + (SELECT count(*) FROM users WHERE n = :n) WHERE client = :client_id;
UPDATE users SET username = 'user' || n || '_' || :r WHERE n = :n;
INSERT INTO users (username, n, email) SELECT 'new' || s, s, 'new' || s || '@example.com' FROM nextval('users_n_seq') s;
UPDATE tally SET users = users + 1 WHERE client = :client_id;
END;
