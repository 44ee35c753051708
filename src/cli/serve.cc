// tandemd serve: the long-running daemon. Reads its config, recovers the
// migrations it owns, serves the control socket, and talks to systemd.
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "daemon/manager.h"
#include "daemon/metrics_server.h"
#include "daemon/server.h"
#include "db/conninfo.h"
#include "spec/settings.h"
#include "spec/suggest.h"
#include "util/duration.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {

namespace {

std::atomic<bool> g_serve_stop{false};
std::atomic<bool> g_serve_reload{false};
void on_serve_signal(int) { g_serve_stop.store(true); }
void on_serve_hangup(int) { g_serve_reload.store(true); }

struct DaemonConfig {
  std::string dsn;
  std::string dsn_source = "libpq's PG* variables";
  ControlServerOptions control;
  std::string metrics_listen;  // "" : no metrics endpoint
  std::string log_level = "info";
  std::string log_format = "text";
  std::chrono::milliseconds shutdown_grace{10000};
  std::map<std::string, std::string> defaults;  // migration settings
};

std::string located(const std::string& file, const YAML::Node& n, const std::string& message) {
  YAML::Mark m = n.Mark();
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " +
         message;
}

// Reads the config; throws std::runtime_error naming file:line:column.
DaemonConfig load_config(const std::string& file) {
  DaemonConfig c;
  c.control.path = "/run/tandemd/control.sock";
  if (file.empty()) return c;
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(file + ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file + ":" + std::to_string(e.mark.line + 1) + ":" +
                             std::to_string(e.mark.column + 1) + ": YAML syntax: " + e.msg);
  }
  if (!root.IsMap()) throw std::runtime_error(file + ": expected a mapping at the top level");
  // Range-for keeps each (key, value) pair alive for the whole body; members
  // reached through it-> die at the end of their expression.
  const std::vector<std::string> sections = {"database", "control",        "metrics",
                                             "log",      "shutdown_grace", "defaults"};
  for (const auto& entry : root) {
    const YAML::Node& key_node = entry.first;
    const std::string key = key_node.as<std::string>();
    if (std::find(sections.begin(), sections.end(), key) == sections.end()) {
      throw std::runtime_error(located(file, key_node,
                                       "unknown key \"" + key + "\"" + did_you_mean(key, sections) +
                                           "; expected one of " + join(sections, ", ")));
    }
  }
  if (YAML::Node m = root["metrics"]) {
    for (const auto& entry : m) {
      const std::string key = entry.first.as<std::string>();
      if (key != "listen") {
        throw std::runtime_error(
            located(file, entry.first, "unknown key \"" + key + "\" in metrics; expected listen"));
      }
      c.metrics_listen = entry.second.as<std::string>("");
      try {
        parse_listen_address(c.metrics_listen);
      } catch (const std::exception& e) {
        throw std::runtime_error(located(file, entry.second, e.what()));
      }
    }
  }
  if (YAML::Node log = root["log"]) {
    for (const auto& entry : log) {
      const std::string key = entry.first.as<std::string>();
      const std::string value = entry.second.as<std::string>("");
      if (key == "level") {
        const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error"};
        if (std::find(levels.begin(), levels.end(), value) == levels.end()) {
          throw std::runtime_error(
              located(file, entry.second, "level: expected one of " + join(levels, ", ")));
        }
        c.log_level = value;
      } else if (key == "format") {
        if (!parse_log_format(value)) {
          throw std::runtime_error(located(file, entry.second, "format: expected text or json"));
        }
        c.log_format = value;
      } else {
        throw std::runtime_error(located(
            file, entry.first, "unknown key \"" + key + "\" in log; expected level or format"));
      }
    }
  }
  if (YAML::Node g = root["shutdown_grace"]) {
    auto d = parse_duration(g.as<std::string>(""));
    if (!d || *d > std::chrono::minutes(10)) {
      throw std::runtime_error(
          located(file, g, "shutdown_grace: expected a duration up to 10m, such as 10s"));
    }
    c.shutdown_grace = *d;
  }
  if (YAML::Node d = root["defaults"]) {
    Settings probe;
    for (const auto& entry : d) {
      const std::string key = entry.first.as<std::string>();
      const std::string value = entry.second.as<std::string>("");
      if (std::find(setting_keys().begin(), setting_keys().end(), key) == setting_keys().end()) {
        throw std::runtime_error(located(
            file, entry.first,
            "unknown setting \"" + key + "\" in defaults" + did_you_mean(key, setting_keys())));
      }
      std::string problem = set_setting(probe, key, value);
      if (!problem.empty()) throw std::runtime_error(located(file, entry.second, problem));
      c.defaults[key] = value;
    }
  }
  if (YAML::Node db = root["database"]) {
    int given = 0;
    for (const auto& entry : db) {
      const YAML::Node& key_node = entry.first;
      const YAML::Node& value_node = entry.second;
      const std::string key = key_node.as<std::string>();
      const std::string value = value_node.as<std::string>("");
      if (key == "dsn") {
        c.dsn = value;
        c.dsn_source = "the config file";
      } else if (key == "dsn_env") {
        const char* v = std::getenv(value.c_str());
        if (!v) {
          throw std::runtime_error(
              located(file, value_node, "environment variable " + value + " is not set"));
        }
        c.dsn = v;
        c.dsn_source = "$" + value;
      } else if (key == "dsn_file") {
        std::ifstream in(value);
        if (!in) throw std::runtime_error(located(file, value_node, "cannot read " + value));
        std::getline(in, c.dsn);
        c.dsn_source = value;
      } else {
        throw std::runtime_error(
            located(file, key_node,
                    "unknown key \"" + key + "\" in database; expected dsn, dsn_env or dsn_file"));
      }
      ++given;
    }
    if (given > 1) {
      throw std::runtime_error(
          located(file, db, "give one of dsn, dsn_env and dsn_file, not several"));
    }
  }
  if (YAML::Node ctl = root["control"]) {
    for (const auto& entry : ctl) {
      const YAML::Node& key_node = entry.first;
      const YAML::Node& value_node = entry.second;
      const std::string key = key_node.as<std::string>();
      if (key == "socket") {
        c.control.path = value_node.as<std::string>();
      } else if (key == "mode") {
        const std::string m = value_node.as<std::string>();
        char* end = nullptr;
        long v = std::strtol(m.c_str(), &end, 8);
        if (m.empty() || *end || v < 0 || v > 0777 || (v & 0007)) {
          throw std::runtime_error(
              located(file, value_node,
                      "mode: expected octal permissions such as 0660, with nothing for others"));
        }
        c.control.mode = static_cast<mode_t>(v);
      } else if (key == "owner") {
        c.control.owner = value_node.as<std::string>("");
      } else if (key == "group") {
        c.control.group = value_node.as<std::string>("");
      } else if (key == "allowed_uids") {
        if (!value_node.IsSequence()) {
          throw std::runtime_error(located(file, value_node, "allowed_uids: expected a list"));
        }
        for (const auto& u : value_node) c.control.allowed_uids.insert(u.as<uid_t>());
      } else {
        throw std::runtime_error(
            located(file, key_node,
                    "unknown key \"" + key +
                        "\" in control; expected socket, mode, owner, group or allowed_uids"));
      }
    }
  }
  return c;
}

