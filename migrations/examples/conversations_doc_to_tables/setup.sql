-- Before the migration: one jsonb document per conversation, holding its
-- participants and its messages in order.
CREATE TABLE conversations (
  id  bigint PRIMARY KEY,
  doc jsonb NOT NULL
);
CREATE SEQUENCE conversations_seq START 1000001;
-- What the workload has committed: messages written and removed, per client.
CREATE TABLE tally (client int PRIMARY KEY, messages bigint NOT NULL DEFAULT 0);

INSERT INTO conversations
  SELECT g, jsonb_build_object(
    'title', 'conversation ' || g,
    'participants', (SELECT jsonb_agg(jsonb_build_object('user', g % 1000 + p, 'role',
                                      CASE p WHEN 0 THEN 'owner' ELSE 'member' END))
                       FROM generate_series(0, 1 + g % 2) p),
    'messages', (SELECT jsonb_agg(jsonb_build_object('seq', s, 'by', g % 1000 + s % 2,
                                  'body', 'message ' || s || ' of ' || g))
                   FROM generate_series(1, 3 + g % 6) s))
  FROM generate_series(1, 20000) g;
INSERT INTO tally (client, messages)
  SELECT -1, sum(jsonb_array_length(doc->'messages')) FROM conversations;
INSERT INTO tally (client) SELECT g FROM generate_series(0, 63) g;
ANALYZE;
