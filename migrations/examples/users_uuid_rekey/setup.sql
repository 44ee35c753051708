-- Before the migration: users keyed by username, dependents refer to it.
-- `n` is a stable number the workload picks users by (usernames change).
CREATE TABLE users (
  username   text PRIMARY KEY,
  n          bigint NOT NULL UNIQUE,
  email      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE users_n_seq START 1000001;
CREATE TABLE orders (
  id           bigserial PRIMARY KEY,
  username     text NOT NULL REFERENCES users (username) ON UPDATE CASCADE ON DELETE CASCADE,
  amount_cents integer NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON orders (username);
CREATE TABLE comments (
  id       bigserial PRIMARY KEY,
  username text NOT NULL REFERENCES users (username) ON UPDATE CASCADE ON DELETE CASCADE,
  body     text NOT NULL
);
CREATE INDEX ON comments (username);
-- What the workload has committed, per pgbench client: the expected row counts.
CREATE TABLE tally (client int PRIMARY KEY, users bigint NOT NULL DEFAULT 0,
                    orders bigint NOT NULL DEFAULT 0, comments bigint NOT NULL DEFAULT 0);

INSERT INTO users (username, n, email)
  SELECT 'user' || g, g, 'user' || g || '@example.com' FROM generate_series(1, 100000) g;
INSERT INTO orders (username, amount_cents)
  SELECT 'user' || (1 + g % 100000), g % 10000 FROM generate_series(1, 200000) g;
INSERT INTO comments (username, body)
  SELECT 'user' || (1 + g % 100000), 'comment ' || g FROM generate_series(1, 100000) g;
INSERT INTO tally (client, users, orders, comments) VALUES (-1, 100000, 200000, 100000);
INSERT INTO tally (client) SELECT g FROM generate_series(0, 63) g;
ANALYZE;
