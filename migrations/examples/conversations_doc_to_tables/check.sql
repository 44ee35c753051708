-- True when no message was lost: the documents hold what the workload
-- committed, and, where the tables exist, they hold exactly what the
-- documents say (every conversation, participant and message, no other
-- row).
CREATE FUNCTION pg_temp.conversations_ok() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  bad bigint;
BEGIN
  IF (SELECT sum(jsonb_array_length(doc->'messages')) FROM conversations)
     <> (SELECT sum(messages) FROM tally) THEN
    RETURN false;
  END IF;
  IF to_regclass('conversation_messages') IS NOT NULL THEN
    EXECUTE 'SELECT count(*) FROM (
               (SELECT c.id, (m->>''seq'')::int, (m->>''by'')::int, m->>''body''
                  FROM conversations c, jsonb_array_elements(c.doc->''messages'') m
                EXCEPT ALL SELECT conversation_id, seq, author, body FROM conversation_messages)
               UNION ALL
               (SELECT conversation_id, seq, author, body FROM conversation_messages
                EXCEPT ALL SELECT c.id, (m->>''seq'')::int, (m->>''by'')::int, m->>''body''
                  FROM conversations c, jsonb_array_elements(c.doc->''messages'') m)) d'
      INTO bad;
    IF bad > 0 THEN RETURN false; END IF;
    EXECUTE 'SELECT count(*) FROM (
               (SELECT c.id, (p->>''user'')::int, p->>''role''
                  FROM conversations c, jsonb_array_elements(c.doc->''participants'') p
                EXCEPT ALL SELECT conversation_id, user_id, role FROM conversation_participants)
               UNION ALL
               (SELECT conversation_id, user_id, role FROM conversation_participants
                EXCEPT ALL SELECT c.id, (p->>''user'')::int, p->>''role''
                  FROM conversations c, jsonb_array_elements(c.doc->''participants'') p)) d'
      INTO bad;
    IF bad > 0 THEN RETURN false; END IF;
    EXECUTE 'SELECT count(*) FROM conversations c FULL JOIN conversation_threads t USING (id)
              WHERE c.id IS NULL OR t.id IS NULL OR t.title IS DISTINCT FROM c.doc->>''title'''
      INTO bad;
    IF bad > 0 THEN RETURN false; END IF;
  END IF;
  RETURN true;
END $$;
SELECT pg_temp.conversations_ok() AS ok;
