-- The application before the migration: it appends messages to
-- conversations, starts new ones and deletes some of those it started; it
-- reads and writes the documents only.
\set c random(1, 20000)
BEGIN;
UPDATE conversations
   SET doc = jsonb_set(doc, '{messages}', doc->'messages' || jsonb_build_object(
         'seq', jsonb_array_length(doc->'messages') + 1, 'by', :client_id, 'body', 'reply'))
 WHERE id = :c;
UPDATE tally SET messages = messages + 1 WHERE client = :client_id;
END;
BEGIN;
INSERT INTO conversations
  VALUES (nextval('conversations_seq'), jsonb_build_object(
    'title', 'new', 'participants', jsonb_build_array(jsonb_build_object('user', :client_id, 'role', 'owner')),
    'messages', jsonb_build_array(jsonb_build_object('seq', 1, 'by', :client_id, 'body', 'hello'))));
UPDATE tally SET messages = messages + 1 WHERE client = :client_id;
END;
BEGIN;
WITH d AS (DELETE FROM conversations WHERE id = (SELECT max(id) FROM conversations
             WHERE id > 1000000 AND id % 4 = :client_id % 4) RETURNING doc)
UPDATE tally SET messages = messages - coalesce((SELECT sum(jsonb_array_length(doc->'messages')) FROM d), 0)
 WHERE client = :client_id;
END;
