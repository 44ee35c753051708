// YAML → Spec. Every problem is reported with the file, line and column of the
// node it concerns; parsing goes on after an error so that one run reports all
// of them. yaml-cpp's exceptions stop here.
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ops/registry.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "spec/settings.h"
#include "spec/shadow_reads.h"
#include "spec/sql_lint.h"
#include "spec/suggest.h"
#include "tandem/spec.h"
#include "util/duration.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

std::string SourceLocation::to_string() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string SpecError::to_string() const {
  return (where.line ? where.to_string() : where.file) + ": " + message;
}

bool Spec::requires_approval(Phase phase) const {
  if (phase_info(phase).approval_required) return true;
  return std::find(approval_gates.begin(), approval_gates.end(), phase) != approval_gates.end();
}

bool Spec::has_shadow_read(const std::string& pair) const {
  return std::any_of(shadow_reads.begin(), shadow_reads.end(),
                     [&](const ShadowReadPair& p) { return p.name == pair; });
}

namespace {

// The slices of an operation that can be done in slices, or nullptr.
const Slices* slices_of(const Operation& o) {
  return std::visit(
      [](const auto& op) -> const Slices* {
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, CopyTable> || std::is_same_v<T, MoveColumn> ||
                      std::is_same_v<T, Transform>) {
          return op.slices ? &*op.slices : nullptr;
        } else {
          return nullptr;
        }
      },
      o.op);
}

}  // namespace

const Operation* Spec::sliced_operation() const {
  for (const auto& o : operations) {
    if (slices_of(o)) return &o;
  }
  return nullptr;
}

const Slices* Spec::sliced() const {
  const Operation* o = sliced_operation();
  return o ? slices_of(*o) : nullptr;
}

namespace {

// The spec's top level: name, description, settings, gates, and the
// operations list, each item parsed by its operation's row in the table.
class Parser : public SpecReader {
 public:
  explicit Parser(std::string file) : SpecReader(std::move(file)) {}

  void settings(const YAML::Node& n, Settings& s, std::set<std::string>& given) {
    if (!expect_map(n, "settings")) return;
    check_keys(n, setting_keys(), "settings");
    for (const auto& key : setting_keys()) {
      auto text = scalar(n, key, false, "settings");
      if (!text) continue;
      given.insert(key);
      std::string problem = set_setting(s, key, *text);
      if (!problem.empty()) error(n[key], problem);
    }
    std::string problem = check_settings(s);
    if (!problem.empty()) error(n, "settings: " + problem);
  }

  void operations(const YAML::Node& n, Spec& spec) {
    if (!n.IsSequence()) {
      error(n, "operations: expected a list, got " + kind_name(n));
      return;
    }
    if (n.size() == 0) error(n, "operations: the list is empty; a migration needs at least one");
    for (const auto& item : n) {
      if (!item.IsMap() || item.size() != 1) {
        error(item,
              "operation: expected a mapping with exactly one operation name, such as "
              "\"alter_column_type:\"");
        continue;
      }
      auto entry = *item.begin();
      std::string op = entry.first.Scalar();
      Operation o{at(entry.first), {}};
      const OperationKind* kind = find_operation_kind(op);
      if (!kind) {
        error(entry.first,
              "unknown operation \"" + op + "\"" + did_you_mean(op, operation_names()));
      } else if (kind->parse(*this, entry.second, o)) {
        spec.operations.push_back(std::move(o));
      }
    }
  }

  void gates(const YAML::Node& n, Spec& spec) {
    if (!expect_map(n, "gates")) return;
    for (auto it = n.begin(); it != n.end(); ++it) {
      auto p = phase(it->first, "gates");
      if (!it->second.IsScalar() || it->second.Scalar() != "approval") {
        error(it->second, "gates: the only gate is \"approval\", got " +
                              (it->second.IsScalar() ? "\"" + it->second.Scalar() + "\""
                                                     : kind_name(it->second)));
        continue;
      }
      if (p) spec.approval_gates.push_back(*p);
    }
  }

