#include "fleet/fleet_spec.h"

#include <libpq-fe.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "db/connection.h"
#include "spec/reader.h"
#include "util/duration.h"
#include "util/text.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kFleetKeys = {"cleanup", "name",         "migration",     "control",
                                             "targets", "targets_file", "targets_query", "waves",
                                             "cutover", "drift",        "limits"};
const std::vector<std::string> kTargetKeys = {"name", "dsn", "labels"};
const std::vector<std::string> kWaveKeys = {"name", "select", "parallel", "on_error", "soak"};
const std::vector<std::string> kLimitKeys = {"per_daemon", "per_host"};

// Why `name` cannot name a target or a wave, or "".
std::string name_problem(const std::string& name) {
  if (name.empty() || name.size() > 63) return "must be 1 to 63 characters";
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')) {
      return "must be characters of a-z, 0-9, '_', '-' and '.'";
    }
  }
  return "";
}

fs::path beside(const std::string& file, const std::string& relative) {
  fs::path p(relative);
  if (p.is_absolute()) return p;
  return fs::path(file).parent_path() / p;
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class FleetReader : public SpecReader {
 public:
  using SpecReader::SpecReader;

  std::optional<FleetSpec> parse(const std::string& text) {
    auto doc = load_document(text, "fleet file", "fleet file",
                             "expected a mapping with \"migration\", \"targets\" and \"waves\"");
    if (!doc) return std::nullopt;
    const YAML::Node& root = *doc;
    check_keys(root, kFleetKeys, "the fleet file");
    FleetSpec f;
    f.file = file();
    f.text = text;
    if (auto v = scalar(root, "name", false, "fleet")) {
      const std::string why = name_problem(*v);
      if (!why.empty()) error(root["name"], "name: \"" + printable(*v) + "\" " + why);
      f.name = *v;
    }
    if (auto v = scalar(root, "migration", true, "fleet")) {
      f.migration_file = *v;
      f.migration_path = beside(file(), *v).string();
      if (!fs::exists(f.migration_path)) {
        error(root["migration"], "migration: " + f.migration_path +
                                     " does not exist (the path is relative to the "
                                     "fleet file)");
      }
    }
    if (auto v = scalar(root, "control", false, "fleet")) f.control_dsn = *v;
    const int sources = root["targets"].IsDefined() + root["targets_file"].IsDefined() +
                        root["targets_query"].IsDefined();
    if (sources == 0) {
      error(root,
            "the fleet names no targets: give targets (a list), targets_file or "
            "targets_query");
    } else if (sources > 1) {
      // At the one given last in the file.
      // (yaml-cpp's Node::operator= writes through a bound node: keep names.)
      const char* last = nullptr;
      for (const char* k : {"targets", "targets_file", "targets_query"}) {
        if (root[k].IsDefined() && (!last || root[k].Mark().pos > root[last].Mark().pos)) last = k;
      }
      error(root[last], "give one of targets, targets_file and targets_query, not several");
    }
    if (root["targets"].IsDefined()) targets(root["targets"], f.targets);
    if (auto v = scalar(root, "targets_file", false, "fleet")) {
      f.targets_file = beside(file(), *v).string();
      targets_file(root["targets_file"], f);
    }
    if (auto v = scalar(root, "targets_query", false, "fleet")) f.targets_query = *v;
    if (!root["waves"].IsDefined()) {
      missing(root, "waves", "fleet");
    } else {
      waves(root["waves"], f.waves);
    }
    if (auto together = either(root, "cutover", "together", "each",
                               "together (every target cuts over once all are ready) or each "
                               "(every target in its wave)")) {
      f.cutover = *together ? FleetCutover::kTogether : FleetCutover::kEach;
    }
    if (auto fleet_wide = either(root, "cleanup", "fleet", "wave",
                                 "fleet (once every target is cut over) or wave (once every "
                                 "target of the wave is)")) {
      f.cleanup_per_wave = !*fleet_wide;
    }
    if (auto hold = either(root, "drift", "hold", "ignore", "hold or ignore")) {
      f.hold_on_drift = *hold;
    }
    if (root["limits"].IsDefined()) {
      const YAML::Node l = root["limits"];
      if (open_operation(l, "limits", kLimitKeys)) {
        long long d = f.per_daemon, h = f.per_host;
        whole_number(l, "per_daemon", 1, 256, d, "limits");
        whole_number(l, "per_host", 1, 256, h, "limits");
        f.per_daemon = static_cast<int>(d);
        f.per_host = static_cast<int>(h);
      }
    }
    // Which wave each target is in, once the targets and waves are whole.
    if (errors.empty() && !f.targets.empty() && !f.waves.empty()) {
      std::vector<SpecError> wave_errors;
      assign_waves(f, f.targets, wave_errors);
      errors.insert(errors.end(), wave_errors.begin(), wave_errors.end());
    }
    return f;
  }

 private:
  // `key`, one of two words: true for `first`, false for `second`, nullopt
  // when absent or neither (an error saying what was expected).
  std::optional<bool> either(const YAML::Node& map, const std::string& key,
                             const std::string& first, const std::string& second,
                             const std::string& expected) {
    auto v = scalar(map, key, false, "");
    if (!v) return std::nullopt;
    if (*v == first || *v == second) return *v == first;
    error(map[key], key + ": expected " + expected + ", got \"" + printable(*v) + "\"");
    return std::nullopt;
  }

  // The item's `name`, checked, and not given to another item of `seen`.
  std::string unique_name(const YAML::Node& item, const std::string& noun,
                          std::map<std::string, SourceLocation>& seen) {
    auto v = scalar(item, "name", true, noun);
    if (!v) return "";
    const std::string why = name_problem(*v);
    if (!why.empty()) error(item["name"], "name: \"" + printable(*v) + "\" " + why);
    auto [first, fresh] = seen.emplace(*v, at(item["name"]));
    if (!fresh) {
      error(item["name"],
            noun + " \"" + *v + "\" is named twice (first at " + first->second.to_string() + ")");
    }
    return *v;
  }

  void targets(const YAML::Node& n, std::vector<FleetTarget>& out) {
    if (!n.IsSequence() || n.size() == 0) {
      error(n, "targets: expected a list of targets ({name, dsn, labels}), got " +
                   (n.IsSequence() ? std::string("an empty list") : kind_name(n)));
      return;
    }
    std::map<std::string, SourceLocation> seen;
    for (const auto& t : n) {
      if (!open_operation(t, "target", kTargetKeys)) continue;
      FleetTarget target;
      target.where = at(t);
      target.name = unique_name(t, "target", seen);
      if (auto v = scalar(t, "dsn", true, "target " + target.name)) target.dsn = *v;
      const YAML::Node labels = t["labels"];
      if (labels.IsDefined() && !labels.IsNull()) {
        if (!labels.IsMap()) {
          error(labels, "labels: expected a mapping of label to value, got " + kind_name(labels));
        } else {
          for (const auto& kv : labels) {
            if (!kv.second.IsScalar() || !kv.first.IsScalar()) {
              error(kv.second, "labels: each label's value must be a single value, got " +
                                   kind_name(kv.second));
              continue;
            }
            target.labels[kv.first.Scalar()] = kv.second.Scalar();
          }
        }
      }
      out.push_back(std::move(target));
    }
  }

  void targets_file(const YAML::Node& at_node, FleetSpec& f) {
    auto text = read_text(f.targets_file);
    if (!text) {
      error(at_node, "targets_file: cannot read " + f.targets_file);
      return;
    }
    FleetReader inner(f.targets_file);
    auto root = inner.load_document(*text, "targets file", "targets file",
                                    "expected a list of targets ({name, dsn, labels})", true);
    if (root) inner.targets(*root, f.targets);
    errors.insert(errors.end(), inner.errors.begin(), inner.errors.end());
  }

  void waves(const YAML::Node& n, std::vector<FleetWave>& out) {
    if (!n.IsSequence() || n.size() == 0) {
      error(n, "waves: expected a list of waves ({name, select, parallel, on_error, soak}), got " +
                   (n.IsSequence() ? std::string("an empty list") : kind_name(n)));
      return;
    }
    std::map<std::string, SourceLocation> seen;
    int rest_line = 0;  // of the wave that selects the rest (a line: `out` reallocates)
    for (const auto& w : n) {
      if (!open_operation(w, "wave", kWaveKeys)) continue;
      FleetWave wave;
      wave.where = at(w);
      wave.name = unique_name(w, "wave", seen);
      const YAML::Node sel = w["select"];
      if (!sel.IsDefined()) {
        missing(w, "select", "wave " + wave.name);
      } else if (sel.IsScalar() && sel.Scalar() == "rest") {
        wave.rest = true;
      } else if (!sel.IsMap() || sel.size() == 0) {
        error(sel,
              "select: expected a mapping of label to value (or list of values), or "
              "\"rest\" for the targets no other wave selects");
      } else {
        for (const auto& kv : sel) {
          auto& values = wave.select[kv.first.as<std::string>("")];
          if (kv.second.IsScalar()) {
            values.push_back(kv.second.Scalar());
          } else if (kv.second.IsSequence() && kv.second.size() > 0) {
            for (const auto& v : kv.second) {
              if (!v.IsScalar()) {
                error(v, "select: expected a value, got " + kind_name(v));
                continue;
              }
              values.push_back(v.Scalar());
            }
          } else {
            error(kv.second,
                  "select: expected a value or a list of values, got " + kind_name(kv.second));
          }
        }
      }
      long long parallel = 1;
      whole_number(w, "parallel", 1, 256, parallel, "wave " + wave.name);
      wave.parallel = static_cast<int>(parallel);
      if (auto stop = either(w, "on_error", "stop", "continue",
                             "stop (no later wave starts) or continue")) {
        wave.stop_on_error = *stop;
      }
      if (auto v = scalar(w, "soak", false, "wave")) {
        auto d = parse_duration(*v);
        if (!d) {
          error(w["soak"],
                "soak: expected a duration such as 30s or 10m, got \"" + printable(*v) + "\"");
        } else {
          wave.soak = *d;
        }
      }
      if (wave.rest) {
        if (rest_line) {
          error(w, "only one wave may select the rest (another does at line " +
                       std::to_string(rest_line) + ")");
        }
      }
      out.push_back(std::move(wave));
      if (out.back().rest && !rest_line) rest_line = out.back().where.line;
    }
  }
};

bool selects(const FleetWave& w, const FleetTarget& t) {
  if (w.rest) return false;
  for (const auto& [label, values] : w.select) {
    auto it = t.labels.find(label);
    if (it == t.labels.end()) return false;
    if (std::find(values.begin(), values.end(), it->second) == values.end()) return false;
  }
  return true;
}

}  // namespace

