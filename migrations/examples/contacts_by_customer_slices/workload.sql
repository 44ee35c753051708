-- Old application instances: they know nothing of the migration and keep
-- editing contacts in the legacy table (until they are retired, before
-- cleanup). Their writes reach app_contacts through tandem's sync.
\set id random(1, 3000)
BEGIN;
UPDATE contacts SET edits = edits + 1 WHERE id = :id;
INSERT INTO write_tally (contact_id, customer_id, side, kind)
  SELECT :id, customer_id, 'old', 'edit' FROM contacts WHERE id = :id;
END;
