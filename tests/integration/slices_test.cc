// copy_table in slices: contacts of customers move to the new application's
// table slice by slice. Writers route every transaction through
// tandem.route and write to whichever side it names, while slices are
// promoted, demoted and rolled back: no write fails, none is lost on either
// side, both tables end equal. Membership is fixed when the slices are
// defined; keys created later follow the rule; a stage change killed while
// it waits changes nothing. The same for move_column, routed by a column
// that is not a key column.
#include "engine/slices.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "support/scenario.h"
#include "support/writers.h"

namespace tandem::testing {
namespace {

constexpr int kCustomers = 200;
constexpr int kPerCustomer = 20;

class SlicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("slices");
    // Customers 1-60 are in region eu, the others in us.
    q("CREATE TABLE contacts (id bigserial PRIMARY KEY, customer_id int NOT NULL,"
      " region text NOT NULL, email text NOT NULL, hits bigint NOT NULL DEFAULT 0);"
      "INSERT INTO contacts (customer_id, region, email) SELECT c,"
      " CASE WHEN c <= 60 THEN 'eu' ELSE 'us' END, 'c' || c || '-' || n || '@example.com'"
      " FROM generate_series(1, " +
      std::to_string(kCustomers) + ") c, generate_series(1, " + std::to_string(kPerCustomer) +
      ") n ORDER BY c, n;");
  }
  std::string q(const std::string& sql) { return pg_.psql(db_, sql); }
  std::string spec_text(const std::string& rest = "          - {name: rest}\n",
                        const std::string& more = "") const {
    return "name: contacts_slices\n"
           "settings: {lock_timeout: 300ms, retry_backoff: 20ms, batch_size: 1000}\n"
           "operations:\n"
           "  - copy_table:\n"
           "      table: contacts\n"
           "      to: app_contacts\n"
           "      key: [id]\n"
           "      create: id bigint PRIMARY KEY DEFAULT nextval('contacts_id_seq'), customer_id"
           " int NOT NULL, region text NOT NULL, email_address text NOT NULL, hits bigint NOT"
           " NULL DEFAULT 0\n"
           "      up: {customer_id: customer_id, region: region, email_address: email,"
           " hits: hits}\n"
           "      down: {customer_id: customer_id, region: region, email: email_address,"
           " hits: hits}\n"
           "      slices:\n"
           "        by: customer_id\n" +
           more +
           "        list:\n"
           "          - {name: pilot, where: \"customer_id IN (1, 2, 3)\"}\n"
           "          - {name: eu, where: \"region = 'eu'\"}\n" +
           rest;
  }
  RunOptions options(bool approve_all = false) const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.approve_all = approve_all;
    return o;
  }
  // Runs the migration to the cutover gate, where it waits for the slices.
  void to_the_gate(const Spec& s, const Plan& plan) {
    Executor ex(s, plan, options(true));
    ASSERT_EQ(ex.run(), RunOutcome::kWaitingApproval);
    EXPECT_EQ(ex.waiting_phase(), Phase::kCutover);
    EXPECT_NE(ex.approval_withheld().find("slices not complete yet: pilot (old), eu (old)"),
              std::string::npos)
        << ex.approval_withheld();
  }
  std::string route(const std::string& key) {
    return q("SELECT tandem.route('contacts_slices', '" + key + "')");
  }
  SliceMoveResult move(const Spec& s, const std::string& slice, SliceMove m) {
    auto c = pg_.connect(db_);
    return move_slice(*c, s, slice, m, "test", s.settings);
  }
  void expect_moved(const Spec& s, const std::string& slice, SliceMove m, SliceStage to) {
    const SliceMoveResult r = move(s, slice, m);
    ASSERT_TRUE(r.to) << slice << ": " << r.refused;
    EXPECT_EQ(*r.to, to);
  }
  // Rows that differ between the tables, both ways.
  std::string differences() {
    return q(
        "SELECT count(*) FROM ((SELECT id, customer_id, region, email, hits FROM contacts"
        " EXCEPT SELECT id, customer_id, region, email_address, hits FROM app_contacts)"
        " UNION ALL (SELECT id, customer_id, region, email_address, hits FROM app_contacts"
        " EXCEPT SELECT id, customer_id, region, email, hits FROM contacts)) d");
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(SlicesTest, MembershipIsFixedWhenDefinedAndNewKeysFollowTheRule) {
  Spec s = spec_from(spec_text());
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  EXPECT_EQ(q("SELECT string_agg(slice || '=' || keys, ',' ORDER BY ordinal) FROM tandem.slices"),
            "pilot=3,eu=57,rest=140");
  // Customer 100 moves to eu after the slices were defined: its slice stays.
  q("UPDATE contacts SET region = 'eu' WHERE customer_id = 100");
  EXPECT_EQ(q("SELECT slice FROM tandem.slice_members WHERE key = '100'"), "rest");
  EXPECT_EQ(route("1") + route("30") + route("100"), "oldoldold");
  // A customer that did not exist then: the new side, by the default rule.
  EXPECT_EQ(route("5000"), "new");
  q("UPDATE tandem.slice_plans SET new_keys = 'old'");
  EXPECT_EQ(route("5000"), "old");
  q("UPDATE tandem.slice_plans SET new_keys = 'new'");

  // The ladder: into shadow and live after a check of the slice's copy.
  SliceMoveResult r = move(s, "pilot", SliceMove::kPromote);
  ASSERT_TRUE(r.to) << r.refused;
  ASSERT_TRUE(r.check);
  EXPECT_EQ(r.check->rows, 3 * kPerCustomer);
  EXPECT_EQ(r.check->differing, 0);
  EXPECT_EQ(route("1"), "old");
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kLive);
  EXPECT_EQ(route("1") + route("4"), "newold");
  // The new application writes a pilot customer's contacts on the new side:
  // they reach the old table.
  q("INSERT INTO app_contacts (customer_id, region, email_address) VALUES (2, 'eu', 'n@x');"
    "UPDATE app_contacts SET email_address = 'edited' WHERE id = 1;"
    "DELETE FROM app_contacts WHERE id = 2;");
  EXPECT_EQ(q("SELECT count(*) FROM contacts WHERE email IN ('n@x', 'edited') OR id = 2"), "2");
  EXPECT_EQ(differences(), "0");
  // A slice whose copy differs does not go live.
  q("ALTER TABLE app_contacts DISABLE TRIGGER USER;"
    "UPDATE app_contacts SET hits = 99 WHERE id = 81;"  // customer 5, of eu
    "ALTER TABLE app_contacts ENABLE TRIGGER USER;");
  r = move(s, "eu", SliceMove::kPromote);
  EXPECT_FALSE(r.to);
  ASSERT_TRUE(r.check);
  EXPECT_EQ(r.check->differing, 1);
  EXPECT_EQ(r.check->sample, "(81)");
  EXPECT_NE(r.refused.find("1 rows of slice eu differ"), std::string::npos) << r.refused;
  EXPECT_EQ(q("SELECT stage || '/' || differing FROM tandem.slices WHERE slice = 'eu'"), "old/1");
  // Moves the ladder has not.
  r = move(s, "rest", SliceMove::kDemote);
  EXPECT_FALSE(r.to);
  EXPECT_NE(r.refused.find("on the old side already"), std::string::npos) << r.refused;
  EXPECT_NE(move(s, "nope", SliceMove::kPromote).refused.find("(its slices: pilot, eu, rest)"),
            std::string::npos);
  // Every stage change is an event with who made it.
  EXPECT_EQ(q("SELECT string_agg(detail->>'to', ',' ORDER BY id) FROM tandem.events"
              " WHERE kind = 'slice_moved' AND actor = 'test'"),
            "shadow,live");

  // A rollback of the migration with a live slice: what the new side wrote
  // stays in the old table, and nothing of the routes is left.
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q("SELECT count(*) FROM contacts WHERE email IN ('n@x', 'edited')"), "2");
  EXPECT_EQ(q("SELECT to_regclass('app_contacts') IS NULL AND NOT EXISTS (SELECT 1 FROM"
              " tandem.slice_plans) AND NOT EXISTS (SELECT 1 FROM tandem.slice_members)"),
            "t");
  EXPECT_EQ(leftovers(pg_, db_, "contacts"), "");
}

