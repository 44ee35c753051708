// The seams between steps. Each step commits on its own, and between two of
// them the application keeps writing: whatever state a step leaves behind,
// every write the application may make at that point must succeed. After
// every step that commits, forward or in a rollback, each write the case
// allows is made in its own transaction, and not one may fail. This is
// deterministic: no timing decides whether a seam is visited.
//
// A write is allowed from the moment every step of its `from` phase is done
// (writers move to the new shape once the sync that serves them exists)
// until the first step of its `until` phase runs (old writers stop before
// cleanup); a rollback walks the same windows backwards.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

struct AppWrite {
  const char* name;
  const char* sql;
  std::optional<Phase> from;   // nullopt: allowed before anything ran
  std::optional<Phase> until;  // nullopt: allowed for ever
};

struct SeamCase {
  const char* title;
  const char* setup;
  const char* operation;  // YAML of one list item under operations:
  std::vector<AppWrite> writes;
};

void PrintTo(const SeamCase& c, std::ostream* os) { *os << c.title; }

// Makes each allowed write after each committed step, and keeps the failures.
class SeamProbe : public ProgressSink {
 public:
  SeamProbe(const PgServer& pg, const std::string& db, const Plan& plan, const SeamCase& c)
      : conn_(pg.connect(db)), plan_(plan), case_(c) {}

  void phase_started(Phase) override {}
  void step_started(const Step&) override {}
  void progress(const ProgressUpdate&) override {}
  void step_finished(const Step& step, double) override {
    done_.insert(step.id);
    probe("after " + step.id);
  }
  void step_rolled_back(const Step& step) override {
    done_.erase(step.id);
    probe("after the rollback of " + step.id);
  }

  const std::vector<std::string>& failures() const { return failures_; }
  int writes() const { return writes_; }
  // How many seams allowed each write.
  const std::map<std::string, int>& allowed() const { return allowed_; }

 private:
  bool phase_done(Phase p) const {
    for (const Step* s : plan_.steps_in(p)) {
      if (!done_.count(s->id)) return false;
    }
    return true;
  }
  bool phase_begun(Phase p) const {
    for (const Step* s : plan_.steps_in(p)) {
      if (done_.count(s->id)) return true;
    }
    return false;
  }
  void probe(const std::string& seam) {
    for (const auto& w : case_.writes) {
      if (w.from && !phase_done(*w.from)) continue;
      if (w.until && phase_begun(*w.until)) continue;
      ++allowed_[w.name];
      ++writes_;
      try {
        conn_->exec(w.sql);
      } catch (const std::exception& e) {
        failures_.push_back(seam + ": " + w.name + ": " + e.what());
      }
    }
  }

  std::unique_ptr<Connection> conn_;
  const Plan& plan_;
  const SeamCase& case_;
  std::set<std::string> done_;
  std::vector<std::string> failures_;
  std::map<std::string, int> allowed_;
  int writes_ = 0;
};

