// The executor's integration tests share this fixture: a database with an
// `items` table of 5,000 rows, and helpers to run specs against it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sstream>
#include <thread>

#include "engine/backfill.h"
#include "engine/run_control.h"
#include "engine/state_schema.h"
#include "engine/state_store.h"
#include "support/scenario.h"
#include "util/ident.h"

namespace tandem::testing {

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("exec");
    pg_.psql(db_,
             "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text);"
             "INSERT INTO items SELECT g, g % 100, 'n' FROM generate_series(1, 5000) g;"
             "ANALYZE items;");
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    return o;
  }
  // `settings`: more lines for the settings block, each "  key: value\n";
  // one that names a default here replaces it (a key may appear once).
  static std::string items_spec(const std::string& settings = "") {
    std::string defaults;
    for (const char* line :
         {"  lock_timeout: 200ms\n", "  retry_backoff: 20ms\n", "  retry_backoff_max: 100ms\n"}) {
      const std::string key = std::string(line).substr(0, std::string(line).find(':') + 1);
      if (settings.find(key) == std::string::npos) defaults += line;
    }
    return "name: items_qty\nsettings:\n" + defaults + settings +
           "operations:\n"
           "  - alter_column_type: {table: items, column: qty, type: bigint}\n";
  }

  bool start_slow_autovacuum_of_items(int delay_ms, const std::string& update) {
    return start_slow_autovacuum(pg_, db_, "items", delay_ms, update);
  }
  std::string dsn_of_items_owner(const std::string& role, const std::string& member_of = "") {
    return dsn_of_owner(pg_, db_, role, {"items"}, member_of);
  }

  bool wait_for(const std::string& sql, const std::string& want,
                std::chrono::milliseconds timeout) {
    return answers_within(pg_, db_, sql, want, timeout);
  }
  // Updates rows all over items until `stop`.
  std::thread hammer_items(const std::atomic<bool>& stop) {
    return std::thread([this, &stop] {
      auto c = pg_.connect(db_);
      for (int i = 0; !stop; ++i) {
        c->exec("UPDATE items SET qty = qty + 1 WHERE id = $1",
                {std::to_string(1 + (i * 37) % 5000)});
      }
    });
  }
  // After the backfill: corrupts two shadow values behind the trigger's back
  // and expects shadow_read's verification to name both.
  void expect_verify_finds_rows_7_and_4321_corrupted(const Spec& spec) {
    pg_.psql(db_,
             "SET session_replication_role = replica;"
             "UPDATE items SET _tandem_new_qty = -1 WHERE id IN (7, 4321);");
    try {
      run_until(spec, pg_.dsn(db_), Phase::kShadowRead);
      FAIL() << "the verification must fail";
    } catch (const StepFailedError& e) {
      std::string m = e.what();
      EXPECT_EQ(m.substr(0, m.find('\n')),
                "step 1.verify failed: 2 rows differ between old and new storage (first keys: "
                "(7) (4321)).");
    }
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

}  // namespace tandem::testing