TEST_F(SlicesTest, KeysThatMatchNoSliceAreRefusedWhenTheLastSliceHasAWhere) {
  Spec s = spec_from(spec_text("          - {name: west, where: \"customer_id > 150\"}\n"));
  Plan plan = make_plan(s);
  try {
    Executor(s, plan, options(true)).run();
    FAIL() << "keys that match no slice were taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "90 values of customer_id in public.contacts (100, 101, 102, 103, 104) match "
                  "no slice; add a last slice without \"where\" to take the rest"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(Executor(s, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q("SELECT count(*) FROM tandem.slice_plans"), "0");
}

// One routed transaction: the side that tandem.route names for a customer
// gets a hit on one of its contacts, and every 4th time a new contact; every
// 10th transaction creates a new customer's contact.
void routed_write(Connection& c, int client, long n, Writers::Counts& add) {
  const bool new_customer = n % 10 == 9;
  const long customer =
      new_customer ? 100000 + client * 100000 + n : 1 + (n * 7 + client * 13) % kCustomers;
  const std::string side =
      c.exec("SELECT tandem.route('contacts_slices', $1)", {std::to_string(customer)}).text(0, 0);
  const bool on_new = side == "new";
  add[on_new ? "on_new" : "on_old"] = 1;
  const std::string table = on_new ? "app_contacts" : "contacts";
  const std::string email = on_new ? "email_address" : "email";
  if (new_customer || n % 4 == 0) {
    c.exec("INSERT INTO " + table + " (customer_id, region, " + email +
               ") VALUES ($1, 'us', 'w' || $2)",
           {std::to_string(customer), std::to_string(n)});
    add["inserted"] = 1;
  }
  if (!new_customer) {
    const long id = (customer - 1) * kPerCustomer + 1 + n % kPerCustomer;
    add["hits"] =
        c.exec("UPDATE " + table + " SET hits = hits + 1 WHERE id = $1", {std::to_string(id)})
            .affected;
  }
}

TEST_F(SlicesTest, RoutedWritersLoseNothingAcrossPromotionsDemotionsAndCutover) {
  Spec s = spec_from(spec_text());
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  {
    Writers writers(pg_, db_, 3, routed_write);
    auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); };
    pause();
    expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kShadow);
    expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kLive);
    pause();
    expect_moved(s, "pilot", SliceMove::kDemote, SliceStage::kShadow);
    pause();
    expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kLive);
    expect_moved(s, "eu", SliceMove::kPromote, SliceStage::kShadow);
    expect_moved(s, "eu", SliceMove::kPromote, SliceStage::kLive);
    expect_moved(s, "rest", SliceMove::kPromote, SliceStage::kShadow);
    expect_moved(s, "rest", SliceMove::kPromote, SliceStage::kLive);
    pause();
    expect_moved(s, "eu", SliceMove::kRollback, SliceStage::kOld);
    pause();
    expect_moved(s, "eu", SliceMove::kPromote, SliceStage::kShadow);
    expect_moved(s, "eu", SliceMove::kPromote, SliceStage::kLive);
    for (const char* slice : {"pilot", "eu", "rest"})
      expect_moved(s, slice, SliceMove::kPromote, SliceStage::kComplete);
    pause();
    // Every slice complete: cutover begins without another word, and
    // cleanup (approved) removes the routing; route() answers new.
    EXPECT_EQ(Executor(s, plan, options(true)).run(), RunOutcome::kCompleted);
    pause();
    writers.stop();
    EXPECT_EQ(writers.failed(), 0) << writers.last_error();
    EXPECT_GT(writers.count("on_old"), 50);
    EXPECT_GT(writers.count("on_new"), 50);
    // Both tables hold every contact and every hit, wherever it was written.
    const long inserted = writers.count("inserted");
    EXPECT_EQ(q("SELECT count(*) FROM app_contacts"),
              std::to_string(kCustomers * kPerCustomer + inserted));
    EXPECT_EQ(q("SELECT sum(hits) FROM app_contacts"), std::to_string(writers.count("hits")));
  }
  EXPECT_EQ(route("1") + route("999999"), "newnew");
  EXPECT_EQ(q("SELECT count(*) FROM tandem.slices"), "0");
  EXPECT_EQ(q("SELECT string_agg(detail->>'slice' || ':' || (detail->>'to'), ',' ORDER BY id)"
              " FROM tandem.events WHERE kind = 'slice_moved' AND detail->>'slice' = 'eu'"),
            "eu:shadow,eu:live,eu:old,eu:shadow,eu:live,eu:complete");
}