void notify(const std::string& what) { sd_notify(0, what.c_str()); }

// SIGHUP: reads the config again and applies what can change in place; the
// rest (database, socket, metrics address) is reported as needing a restart.
void reload(const ServeArgs& args, DaemonConfig& current, ControlServer& server,
            MigrationManager& manager) {
  notify("RELOADING=1");
  DaemonConfig next;
  try {
    next = load_config(args.config);
  } catch (const std::exception& e) {
    spdlog::error("reload refused, the running config stays: {}", e.what());
    notify("READY=1");
    return;
  }
  if (args.log_level.empty() || args.log_format.empty()) {
    setup_logging(*parse_log_format(args.log_format.empty() ? next.log_format : args.log_format),
                  args.log_level.empty() ? next.log_level : args.log_level);
  }
  server.set_allowed_uids(next.control.allowed_uids);
  manager.reconfigure(next.defaults, next.shutdown_grace);
  std::vector<std::string> restart;
  if (args.dsn.empty() && next.dsn != current.dsn) restart.push_back("database");
  if (args.socket.empty() &&
      (next.control.path != current.control.path || next.control.mode != current.control.mode ||
       next.control.owner != current.control.owner ||
       next.control.group != current.control.group)) {
    restart.push_back("control socket");
  }
  if (args.metrics_listen.empty() && next.metrics_listen != current.metrics_listen) {
    restart.push_back("metrics address");
  }
  current.control.allowed_uids = next.control.allowed_uids;
  current.defaults = next.defaults;
  current.shutdown_grace = next.shutdown_grace;
  spdlog::info("reloaded {}: allowed uids, log settings, defaults and shutdown grace applied{}",
               args.config.empty() ? "(no config file)" : args.config,
               restart.empty() ? "" : "; restart to change the " + join(restart, ", "));
  notify("READY=1");
}

}  // namespace

