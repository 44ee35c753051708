#include "support/pg_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace tandem::testing {
namespace fs = std::filesystem;

CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

namespace {

std::string find_bin_dir() {
  if (const char* env = std::getenv("TANDEM_PG_BIN")) return env;
  for (const char* v : {"17", "16", "15", "14"}) {
    std::string dir = std::string("/usr/lib/postgresql/") + v + "/bin";
    if (fs::exists(dir + "/initdb")) return dir;
  }
  auto r = run_command("pg_config --bindir");
  if (r.exit_code == 0) return r.output.substr(0, r.output.find('\n'));
  throw std::runtime_error("no PostgreSQL server binaries found; install postgresql");
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// As the server's owner: postgres when running as root.
std::string owned(const std::string& command) {
  if (geteuid() != 0) return command;
  return "runuser -u postgres -- " + command;
}

void check(const CommandResult& r, const std::string& what) {
  if (r.exit_code != 0) throw std::runtime_error(what + " failed:\n" + r.output);
}

}  // namespace

PgServer::PgServer() : bin_dir_(find_bin_dir()), port_(free_port()) {
  char tmpl[] = "/tmp/tandem-pg-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  socket_dir_ = dir_;
  data_dir_ = dir_ + "/data";
  if (geteuid() == 0) check(run_command("chown postgres: " + dir_), "chown");
  check(run_command(as_owner(bin_dir_ + "/initdb -D " + data_dir_ +
                             " -U postgres -A trust --no-sync -E UTF8 --locale=C")),
        "initdb");
  {
    // Appending keeps the file's owner, so this works as root and as the owner.
    std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
    conf << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << socket_dir_ << "'\n"
         << "port = " << port_ << "\n"
         << "fsync = off\nmax_connections = 200\nshared_buffers = 256MB\n";
  }
  check(run_command(as_owner(bin_dir_ + "/pg_ctl -D " + data_dir_ + " -l " + dir_ +
                             "/server.log -w -t 60 start")),
        "pg_ctl start");
}

PgServer::~PgServer() {
  run_command(as_owner(bin_dir_ + "/pg_ctl -D " + data_dir_ + " -m immediate -w stop"));
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

PgServer& PgServer::shared() {
  static PgServer server;
  return server;
}

std::string PgServer::as_owner(const std::string& command) const { return owned(command); }

void PgServer::restart() {
  check(run_command(as_owner(bin_dir_ + "/pg_ctl -D " + data_dir_ + " -l " + dir_ +
                             "/server.log -m fast -w -t 60 restart")),
        "pg_ctl restart");
}

PgStandby::PgStandby(const PgServer& primary) : bin_dir_(primary.bin_dir()), port_(free_port()) {
  char tmpl[] = "/tmp/tandem-standby-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  data_dir_ = dir_ + "/data";
  if (geteuid() == 0) check(run_command("chown postgres: " + dir_), "chown");
  // -R writes standby.signal and primary_conninfo.
  check(run_command(owned(bin_dir_ + "/pg_basebackup -h " + primary.socket_dir() + " -p " +
                          std::to_string(primary.port()) + " -U postgres -D " + data_dir_ +
                          " -R -X stream -c fast --no-sync")),
        "pg_basebackup");
  {
    // The copied postgresql.conf names the primary's port and socket; later lines win.
    std::ofstream conf(data_dir_ + "/postgresql.conf", std::ios::app);
    conf << "port = " << port_ << "\nunix_socket_directories = '" << dir_
         << "'\nhot_standby = on\nshared_buffers = 32MB\n";
  }
  check(run_command(owned(bin_dir_ + "/pg_ctl -D " + data_dir_ + " -l " + dir_ +
                          "/server.log -w -t 60 start")),
        "pg_ctl start (standby)");
}

PgStandby::~PgStandby() {
  run_command(owned(bin_dir_ + "/pg_ctl -D " + data_dir_ + " -m immediate -w stop"));
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string PgStandby::psql(const std::string& database, const std::string& sql) const {
  auto r = run_command("PGHOST=" + dir_ + " PGPORT=" + std::to_string(port_) + " PGUSER=postgres " +
                       bin_dir_ + "/psql -X -q -At -v ON_ERROR_STOP=1 -d " + database + " -c \"" +
                       sql + "\"");
  check(r, "psql (standby)");
  while (!r.output.empty() && r.output.back() == '\n') r.output.pop_back();
  return r.output;
}

void PgStandby::pause_replay() const { psql("postgres", "SELECT pg_wal_replay_pause()"); }
void PgStandby::resume_replay() const { psql("postgres", "SELECT pg_wal_replay_resume()"); }

std::string PgServer::dsn(const std::string& database) const {
  return "host=" + socket_dir_ + " port=" + std::to_string(port_) +
         " user=postgres dbname=" + database;
}

std::string PgServer::env(const std::string& database) const {
  return "PGHOST=" + socket_dir_ + " PGPORT=" + std::to_string(port_) +
         " PGUSER=postgres PGDATABASE=" + database + " ";
}

std::string PgServer::create_database(const std::string& prefix) {
  std::string name = prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(++db_counter_);
  psql("postgres", "CREATE DATABASE " + name);
  return name;
}

std::unique_ptr<Connection> PgServer::connect(const std::string& database) const {
  return connect_postgres(dsn(database), "tandem test");
}

std::string PgServer::psql(const std::string& database, const std::string& sql) const {
  char tmpl[] = "/tmp/tandem-sql-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  if (write(fd, sql.data(), sql.size()) != static_cast<ssize_t>(sql.size())) {
    close(fd);
    throw std::runtime_error("write failed");
  }
  close(fd);
  auto r = run_command(env(database) + bin_dir_ + "/psql -X -q -At -v ON_ERROR_STOP=1 -f " + tmpl);
  unlink(tmpl);
  check(r, "psql");
  while (!r.output.empty() && r.output.back() == '\n') r.output.pop_back();
  return r.output;
}

void pgbench_init(const PgServer& server, const std::string& database, int scale) {
  check(run_command(server.env(database) + server.bin_dir() + "/pgbench -i -q -s " +
                    std::to_string(scale)),
        "pgbench -i");
}

bool tpcb_invariant_holds(const PgServer& server, const std::string& database) {
  return server.psql(database,
                     "SELECT s.a = s.h AND s.t = s.h AND s.b = s.h FROM (SELECT"
                     " (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) AS a,"
                     " (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) AS t,"
                     " (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) AS b,"
                     " (SELECT coalesce(sum(delta), 0) FROM pgbench_history) AS h) s") == "t";
}

bool answers_within(const PgServer& server, const std::string& database, const std::string& sql,
                    const std::string& want, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(std::chrono::milliseconds(10))) {
    try {
      if (server.psql(database, sql) == want) return true;
    } catch (const std::exception&) {
    }
  }
  return false;
}

ServerSetting::ServerSetting(const PgServer& pg, const std::string& name, const std::string& value)
    : pg_(pg), name_(name) {
  pg_.psql("postgres", "ALTER SYSTEM SET " + name_ + " = " + value);
  pg_.psql("postgres", "SELECT pg_reload_conf()");
}

ServerSetting::~ServerSetting() {
  pg_.psql("postgres", "ALTER SYSTEM RESET " + name_);
  pg_.psql("postgres", "SELECT pg_reload_conf()");
}

bool start_slow_autovacuum(const PgServer& pg, const std::string& database,
                           const std::string& table, int delay_ms, const std::string& update) {
  pg.psql(database, "ALTER TABLE " + table +
                        " SET (autovacuum_vacuum_threshold = 0,"
                        " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_limit = 1,"
                        " autovacuum_vacuum_cost_delay = " +
                        std::to_string(delay_ms) + ")");
  pg.psql(database, "UPDATE " + table + " SET " + update);
  return answers_within(
      pg, database,
      "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
      " AND datname = current_database() AND query LIKE '%VACUUM%" +
          table + "%'",
      "1", std::chrono::seconds(60));
}

std::string dsn_of_owner(const PgServer& pg, const std::string& database, const std::string& role,
                         const std::vector<std::string>& tables, const std::string& member_of) {
  pg.psql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '" + role +
                          "') THEN CREATE ROLE " + role + " LOGIN" +
                          (member_of.empty() ? "" : " IN ROLE " + member_of) + "; END IF; END $$");
  std::string sql = "GRANT CREATE ON DATABASE " + database + " TO " + role;
  for (const auto& t : tables) sql += "; ALTER TABLE " + t + " OWNER TO " + role;
  pg.psql(database, sql);
  std::string dsn = pg.dsn(database);
  dsn.replace(dsn.find("user=postgres"), 13, "user=" + role);
  return dsn;
}