TEST_F(SlicesTest, WhatTheNewSideWroteStaysWhenTheSliceGoesBack) {
  Spec s = spec_from(spec_text());
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  Writers writers(pg_, db_, 2, routed_write);
  for (int i = 0; i < 3; ++i) {
    for (const char* slice : {"pilot", "eu", "rest"}) {
      expect_moved(s, slice, SliceMove::kPromote, SliceStage::kShadow);
      expect_moved(s, slice, SliceMove::kPromote, SliceStage::kLive);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (const char* slice : {"pilot", "eu", "rest"})
      expect_moved(s, slice, SliceMove::kRollback, SliceStage::kOld);
  }
  writers.stop();
  EXPECT_EQ(writers.failed(), 0) << writers.last_error();
  EXPECT_GT(writers.count("on_new"), 20);
  // The old table, which serves everyone again, has every write.
  EXPECT_EQ(q("SELECT count(*) FROM contacts"),
            std::to_string(kCustomers * kPerCustomer + writers.count("inserted")));
  EXPECT_EQ(q("SELECT sum(hits) FROM contacts"), std::to_string(writers.count("hits")));
  EXPECT_EQ(differences(), "0");
}

TEST_F(SlicesTest, AnUnhealthyCanarySendsItsLiveSliceBackAndHoldsTheOthers) {
  // The application's error rate per slice, as its monitoring would write it.
  q("CREATE TABLE app_health (slice text PRIMARY KEY, error_rate numeric);"
    "INSERT INTO app_health VALUES ('pilot', 0), ('eu', 0), ('rest', NULL)");
  Spec s = spec_from(
      spec_text("          - {name: rest}\n",
                "        canary: {query: \"SELECT error_rate FROM app_health WHERE slice = $1\","
                " max: 0.05, every: 1s}\n"));
  ASSERT_TRUE(s.sliced()->canary);
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  for (const char* slice : {"pilot", "eu"}) {
    expect_moved(s, slice, SliceMove::kPromote, SliceStage::kShadow);
    expect_moved(s, slice, SliceMove::kPromote, SliceStage::kLive);
  }
  Writers writers(pg_, db_, 2, routed_write);
  auto c = pg_.connect(db_);
  CanaryOutcome o = watch_canary(*c, s, s.settings);
  EXPECT_EQ(o.readings.size(), 2u);
  EXPECT_TRUE(o.rolled_back.empty());
  // The pilot's error rate rises past max: it goes back to shadow (its
  // customers to the old side), eu stays live, and no slice goes live
  // until someone resumes.
  q("UPDATE app_health SET error_rate = 0.2 WHERE slice = 'pilot'");
  o = watch_canary(*c, s, s.settings);
  EXPECT_EQ(o.rolled_back, std::vector<std::string>{"pilot"});
  EXPECT_NE(o.alert.find("ALERT: migration contacts_slices: the canary found pilot (value 0.2) "
                         "unhealthy; back to shadow: pilot"),
            std::string::npos)
      << o.alert;
  EXPECT_EQ(route("1") + route("30"), "oldnew");
  EXPECT_EQ(q("SELECT string_agg(slice || ':' || stage, ',' ORDER BY ordinal) FROM tandem.slices"),
            "pilot:shadow,eu:live,rest:old");
  EXPECT_EQ(q("SELECT actor FROM tandem.slices WHERE slice = 'pilot'"), "canary");
  EXPECT_EQ(q("SELECT detail->>'slices' FROM tandem.events WHERE kind = 'canary_rollback'"),
            "[\"pilot\"]");
  SliceMoveResult r = move(s, "rest", SliceMove::kPromote);
  EXPECT_TRUE(r.to);  // into shadow: not live
  r = move(s, "rest", SliceMove::kPromote);
  EXPECT_FALSE(r.to);
  EXPECT_NE(r.refused.find("no slice goes live while the slices are held: the canary found"),
            std::string::npos)
      << r.refused;
  // A failing canary query is unhealthy too, and a slice is not completed
  // while its canary says no.
  q("ALTER TABLE app_health RENAME COLUMN error_rate TO rate");
  r = move(s, "eu", SliceMove::kPromote);
  EXPECT_FALSE(r.to);
  EXPECT_NE(r.refused.find("the canary query failed"), std::string::npos) << r.refused;
  q("ALTER TABLE app_health RENAME COLUMN rate TO error_rate");
  EXPECT_TRUE(resume_slices(*c, s, "test"));
  EXPECT_FALSE(resume_slices(*c, s, "test"));
  q("UPDATE app_health SET error_rate = 0.01");
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kLive);
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kComplete);
  writers.stop();
  EXPECT_EQ(writers.failed(), 0) << writers.last_error();
  EXPECT_EQ(differences(), "0");
}

