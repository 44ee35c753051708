-- Before the migration: full names live in users. user_id is an identity
-- column (GENERATED ALWAYS).
CREATE TABLE users (
  user_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email      text NOT NULL,
  full_name  text,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- What the workload has committed: each user's latest full name, in the same
-- transaction as the write.
CREATE TABLE expected (user_id bigint PRIMARY KEY, full_name text);

INSERT INTO users (email, full_name)
  SELECT 'user' || g || '@example.com', CASE WHEN g % 10 = 0 THEN NULL ELSE 'Name ' || g END
    FROM generate_series(1, 150000) g;
INSERT INTO expected SELECT user_id, full_name FROM users;
ANALYZE;