std::string key_ranges_summary(const PgServer& server, const std::string& database,
                               const std::string& step_id) {
  // In key order (a range split while the step ran has a higher number than
  // the ranges after it); the tests' keys are single integer columns.
  return server.psql(database,
                     "SELECT count(*), bool_and(finished), sum(rows_done),"
                     " bool_and(range_after IS NOT DISTINCT FROM before"
                     "          AND (range_upper IS NULL) = (next_after IS NULL))"
                     " FROM (SELECT *, lag(range_upper) OVER w AS before,"
                     "        lead(range_after) OVER w AS next_after"
                     "  FROM tandem.checkpoints WHERE step_id = '" +
                         step_id +
                         "'"
                         "  WINDOW w AS (ORDER BY range_after[1]::numeric NULLS FIRST)) c");
}

std::string key_ranges_summary(const PgServer& server, const std::string& database,
                               const std::string& step_id, int at_least) {
  std::string out = key_ranges_summary(server, database, step_id);
  const size_t bar = out.find('|');
  if (bar != std::string::npos && std::stoi(out.substr(0, bar)) >= at_least) {
    out = std::to_string(at_least) + "+" + out.substr(bar);
  }
  return out;
}

PgbenchLoad::PgbenchLoad(const PgServer& server, std::string database, int clients,
                         std::string script)
    : server_(server),
      database_(std::move(database)),
      clients_(clients),
      script_(std::move(script)) {}

PgbenchLoad::~PgbenchLoad() { stop(); }

void PgbenchLoad::start() {
  stop_ = false;
  thread_ = std::thread([this] {
    static const std::regex kProcessed(R"(number of transactions actually processed: (\d+))");
    static const std::regex kFailed(R"(number of failed transactions: (\d+))");
    while (!stop_) {
      auto r = run_command(server_.env(database_) + server_.bin_dir() + "/pgbench -n -c " +
                           std::to_string(clients_) + " -j 2 -T 1" +
                           (script_.empty() ? "" : " -f " + script_));
      std::smatch m;
      if (std::regex_search(r.output, m, kProcessed)) transactions_ += std::stoll(m[1]);
      if (std::regex_search(r.output, m, kFailed)) failures_ += std::stoll(m[1]);
      if (r.exit_code != 0 || r.output.find("aborted") != std::string::npos) {
        ++failures_;
        last_error_ = r.output;
      }
    }
  });
}

void PgbenchLoad::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace tandem::testing