TEST_F(SlicesTest, ASliceGoesLiveOnlyAfterAShadowReadRoundThatPassed) {
  Spec s = spec_from(spec_text() +
                     "shadow_reads:\n"
                     "  - name: hits_of_customer\n"
                     "    params: {table: contacts, columns: [customer_id], sample: 40, seed: 3}\n"
                     "    old: SELECT id, hits FROM contacts WHERE customer_id = $1::int\n"
                     "    new: SELECT id, hits FROM app_contacts WHERE customer_id = $1::int\n"
                     "    compare: keyed\n    key: [id]\n");
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kShadow);
  // The new side goes wrong behind the sync's back: the next round fails.
  q("ALTER TABLE app_contacts DISABLE TRIGGER USER; UPDATE app_contacts SET hits = hits + 1;"
    "ALTER TABLE app_contacts ENABLE TRIGGER USER;");
  Executor ex(s, plan, options());
  EXPECT_FALSE(ex.shadow_round().passed());
  SliceMoveResult r = move(s, "pilot", SliceMove::kPromote);
  EXPECT_FALSE(r.to);
  EXPECT_NE(r.refused.find("the last shadow-read round (1) failed a pair's gate"),
            std::string::npos)
      << r.refused;
  q("ALTER TABLE app_contacts DISABLE TRIGGER USER; UPDATE app_contacts SET hits = hits - 1;"
    "ALTER TABLE app_contacts ENABLE TRIGGER USER;");
  // Into shadow is not gated by rounds, only live is.
  expect_moved(s, "eu", SliceMove::kPromote, SliceStage::kShadow);
  EXPECT_TRUE(ex.shadow_round().passed());
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kLive);
}

