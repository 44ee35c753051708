-- The legacy CRM's contacts: 300 customers with 10 contacts each, customers
-- 1-100 in the eu region, the others in us. The new application keeps them in
-- app_contacts, of another shape; customers move to it slice by slice.
CREATE TABLE contacts (
  id          bigserial PRIMARY KEY,
  customer_id int NOT NULL,
  region      text NOT NULL,
  full_name   text NOT NULL,
  phone       text,
  edits       int NOT NULL DEFAULT 0
);
INSERT INTO contacts (customer_id, region, full_name, phone)
SELECT c, CASE WHEN c <= 100 THEN 'eu' ELSE 'us' END, 'Contact ' || c || '/' || n,
       '+1-555-' || lpad((c * 10 + n)::text, 4, '0')
  FROM generate_series(1, 300) c, generate_series(1, 10) n
 ORDER BY c, n;
CREATE INDEX contacts_customer ON contacts (customer_id);

-- What the workloads committed, one row per write, in the write's
-- transaction: check.sql holds the contacts against it.
CREATE TABLE write_tally (
  id          bigserial PRIMARY KEY,
  contact_id  bigint NOT NULL,
  customer_id int NOT NULL,
  side        text NOT NULL,   -- old or new: the table the write went to
  kind        text NOT NULL    -- edit or insert
);

-- The new application's error rate per slice, as its monitoring would
-- write it: the canary reads it.
CREATE TABLE app_health (slice text PRIMARY KEY, error_rate numeric);
INSERT INTO app_health VALUES ('pilot', 0), ('eu', 0), ('rest', 0);
