-- True when nothing was lost or left inconsistent, in every state the tables
-- can be in: before, after a rollback, and after the migration completed.
-- Rows are read as JSON so that one query serves every schema.
WITH u AS (SELECT to_jsonb(u) AS j FROM users u),
     d AS (SELECT to_jsonb(o) AS j FROM orders o UNION ALL SELECT to_jsonb(c) FROM comments c),
     t AS (SELECT sum(users) AS users, sum(orders) AS orders, sum(comments) AS comments FROM tally),
     -- dependents whose user cannot be found by the keys they carry, or whose keys disagree
     bad AS (
       SELECT 1 FROM d LEFT JOIN u ON u.j ->> 'username' = d.j ->> 'username'
        WHERE d.j ? 'username'
          AND (u.j IS NULL OR (d.j ? 'user_id' AND d.j ->> 'user_id' IS DISTINCT FROM u.j ->> 'user_id'))
       UNION ALL
       SELECT 1 FROM d LEFT JOIN u ON u.j ->> 'user_id' = d.j ->> 'user_id'
        WHERE NOT d.j ? 'username' AND u.j IS NULL)
SELECT (SELECT count(*) FROM users) = t.users
   AND (SELECT count(*) FROM orders) = t.orders
   AND (SELECT count(*) FROM comments) = t.comments
   AND NOT EXISTS (SELECT 1 FROM bad)
   -- where users.user_id exists, every user has a distinct one
   AND (SELECT count(DISTINCT j ->> 'user_id') FROM u) IN (0, t.users)
   -- where a dependent has user_id: NOT NULL, a validated foreign key, an index
   AND NOT EXISTS (
     SELECT 1 FROM (VALUES ('orders'::regclass), ('comments'::regclass)) v (rel)
       JOIN pg_attribute a ON a.attrelid = v.rel AND a.attname = 'user_id' AND NOT a.attisdropped
      WHERE NOT a.attnotnull
         OR NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = v.rel AND c.contype = 'f'
                           AND c.convalidated AND c.conkey = ARRAY[a.attnum])
         OR NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = v.rel AND i.indisvalid
                           AND i.indkey[0] = a.attnum))
   -- once the dependents have lost username (completed): users is keyed by
   -- user_id, and username is a UNIQUE constraint
   AND (EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'orders'::regclass
                   AND attname = 'username' AND NOT attisdropped)
        OR ((SELECT array_agg(a.attname::text) FROM pg_constraint c
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
              WHERE c.conrelid = 'users'::regclass AND c.contype = 'p') = ARRAY['user_id']
            AND EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_attribute a
                          ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum]
                         WHERE c.conrelid = 'users'::regclass AND c.contype = 'u'
                           AND a.attname = 'username')))
   AS ok
  FROM t;
