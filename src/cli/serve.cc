// tandemd serve: the long-running daemon. Reads its config, recovers the
// migrations it owns, serves the control socket, and talks to systemd.
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "daemon/config.h"
#include "daemon/manager.h"
#include "daemon/metrics_server.h"
#include "daemon/server.h"
#include "db/conninfo.h"
#include "util/duration.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {

namespace {

std::atomic<bool> g_serve_stop{false};
std::atomic<bool> g_serve_reload{false};
void on_serve_signal(int) { g_serve_stop.store(true); }
void on_serve_hangup(int) { g_serve_reload.store(true); }

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

// Long, and left so: the daemon's life from start-up to shutdown in the
// order it happens (config, logging, manager, sockets, systemd, signals,
// the grace period), read top to bottom.
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
    std::printf("hooks: %s\n", hooks_text(config.hooks).c_str());
    for (const auto& f : config.fleets) std::printf("fleet: %s\n", f.c_str());
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
  manager_options.hooks = config.hooks;
  manager_options.fleets = config.fleets;
  MigrationManager manager(manager_options);
  // The socket opens first, so that tandemctl can tell a daemon waiting for
  // its database from one that is not running: until the submitted
  // migrations are recovered every command is answered `unavailable`, with
  // why. READY=1 means state is recovered and the database is reachable.
  // A command that comes in the first moments (a script that starts the
  // daemon, then submits) waits up to 2 s for the recovery.
  std::atomic<bool> recovered{false};
  std::mutex waiting_mu;
  std::condition_variable recovered_cv;
  std::string waiting_for = "recovering the submitted migrations";
  ControlServer server(config.control, [&](const control::Request& r, uid_t uid) {
    if (!recovered.load()) {
      std::unique_lock<std::mutex> l(waiting_mu);
      if (!recovered_cv.wait_for(l, std::chrono::seconds(2), [&] { return recovered.load(); }))
        return control::error_response(
            {"unavailable",
             "tandemd is waiting for its database (" + waiting_for +
                 "); it keeps trying, and answers commands once it has recovered its migrations",
             r.id});
    }
    const std::string actor = "uid:" + std::to_string(uid);
    try {
      return control::ok_response(r.id, manager.handle(r, actor));
    } catch (const CommandError& e) {
      return control::error_response({e.code(), e.what(), r.id});
    } catch (const std::exception& e) {
      return control::error_response({"internal", e.what(), r.id});
    }
  });
  try {
    server.start();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    server.stop();
    manager.shutdown();
    return kExitBadInput;
  }
  for (int attempt = 1;; ++attempt) {
    try {
      manager.recover();
      break;
    } catch (const std::exception& e) {
      if (g_serve_stop) {
        server.stop();
        return kExitInterrupted;
      }
      spdlog::warn("cannot reach the database yet (attempt {}): {}", attempt, e.what());
      notify("STATUS=waiting for the database: " + std::string(e.what()));
      {
        std::lock_guard<std::mutex> l(waiting_mu);
        waiting_for = e.what();
      }
      std::this_thread::sleep_for(std::chrono::seconds(std::min(attempt, 10)));
    }
  }
  {
    std::lock_guard<std::mutex> l(waiting_mu);
    recovered = true;
  }
  recovered_cv.notify_all();
  std::unique_ptr<MetricsServer> metrics;
  if (!config.metrics_listen.empty()) {
    metrics = std::make_unique<MetricsServer>(config.metrics_listen,
                                              [&manager] { return manager.metrics(); });
  }
  try {
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
