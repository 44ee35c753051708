-- The application before the migration: new orders with their items and a
-- payment (the key comes from the sequence and is read back), changed totals,
-- changed quantities. Every change is counted in the client's tally row.
\set c random(1, 50000)
\set q random(1, 5)
BEGIN;
INSERT INTO orders (customer, total) VALUES (:c % 1000, :q) RETURNING id AS new_id \gset
INSERT INTO order_items (order_id, qty) VALUES (:new_id, :q), (:new_id, 1);
INSERT INTO payments (order_id, amount) VALUES (:new_id, :q);
UPDATE tally SET orders = orders + 1, total = total + :q, items = items + 2, qty = qty + :q + 1,
                 payments = payments + 1
 WHERE client = :client_id;
END;
BEGIN;
UPDATE orders SET total = total + 1 WHERE id = :c;
UPDATE tally SET total = total + 1 WHERE client = :client_id;
END;
BEGIN;
UPDATE order_items SET qty = qty + 1 WHERE id = :c;
UPDATE tally SET qty = qty + 1 WHERE client = :client_id;
END;