FleetParseResult parse_fleet(const std::string& text, const std::string& file) {
  FleetReader reader(file);
  FleetParseResult result;
  try {
    result.fleet = reader.parse(text);
  } catch (const YAML::Exception& e) {
    reader.errors.push_back({reader.at(e.mark), "YAML: " + e.msg});
  }
  result.errors = std::move(reader.errors);
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const SpecError& a, const SpecError& b) {
                     return std::tie(a.where.file, a.where.line, a.where.column) <
                            std::tie(b.where.file, b.where.line, b.where.column);
                   });
  if (!result.errors.empty()) result.fleet.reset();
  return result;
}

FleetParseResult load_fleet_file(const std::string& path) {
  auto text = read_text(path);
  if (!text) {
    FleetParseResult r;
    r.errors.push_back({{path, 0, 0}, "cannot read the file"});
    return r;
  }
  return parse_fleet(*text, path);
}

std::vector<int> assign_waves(const FleetSpec& fleet, const std::vector<FleetTarget>& targets,
                              std::vector<SpecError>& errors) {
  std::vector<int> out;
  int rest = -1;
  for (size_t w = 0; w < fleet.waves.size(); ++w) {
    if (fleet.waves[w].rest && rest < 0) rest = static_cast<int>(w);
  }
  for (const auto& t : targets) {
    std::vector<int> in;
    for (size_t w = 0; w < fleet.waves.size(); ++w) {
      if (selects(fleet.waves[w], t)) in.push_back(static_cast<int>(w));
    }
    const std::string who = "target \"" + t.name + "\"";
    const SourceLocation where = t.where.line ? t.where : SourceLocation{fleet.file, 0, 0};
    if (in.size() > 1) {
      std::vector<std::string> names;
      for (int w : in) names.push_back(fleet.waves[w].name);
      errors.push_back({where, who + " is selected by waves " + join(names, " and ") +
                                   "; each target must be in exactly one wave"});
    } else if (in.empty() && rest < 0) {
      errors.push_back({where, who + " is in no wave: no wave's select matches its labels and "
                                     "no wave selects the rest"});
    }
    out.push_back(in.empty() ? rest : in.front());
  }
  for (size_t w = 0; w < fleet.waves.size(); ++w) {
    if (std::find(out.begin(), out.end(), static_cast<int>(w)) == out.end() && errors.empty()) {
      errors.push_back(
          {fleet.waves[w].where, "wave \"" + fleet.waves[w].name + "\" selects no target"});
    }
  }
  return out;
}

