// drop_constraint, drop_table, rename_table and create_table beyond the
// lifecycle (operations_test): a rollback puts every kind of dropped
// constraint back exactly as it was, with its validity; rename_table's view
// serves the roles the table served, under their row security; and what a
// table operation cannot do safely is refused at precheck, naming why, with
// nothing changed. Rows a new foreign key would refuse (orphans) are
// reported before anything runs, or set NULL or deleted when the spec says so.
// add_primary_key builds its key under writers and rolls back to the
// nullability before; with replace: true it swaps a table's key for another.
#include <gtest/gtest.h>

#include "plan/steps.h"
#include "support/scenario.h"
#include "support/writers.h"

namespace tandem::testing {
namespace {

class TableOperations : public ::testing::Test {
 protected:
  void SetUp() override { db_ = pg_.create_database("tables"); }
  std::string q(const std::string& sql) { return pg_.psql(db_, sql); }
  Spec spec(const std::string& operations) {
    return spec_from(
        "name: tables\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms}\n"
        "operations:\n" +
        operations);
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// Every constraint of `players` with its definition and validity, and its indexes.
const char* kPlayers =
    "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ("
    " SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated AS x"
    "   FROM pg_constraint WHERE conrelid = 'players'::regclass"
    " UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index"
    "  WHERE indrelid = 'players'::regclass) s";

TEST_F(TableOperations, ARollbackPutsEveryDroppedConstraintBackAsItWas) {
  q("CREATE TABLE teams (id int PRIMARY KEY);"
    "INSERT INTO teams SELECT generate_series(1, 20);"
    "CREATE TABLE players (id bigserial, team_id int, shirt int, email text,"
    " CONSTRAINT players_key PRIMARY KEY (id) WITH (fillfactor = 90),"
    " CONSTRAINT players_team_fk FOREIGN KEY (team_id) REFERENCES teams (id)"
    "   ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,"
    " CONSTRAINT players_shirt_small CHECK (shirt < 100) NO INHERIT,"
    " CONSTRAINT players_email_key UNIQUE NULLS NOT DISTINCT (email) DEFERRABLE);"
    "ALTER TABLE players ADD CONSTRAINT players_shirt_positive CHECK (shirt > 0) NOT VALID;"
    "INSERT INTO players (team_id, shirt, email) SELECT 1 + g % 20, 1 + g % 99, 'e' || g"
    " FROM generate_series(1, 3000) g;");
  const std::string before = q(kPlayers);
  Spec s = spec(
      "  - drop_constraint: {table: players, name: players_key}\n"
      "  - drop_constraint: {table: players, name: players_team_fk}\n"
      "  - drop_constraint: {table: players, name: players_shirt_small}\n"
      "  - drop_constraint: {table: players, name: players_email_key}\n"
      "  - drop_constraint: {table: players, name: players_shirt_positive}\n");
  Plan plan = make_plan(s);
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(q("SELECT count(*) FROM pg_constraint WHERE conrelid = 'players'::regclass"), "0");
  EXPECT_EQ(q("SELECT count(*) FROM pg_index WHERE indrelid = 'players'::regclass"), "0");
  // The new application may now write what the constraints forbade.
  q("INSERT INTO players (id, shirt) VALUES (1, 500) ");
  q("DELETE FROM players WHERE shirt = 500");
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q(kPlayers), before);
  EXPECT_EQ(leftovers(pg_, db_, "players"), "");

  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(q(kPlayers), "");
  EXPECT_EQ(leftovers(pg_, db_, "players"), "");
}

TEST_F(TableOperations, ARollbackThatFindsRowsTheConstraintForbidsFailsNamingIt) {
  q("CREATE TABLE players (id bigserial PRIMARY KEY, shirt int"
    " CONSTRAINT players_shirt_small CHECK (shirt < 100));");
  Spec s = spec("  - drop_constraint: {table: players, name: players_shirt_small}\n");
  Plan plan = make_plan(s);
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  q("INSERT INTO players (shirt) VALUES (500)");
  try {
    Executor(s, plan, options()).rollback();
    ADD_FAILURE() << "the rollback validated a constraint that a row violates";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("players_shirt_small"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("23514"), std::string::npos) << e.what();
  }
  // The constraint is back NOT VALID: new rows are checked already.
  EXPECT_EQ(q("SELECT convalidated FROM pg_constraint WHERE conname = 'players_shirt_small'"), "f");
  q("DELETE FROM players WHERE shirt = 500");
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q("SELECT convalidated FROM pg_constraint WHERE conname = 'players_shirt_small'"), "t");
}

TEST_F(TableOperations, TheRenamedTablesViewServesItsRolesUnderTheirRowSecurity) {
  q("DO $$ BEGIN CREATE ROLE tandem_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
    "CREATE TABLE invoices (id bigserial PRIMARY KEY, owner text NOT NULL DEFAULT"
    " current_user, cents int NOT NULL DEFAULT 0);"
    "ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;"
    "CREATE POLICY mine ON invoices USING (owner = current_user);"
    "GRANT SELECT, INSERT, UPDATE ON invoices TO tandem_app;"
    "GRANT USAGE ON SEQUENCE invoices_id_seq TO tandem_app;"
    "INSERT INTO invoices (owner, cents) VALUES ('someone else', 1);");
  Spec s = spec("  - rename_table: {table: invoices, to: bills}\n");
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(q("SET ROLE tandem_app; INSERT INTO invoices (cents) VALUES (5);"
              "UPDATE invoices SET cents = cents + 1; SELECT count(*) || '/' || sum(cents)"
              " FROM invoices"),
            "1/6");
  // What the role may not do on the table, it may not do through the view.
  EXPECT_ANY_THROW(q("SET ROLE tandem_app; DELETE FROM invoices"));
  EXPECT_EQ(q("SELECT count(*) FROM bills"), "2");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(q("SELECT to_regclass('invoices') IS NULL"), "t");
}

// add_column with a default and no backfill: the table is not rewritten
// (same file), and every row, old and new, has the value; on a partitioned
// table, every partition (none rewritten).
TEST_F(TableOperations, AColumnWithAConstantDefaultIsAddedWithoutARewrite) {
  q("CREATE TABLE events (id bigserial PRIMARY KEY, body text);"
    "INSERT INTO events (body) SELECT 'b' FROM generate_series(1, 5000);");
  const std::string file = q("SELECT pg_relation_filenode('events')");
  Spec s = spec(
      "  - add_column: {table: events, column: kind, type: text, default: \"'plain'\","
      " not_null: true}\n"
      "  - add_column: {table: events, column: at, type: timestamptz, default: now()}\n");
  EXPECT_EQ(make_plan(s).steps.size(), 4u);  // a precheck and one step each
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(q("SELECT pg_relation_filenode('events')"), file);
  q("INSERT INTO events (body) VALUES ('new')");
  EXPECT_EQ(q("SELECT count(*) FILTER (WHERE kind = 'plain') || '/' ||"
              " count(DISTINCT at) FILTER (WHERE id <= 5000) || '/' || count(at) FROM events"),
            "5001/1/5001");
  EXPECT_ANY_THROW(q("INSERT INTO events (body, kind) VALUES ('x', NULL)"));
  EXPECT_EQ(leftovers(pg_, db_, "events"), "");

  // On a partitioned table: every partition gets the column, none rewritten.
  q("CREATE TABLE readings (at date NOT NULL, v int) PARTITION BY RANGE (at);"
    "CREATE TABLE readings_a PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO"
    " ('2026-07-01');"
    "CREATE TABLE readings_b PARTITION OF readings FOR VALUES FROM ('2026-07-01') TO"
    " ('2027-01-01');"
    "INSERT INTO readings SELECT date '2026-01-01' + g % 365, g FROM generate_series(1, 4000) g;");
  const char* files =
      "SELECT string_agg(pg_relation_filenode(relid)::text, ',' ORDER BY relid)"
      " FROM pg_partition_tree('readings') WHERE isleaf";
  const std::string leaves = q(files);
  Spec p = spec_from(
      "name: partitioned_default\noperations:\n"
      "  - add_column: {table: readings, column: unit, type: text, default: \"'C'\","
      " not_null: true}\n");
  EXPECT_EQ(run_until(p, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(q(files), leaves);
  EXPECT_EQ(q("SELECT count(*) FILTER (WHERE unit = 'C') FROM readings"), "4000");
  EXPECT_EQ(q("SELECT count(*) FROM readings_b WHERE unit = 'C'"),
            q("SELECT count(*) FROM readings_b"));
}

// pets.owner_id 13 and 14 name no owner: 40 rows in all.
const char* kPets =
    "CREATE TABLE owners (id int PRIMARY KEY, code text UNIQUE);"
    "INSERT INTO owners SELECT g, 'o' || g FROM generate_series(1, 12) g;"
    "CREATE TABLE pets (id bigserial PRIMARY KEY, owner_id int, owner_code text, name text);"
    "INSERT INTO pets (owner_id, owner_code, name) SELECT 1 + g % 14, 'o' || (1 + g % 14), 'p'"
    " FROM generate_series(1, 280) g;"
    "INSERT INTO pets (owner_id, name) VALUES (NULL, 'stray');";

const char* kOwnerKey =
    "  - add_constraint: {table: pets, name: pets_owner_fk, foreign_key: [owner_id],"
    " references: owners, referenced_columns: [id]";

TEST_F(TableOperations, OrphansAreReportedBeforeAnythingRuns) {
  q(kPets);
  const std::string fk =
      write_temp_file(std::string("name: fk\noperations:\n") + kOwnerKey + "}\n");
  const std::string reason =
      "40 rows of pets have no parent in public.owners (missing: 13, 14); VALIDATE would fail";
  auto plan = run_command(tandemd("plan " + fk + " --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(plan.exit_code, 1) << plan.output;
  EXPECT_NE(plan.output.find(reason), std::string::npos) << plan.output;
  auto run = run_command(tandemd("run " + fk + " --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(reason), std::string::npos) << run.output;
  EXPECT_EQ(q("SELECT count(*) FROM pg_constraint WHERE conname = 'pets_owner_fk'"), "0");

  const std::string ref = write_temp_file(
      "name: ref\noperations:\n  - add_reference: {table: pets, column: owner_key, type: int,"
      " via: owner_code, references: owners, referenced_column: id, lookup: code,"
      " not_null: true}\n");
  run = run_command(tandemd("run " + ref + " --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("40 rows of pets have no parent in public.owners (missing: o13, o14);"
                            " their new column would stay NULL"),
            std::string::npos)
      << run.output;
  // The stray pet has no owner_code at all.
  EXPECT_NE(run.output.find("1 rows of pets have no owner_code: their new column would stay NULL,"
                            " and NOT NULL would fail after the backfill"),
            std::string::npos)
      << run.output;
  EXPECT_EQ(q("SELECT count(*) FROM pg_attribute WHERE attrelid = 'pets'::regclass"
              " AND attname = 'owner_key'"),
            "0");
  // Without not_null too (the default is to fail): the reference would be
  // lost with the old column.
  const std::string dropping = write_temp_file(
      "name: ref2\noperations:\n  - add_reference: {table: pets, column: owner_key, type: int,"
      " via: owner_code, references: owners, referenced_column: id, lookup: code,"
      " drop_via: true}\n");
  run = run_command(tandemd("plan " + dropping + " --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("40 rows of pets have no parent in public.owners (missing: o13, o14);"
                            " their new column would stay NULL, and cleanup drops owner_code,"
                            " which alone names their parent. Fix them first, or give orphans:"
                            " set_null (keep them, their owner_key NULL) or orphans: delete"),
            std::string::npos)
      << run.output;
}

// Inserts pets of owners that exist, and renames pets, orphans among them.
void write_pets(Connection& c, int, long n, Writers::Counts& add) {
  if (n % 2 == 0) {
    c.exec("INSERT INTO pets (owner_id, name) VALUES (1 + $1::int % 12, 'w')", {std::to_string(n)});
    add["inserted"] = 1;
  } else {
    c.exec("UPDATE pets SET name = 'r' || $1 WHERE id = 1 + $1::int % 281", {std::to_string(n)});
  }
}

TEST_F(TableOperations, OrphansAreSetNullOrDeletedInBatchesBeforeValidate) {
  for (const char* how : {"set_null", "delete"}) {
    SCOPED_TRACE(how);
    db_ = pg_.create_database("tables");  // each a migration of the same name, from the start
    q(kPets);
    Spec s = spec(std::string(kOwnerKey) + ", orphans: " + how + "}\n");
    EXPECT_FALSE(make_plan(s).find("1.fix_orphans")->reversible);
    Writers writer(pg_, db_, 2, write_pets);
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    writer.stop();
    EXPECT_EQ(writer.failed(), 0) << writer.last_error();
    const long inserted = writer.count("inserted");
    EXPECT_GT(inserted, 0);
    const bool nulls = std::string(how) == "set_null";
    EXPECT_EQ(
        q("SELECT count(*) || '/' || count(owner_id) FROM pets"),
        std::to_string((nulls ? 281 : 241) + inserted) + "/" + std::to_string(240 + inserted));
    EXPECT_EQ(q("SELECT convalidated FROM pg_constraint WHERE conname = 'pets_owner_fk'"), "t");
    EXPECT_EQ(leftovers(pg_, db_, "pets"), "");
  }
}

// Inserts pets by their owner's code (an owner that exists), and renames pets.
void write_pets_by_code(Connection& c, int, long n, Writers::Counts& add) {
  if (n % 2 == 0) {
    c.exec("INSERT INTO pets (owner_code, name) VALUES ('o' || 1 + $1::int % 12, 'w')",
           {std::to_string(n)});
    add["inserted"] = 1;
  } else {
    c.exec("UPDATE pets SET name = 'r' || $1 WHERE id = 1 + $1::int % 281", {std::to_string(n)});
  }
}

// add_reference's orphans (an owner_code no owner has): kept with a NULL
// new key, or deleted after the backfill and the NOT NULL check, before
// they are validated; writers go on.
TEST_F(TableOperations, AReferencesOrphansAreKeptWithANullKeyOrDeleted) {
  for (const char* how : {"set_null", "delete"}) {
    SCOPED_TRACE(how);
    db_ = pg_.create_database("tables");
    q(kPets);
    const bool kept = std::string(how) == "set_null";
    Spec s = spec(std::string("  - add_reference: {table: pets, column: owner_key, type: int,"
                              " via: owner_code, references: owners, referenced_column: id,"
                              " lookup: code, orphans: ") +
                  how + (kept ? "" : ", not_null: true") + "}\n");
    Plan plan = make_plan(s);
    EXPECT_EQ(plan.find("1.delete_orphans") == nullptr, kept);
    if (!kept) {
      // Before the NOT NULL check (NOT VALID: it refuses updates of rows it
      // does not hold for), and again between it and its validation.
      std::vector<std::string> order;
      for (const auto& step : plan.steps) order.push_back(step.id);
      const auto at = [&](const std::string& id) {
        return std::find(order.begin(), order.end(), id) - order.begin();
      };
      EXPECT_LT(at("1.backfill"), at("1.delete_orphans"));
      EXPECT_LT(at("1.delete_orphans"), at("1.add_check"));
      EXPECT_LT(at("1.add_check"), at("1.delete_orphans_again"));
      EXPECT_LT(at("1.delete_orphans_again"), at("1.validate"));
      EXPECT_FALSE(plan.find("1.delete_orphans")->reversible);
    }
    // Until cleanup, which leaves owner_key to the application. Deleting
    // rows cannot be undone: backfill waits for approval then.
    if (!kept) q("DELETE FROM pets WHERE owner_code IS NULL");  // would stay NULL
    Writers writer(pg_, db_, 2, write_pets_by_code);
    RunOptions o = options();
    o.until = Phase::kCutover;
    EXPECT_EQ(Executor(s, plan, o).run(),
              kept ? RunOutcome::kReachedUntil : RunOutcome::kWaitingApproval);
    o.approve.insert(Phase::kBackfill);
    if (!kept) {
      EXPECT_EQ(Executor(s, plan, o).run(), RunOutcome::kReachedUntil);
    }
    writer.stop();
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    EXPECT_EQ(writer.failed(), 0) << writer.last_error();
    const long inserted = writer.count("inserted");
    EXPECT_GT(inserted, 0);
    // 280 pets with a code (40 of them orphans) and one stray without.
    EXPECT_EQ(q("SELECT count(*) || '/' || count(owner_key) FROM pets"),
              std::to_string((kept ? 281 : 240) + inserted) + "/" + std::to_string(240 + inserted));
    EXPECT_EQ(q("SELECT count(*) FROM pets p JOIN owners o ON o.code = p.owner_code"
                " WHERE p.owner_key IS DISTINCT FROM o.id"),
              "0");
    EXPECT_EQ(q("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'pets'::regclass"
                " AND attname = 'owner_key'"),
              kept ? "f" : "t");
    EXPECT_EQ(leftovers(pg_, db_, "pets"), "");
  }
}

// A derived add_column (backfill over other columns) follows updates of
// those columns by old writers; a volatile one (a uuid) keeps its value on
// update, and so does a value the application wrote itself.
TEST_F(TableOperations, ADerivedColumnFollowsTheColumnsItIsDerivedFrom) {
  q("CREATE TABLE people (id bigserial PRIMARY KEY, email text);"
    "INSERT INTO people (email) SELECT 'p' || g || '@old' FROM generate_series(1, 3000) g;");
  Spec s = spec(
      "  - add_column: {table: people, column: domain, type: text,"
      " backfill: \"split_part(email, '@', 2)\"}\n"
      "  - add_column: {table: people, column: uid, type: uuid, backfill: gen_random_uuid()}\n");
  // Before the backfill reaches them, and after.
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  q("UPDATE people SET email = 'a@early' WHERE id = 2999");
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  const std::string uid = q("SELECT uid FROM people WHERE id = 1");
  q("UPDATE people SET email = 'a@new' WHERE id = 1");
  q("UPDATE people SET domain = 'mine' WHERE id = 2");
  q("UPDATE people SET email = 'b@other' WHERE id = 2");
  EXPECT_EQ(q("SELECT string_agg(domain, ',' ORDER BY id) FROM people WHERE id IN (1, 2, 2999)"),
            "new,mine,early");
  EXPECT_EQ(q("SELECT uid FROM people WHERE id = 1"), uid);
  EXPECT_EQ(q("SELECT count(*) FROM people WHERE domain = split_part(email, '@', 2)"), "2999");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(leftovers(pg_, db_, "people"), "");
}

// Inserts events under new keys and updates others by their key.
void write_events(Connection& c, int client, long n, Writers::Counts& add) {
  const std::string tenant = std::to_string(1 + n % 10);
  if (n % 2 == 0) {
    c.exec("INSERT INTO events (tenant, seq, payload) VALUES ($1, $2, 'w')",
           {tenant, std::to_string(1000000 * (client + 1) + n)});
    add["inserted"] = 1;
  } else {
    c.exec("UPDATE events SET payload = 'u' WHERE tenant = $1 AND seq = $2",
           {tenant, std::to_string(n % 3000)});
  }
}

// The key's index is built CONCURRENTLY and NOT NULL proved by validated
// checks, so the cutover holds its lock only for metadata; a rollback takes
// NOT NULL off only the columns that did not have it.
TEST_F(TableOperations, APrimaryKeyIsAddedConcurrentlyAndRolledBackToTheNullabilityBefore) {
  q("CREATE TABLE events (tenant int NOT NULL, seq int, payload text);"
    "INSERT INTO events SELECT 1 + g % 10, g, 'p' FROM generate_series(1, 3000) g;");
  const char* state =
      "SELECT coalesce((SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid ="
      " 'events'::regclass AND contype = 'p'), 'no key') || ' ' || (SELECT string_agg(attname"
      " || ':' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid ="
      " 'events'::regclass AND attname IN ('tenant', 'seq'))";
  Spec s = spec("  - add_primary_key: {table: events, columns: [tenant, seq]}\n");
  Plan plan = make_plan(s);
  Writers writer(pg_, db_, 2, write_events);
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(q(state), "PRIMARY KEY (tenant, seq) tenant:true,seq:true");
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q(state), "no key tenant:true,seq:false");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  writer.stop();
  EXPECT_EQ(q(state), "PRIMARY KEY (tenant, seq) tenant:true,seq:true");
  EXPECT_EQ(q("SELECT relname FROM pg_class WHERE oid = (SELECT conindid FROM pg_constraint"
              " WHERE conrelid = 'events'::regclass AND contype = 'p')"),
            "events_pkey");
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.count("inserted"), 0);
  EXPECT_EQ(q("SELECT count(*) FROM events"), std::to_string(3000 + writer.count("inserted")));
  EXPECT_EQ(leftovers(pg_, db_, "events"), "");
}

// Writers of both lock orders on a parent and its children: even clients
// insert an order, then update its user (child first); odd ones update a
// user, then insert a comment (parent first); every tenth write adds a user.
void write_users(Connection& c, int client, long n, Writers::Counts& add) {
  const std::string user = "u" + std::to_string(1 + (n * 7 + client) % 1000);
  if (n % 10 == 0) {
    c.exec("INSERT INTO users (username) VALUES ($1)",
           {"w" + std::to_string(client) + "_" + std::to_string(n)});
    add["users"] = 1;
  } else if (client % 2 == 0) {
    c.exec("INSERT INTO orders (username) VALUES ($1)", {user});
    c.exec("UPDATE users SET visits = visits + 1 WHERE username = $1", {user});
    add["orders"] = 1;
  } else {
    c.exec("UPDATE users SET visits = visits + 1 WHERE username = $1", {user});
    c.exec("INSERT INTO comments (username) VALUES ($1)", {user});
    add["comments"] = 1;
  }
}

// replace: true swaps users' key from username to user_id under writers of
// both lock orders: the foreign keys that reference username move to a
// unique index on it (validated again), a rollback after cutover swaps
// back, and cleanup leaves username a UNIQUE constraint.
TEST_F(TableOperations, APrimaryKeyIsReplacedUnderWritersAndSwappedBackOnRollback) {
  q("CREATE TABLE users (username text PRIMARY KEY, user_id uuid NOT NULL DEFAULT"
    " gen_random_uuid(), visits int NOT NULL DEFAULT 0);"
    "CREATE TABLE orders (id bigserial PRIMARY KEY, username text NOT NULL REFERENCES users"
    " ON UPDATE CASCADE ON DELETE CASCADE);"
    "CREATE TABLE comments (id bigserial PRIMARY KEY, username text REFERENCES users);"
    "INSERT INTO users (username) SELECT 'u' || g FROM generate_series(1, 1000) g;"
    "INSERT INTO orders (username) SELECT 'u' || (1 + g % 1000) FROM generate_series(1, 3000) g;"
    "INSERT INTO comments (username) SELECT 'u' || (1 + g % 1000)"
    " FROM generate_series(1, 2000) g;");
  // The keys and unique constraints of users, and the foreign keys that
  // reference it with their validity.
  const char* state =
      "SELECT string_agg(x, '; ' ORDER BY x) FROM (SELECT conname || ' ' ||"
      " pg_get_constraintdef(oid) || CASE contype WHEN 'f' THEN ' ' || convalidated ELSE '' END"
      " AS x FROM pg_constraint WHERE (conrelid = 'users'::regclass AND contype IN ('p', 'u'))"
      " OR confrelid = 'users'::regclass) s";
  const std::string before = q(state);
  Spec s = spec("  - add_primary_key: {table: users, columns: [user_id], replace: true}\n");
  Plan plan = make_plan(s);
  Writers writer(pg_, db_, 4, write_users);
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  const std::string fks =
      "comments_username_fkey FOREIGN KEY (username) REFERENCES users(username) true; "
      "orders_username_fkey FOREIGN KEY (username) REFERENCES users(username) ON UPDATE CASCADE "
      "ON DELETE CASCADE true; ";
  EXPECT_EQ(q(state), fks + "users_pkey PRIMARY KEY (user_id)");
  // username stays unique through the twin index, which its foreign keys use.
  EXPECT_EQ(q("SELECT string_agg(DISTINCT i.relname, ',') FROM pg_constraint c JOIN pg_class i"
              " ON i.oid = c.conindid WHERE c.confrelid = 'users'::regclass"),
            HelperNames(s, "public", "users", "user_id").plain("_tandem_oldpk_"));
  EXPECT_THROW(q("INSERT INTO users (username) VALUES ('u1')"), std::exception);
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q(state), before);
  EXPECT_EQ(leftovers(pg_, db_, "users"), "");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  writer.stop();
  EXPECT_EQ(q(state),
            fks + "users_pkey PRIMARY KEY (user_id); users_username_key UNIQUE (username)");
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.count("orders"), 0);
  EXPECT_GT(writer.count("comments"), 0);
  EXPECT_EQ(q("SELECT count(*) FROM users"), std::to_string(1000 + writer.count("users")));
  EXPECT_EQ(q("SELECT count(*) FROM orders"), std::to_string(3000 + writer.count("orders")));
  EXPECT_EQ(q("SELECT count(*) FROM comments"), std::to_string(2000 + writer.count("comments")));
  // The swap learnt the writers' order: at most two failed attempts in each
  // of its three runs (in a fixed order, the step spent its retry budget of
  // 30 and failed).
  EXPECT_LE(std::stoi(q("SELECT attempts FROM tandem.steps WHERE step_id = '1.replace_key'")), 6);
  EXPECT_EQ(leftovers(pg_, db_, "users"), "");
}

// Inserts measures into the partitioned table (every partition in turn)
// and updates some.
void write_measures(Connection& c, int client, long n, Writers::Counts& add) {
  if (n % 3 == 0) {
    c.exec("UPDATE measures SET v = v + 1 WHERE at = date '2026-01-01' + $1::int % 700",
           {std::to_string(n)});
  } else {
    c.exec("INSERT INTO measures (at, v, tag) VALUES (date '2026-01-01' + $1::int % 700, $2, 't')",
           {std::to_string(n * 7 + client), std::to_string(client)});
    add["inserted"] = 1;
  }
}

// create_index on a partitioned table (two levels): ON ONLY the table and the
// partitioned partition, each leaf's CONCURRENTLY, attached; the table's index
// is valid and every partition has its own; a rollback drops them all.
TEST_F(TableOperations, AnIndexIsBuiltOnAPartitionedTablePartitionByPartition) {
  q("CREATE TABLE measures (at date NOT NULL, v int, tag text) PARTITION BY RANGE (at);"
    "CREATE TABLE measures_2026 PARTITION OF measures"
    " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
    "CREATE TABLE measures_2027 PARTITION OF measures"
    " FOR VALUES FROM ('2027-01-01') TO ('2028-01-01') PARTITION BY RANGE (at);"
    "CREATE TABLE measures_2027_h1 PARTITION OF measures_2027"
    " FOR VALUES FROM ('2027-01-01') TO ('2027-07-01');"
    "CREATE TABLE measures_2027_h2 PARTITION OF measures_2027"
    " FOR VALUES FROM ('2027-07-01') TO ('2028-01-01');"
    "INSERT INTO measures SELECT date '2026-01-01' + g % 700, g, 'x'"
    " FROM generate_series(1, 20000) g;");
  // Each partition (and the table) with whether it has a valid index on
  // (tag, v) attached to its parent's.
  const char* indexes =
      "SELECT string_agg(c.relname || ':' || coalesce((SELECT i.indisvalid AND (p.parentrelid IS"
      " NULL OR EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid))"
      " FROM pg_index i WHERE i.indrelid = c.oid AND pg_get_indexdef(i.indexrelid) LIKE"
      " '%(tag, v)%'), false), ' ' ORDER BY c.relname)"
      " FROM pg_partition_tree('measures') p JOIN pg_class c ON c.oid = p.relid";
  Spec s = spec("  - create_index: {table: measures, name: measures_tag_v, columns: [tag, v]}\n");
  Plan plan = make_plan(s);
  Writers writer(pg_, db_, 2, write_measures);
  // Its one step is in prepare: nothing waits for cleanup.
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  const std::string built =
      "measures:true measures_2026:true measures_2027:true measures_2027_h1:true "
      "measures_2027_h2:true";
  EXPECT_EQ(q(indexes), built);
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q(indexes),
            "measures:false measures_2026:false measures_2027:false measures_2027_h1:false "
            "measures_2027_h2:false");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  writer.stop();
  EXPECT_EQ(q(indexes), built);
  EXPECT_EQ(q("SELECT count(*) FROM pg_class WHERE relname LIKE 'measures%' AND relkind IN ('i',"
              " 'I')"),
            "5");
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.count("inserted"), 0);
  EXPECT_EQ(q("SELECT count(*) FROM measures"), std::to_string(20000 + writer.count("inserted")));
  EXPECT_EQ(leftovers(pg_, db_, "measures"), "");
}

// drop_table on a partitioned table moves the table aside at cutover (its
// partitions keep their names, reachable only through it by name), brings
// it back on rollback with every row, and drops it with every partition at
// cleanup.
TEST_F(TableOperations, APartitionedTableIsDroppedWithItsPartitionsOnlyAtCleanup) {
  q("CREATE TABLE measures (at date NOT NULL, v int) PARTITION BY RANGE (at);"
    "CREATE TABLE measures_2026 PARTITION OF measures"
    " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
    "CREATE TABLE measures_2027 PARTITION OF measures"
    " FOR VALUES FROM ('2027-01-01') TO ('2028-01-01') PARTITION BY RANGE (at);"
    "CREATE TABLE measures_2027_h1 PARTITION OF measures_2027"
    " FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');"
    "INSERT INTO measures SELECT date '2026-01-01' + g % 700, g FROM generate_series(1, 5000) g;");
  const char* tables =
      "SELECT coalesce(string_agg(relname || ':' || relkind::text, ' ' ORDER BY relname), '-')"
      " FROM pg_class WHERE relname LIKE '%measures%' AND relkind IN ('r', 'p')";
  Spec s = spec("  - drop_table: {table: measures}\n");
  Plan plan = make_plan(s);
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(q("SELECT to_regclass('measures') IS NULL"), "t");
  EXPECT_EQ(q("SELECT count(*) FROM pg_partition_tree((SELECT oid FROM pg_class"
              " WHERE relname LIKE '\\_tandem\\_dropped\\_measures%'))"),
            "4");
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q(tables), "measures:p measures_2026:r measures_2027:p measures_2027_h1:r");
  EXPECT_EQ(q("SELECT count(*) FROM measures"), "5000");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(q(tables), "-");
}

TEST_F(TableOperations, WhatCannotBeDoneSafelyIsRefusedAtPrecheckAndNothingChanges) {
  q("CREATE TABLE parents (id int PRIMARY KEY, code int UNIQUE, slot int,"
    " EXCLUDE USING btree (slot WITH =));"
    "CREATE TABLE children (id int PRIMARY KEY, parent_id int REFERENCES parents (id));"
    "CREATE VIEW parent_codes AS SELECT code FROM parents;"
    "CREATE TABLE published (id int PRIMARY KEY);"
    "CREATE PUBLICATION tandem_pub FOR TABLE published;"
    "CREATE TABLE measures (at date NOT NULL, v int, w int) PARTITION BY RANGE (at);"
    "CREATE TABLE measures_2026 PARTITION OF measures"
    " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
    "CREATE INDEX measures_v ON measures (v);");
  const struct {
    const char* operation;
    const char* reason;
  } cases[] = {
      {"drop_constraint: {table: parents, name: parents_pkey}",
       "foreign key children_parent_id_fkey of children references key parents_pkey; drop "
       "that foreign key first"},
      {"drop_constraint: {table: parents, name: parents_slot_excl}",
       "constraint parents_slot_excl of parents is an exclusion constraint"},
      {"drop_constraint: {table: parents, name: no_such}", "parents has no constraint no_such"},
      {"drop_constraint: {table: published, name: published_pkey}",
       "published is published and key published_pkey is its replica identity"},
      {"drop_table: {table: parents}",
       "foreign key children_parent_id_fkey of children references parents"},
      {"drop_table: {table: parents}", "view parent_codes reads parents"},
      {"drop_table: {table: measures_2026}",
       "measures_2026 is a partition of measures; drop_table drops whole tables only"},
      {"rename_table: {table: parents, to: children}", "children already exists"},
      {"create_table: {table: children, columns: [id int]}", "children already exists"},
      {"create_table: {table: nowhere.t, columns: [id int]}", "schema nowhere does not exist"},
      {"set_replica_identity: {table: parents, identity: index, index: parents_code_key}",
       "index parents_code_key cannot identify rows for logical replication"},
      {"add_primary_key: {table: parents, columns: [code], name: parents_code_pk}",
       "parents already has a primary key, parents_pkey; give replace: true to swap it for this "
       "one"},
      {"add_primary_key: {table: published, columns: [id], replace: true}",
       "the primary key published_pkey of published is on (id) already"},
      // Partitioned tables: what PostgreSQL cannot do there online, and
      // what tandem does not do there yet.
      {"add_column: {table: measures, column: c, type: int, backfill: w, unique: true}",
       "measures is a partitioned table; a unique constraint of a partitioned table must include "
       "the partition key"},
      {"add_constraint: {table: measures, name: m_fk, foreign_key: [w], references: parents,"
       " referenced_columns: [id]}",
       "measures is a partitioned table; PostgreSQL before 18 cannot add a foreign key to a "
       "partitioned table NOT VALID"},
      {"add_primary_key: {table: measures, columns: [at, v]}",
       "measures is a partitioned table; add_primary_key does not support partitioned tables yet"},
      {"alter_column: {table: measures, column: at, type: timestamp}",
       "column at is in the partition key of measures; alter_column replaces the column with a "
       "new one, and PostgreSQL cannot drop a column of the partition key"},
      {"drop_column: {table: measures, column: at}",
       "column at is in the partition key of measures; PostgreSQL cannot drop a column of the "
       "partition key"},
      {"alter_column_type: {table: measures, column: v, type: bigint}",
       "index measures_v uses column v (tandem carries indexes and constraints over to the new "
       "column of a plain table, not yet of a partitioned one)"},
      {"set_not_null: {table: parent_codes, column: code}",
       "parent_codes is a view; set_not_null works on plain and partitioned tables"},
      {"add_column: {table: parents, column: u, type: uuid, default: gen_random_uuid()}",
       "default gen_random_uuid() calls gen_random_uuid, which is volatile: ADD COLUMN would "
       "rewrite the table under ACCESS EXCLUSIVE"},
  };
  // The application's relations and constraints, by name.
  const std::string catalog =
      "SELECT string_agg(x, ' ' ORDER BY x) FROM (SELECT relname::text AS x FROM pg_class"
      " WHERE relnamespace = 'public'::regnamespace UNION ALL SELECT conname FROM pg_constraint"
      " WHERE connamespace = 'public'::regnamespace) s";
  const std::string before = q(catalog);
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.operation);
    const std::string file = write_temp_file("name: refused_" + std::to_string(++n) +
                                             "\noperations:\n  - " + c.operation + "\n");
    auto r = run_command(tandemd("run " + file + " --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(c.reason), std::string::npos) << r.output;
    EXPECT_EQ(q(catalog), before);
  }
}

}  // namespace
}  // namespace tandem::testing
