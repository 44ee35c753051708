-- New application instances: each transaction asks tandem.route which side
-- serves the customer, first, and uses that table. Customers 301-330 do not
-- exist before the migration: their contacts are created as they come.
\set c random(1, 330)
\set n random(1, 10)
BEGIN;
SELECT (tandem.route('contacts_by_customer_slices', :c::text) = 'new')::int AS on_new \gset
\if :c > 300
\if :on_new
INSERT INTO app_contacts (customer_id, region, name, phone_e164)
  VALUES (:c, 'us', 'New contact ' || :c, '+15550000') RETURNING id AS contact \gset
\else
INSERT INTO contacts (customer_id, region, full_name, phone)
  VALUES (:c, 'us', 'New contact ' || :c, '+1-555-0000') RETURNING id AS contact \gset
\endif
INSERT INTO write_tally (contact_id, customer_id, side, kind)
  VALUES (:contact, :c, CASE :on_new WHEN 1 THEN 'new' ELSE 'old' END, 'insert');
\else
\set id (:c - 1) * 10 + :n
\if :on_new
UPDATE app_contacts SET edit_count = edit_count + 1 WHERE id = :id;
\else
UPDATE contacts SET edits = edits + 1 WHERE id = :id;
\endif
INSERT INTO write_tally (contact_id, customer_id, side, kind)
  VALUES (:id, :c, CASE :on_new WHEN 1 THEN 'new' ELSE 'old' END, 'edit');
\endif
END;
