-- Before the migration: orders keyed by a serial integer that is running out
-- of values, referenced by two tables whose foreign key columns are integer too.
CREATE TABLE orders (
  id       serial PRIMARY KEY,
  customer integer NOT NULL,
  total    bigint NOT NULL DEFAULT 0,
  placed   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_by_customer ON orders (customer, id DESC);
CREATE TABLE order_items (
  id       bigserial PRIMARY KEY,
  order_id integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  qty      integer NOT NULL CHECK (qty > 0)
);
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE TABLE payments (
  id       serial PRIMARY KEY,
  order_id integer REFERENCES orders (id),
  amount   bigint NOT NULL
);
-- What the workload has committed, per pgbench client (-1: the initial rows).
CREATE TABLE tally (client int PRIMARY KEY, orders bigint NOT NULL DEFAULT 0,
                    total bigint NOT NULL DEFAULT 0, items bigint NOT NULL DEFAULT 0,
                    qty bigint NOT NULL DEFAULT 0, payments bigint NOT NULL DEFAULT 0);

INSERT INTO orders (customer, total) SELECT g % 1000, g % 97 FROM generate_series(1, 50000) g;
INSERT INTO order_items (order_id, qty) SELECT 1 + g % 50000, 1 + g % 5 FROM generate_series(1, 100000) g;
INSERT INTO payments (order_id, amount) SELECT g, g % 97 FROM generate_series(1, 50000, 2) g;
INSERT INTO tally SELECT -1, (SELECT count(*) FROM orders), (SELECT sum(total) FROM orders),
                         (SELECT count(*) FROM order_items), (SELECT sum(qty) FROM order_items),
                         (SELECT count(*) FROM payments);
INSERT INTO tally (client) SELECT g FROM generate_series(0, 63) g;
ANALYZE;
