// The daemon's config loader, without a daemon: every section read, and every
// mistake refused with its file:line:column.
#include "daemon/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

namespace tandem {
namespace {

// A file holding `text`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/tandem-config-XXXXXX";
    int fd = mkstemp(name);
    ::close(fd);
    path_ = name;
    std::ofstream(path_) << text;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The message load_config throws for `text`, with the file's name cut off.
std::string error_of(const std::string& text) {
  TempFile f(text);
  try {
    load_config(f.path());
  } catch (const std::exception& e) {
    std::string m = e.what();
    return m.rfind(f.path(), 0) == 0 ? m.substr(f.path().size()) : m;
  }
  return "";
}

TEST(DaemonConfigFile, WithoutAFileEveryDefaultHolds) {
  DaemonConfig c = load_config("");
  EXPECT_EQ(c.control.path, "/run/tandemd/control.sock");
  EXPECT_EQ(c.control.mode, 0660u);
  EXPECT_EQ(c.shutdown_grace, std::chrono::seconds(10));
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.dsn_source, "libpq's PG* variables");
  EXPECT_TRUE(c.defaults.empty());
}

TEST(DaemonConfigFile, ReadsEverySection) {
  TempFile dsn("host=db dbname=app\nsecond line ignored\n");
  TempFile f("database:\n  dsn_file: " + dsn.path() +
             "\ncontrol:\n  socket: /tmp/x.sock\n  mode: \"0640\"\n  group: ops\n"
             "  allowed_uids: [0, 1000]\nmetrics:\n  listen: 127.0.0.1:9187\n"
             "log:\n  level: debug\n  format: json\nshutdown_grace: 30s\n"
             "defaults:\n  batch_size: 2000\n  lock_timeout: 1s\n"
             "hooks:\n  path: /tmp\n  url: http://127.0.0.1:8080/tandem\n  timeout: 5s\n"
             "  retry: 1m\n");
  DaemonConfig c = load_config(f.path());
  EXPECT_EQ(c.hooks.path, "/tmp");
  EXPECT_EQ(c.hooks.url, "http://127.0.0.1:8080/tandem");
  EXPECT_EQ(c.hooks.timeout, std::chrono::seconds(5));
  EXPECT_EQ(c.hooks.retry, std::chrono::minutes(1));
  EXPECT_EQ(c.dsn, "host=db dbname=app");
  EXPECT_EQ(c.dsn_source, dsn.path());
  EXPECT_EQ(c.control.path, "/tmp/x.sock");
  EXPECT_EQ(c.control.mode, 0640u);
  EXPECT_EQ(c.control.group, "ops");
  EXPECT_EQ(c.control.allowed_uids, (std::set<uid_t>{0, 1000}));
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9187");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.shutdown_grace, std::chrono::seconds(30));
  EXPECT_EQ(c.defaults,
            (std::map<std::string, std::string>{{"batch_size", "2000"}, {"lock_timeout", "1s"}}));
}

TEST(DaemonConfigFile, TakesTheDsnFromAnEnvironmentVariable) {
  setenv("TANDEM_CONFIG_TEST_DSN", "host=elsewhere", 1);
  TempFile f("database:\n  dsn_env: TANDEM_CONFIG_TEST_DSN\n");
  DaemonConfig c = load_config(f.path());
  EXPECT_EQ(c.dsn, "host=elsewhere");
  EXPECT_EQ(c.dsn_source, "$TANDEM_CONFIG_TEST_DSN");
  unsetenv("TANDEM_CONFIG_TEST_DSN");
  EXPECT_EQ(error_of("database:\n  dsn_env: TANDEM_CONFIG_TEST_DSN\n"),
            ":2:12: environment variable TANDEM_CONFIG_TEST_DSN is not set");
}

TEST(DaemonConfigFile, EveryMistakeIsRefusedWithItsPlace) {
  EXPECT_EQ(error_of("databse:\n  dsn: x\n"),
            ":1:1: unknown key \"databse\"; did you mean \"database\"?; expected one of database, "
            "control, metrics, log, shutdown_grace, defaults, hooks, fleets");
  EXPECT_EQ(error_of("fleets: /etc/fleet.yaml\n"), ":1:9: fleets: expected a list of fleet files");
  EXPECT_EQ(error_of("fleets:\n  - /nonexistent/fleet.yaml\n"),
            ":2:5: fleets: /nonexistent/fleet.yaml does not load: /nonexistent/fleet.yaml: "
            "cannot read the file");
  EXPECT_EQ(error_of("hooks:\n  paht: /tmp\n"),
            ":2:3: unknown key \"paht\" in hooks; did you mean \"path\"?; expected path, url, "
            "timeout or retry");
  EXPECT_EQ(error_of("hooks:\n  path: /nonexistent/hooks\n"),
            ":2:3: hooks path /nonexistent/hooks is not a directory");
  EXPECT_EQ(error_of("hooks:\n  timeout: 0s\n"),
            ":2:12: timeout: expected a duration from 1ms to 1h, such as 10s");
  EXPECT_EQ(error_of("hooks: /tmp\n"),
            ":1:8: hooks: expected a mapping (path, url, timeout, retry)");
  EXPECT_EQ(error_of("database:\n  dsn: x\n  dsn_env: PATH\n"),
            ":2:3: give one of dsn, dsn_env and dsn_file, not several");
  EXPECT_EQ(error_of("database:\n  dsn_file: /nonexistent/dsn\n"),
            ":2:13: cannot read /nonexistent/dsn");
  EXPECT_EQ(error_of("database:\n  host: db\n"),
            ":2:3: unknown key \"host\" in database; expected dsn, dsn_env or dsn_file");
  EXPECT_EQ(error_of("control:\n  mode: \"0666\"\n"),
            ":2:9: mode: expected octal permissions such as 0660, with nothing for others");
  EXPECT_EQ(error_of("control:\n  mode: \"rw\"\n"),
            ":2:9: mode: expected octal permissions such as 0660, with nothing for others");
  EXPECT_EQ(error_of("control:\n  allowed_uids: 0\n"), ":2:17: allowed_uids: expected a list");
  EXPECT_EQ(error_of("control:\n  path: /x\n"),
            ":2:3: unknown key \"path\" in control; expected socket, mode, owner, group or "
            "allowed_uids");
  EXPECT_EQ(error_of("metrics:\n  listen: localhost\n"),
            ":2:11: metrics address \"localhost\": expected HOST:PORT such as 127.0.0.1:9188");
  EXPECT_EQ(error_of("metrics:\n  port: 9187\n"),
            ":2:3: unknown key \"port\" in metrics; expected listen");
  EXPECT_EQ(error_of("log:\n  level: verbose\n"),
            ":2:10: level: expected one of trace, debug, info, warn, error");
  EXPECT_EQ(error_of("log:\n  format: xml\n"), ":2:11: format: expected text or json");
  EXPECT_EQ(error_of("shutdown_grace: 1h\n"),
            ":1:17: shutdown_grace: expected a duration up to 10m, such as 10s");
  EXPECT_EQ(error_of("defaults:\n  batch_sise: 10\n"),
            ":2:3: unknown setting \"batch_sise\" in defaults; did you mean \"batch_size\"?");
  EXPECT_EQ(error_of("defaults:\n  batch_size: 0\n"),
            ":2:15: batch_size: 0 is out of range (1 to 1000000)");
  EXPECT_EQ(error_of("- a\n- b\n"), ": expected a mapping at the top level");
  EXPECT_EQ(error_of("control: [\n"), ":2:1: YAML syntax: end of sequence flow not found");
}

}  // namespace
}  // namespace tandem
