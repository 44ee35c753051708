// tandem behind PgBouncer. Issue 16: through pool_mode = transaction a second
// run of the same migration was not refused (the session advisory lock does
// not hold across pooled transactions), both backfilled, and tandem's
// lock_timeout, statement_timeout and max_parallel_workers_per_gather
// reached 5 of 6 application sessions. A transaction pool is refused before
// anything is set or recorded; a session pool works.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

// A PgBouncer in front of the shared test server, on a unix socket only.
class PgBouncer {
 public:
  PgBouncer(const PgServer& pg, const std::string& pool_mode) : port_(pg.port() + 1000) {
    char tmpl[] = "/tmp/tandem-pgbouncer-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream ini(dir_ + "/pgbouncer.ini");
    ini << "[databases]\n* = host=" << pg.socket_dir() << " port=" << pg.port()
        << " user=postgres\n"
        << "[pgbouncer]\nlisten_addr =\nunix_socket_dir = " << dir_ << "\nlisten_port = " << port_
        << "\nauth_type = any\npool_mode = " << pool_mode << "\ndefault_pool_size = 4\n"
        << "logfile = " << dir_ << "/pgbouncer.log\npidfile = " << dir_ << "/pgbouncer.pid\n";
    ini.close();
    const bool root = geteuid() == 0;
    if (root) run_command("chown -R postgres: " + dir_);
    auto r = run_command((root ? "runuser -u postgres -- " : "") + std::string("pgbouncer -d ") +
                         dir_ + "/pgbouncer.ini 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // Ready when a client gets through, not when the socket file appears: the
    // file exists between bind() and listen(), and a loaded machine showed a
    // refused connection there.
    bool ready = false;
    for (int i = 0; i < 200 && !ready; ++i) {
      ready = run_command(pg.bin_dir() + "/psql -X -At -d '" + dsn("postgres") +
                          "' -c 'SELECT 1' >/dev/null")
                  .exit_code == 0;
      if (!ready) usleep(50000);
    }
    EXPECT_TRUE(ready) << "PgBouncer did not accept connections within 10 s:\n"
                       << run_command("cat " + dir_ + "/pgbouncer.log").output;
  }
  ~PgBouncer() {
    run_command("kill $(cat " + dir_ + "/pgbouncer.pid) 2>/dev/null; sleep 0.2; rm -rf " + dir_);
  }
  std::string dsn(const std::string& database) const {
    return "host=" + dir_ + " port=" + std::to_string(port_) + " dbname=" + database +
           " user=postgres";
  }

 private:
  std::string dir_;
  int port_;
};

class Pooler : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_command("command -v pgbouncer").exit_code != 0) {
      GTEST_SKIP() << "pgbouncer is not installed (scripts/deps.sh installs it)";
    }
    db_ = pg_.create_database("pooler");
    pg_.psql(db_,
             "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);"
             "INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g;");
  }
  Spec spec() const {
    return spec_from(
        "name: pooled\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms}\noperations:\n"
        "  - alter_column_type: {table: items, column: qty, type: bigint}\n");
  }
  RunOptions options(const PgBouncer& bouncer) const {
    RunOptions o;
    o.dsn = bouncer.dsn(db_);
    o.approve_all = true;
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(Pooler, ATransactionPoolIsRefusedBeforeAnythingIsSetOrRecorded) {
  PgBouncer bouncer(pg_, "transaction");
  Spec s = spec();
  Plan plan = make_plan(s);
  RunOptions o = options(bouncer);
  try {
    Executor(s, plan, o).run();
    FAIL() << "the run went through a transaction pool";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find(
                  "the database is reached through a proxy that moves sessions between server "
                  "connections (PgBouncer with pool_mode = transaction or statement?)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT to_regnamespace('tandem') IS NULL"), "t");
  // No setting of tandem's reached the pooled server sessions: what new
  // clients of the pool see is what the server's defaults are.
  const std::string defaults =
      pg_.psql(db_, "SHOW lock_timeout; SHOW max_parallel_workers_per_gather");
  for (int i = 0; i < 8; ++i) {
    auto r = run_command(pg_.bin_dir() + "/psql -X -At -d '" + bouncer.dsn(db_) +
                         "' -c 'SHOW lock_timeout' -c 'SHOW max_parallel_workers_per_gather' 2>&1");
    EXPECT_EQ(r.output, defaults + "\n");
  }
  // The CLI says so and exits 1.
  auto r = run_command(
      tandemd("plan " + write_temp_file(s.text) + " --dsn '" + bouncer.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST_F(Pooler, ASessionPoolWorks) {
  PgBouncer bouncer(pg_, "session");
  Spec s = spec();
  Plan plan = make_plan(s);
  RunOptions o = options(bouncer);
  EXPECT_EQ(Executor(s, plan, o).run(), RunOutcome::kCompleted);
  EXPECT_EQ(column_type(pg_, db_, "items", "qty"), "bigint");
}

}  // namespace
}  // namespace tandem::testing