std::vector<FleetTarget> targets_from_query(Connection& control, const std::string& query) {
  Rows r = control.exec(query);
  auto col = [&](const std::string& name) -> int {
    for (size_t i = 0; i < r.columns.size(); ++i) {
      if (r.columns[i] == name) return static_cast<int>(i);
    }
    return -1;
  };
  const int name = col("name"), dsn = col("dsn"), labels = col("labels");
  if (name < 0 || dsn < 0) {
    throw Error(ErrorKind::kBadInput,
                "targets_query must return columns name and dsn (and labels, a JSON object); it "
                "returned " +
                    join(r.columns, ", "));
  }
  std::vector<FleetTarget> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < r.size(); ++i) {
    FleetTarget t;
    t.name = r.text(i, name);
    t.dsn = r.text(i, dsn);
    const std::string row = "targets_query row " + std::to_string(i + 1);
    const std::string why = name_problem(t.name);
    if (!why.empty()) {
      throw Error(ErrorKind::kBadInput, row + ": name \"" + printable(t.name) + "\" " + why);
    }
    if (!seen.insert(t.name).second) {
      throw Error(ErrorKind::kBadInput, row + ": target \"" + t.name + "\" is named twice");
    }
    if (t.dsn.empty()) throw Error(ErrorKind::kBadInput, row + ": dsn is empty");
    if (labels >= 0 && !r.is_null(i, labels)) {
      auto j = nlohmann::json::parse(r.text(i, labels), nullptr, false);
      if (!j.is_object()) {
        throw Error(ErrorKind::kBadInput, row + ": labels must be a JSON object");
      }
      for (auto it = j.begin(); it != j.end(); ++it) {
        t.labels[it.key()] =
            it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
      }
    }
    out.push_back(std::move(t));
  }
  if (out.empty()) throw Error(ErrorKind::kBadInput, "targets_query returned no target");
  return out;
}

std::string server_of(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    if (err) PQfreemem(err);
    return dsn;
  }
  std::string host, port;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    const std::string k = o->keyword;
    if (k == "host" && o->val) host = o->val;
    if (k == "hostaddr" && o->val && host.empty()) host = o->val;
    if (k == "port" && o->val) port = o->val;
  }
  PQconninfoFree(opts);
  if (host.empty()) {
    const char* h = std::getenv("PGHOST");
    host = h && *h ? h : "/var/run/postgresql";
  }
  if (port.empty()) {
    const char* p = std::getenv("PGPORT");
    port = p && *p ? p : "5432";
  }
  return host + ":" + port;
}

}  // namespace tandem
