#include "daemon/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "daemon/metrics_server.h"
#include "fleet/fleet_spec.h"
#include "spec/settings.h"
#include "spec/suggest.h"
#include "util/duration.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {
namespace {

// Reads one section of the file, throwing errors located in it.
class Section {
 public:
  explicit Section(const std::string& file) : file_(file) {}

  [[noreturn]] void fail(const YAML::Node& n, const std::string& message) const {
    YAML::Mark m = n.Mark();
    throw std::runtime_error(file_ + ":" + std::to_string(m.line + 1) + ":" +
                             std::to_string(m.column + 1) + ": " + message);
  }

  void metrics(const YAML::Node& m, DaemonConfig& c) const {
    for (const auto& entry : m) {
      const std::string key = entry.first.as<std::string>();
      if (key != "listen")
        fail(entry.first, "unknown key \"" + key + "\" in metrics; expected listen");
      c.metrics_listen = entry.second.as<std::string>("");
      try {
        parse_listen_address(c.metrics_listen);
      } catch (const std::exception& e) {
        fail(entry.second, e.what());
      }
    }
  }

  void log(const YAML::Node& log, DaemonConfig& c) const {
    for (const auto& entry : log) {
      const std::string key = entry.first.as<std::string>();
      const std::string value = entry.second.as<std::string>("");
      if (key == "level") {
        const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error"};
        if (std::find(levels.begin(), levels.end(), value) == levels.end()) {
          fail(entry.second, "level: expected one of " + join(levels, ", "));
        }
        c.log_level = value;
      } else if (key == "format") {
        if (!parse_log_format(value)) fail(entry.second, "format: expected text or json");
        c.log_format = value;
      } else {
        fail(entry.first, "unknown key \"" + key + "\" in log; expected level or format");
      }
    }
  }

  void shutdown_grace(const YAML::Node& g, DaemonConfig& c) const {
    auto d = parse_duration(g.as<std::string>(""));
    if (!d || *d > std::chrono::minutes(10)) {
      fail(g, "shutdown_grace: expected a duration up to 10m, such as 10s");
    }
    c.shutdown_grace = *d;
  }

  // Each fleet file must load (with its migration spec): a daemon does not
  // start with one it could not run.
  void fleets(const YAML::Node& list, DaemonConfig& c) const {
    if (!list.IsSequence()) fail(list, "fleets: expected a list of fleet files");
    for (const auto& item : list) {
      const std::string given = item.as<std::string>("");
      if (given.empty()) fail(item, "fleets: expected a fleet file's path");
      std::string path = given;
      if (path[0] != '/') {
        const auto slash = file_.rfind('/');
        if (slash != std::string::npos) path = file_.substr(0, slash + 1) + path;
      }
      auto parsed = load_fleet_file(path);
      if (!parsed.fleet) {
        fail(item, "fleets: " + path + " does not load: " + parsed.errors.front().to_string() +
                       (parsed.errors.size() > 1
                            ? " (and " + std::to_string(parsed.errors.size() - 1) + " more)"
                            : ""));
      }
      auto spec = load_spec_file(parsed.fleet->migration_path);
      if (!spec.spec) {
        fail(item, "fleets: " + path +
                       ": its migration does not load: " + spec.errors.front().to_string());
      }
      c.fleets.push_back(path);
    }
  }

  void hooks(const YAML::Node& h, DaemonConfig& c) const {
    if (!h.IsMap()) fail(h, "hooks: expected a mapping (path, url, timeout, retry)");
    for (const auto& entry : h) {
      const std::string key = entry.first.as<std::string>();
      const std::string value = entry.second.as<std::string>("");
      if (key == "path") {
        c.hooks.path = value;
      } else if (key == "url") {
        c.hooks.url = value;
      } else if (key == "timeout" || key == "retry") {
        auto d = parse_duration(value);
        if (!d || d->count() <= 0 || *d > std::chrono::hours(1)) {
          fail(entry.second, key + ": expected a duration from 1ms to 1h, such as 10s");
        }
        (key == "timeout" ? c.hooks.timeout : c.hooks.retry) = *d;
      } else {
        const std::vector<std::string> keys = {"path", "url", "timeout", "retry"};
        fail(entry.first, "unknown key \"" + key + "\" in hooks" + did_you_mean(key, keys) +
                              "; expected path, url, timeout or retry");
      }
    }
    const std::string problem = check_hook_settings(c.hooks);
    if (!problem.empty()) fail(h, problem);
  }