const SeamCase kCases[] = {
    // Issue 16, item 2: swapped back after cutover, the shadow column kept
    // the NOT NULL it had taken, and lost its trigger before it was dropped.
    {"alter_column_type_not_null_text_to_integer",
     "CREATE TABLE reviews (id bigserial PRIMARY KEY, rating text NOT NULL);"
     "INSERT INTO reviews (rating) SELECT (g % 5)::text FROM generate_series(1, 3000) g;",
     "  - alter_column_type: {table: reviews, column: rating, type: integer,"
     " up: CAST(rating AS integer), down: CAST(rating AS text)}\n",
     {{"insert", "INSERT INTO reviews (rating) VALUES ('4')", std::nullopt, std::nullopt},
      {"update", "UPDATE reviews SET rating = '3' WHERE id = 5", std::nullopt, std::nullopt}}},
    // Issue 16, item 1: the lookup trigger went in its own transaction before
    // the old key's column, whose NOT NULL then failed writers of the new key.
    // Old writers write a negative price or none until cutover (up makes
    // them 0), then through the view; new writers by the new name.
    {"alter_column_not_null_check_default_rename",
     "CREATE TABLE products (id bigserial PRIMARY KEY, sku text NOT NULL, price int);"
     "INSERT INTO products (sku, price) SELECT 's' || g, CASE WHEN g % 7 = 0 THEN NULL"
     " ELSE g % 100 - 5 END FROM generate_series(1, 3000) g;",
     "  - alter_column:\n      table: products\n      column: price\n      not_null: true\n"
     "      check: price >= 0\n      default: \"0\"\n      rename: unit_price\n"
     "      compat_view: products_v1\n"
     "      up: CASE WHEN price IS NULL OR price < 0 THEN 0 ELSE price END\n",
     {{"insert a negative price", "INSERT INTO products (sku, price) VALUES ('n', -3)",
       std::nullopt, Phase::kCutover},
      {"insert without a price", "INSERT INTO products (sku) VALUES ('m')", std::nullopt,
       std::nullopt},
      {"insert through the view", "INSERT INTO products_v1 (sku, price) VALUES ('v', 7)",
       Phase::kCutover, Phase::kCleanup},
      {"insert by the new name", "INSERT INTO products (sku, unit_price) VALUES ('w', 8)",
       Phase::kCutover, std::nullopt},
      {"update", "UPDATE products SET sku = sku || 'x' WHERE id = 5", std::nullopt, std::nullopt}}},
    {"alter_column_type_and_foreign_key",
     "CREATE TABLE vendors (id int PRIMARY KEY);"
     "INSERT INTO vendors SELECT generate_series(1, 10);"
     "CREATE TABLE parts (id bigserial PRIMARY KEY, vendor int);"
     "INSERT INTO parts (vendor) SELECT 1 + g % 10 FROM generate_series(1, 3000) g;",
     "  - alter_column: {table: parts, column: vendor, type: bigint, references: vendors,"
     " referenced_column: id, on_delete: restrict}\n",
     {{"insert", "INSERT INTO parts (vendor) VALUES (3)", std::nullopt, std::nullopt},
      {"update", "UPDATE parts SET vendor = 4 WHERE id = 5", std::nullopt, std::nullopt},
      {"delete a vendor nobody uses", "DELETE FROM vendors WHERE id = 11", std::nullopt,
       std::nullopt}}},
    // Writers insert with the key's columns and update by them; NULL
    // keys are refused from the checks on, as the key will refuse them.
    {"add_primary_key_on_two_columns",
     "CREATE TABLE readings (sensor int NOT NULL, seq int, value int);"
     "INSERT INTO readings SELECT 1 + g % 10, g, g FROM generate_series(1, 3000) g;",
     "  - add_primary_key: {table: readings, columns: [sensor, seq]}\n",
     {{"insert", "INSERT INTO readings SELECT 3, max(seq) + 1, 0 FROM readings", std::nullopt,
       std::nullopt},
      {"update by the key", "UPDATE readings SET value = value + 1 WHERE sensor = 2 AND seq = 11",
       std::nullopt, std::nullopt}}},
    // The key swapped from username to user_id: users and orders written
    // by username (its foreign key moving to the old key's twin) and by
    // user_id, at every step boundary, forward and back.
    {"add_primary_key_replacing_the_key",
     "CREATE TABLE users (username text PRIMARY KEY,"
     " user_id uuid NOT NULL DEFAULT gen_random_uuid(), visits int NOT NULL DEFAULT 0);"
     "INSERT INTO users (username) SELECT 'u' || g FROM generate_series(1, 100) g;"
     "CREATE TABLE orders (id bigserial PRIMARY KEY,"
     " username text NOT NULL REFERENCES users (username) ON UPDATE CASCADE);"
     "INSERT INTO orders (username) SELECT 'u' || (1 + g % 100) FROM generate_series(1, 3000) g;",
     "  - add_primary_key: {table: users, columns: [user_id], replace: true}\n",
     {{"insert a user", "INSERT INTO users (username) VALUES ('n' || clock_timestamp())",
       std::nullopt, std::nullopt},
      {"insert an order", "INSERT INTO orders (username) VALUES ('u5')", std::nullopt,
       std::nullopt},
      {"update by user_id",
       "UPDATE users SET visits = visits + 1 WHERE user_id = (SELECT user_id FROM users WHERE"
       " username = 'u7')",
       std::nullopt, std::nullopt}}},
    {"add_reference_dropping_the_old_key",
     "CREATE TABLE users (username text PRIMARY KEY,"
     " user_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid());"
     "INSERT INTO users (username) SELECT 'u' || g FROM generate_series(1, 100) g;"
     "CREATE TABLE orders (id bigserial PRIMARY KEY,"
     " username text NOT NULL REFERENCES users (username), amount int NOT NULL);"
     "INSERT INTO orders (username, amount) SELECT 'u' || (1 + g % 100), g"
     " FROM generate_series(1, 3000) g;",
     "  - add_reference:\n      table: orders\n      column: user_id\n      type: uuid\n"
     "      via: username\n      references: users\n      referenced_column: user_id\n"
     "      lookup: username\n      not_null: true\n      index: true\n"
     "      drop_via: true\n      compat_view: orders_v1\n",
     {{"insert by username", "INSERT INTO orders (username, amount) VALUES ('u5', 1)", std::nullopt,
       Phase::kCleanup},
      {"insert by user_id",
       "INSERT INTO orders (user_id, amount)"
       " VALUES ((SELECT user_id FROM users WHERE username = 'u7'), 1)",
       Phase::kDualWrite, std::nullopt},
      {"update", "UPDATE orders SET amount = amount + 1 WHERE id = 3", std::nullopt,
       std::nullopt}}},
    {"move_column",
     "CREATE TABLE people (id bigserial PRIMARY KEY, email text NOT NULL, full_name text);"
     "INSERT INTO people (email, full_name) SELECT 'e' || g, 'n' || g"
     " FROM generate_series(1, 3000) g;",
     "  - move_column: {table: people, column: full_name, key: [id], to: people_pii}\n",
     {{"insert with full_name", "INSERT INTO people (email, full_name) VALUES ('a', 'b')",
       std::nullopt, Phase::kCleanup},
      {"insert into both",
       "WITH p AS (INSERT INTO people (email) VALUES ('c') RETURNING id)"
       " INSERT INTO people_pii (id, full_name) SELECT id, 'd' FROM p"
       " ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name",
       Phase::kCutover, std::nullopt},
      {"update email", "UPDATE people SET email = email || 'x' WHERE id = 9", std::nullopt,
       std::nullopt}}},
    {"add_column_not_null_unique_default",
     "CREATE TABLE items (id bigserial PRIMARY KEY, label text);"
     "INSERT INTO items (label) SELECT 'l' || g FROM generate_series(1, 3000) g;",
     "  - add_column: {table: items, column: uid, type: uuid, backfill: gen_random_uuid(),"
     " default: gen_random_uuid(), unique: true, not_null: true}\n",
     {{"insert", "INSERT INTO items (label) VALUES ('x')", std::nullopt, std::nullopt},
      {"update", "UPDATE items SET label = 'y' WHERE id = 7", std::nullopt, std::nullopt}}},
    {"rename_column_with_a_compat_view",
     "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);"
     "INSERT INTO notes (body) SELECT 'b' || g FROM generate_series(1, 2000) g;",
     "  - rename_column: {table: notes, column: body, to: content, compat_view: notes_v1}\n",
     {{"insert by the old name", "INSERT INTO notes (body) VALUES ('x')", std::nullopt,
       Phase::kCutover},
      {"insert through the view", "INSERT INTO notes_v1 (body) VALUES ('y')", Phase::kCutover,
       Phase::kCleanup},
      {"insert by the new name", "INSERT INTO notes (content) VALUES ('z')", Phase::kCutover,
       std::nullopt}}},
    {"copy_table_v1_to_v2",
     "CREATE TABLE ledger_v1 (id bigserial PRIMARY KEY, cents int NOT NULL);"
     "INSERT INTO ledger_v1 (cents) SELECT g FROM generate_series(1, 2000) g;",
     "  - copy_table:\n      table: ledger_v1\n      to: ledger_v2\n      key: [id]\n"
     "      create: id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL\n"
     "      up: {amount: cents / 100.0}\n      down: {cents: (amount * 100)::int}\n",
     {{"insert into v1", "INSERT INTO ledger_v1 (cents) VALUES (5)", std::nullopt, Phase::kCleanup},
      {"update v1", "UPDATE ledger_v1 SET cents = cents + 1 WHERE id = 4", std::nullopt,
       Phase::kCleanup},
      {"update v2", "UPDATE ledger_v2 SET amount = amount + 1 WHERE id = 6", Phase::kCutover,
       std::nullopt}}},
    {"set_not_null_check_and_foreign_key",
     "CREATE TABLE owners (id int PRIMARY KEY);"
     "INSERT INTO owners SELECT generate_series(1, 50);"
     "CREATE TABLE pets (id bigserial PRIMARY KEY, owner_id int, name text);"
     "INSERT INTO pets (owner_id, name) SELECT 1 + g % 50, 'p' FROM generate_series(1, 2000) g;",
     "  - set_not_null: {table: pets, column: name}\n"
     "  - add_constraint: {table: pets, name: pets_name_short, check: length(name) < 20}\n"
     "  - add_constraint: {table: pets, name: pets_owner_fk, foreign_key: [owner_id],"
     " references: owners, referenced_columns: [id]}\n"
     "  - create_index: {table: pets, name: pets_owner_idx, columns: [owner_id]}\n",
     {{"insert", "INSERT INTO pets (owner_id, name) VALUES (3, 'q')", std::nullopt, std::nullopt},
      {"update", "UPDATE pets SET name = 'r' WHERE id = 8", std::nullopt, std::nullopt},
      {"parent then child",
       "WITH o AS (INSERT INTO owners VALUES ((SELECT max(id) + 1 FROM owners)) RETURNING id)"
       " INSERT INTO pets (owner_id, name) SELECT id, 's' FROM o",
       std::nullopt, std::nullopt}}},
    // Issue 18: a primary key widened with the foreign key column that
    // references it; the key, its index and the foreign key move at cutover.
    {"alter_column_type_primary_key_and_its_foreign_key",
     "CREATE TABLE orders (id serial PRIMARY KEY, customer int NOT NULL);"
     "CREATE INDEX orders_by_customer ON orders (customer, id DESC);"
     "INSERT INTO orders (customer) SELECT g % 100 FROM generate_series(1, 2000) g;"
     "CREATE TABLE order_items (id bigserial PRIMARY KEY,"
     " order_id int NOT NULL REFERENCES orders (id) ON DELETE CASCADE, qty int NOT NULL);"
     "CREATE INDEX order_items_order_id ON order_items (order_id);"
     "INSERT INTO order_items (order_id, qty) SELECT 1 + g % 2000, 1 FROM generate_series(1, 3000) "
     "g;",
     "  - alter_column_type: {table: orders, column: id, type: bigint}\n"
     "  - alter_column_type: {table: order_items, column: order_id, type: bigint}\n",
     {{"insert an order", "INSERT INTO orders (customer) VALUES (7)", std::nullopt, std::nullopt},
      {"order then item",
       "WITH o AS (INSERT INTO orders (customer) VALUES (8) RETURNING id)"
       " INSERT INTO order_items (order_id, qty) SELECT id, 2 FROM o",
       std::nullopt, std::nullopt},
      {"move an item", "UPDATE order_items SET order_id = order_id % 1000 + 1 WHERE id = 11",
       std::nullopt, std::nullopt},
      {"delete an order and its items",
       "DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE id > 100)", std::nullopt,
       std::nullopt},
      {"an item of no order fails",
       "DO $$ BEGIN INSERT INTO order_items (order_id, qty) VALUES (-5, 1);"
       " RAISE EXCEPTION 'the foreign key let an item of no order in';"
       " EXCEPTION WHEN foreign_key_violation THEN NULL; END $$",
       std::nullopt, std::nullopt}}},
    // Issue 18: table-level operations and dropped constraints.
    {"rename_table_with_its_view",
     "CREATE TABLE invoices (id bigserial PRIMARY KEY, cents int NOT NULL DEFAULT 0);"
     "INSERT INTO invoices (cents) SELECT g FROM generate_series(1, 2000) g;",
     "  - rename_table: {table: invoices, to: bills}\n",
     {{"insert by the old name", "INSERT INTO invoices (cents) VALUES (1) RETURNING id",
       std::nullopt, Phase::kCleanup},
      {"upsert by the old name",
       "INSERT INTO invoices (id, cents) VALUES (3, 7)"
       " ON CONFLICT (id) DO UPDATE SET cents = EXCLUDED.cents",
       std::nullopt, Phase::kCleanup},
      {"insert by the new name", "INSERT INTO bills DEFAULT VALUES", Phase::kCutover,
       std::nullopt}}},
    {"drop_table_moved_aside_until_cleanup",
     "CREATE TABLE old_log (id bigserial PRIMARY KEY, line text);"
     "INSERT INTO old_log (line) SELECT 'l' FROM generate_series(1, 100);"
     "CREATE TABLE kept (id bigserial PRIMARY KEY, n int);",
     "  - drop_table: {table: old_log}\n",
     {{"insert into the table", "INSERT INTO old_log (line) VALUES ('x')", std::nullopt,
       Phase::kCutover},
      {"insert elsewhere", "INSERT INTO kept (n) VALUES (1)", std::nullopt, std::nullopt}}},
    {"create_table_with_a_foreign_key",
     "CREATE TABLE authors (id bigserial PRIMARY KEY, name text);"
     "INSERT INTO authors (name) SELECT 'a' FROM generate_series(1, 100);",
     "  - create_table:\n      table: books\n      columns: [id bigint GENERATED ALWAYS AS"
     " IDENTITY PRIMARY KEY, author_id bigint NOT NULL REFERENCES authors (id),"
     " title text NOT NULL DEFAULT '']\n",
     {{"insert an author", "INSERT INTO authors (name) VALUES ('b')", std::nullopt, std::nullopt},
      {"insert a book", "INSERT INTO books (author_id) VALUES (5)", Phase::kPrepare,
       std::nullopt}}},
    {"drop_constraint_check_foreign_key_and_unique",
     "CREATE TABLE teams (id int PRIMARY KEY);"
     "INSERT INTO teams SELECT generate_series(1, 20);"
     "CREATE TABLE players (id bigserial PRIMARY KEY,"
     " team_id int CONSTRAINT players_team_fk REFERENCES teams (id),"
     " shirt int CONSTRAINT players_shirt_small CHECK (shirt < 100),"
     " email text CONSTRAINT players_email_key UNIQUE);"
     "INSERT INTO players (team_id, shirt, email) SELECT 1 + g % 20, g % 99, 'e' || g"
     " FROM generate_series(1, 2000) g;",
     "  - drop_constraint: {table: players, name: players_team_fk}\n"
     "  - drop_constraint: {table: players, name: players_shirt_small}\n"
     "  - drop_constraint: {table: players, name: players_email_key}\n",
     {{"insert", "INSERT INTO players (team_id, shirt, email) VALUES (3, 7, gen_random_uuid())",
       std::nullopt, std::nullopt},
      {"update", "UPDATE players SET shirt = 8, team_id = 4 WHERE id = 9", std::nullopt,
       std::nullopt},
      {"a team then its player",
       "WITH t AS (INSERT INTO teams VALUES ((SELECT max(id) + 1 FROM teams)) RETURNING id)"
       " INSERT INTO players (team_id, email) SELECT id, gen_random_uuid() FROM t",
       std::nullopt, std::nullopt}}},
    {"drop_column_with_down",
     "CREATE TABLE posts (id bigserial PRIMARY KEY, title text NOT NULL, legacy text);"
     "INSERT INTO posts (title, legacy) SELECT 't', 'l' FROM generate_series(1, 2000) g;",
     "  - drop_column: {table: posts, column: legacy, type: text, down: \"'restored'\"}\n",
     {{"insert with legacy", "INSERT INTO posts (title, legacy) VALUES ('a', 'b')", std::nullopt,
       Phase::kCleanup},
      {"insert without legacy", "INSERT INTO posts (title) VALUES ('c')", std::nullopt,
       std::nullopt}}},
};

