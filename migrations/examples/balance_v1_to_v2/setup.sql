-- Before the migration: balances in integer cents, one row per account and
-- currency (a composite primary key). Each account has EUR and one of USD/GBP.
CREATE TABLE balances_v1 (
  account_id   bigint NOT NULL,
  currency     text NOT NULL,
  amount_cents integer NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, currency)
);
CREATE SEQUENCE accounts_seq START 1000001;
-- What the workload has committed: money created and destroyed, rows added and removed.
CREATE TABLE tally (client int PRIMARY KEY, cents bigint NOT NULL DEFAULT 0,
                    rows bigint NOT NULL DEFAULT 0);

INSERT INTO balances_v1 (account_id, currency, amount_cents)
  SELECT g, c, 10000 + g % 997 FROM generate_series(1, 60000) g, (VALUES ('EUR'), ('USD')) v (c);
INSERT INTO tally (client, cents, rows)
  SELECT -1, sum(amount_cents), count(*) FROM balances_v1;
INSERT INTO tally (client) SELECT g FROM generate_series(0, 63) g;
ANALYZE;