  void defaults(const YAML::Node& d, DaemonConfig& c) const {
    Settings probe;
    for (const auto& entry : d) {
      const std::string key = entry.first.as<std::string>();
      const std::string value = entry.second.as<std::string>("");
      if (std::find(setting_keys().begin(), setting_keys().end(), key) == setting_keys().end()) {
        fail(entry.first,
             "unknown setting \"" + key + "\" in defaults" + did_you_mean(key, setting_keys()));
      }
      std::string problem = set_setting(probe, key, value);
      if (!problem.empty()) fail(entry.second, problem);
      c.defaults[key] = value;
    }
  }

  void database(const YAML::Node& db, DaemonConfig& c) const {
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
        if (!v) fail(value_node, "environment variable " + value + " is not set");
        c.dsn = v;
        c.dsn_source = "$" + value;
      } else if (key == "dsn_file") {
        std::ifstream in(value);
        if (!in) fail(value_node, "cannot read " + value);
        std::getline(in, c.dsn);
        c.dsn_source = value;
      } else {
        fail(key_node,
             "unknown key \"" + key + "\" in database; expected dsn, dsn_env or dsn_file");
      }
      ++given;
    }
    if (given > 1) fail(db, "give one of dsn, dsn_env and dsn_file, not several");
  }

  void control(const YAML::Node& ctl, DaemonConfig& c) const {
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
          fail(value_node,
               "mode: expected octal permissions such as 0660, with nothing for others");
        }
        c.control.mode = static_cast<mode_t>(v);
      } else if (key == "owner") {
        c.control.owner = value_node.as<std::string>("");
      } else if (key == "group") {
        c.control.group = value_node.as<std::string>("");
      } else if (key == "allowed_uids") {
        if (!value_node.IsSequence()) fail(value_node, "allowed_uids: expected a list");
        for (const auto& u : value_node) c.control.allowed_uids.insert(u.as<uid_t>());
      } else {
        fail(key_node, "unknown key \"" + key +
                           "\" in control; expected socket, mode, owner, group or allowed_uids");
      }
    }
  }

 private:
  const std::string& file_;
};

YAML::Node read_yaml(const std::string& file) {
  try {
    return YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(file + ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(file + ":" + std::to_string(e.mark.line + 1) + ":" +
                             std::to_string(e.mark.column + 1) + ": YAML syntax: " + e.msg);
  }
}

}  // namespace

DaemonConfig load_config(const std::string& file) {
  DaemonConfig c;
  c.control.path = "/run/tandemd/control.sock";
  if (file.empty()) return c;
  const YAML::Node root = read_yaml(file);
  if (!root.IsMap()) throw std::runtime_error(file + ": expected a mapping at the top level");
  const Section section(file);
  const std::vector<std::string> sections = {"database",       "control",  "metrics", "log",
                                             "shutdown_grace", "defaults", "hooks",   "fleets"};
  // Range-for keeps each (key, value) pair alive for the whole body; members
  // reached through it-> die at the end of their expression.
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (std::find(sections.begin(), sections.end(), key) == sections.end()) {
      section.fail(entry.first, "unknown key \"" + key + "\"" + did_you_mean(key, sections) +
                                    "; expected one of " + join(sections, ", "));
    }
  }
  if (YAML::Node n = root["metrics"]) section.metrics(n, c);
  if (YAML::Node n = root["log"]) section.log(n, c);
  if (YAML::Node n = root["shutdown_grace"]) section.shutdown_grace(n, c);
  if (YAML::Node n = root["defaults"]) section.defaults(n, c);
  if (YAML::Node n = root["hooks"]) section.hooks(n, c);
  if (YAML::Node n = root["database"]) section.database(n, c);
  if (YAML::Node n = root["control"]) section.control(n, c);
  if (YAML::Node n = root["fleets"]) section.fleets(n, c);
  return c;
}

}  // namespace tandem