class Seams : public ::testing::TestWithParam<SeamCase> {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("seams");
    pg_.psql(db_, GetParam().setup);
  }
  RunOptions options(ProgressSink* sink, std::optional<Phase> until) const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.progress = sink;
    o.until = until;
    o.approve_all = true;
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_P(Seams, EveryAllowedWriteSucceedsAfterEveryStepForwardAndInRollback) {
  const SeamCase& c = GetParam();
  Spec spec = spec_from(std::string("name: seams\nsettings: {lock_timeout: 300ms,"
                                    " retry_backoff: 20ms, batch_size: 500}\noperations:\n") +
                        c.operation);
  Plan plan = make_plan(spec);
  SeamProbe probe(pg_, db_, plan, c);
  // Through cutover, back from there, then through cleanup.
  const RunOutcome started = Executor(spec, plan, options(&probe, Phase::kCutover)).run();
  EXPECT_TRUE(started == RunOutcome::kReachedUntil ||  // or no cleanup steps
              started == RunOutcome::kCompleted);
  EXPECT_EQ(Executor(spec, plan, options(&probe, std::nullopt)).rollback(),
            RollbackOutcome::kRolledBack);
  EXPECT_EQ(Executor(spec, plan, options(&probe, std::nullopt)).run(), RunOutcome::kCompleted);

  std::string all;
  for (const auto& f : probe.failures()) all += f + "\n";
  EXPECT_TRUE(probe.failures().empty())
      << probe.failures().size() << " of " << probe.writes() << " writes failed:\n"
      << all;
  // Every write was tried at several seams (the windows are not empty).
  for (const auto& w : c.writes) {
    auto n = probe.allowed().find(w.name);
    EXPECT_GE(n == probe.allowed().end() ? 0 : n->second, 2) << w.name;
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"), "0");
}

INSTANTIATE_TEST_SUITE_P(Every, Seams, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.title); });

}  // namespace
}  // namespace tandem::testing