int cmd_serve(const ServeArgs& args) {
  // Buffers of 256 kB and more (a request line arriving on the control
  // socket) come from mmap and go back to the system when freed. glibc would
  // raise this threshold as such buffers are freed, and serve later ones from
  // its heap, which it may keep (issue 16 saw 275 MB stay after 300 such
  // connections closed; the e2e test of it passes here with or without this).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  DaemonConfig config;
  try {
    config = load_config(args.config);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitBadInput;
  }
  if (!args.dsn.empty()) {
    config.dsn = args.dsn;
    config.dsn_source = "--dsn";
  } else if (config.dsn.empty() && std::getenv("TANDEM_DSN")) {
    config.dsn = std::getenv("TANDEM_DSN");
    config.dsn_source = "$TANDEM_DSN";
  }
  if (!args.socket.empty()) config.control.path = args.socket;
  if (!args.metrics_listen.empty()) config.metrics_listen = args.metrics_listen;
  if (args.log_level.empty() || args.log_format.empty()) {
    setup_logging(*parse_log_format(args.log_format.empty() ? config.log_format : args.log_format),
                  args.log_level.empty() ? config.log_level : args.log_level);
  }
  if (args.check_config) {
    std::string uids;
    for (uid_t u : config.control.allowed_uids)
      uids += (uids.empty() ? "" : ",") + std::to_string(u);
    std::printf("database: %s (from %s)\ncontrol socket: %s (mode %04o%s%s)\nallowed uids: %s\n",
                redacted_conninfo(config.dsn).c_str(), config.dsn_source.c_str(),
                config.control.path.c_str(), static_cast<unsigned>(config.control.mode),
                config.control.owner.empty() ? "" : (", owner " + config.control.owner).c_str(),
                config.control.group.empty() ? "" : (", group " + config.control.group).c_str(),
                uids.empty() ? "any that can open the socket" : uids.c_str());
    std::printf("metrics: %s\nlog: %s, %s\nshutdown grace: %s\n",
                config.metrics_listen.empty() ? "off" : config.metrics_listen.c_str(),
                config.log_level.c_str(), config.log_format.c_str(),
                format_duration(config.shutdown_grace).c_str());
    for (const auto& [key, value] : config.defaults) {
      std::printf("default %s: %s\n", key.c_str(), value.c_str());
    }
    return kExitOk;
  }

  struct sigaction sa {};
  sa.sa_handler = on_serve_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_serve_hangup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);
  signal(SIGPIPE, SIG_IGN);

  spdlog::info("tandemd serve: database {} (from {}), control socket {}",
               redacted_conninfo(config.dsn), config.dsn_source, config.control.path);
  MigrationManager::Options manager_options;
  manager_options.dsn = config.dsn;
  manager_options.shutdown_grace = config.shutdown_grace;
  manager_options.defaults = config.defaults;
  MigrationManager manager(manager_options);
  // Recover before serving: READY=1 means state is recovered and the
  // database is reachable.
  for (int attempt = 1;; ++attempt) {
    try {
      manager.recover();
      break;
    } catch (const std::exception& e) {
      if (g_serve_stop) return kExitInterrupted;
      spdlog::warn("cannot reach the database yet (attempt {}): {}", attempt, e.what());
      notify("STATUS=waiting for the database: " + std::string(e.what()));
      std::this_thread::sleep_for(std::chrono::seconds(std::min(attempt, 10)));
    }
  }
  ControlServer server(config.control, [&](const control::Request& r, uid_t uid) {
    const std::string actor = "uid:" + std::to_string(uid);
    try {
      return control::ok_response(r.id, manager.handle(r, actor));
    } catch (const CommandError& e) {
      return control::error_response({e.code(), e.what(), r.id});
    } catch (const std::exception& e) {
      return control::error_response({"internal", e.what(), r.id});
    }
  });
  std::unique_ptr<MetricsServer> metrics;
  if (!config.metrics_listen.empty()) {
    metrics = std::make_unique<MetricsServer>(config.metrics_listen,
                                              [&manager] { return manager.metrics(); });
  }
  try {
    server.start();
    if (metrics) {
      metrics->start();
      spdlog::info("metrics on http://{}/metrics", config.metrics_listen);
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    server.stop();
    manager.shutdown();
    return kExitBadInput;
  }
  spdlog::info("ready: {}", manager.summary());
  notify("READY=1\nSTATUS=" + manager.summary());

  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  auto last_status = std::chrono::steady_clock::now() - std::chrono::hours(1);
  auto last_ping = last_status;
  while (!g_serve_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_serve_reload.exchange(false)) reload(args, config, server, manager);
    auto now = std::chrono::steady_clock::now();
    if (now - last_status >= std::chrono::seconds(1)) {
      notify("STATUS=" + manager.summary());
      last_status = now;
    }
    if (watchdog && now - last_ping >= std::chrono::microseconds(watchdog_usec / 2)) {
      notify("WATCHDOG=1");
      last_ping = now;
    }
  }
  spdlog::info("stopping: every migration stops at its next safe point");
  notify("STOPPING=1\nSTATUS=stopping at the next safe point");
  // Whatever the database does (a session stuck on a frozen server cannot
  // even be cancelled), the process ends soon after the grace period. Every
  // batch and step commits with its record, so the next start resumes
  // exactly; the server ends the sessions when it notices them gone.
  const auto deadline = config.shutdown_grace + std::chrono::seconds(3);
  std::thread([deadline] {
    std::this_thread::sleep_for(deadline);
    spdlog::error(
        "still stopping {} after the signal (the database does not answer?); exiting "
        "now: migrations resume from their last commit",
        format_duration(deadline));
    spdlog::shutdown();
    std::_Exit(kExitInterrupted);
  }).detach();
  server.stop();
  manager.shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace tandem
