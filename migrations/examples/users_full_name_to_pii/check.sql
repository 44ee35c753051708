-- True when every user's full name is the one the workload last wrote, read
-- from wherever it lives in the current state: users_pii once it exists (and,
-- while users.full_name exists too, both agree), else users.full_name.
CREATE FUNCTION pg_temp.full_names_ok() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  has_pii boolean := to_regclass('users_pii') IS NOT NULL;
  has_col boolean := EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'users'::regclass
                              AND attname = 'full_name' AND NOT attisdropped);
  bad bigint;
BEGIN
  IF (SELECT count(*) FROM users) <> (SELECT count(*) FROM expected) THEN RETURN false; END IF;
  IF has_col THEN
    SELECT count(*) INTO bad FROM expected e LEFT JOIN users u USING (user_id)
     WHERE u.user_id IS NULL OR u.full_name IS DISTINCT FROM e.full_name;
    IF bad > 0 THEN RETURN false; END IF;
  END IF;
  IF has_pii THEN
    EXECUTE 'SELECT count(*) FROM expected e FULL JOIN users_pii p USING (user_id)
              WHERE e.user_id IS NULL OR p.user_id IS NULL OR p.full_name IS DISTINCT FROM e.full_name'
      INTO bad;
    IF bad > 0 THEN RETURN false; END IF;
  END IF;
  RETURN has_pii OR has_col;
END $$;
SELECT pg_temp.full_names_ok() AS ok;