TEST_F(SlicesTest, APairThatAnswersOneCustomerWrongHoldsThatCustomersSlice) {
  // The new query reads a customer's hits off by what `knob` says for it
  // (nothing at first).
  q("CREATE TABLE knob (customer_id int PRIMARY KEY, bump int NOT NULL)");
  Spec s = spec_from(spec_text() +
                     "shadow_reads:\n"
                     "  - name: hits_of_customer\n"
                     "    params: {table: contacts, columns: [customer_id], sample: 40, seed: 3}\n"
                     "    old: SELECT id, hits FROM contacts WHERE customer_id = $1::int\n"
                     "    new: SELECT id, hits + coalesce((SELECT bump FROM knob WHERE"
                     " customer_id = $1::int), 0) FROM app_contacts WHERE customer_id = $1::int\n"
                     "    compare: keyed\n    key: [id]\n");
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  q("INSERT INTO knob VALUES (2, 1)");
  // The pilot's three customers are compared, customer 2 differs: the
  // pilot stays old, with the pair's first difference.
  SliceMoveResult r = move(s, "pilot", SliceMove::kPromote);
  EXPECT_FALSE(r.to);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].compared, 3);
  EXPECT_EQ(r.pairs[0].differing, 1);
  EXPECT_NE(r.refused.find("shadow-read pair hits_of_customer answered 1 of 3 parameter sets of "
                           "slice pilot differently (at most 0); first: (2)\n"),
            std::string::npos)
      << r.refused;
  EXPECT_EQ(slice_move_exit_code(slice_move_json(r, "promote")), 10);
  // eu's customers are all right: 40 of its 57 compared, none differs.
  r = move(s, "eu", SliceMove::kPromote);
  ASSERT_TRUE(r.to) << r.refused;
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].compared, 40);
  EXPECT_EQ(r.pairs[0].differing, 0);
  q("DELETE FROM knob");
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kShadow);
}

