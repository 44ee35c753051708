// tandemd serve and tandemctl, the real binaries, against a real PostgreSQL
// under pgbench load: submit, watch, pause, resume, approve, finish; systemd
// notifications; SIGTERM and restart; malformed commands; a refused uid; two
// daemons where the running one is killed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string tandemctl(const std::string& socket, const std::string& args) {
  return std::string(TANDEMCTL_PATH) + " --socket " + socket + " " + args;
}

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = "/tmp/tandem-notify-" + std::to_string(getpid()) + "-" + std::to_string(++count_);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::copy(path_.begin(), path_.end(), addr.sun_path);
    ::unlink(path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // Every datagram received so far, appended to what was read before.
  const std::string& received() {
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      text_.append(buf, static_cast<size_t>(n));
      text_ += '\n';
    }
    return text_;
  }

 private:
  static inline int count_ = 0;
  std::string path_, text_;
  int fd_ = -1;
};

class Daemon : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("daemon");
    pgbench_init(pg_, db_, 2);
    spec_ = write_temp_file(abalance_spec(1000));
  }
  void TearDown() override {
    for (pid_t p : daemons_) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
  }
  std::string socket_path(int n = 0) {
    return "/tmp/tandem-ctl-" + std::to_string(getpid()) + "-" + db_ + "-" + std::to_string(n);
  }
  pid_t serve(const std::string& socket, const std::string& extra_env = "",
              const std::string& config = "") {
    pid_t pid = spawn("env " + extra_env + " " +
                      tandemd("serve --dsn '" + pg_.dsn(db_) + "' --socket " + socket +
                              (config.empty() ? "" : " --config " + config)));
    daemons_.push_back(pid);
    EXPECT_TRUE(wait_for([&] { return access(socket.c_str(), F_OK) == 0; }, 20s))
        << "the control socket never appeared";
    return pid;
  }
  CommandResult ctl(const std::string& args, int n = 0) {
    return run_command(tandemctl(socket_path(n), args) + " 2>&1");
  }
  json status(int n = 0) {
    auto r = ctl("--json status abalance_bigint", n);
    auto j = json::parse(r.output, nullptr, false);
    return j.is_discarded() ? json::object() : j;
  }
  long long rows_moved() {
    return std::stoll(pg_.psql(db_,
                               "SELECT coalesce(sum(rows_done), 0) FROM tandem.checkpoints"
                               " WHERE step_id = '1.backfill'"));
  }
  static bool wait_for(const std::function<bool()>& ok, std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (ok()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return ok();
  }
  static int exit_code(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_, spec_;
  std::vector<pid_t> daemons_;
};

TEST_F(Daemon, SubmitWatchPauseResumeApproveAndFinishThroughTandemctl) {
  NotifySocket notify;
  serve(socket_path(), "NOTIFY_SOCKET=" + notify.path());
  EXPECT_TRUE(wait_for([&] { return notify.received().find("READY=1") != std::string::npos; }, 10s))
      << notify.received();
  PgbenchLoad load(pg_, db_);
  load.start();

  auto r = ctl("submit " + spec_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return rows_moved() > 0; }, 60s)) << status().dump();
  EXPECT_TRUE(
      wait_for([&] { return notify.received().find("backfill") != std::string::npos; }, 10s))
      << notify.received();

  r = ctl("pause abalance_bigint");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return status().value("state", "") == "paused"; }, 30s))
      << status().dump();
  const long long paused_at = rows_moved();
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rows_moved(), paused_at) << "rows moved while paused";

  r = ctl("resume abalance_bigint");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return status().value("waiting_for", json()) == "cleanup"; }, 180s))
      << status().dump();
  EXPECT_GT(rows_moved(), paused_at);
  r = ctl("status abalance_bigint");
  EXPECT_NE(r.output.find("tandemctl approve abalance_bigint cleanup"), std::string::npos)
      << r.output;

  r = ctl("approve abalance_bigint cleanup");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return status().value("state", "") == "completed"; }, 60s))
      << status().dump();
  load.stop();
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  // Every command is in the audit log with the peer's uid.
  const std::string uid = "uid:" + std::to_string(geteuid());
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(kind, ',' ORDER BY id) FROM tandem.events"
                     " WHERE actor = '" +
                         uid + "'"),
            "submitted,pause_requested,resume_requested,approve_requested");
}

TEST_F(Daemon, SigtermMidBackfillExitsZeroAndARestartResumesFromTheCheckpoint) {
  NotifySocket notify;
  pid_t pid = serve(socket_path(), "NOTIFY_SOCKET=" + notify.path());
  ASSERT_EQ(ctl("submit " + spec_).exit_code, 0);
  ASSERT_TRUE(wait_for([&] { return rows_moved() > 0; }, 60s));
  kill(pid, SIGTERM);
  EXPECT_EQ(exit_code(pid), 0);
  daemons_.clear();
  EXPECT_NE(notify.received().find("STOPPING=1"), std::string::npos) << notify.received();
  const long long stopped_at = rows_moved();
  EXPECT_GT(stopped_at, 0);

  serve(socket_path());
  ASSERT_TRUE(wait_for([&] { return status().value("waiting_for", json()) == "cleanup"; }, 180s))
      << status().dump();
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) > 0 FROM tandem.events WHERE kind = 'resumed'"), "t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.submissions"), "1");
}

