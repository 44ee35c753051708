-- True when no row and no change was lost (the tables hold what the tally
-- says was committed), every item and payment points at an order, the keys
-- are in place and validated, and nothing of tandem's is left on the tables.
SELECT (SELECT count(*) FROM orders) = (SELECT sum(orders) FROM tally)
   AND (SELECT sum(total) FROM orders) = (SELECT sum(total) FROM tally)
   AND (SELECT count(*) FROM order_items) = (SELECT sum(items) FROM tally)
   AND (SELECT sum(qty) FROM order_items) = (SELECT sum(qty) FROM tally)
   AND (SELECT count(*) FROM payments) = (SELECT sum(payments) FROM tally)
   AND NOT EXISTS (SELECT 1 FROM order_items i LEFT JOIN orders o ON o.id = i.order_id
                    WHERE o.id IS NULL)
   AND NOT EXISTS (SELECT 1 FROM payments p LEFT JOIN orders o ON o.id = p.order_id
                    WHERE p.order_id IS NOT NULL AND o.id IS NULL)
   AND (SELECT count(*) FROM pg_constraint
         WHERE conrelid IN ('orders'::regclass, 'order_items'::regclass, 'payments'::regclass)
           AND contype IN ('p', 'f', 'c') AND convalidated) = 6
   AND (SELECT count(*) FROM pg_index
         WHERE indrelid IN ('orders'::regclass, 'order_items'::regclass)
           AND indexrelid::regclass::text IN ('orders_pkey', 'orders_by_customer',
                                              'order_items_order_id')) = 3
   AND NOT EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE '\_tandem\_ix\_%')
   AND NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid IN ('orders'::regclass, 'order_items'::regclass,
                                       'payments'::regclass)
                      AND attname LIKE '\_tandem%' AND NOT attisdropped) AS ok;