  void name(const YAML::Node& root, Spec& spec) {
    auto v = scalar(root, "name", true, "spec");
    if (!v) return;
    bool ok = v->size() <= 48;
    for (char c : *v) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) ok = false;
    }
    if (!ok) {
      error(root["name"],
            "name: \"" + *v + "\" must be 1 to 48 characters of a-z, 0-9, '_' and '-'");
    }
    spec.name = *v;
  }

  std::optional<Spec> parse(const std::string& text) {
    auto doc = load_document(text, "spec", "migration spec",
                             "expected a mapping with \"name\" and \"operations\"");
    if (!doc) return std::nullopt;
    const YAML::Node& root = *doc;
    check_keys(root, schema_keys("spec"), "the spec");
    Spec spec;
    spec.file = file();
    spec.text = text;
    name(root, spec);
    if (auto d = scalar(root, "description", false, "spec")) spec.description = *d;
    if (root["settings"].IsDefined())
      settings(root["settings"], spec.settings, spec.settings_given);
    if (!root["operations"].IsDefined()) {
      missing(root, "operations", "spec");
    } else {
      operations(root["operations"], spec);
    }
    if (root["gates"].IsDefined()) gates(root["gates"], spec);
    if (root["shadow_reads"].IsDefined()) parse_shadow_reads(*this, root["shadow_reads"], spec);
    one_sliced_operation(spec);
    if (!errors.empty()) return std::nullopt;
    lint(spec);
    if (!errors.empty()) return std::nullopt;
    return spec;
  }

  std::vector<SpecError> warnings;

  // The lint of `sql` steps (settings.sql_lint): warnings, or errors when
  // it is error. The statements are read in the spec's order, so that an
  // index on a table the spec created, or SET NOT NULL after a validated
  // check, is not flagged.
  void lint(const Spec& spec) {
    const std::string mode = spec.settings.sql_lint;
    if (mode == "off") return;
    SqlLintContext context;
    for (size_t i = 0; i < spec.operations.size(); ++i) {
      const Operation& o = spec.operations[i];
      if (const auto* t = std::get_if<CreateTable>(&o.op)) context.created.insert(t->table);
      const auto* s = std::get_if<SqlOperation>(&o.op);
      if (!s) continue;
      const std::string step = "sql step " + std::to_string(i + 1) + ".sql";
      const auto say = [&](const std::string& side, const SqlLintFinding& f) {
        const std::string m = step + " (" + side + "): " + f.to_string();
        if (mode == "error") {
          errors.push_back({o.where, m + " (settings: sql_lint: error; warn lets it run)"});
        } else {
          warnings.push_back({o.where, m});
        }
      };
      SqlLintContext undo = context;  // down runs on rollback, not after up
      for (const auto& f : lint_sql(s->up, s->transaction, context)) say("up", f);
      if (s->down) {
        for (const auto& f : lint_sql(*s->down, s->transaction, undo)) say("down", f);
      }
    }
  }

 private:
  // tandem.route answers per migration: one operation of it can be in slices.
  void one_sliced_operation(const Spec& spec) {
    const Slices* first = spec.sliced();
    if (!first) return;
    // A transform's new side is reshaped by SQL: no copy to compare a
    // slice's rows with, so its shadow-read pairs are what gates a slice.
    if (const auto* t = std::get_if<Transform>(&spec.sliced_operation()->op)) {
      const std::string source = qualified(t->schema, t->table);
      const bool gated =
          std::any_of(spec.shadow_reads.begin(), spec.shadow_reads.end(), [&](const auto& p) {
            return p.table == source &&
                   std::find(p.columns.begin(), p.columns.end(), first->by) != p.columns.end();
          });
      if (!gated) {
        errors.push_back(
            {first->where, "transform: slices: no shadow-read pair draws its parameters from " +
                               t->table + " with \"" + first->by +
                               "\" among its columns; a transform's slice is checked by such "
                               "pairs on its own keys (shadow_reads: ... params: {table: " +
                               t->table + ", columns: [" + first->by + ", ...]})"});
      }
    }
    for (const auto& o : spec.operations) {
      const Slices* s = slices_of(o);
      if (!s || s == first) continue;
      errors.push_back(
          {s->where, std::string(operation_name(o)) +
                         ": slices: another operation of this migration is in slices already "
                         "(line " +
                         std::to_string(first->where.line) +
                         "); tandem.route answers per migration, so one can be: split the "
                         "migration in two"});
    }
  }
};

}  // namespace

SpecParseResult parse_spec(const std::string& text, const std::string& file) {
  Parser parser(file);
  SpecParseResult result;
  try {
    result.spec = parser.parse(text);
  } catch (const YAML::Exception& e) {
    parser.errors.push_back({parser.at(e.mark), "YAML: " + e.msg});
    result.spec.reset();
  }
  result.errors = std::move(parser.errors);
  result.warnings = std::move(parser.warnings);
  std::stable_sort(
      result.errors.begin(), result.errors.end(), [](const SpecError& a, const SpecError& b) {
        return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
      });
  if (!result.errors.empty()) result.spec.reset();
  return result;
}

SpecParseResult load_spec_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    SpecParseResult r;
    r.errors.push_back(
        {{path, 0, 0}, std::string("cannot read the file: ") + std::strerror(errno)});
    return r;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_spec(buf.str(), path);
}

}  // namespace tandem