TEST_F(Daemon, MalformedCommandsGetErrorsNamingThemAndChangeNothing) {
  serve(socket_path());
  auto r = ctl("status nosuch");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "tandemctl: no migration \"nosuch\" was submitted (unknown_migration)\n");
  std::string bad = write_temp_file("name: x\noperations:\n  - alter_colum_type: {table: t}\n");
  r = ctl("submit " + bad);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(":3:5: unknown operation \"alter_colum_type\"; did you mean "
                          "\"alter_column_type\"?"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.submissions"), "0");
  // Straight on the socket: not JSON, an unknown command, a missing field.
  for (const auto& [line, code] : std::vector<std::pair<std::string, std::string>>{
           {"hello", "bad_json"},
           {R"({"v":1,"cmd":"frobnicate"})", "unknown_command"},
           {R"({"v":1,"cmd":"pause"})", "missing_field"}}) {
    auto sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = socket_path();
    std::copy(path.begin(), path.end(), addr.sun_path);
    ASSERT_EQ(::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string out = line + "\n";
    ASSERT_EQ(::write(sock, out.data(), out.size()), static_cast<ssize_t>(out.size()));
    char buf[4096];
    ssize_t n = ::read(sock, buf, sizeof(buf));
    ::close(sock);
    ASSERT_GT(n, 0);
    auto j = json::parse(std::string(buf, static_cast<size_t>(n)));
    EXPECT_FALSE(j["ok"].get<bool>());
    EXPECT_EQ(j["error"]["code"], code) << j.dump();
  }
  EXPECT_EQ(ctl("list").output, "no migrations\n");
}

TEST_F(Daemon, APeerWhoseUidIsNotAllowedIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  std::string config = write_temp_file("control:\n  allowed_uids: [0]\n");
  serve(socket_path(), "", config);
  // Let everyone reach the socket, so that the uid check is what refuses.
  chmod(socket_path().c_str(), 0666);
  auto r = run_command("runuser -u nobody -- " + tandemctl(socket_path(), "list") + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("may not use this socket (forbidden)"), std::string::npos) << r.output;
  EXPECT_EQ(ctl("list").exit_code, 0);
}

TEST_F(Daemon, WhenTheRunningDaemonIsKilledTheOtherFinishesTheMigration) {
  pid_t first = serve(socket_path(0));
  serve(socket_path(1));
  PgbenchLoad load(pg_, db_);
  load.start();
  ASSERT_EQ(ctl("submit " + spec_, 0).exit_code, 0);
  ASSERT_TRUE(wait_for([&] { return rows_moved() > 0; }, 60s));
  // The second daemon has seen the submission and stands by.
  ASSERT_TRUE(wait_for([&] { return status(1).value("state", "") == "running_elsewhere"; }, 20s))
      << status(1).dump();
  kill(first, SIGKILL);
  exit_code(first);
  daemons_.erase(daemons_.begin());
  const long long at_kill = rows_moved();
  ASSERT_TRUE(wait_for([&] { return status(1).value("waiting_for", json()) == "cleanup"; }, 180s))
      << status(1).dump();
  EXPECT_GE(rows_moved(), at_kill);
  ASSERT_EQ(ctl("approve abalance_bigint cleanup", 1).exit_code, 0);
  ASSERT_TRUE(wait_for([&] { return status(1).value("state", "") == "completed"; }, 60s))
      << status(1).dump();
  load.stop();
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
}

TEST_F(Daemon, RollbackThroughTandemctlRestoresTheTableAndResumeStartsAgain) {
  serve(socket_path());
  ASSERT_EQ(ctl("submit " + spec_).exit_code, 0);
  ASSERT_TRUE(wait_for([&] { return rows_moved() > 0; }, 60s));
  auto r = ctl("rollback abalance_bigint");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return status().value("state", "") == "rolled_back"; }, 60s))
      << status().dump();
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "integer");
  EXPECT_EQ(leftovers(pg_, db_, "pgbench_accounts"), "");
  r = ctl("resume abalance_bigint");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(wait_for([&] { return status().value("waiting_for", json()) == "cleanup"; }, 180s))
      << status().dump();
  EXPECT_EQ(pg_.psql(db_, "SELECT string_agg(kind, ',' ORDER BY id) FROM tandem.events"
                          " WHERE actor LIKE 'uid:%'"),
            "submitted,rollback_requested,resume_requested");
}

TEST(DaemonConfig, TheExampleConfigLoadsAndHidesThePassword) {
  std::string dsn = write_temp_file("host=db dbname=app user=tandem password=s3cret\n", ".dsn");
  std::string config = read_file(std::string(TANDEM_SOURCE_DIR) + "/config/tandemd.yaml");
  config.replace(config.find("/etc/tandem/dsn"), 15, dsn);
  auto r = run_command(tandemd("serve --check-config --config " + write_temp_file(config)));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "database: host=db dbname=app user=tandem password=*** (from " + dsn +
                          ")\ncontrol socket: /run/tandemd/control.sock (mode 0660)\n"
                          "allowed uids: 0\n");
  std::string bad = write_temp_file("control:\n  mode: \"0666\"\n");
  r = run_command(tandemd("serve --check-config --config " + bad) + " 2>&1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(bad + ":2:9: mode: expected octal permissions such as 0660, with "
                                "nothing for others"),
            std::string::npos)
      << r.output;
}

TEST(DaemonConfig, TheSystemdUnitVerifies) {
  if (run_command("command -v systemd-analyze").exit_code != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed";
  }
  // verify wants ExecStart's binary to exist: point it at the one just built.
  std::string unit = read_file(std::string(TANDEM_SOURCE_DIR) + "/config/tandemd.service");
  unit.replace(unit.find("/usr/local/bin/tandemd"), 22, TANDEMD_PATH);
  std::string dir = "/tmp/tandem-unit-" + std::to_string(getpid());
  run_command("mkdir -p " + dir);
  {
    std::ofstream out(dir + "/tandemd.service");
    out << unit;
  }
  auto r = run_command("systemd-analyze verify " + dir + "/tandemd.service 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  run_command("rm -rf " + dir);
}

}  // namespace
}  // namespace tandem::testing