TEST_F(SlicesTest, AStageChangeKilledWhileItWaitsChangesNothing) {
  Spec s = spec_from(spec_text());
  Plan plan = make_plan(s);
  to_the_gate(s, plan);
  expect_moved(s, "pilot", SliceMove::kPromote, SliceStage::kShadow);
  // A transaction that routed a pilot customer holds the slice's routing
  // lock: the promotion waits (and retries) until it is killed.
  auto holder = pg_.connect(db_);
  holder->exec("BEGIN");
  EXPECT_EQ(holder->exec("SELECT tandem.route('contacts_slices', '2')").text(0, 0), "old");
  const std::string file = write_temp_file(s.text);
  const pid_t pid =
      spawn(tandemd("slices " + file + " promote pilot --dsn '" + pg_.dsn(db_) + "'"));
  // It has checked the copy and waits for the lock.
  bool waiting = false;
  for (int i = 0; i < 100 && !waiting; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    waiting = q("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == "1";
  }
  EXPECT_TRUE(waiting);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  holder->exec("ROLLBACK");
  EXPECT_EQ(q("SELECT stage FROM tandem.slices WHERE slice = 'pilot'"), "shadow");
  EXPECT_EQ(route("2"), "old");
  EXPECT_EQ(q("SELECT count(*) FROM tandem.events WHERE kind = 'slice_moved'"), "1");
  // Run again, it goes through.
  auto r = run_command(tandemd("slices " + file + " promote pilot --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(route("2"), "new");
}

// move_column in slices: users.score moves to users_scores, routed by region
// (not a key column: a users_scores row finds its slice through users).
constexpr int kUsers = 600;
const char* kRegions[] = {"eu", "us", "apac"};

class MoveColumnSlicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("slices_move");
    q("CREATE TABLE users (id bigserial PRIMARY KEY, region text NOT NULL, score bigint NOT NULL"
      " DEFAULT 0); INSERT INTO users (region) SELECT (ARRAY['eu', 'us', 'apac'])[1 + g % 3]"
      " FROM generate_series(1, " +
      std::to_string(kUsers) + ") g;");
  }
  std::string q(const std::string& sql) { return pg_.psql(db_, sql); }
  Spec spec() const {
    return spec_from(
        "name: scores\n"
        "settings: {lock_timeout: 300ms, retry_backoff: 20ms, batch_size: 200}\n"
        "operations:\n"
        "  - move_column:\n"
        "      table: users\n"
        "      column: score\n"
        "      key: [id]\n"
        "      to: users_scores\n"
        "      slices:\n"
        "        by: region\n"
        "        list:\n"
        "          - {name: eu, where: \"region = 'eu'\"}\n"
        "          - {name: us, where: \"region = 'us'\"}\n"
        "          - {name: rest}\n");
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.approve_all = true;
    return o;
  }
  void moved(const Spec& s, const std::string& slice, SliceMove m, SliceStage to) {
    auto c = pg_.connect(db_);
    const SliceMoveResult r = move_slice(*c, s, slice, m, "test", s.settings);
    ASSERT_TRUE(r.to) << slice << ": " << r.refused;
    EXPECT_EQ(*r.to, to);
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// One routed transaction: a user's region is read, tandem.route names the
// side, and the score goes up by one there (users.score on the old side,
// users_scores.score on the new); every 8th transaction a new user first.
void routed_score(Connection& c, int client, long n, Writers::Counts& add) {
  std::string id = std::to_string(1 + (n * 11 + client * 7) % kUsers);
  if (n % 8 == 7) {
    id =
        c.exec("INSERT INTO users (region) VALUES ($1) RETURNING id", {kRegions[n % 3]}).text(0, 0);
    add["inserted"] = 1;
  }
  const std::string region = c.exec("SELECT region FROM users WHERE id = $1", {id}).text(0, 0);
  const bool on_new = c.exec("SELECT tandem.route('scores', $1)", {region}).text(0, 0) == "new";
  add[on_new ? "on_new" : "on_old"] = 1;
  // The new application writes its own row (after cleanup no trigger
  // creates it for a new user).
  add["score"] = c.exec(on_new ? "INSERT INTO users_scores AS p (id, score) VALUES ($1, 1)"
                                 " ON CONFLICT (id) DO UPDATE SET score = p.score + 1"
                               : "UPDATE users SET score = score + 1 WHERE id = $1",
                        {id})
                     .affected;
}

TEST_F(MoveColumnSlicesTest, RoutedWritersLoseNoScoreAcrossPromotionsRollbacksAndCutover) {
  const Spec s = spec();
  const Plan plan = make_plan(s);
  // A user of the rest (apac) that the writers leave alone.
  q("INSERT INTO users (id, region) VALUES (100000, 'apac')");
  {
    Executor ex(s, plan, options());
    ASSERT_EQ(ex.run(), RunOutcome::kWaitingApproval);
    EXPECT_EQ(ex.waiting_phase(), Phase::kCutover);
  }
  EXPECT_EQ(q("SELECT string_agg(slice || ':' || keys, ',' ORDER BY ordinal) FROM tandem.slices"),
            "eu:1,us:1,rest:1");
  Writers writers(pg_, db_, 2, routed_score);
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); };
  pause();
  moved(s, "eu", SliceMove::kPromote, SliceStage::kShadow);
  moved(s, "eu", SliceMove::kPromote, SliceStage::kLive);
  moved(s, "us", SliceMove::kPromote, SliceStage::kShadow);
  moved(s, "us", SliceMove::kPromote, SliceStage::kLive);
  pause();
  moved(s, "eu", SliceMove::kRollback, SliceStage::kOld);
  pause();
  // What the new side wrote for eu reached users.score: the sides agree.
  EXPECT_EQ(q("SELECT count(*) FROM users u JOIN users_scores p USING (id)"
              " WHERE u.score IS DISTINCT FROM p.score"),
            "0");
  // A difference planted in one slice's copy (triggers bypassed) refuses
  // that slice's promotion, naming the key, and not the others'.
  q("SET session_replication_role = replica; UPDATE users_scores SET score = -1 WHERE id = "
    "100000");
  {
    auto c = pg_.connect(db_);
    const SliceMoveResult r = move_slice(*c, s, "rest", SliceMove::kPromote, "test", s.settings);
    EXPECT_FALSE(r.to);
    ASSERT_TRUE(r.check);
    EXPECT_EQ(r.check->differing, 1);
    EXPECT_EQ(r.check->sample, "(100000)");
  }
  q("SET session_replication_role = replica; UPDATE users_scores SET score = 0 WHERE id = "
    "100000");
  for (const char* slice : {"eu", "rest"}) {
    moved(s, slice, SliceMove::kPromote, SliceStage::kShadow);
    moved(s, slice, SliceMove::kPromote, SliceStage::kLive);
  }
  pause();
  for (const char* slice : {"eu", "us", "rest"})
    moved(s, slice, SliceMove::kPromote, SliceStage::kComplete);
  // Every slice complete: cutover and cleanup (approved) run; users.score
  // is dropped, and users_scores has every point scored on either side.
  EXPECT_EQ(Executor(s, plan, options()).run(), RunOutcome::kCompleted);
  writers.stop();
  EXPECT_EQ(writers.failed(), 0) << writers.last_error();
  EXPECT_GT(writers.count("on_old"), 50);
  EXPECT_GT(writers.count("on_new"), 50);
  EXPECT_GT(writers.count("inserted"), 10);
  EXPECT_EQ(q("SELECT count(*) FROM users_scores"),
            std::to_string(kUsers + 1 + writers.count("inserted")));
  EXPECT_EQ(q("SELECT sum(score) FROM users_scores"), std::to_string(writers.count("score")));
  EXPECT_EQ(q("SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname"
              " = 'score'"),
            "0");
}

}  // namespace
}  // namespace tandem::testing
