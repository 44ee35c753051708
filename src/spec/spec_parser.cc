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

#include "spec/settings.h"
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

const std::vector<std::string>& operation_names() {
  static const std::vector<std::string> kNames = {
      "alter_column_type", "sql",           "create_index", "add_constraint",
      "set_not_null",      "drop_column",   "add_column",   "move_column",
      "copy_table",        "add_reference", "rename_column"};
  return kNames;
}

const char* operation_name(const Operation& operation) {
  return operation_names().at(operation.op.index()).c_str();
}

bool Spec::requires_approval(Phase phase) const {
  if (phase_info(phase).approval_required) return true;
  return std::find(approval_gates.begin(), approval_gates.end(), phase) != approval_gates.end();
}

namespace {

// Control bytes shown as \xNN, so a message never carries them.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      out += "\\x" + hex(static_cast<unsigned char>(c), 2);
    } else {
      out += c;
    }
  }
  return out;
}

std::string kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "an undefined value";
  }
}

// UTF-8 without control characters other than tab and line breaks.
bool clean_text(const std::string& v) {
  return invalid_utf8_at(v) == std::string::npos && std::none_of(v.begin(), v.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return (u < 0x20 && u != '\t' && u != '\n' && u != '\r') || u == 0x7F;
         });
}

// Why `t` is not a type name as SQL writes one, or "" when it is: words,
// quoted names, numbers, spaces and the punctuation of `numeric(12, 2)`,
// `timestamp with time zone`, `"Mood"[]` or `public.mood`; nothing that
// could end the statement or comment out what tandem writes after it.
std::string type_name_problem(const std::string& t) {
  int parens = 0, brackets = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') {
      const size_t close = t.find('"', i + 1);
      if (close == std::string::npos || close == i + 1) return "an unclosed or empty quoted name";
      i = close;
    } else if (c == '(') {
      ++parens;
    } else if (c == ')') {
      if (--parens < 0) return "a ')' without its '('";
    } else if (c == '[') {
      ++brackets;
    } else if (c == ']') {
      if (--brackets < 0) return "a ']' without its '['";
    } else if (c == '-' && i + 1 < t.size() && t[i + 1] == '-') {
      return "a comment";
    } else if (!(std::isalnum(u) || u >= 0x80 || c == '_' || c == ' ' || c == ',' || c == '.' ||
                 c == '-')) {
      return std::string("'") + c + "' has no place in one";
    }
  }
  if (parens != 0) return "a '(' without its ')'";
  if (brackets != 0) return "a '[' without its ']'";
  return "";
}

// Limits that keep a hostile or generated file from taking the parser's time,
// memory or stack: no hand-written migration comes near them.
constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr int kMaxDepth = 32;

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  std::vector<SpecError> errors;

  SourceLocation at(const YAML::Node& n) const {
    YAML::Mark m = n.Mark();
    if (m.is_null()) return {file_, 1, 1};
    return {file_, m.line + 1, m.column + 1};
  }

  void error(const YAML::Node& n, const std::string& message) {
    errors.push_back({at(n), message});
  }

  // Reports keys of `map` that are not in `allowed`.
  void check_keys(const YAML::Node& map, const std::vector<std::string>& allowed,
                  const std::string& where) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) {
        error(it->first, "keys in " + where + " must be plain names");
        continue;
      }
      auto key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        error(it->first, "unknown key \"" + key + "\" in " + where + did_you_mean(key, allowed));
        std::string best = closest(key, allowed);
        if (!best.empty()) suggested_.insert(place(map) + best);
      }
    }
  }

  // Reports a missing required key, unless a misspelt key already pointed at it.
  void missing(const YAML::Node& map, const std::string& key, const std::string& where) {
    if (suggested_.count(place(map) + key)) return;
    error(map, where + ": missing required key \"" + key + "\"");
  }

  bool expect_map(const YAML::Node& n, const std::string& what) {
    if (n.IsMap()) return true;
    error(n, what + ": expected a mapping, got " + kind_name(n));
    return false;
  }

  std::optional<std::string> scalar(const YAML::Node& map, const std::string& key, bool required,
                                    const std::string& where) {
    YAML::Node n = map[key];
    if (!n.IsDefined() || n.IsNull()) {
      if (required) missing(map, key, where);
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      error(n, key + ": expected a string, got " + kind_name(n));
      return std::nullopt;
    }
    if (n.Scalar().empty()) {
      if (required) error(n, key + ": must not be empty");
      return std::nullopt;
    }
    // Escapes ("\0", "\x85") can put what the file itself may not hold into a value.
    const std::string& v = n.Scalar();
    if (!clean_text(v)) {
      error(n, key + ": contains a control character or bytes that are not UTF-8");
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> boolean(const YAML::Node& map, const std::string& key) {
    auto text = scalar(map, key, false, "");
    if (!text) return std::nullopt;
    std::string t = *text;
    if (t == "true" || t == "yes" || t == "on") return true;
    if (t == "false" || t == "no" || t == "off") return false;
    error(map[key], key + ": expected true or false, got \"" + t + "\"");
    return std::nullopt;
  }

  std::optional<Phase> phase(const YAML::Node& n, const std::string& what) {
    if (!n.IsScalar()) {
      error(n, what + ": expected a phase name, got " + kind_name(n));
      return std::nullopt;
    }
    auto p = parse_phase(n.Scalar());
    if (!p)
      error(n, what + ": unknown phase \"" + n.Scalar() + "\"" +
                   did_you_mean(n.Scalar(), phase_names()));
    return p;
  }

  // Table, column and type names: a single line of at most 63 bytes.
  void identifier(const YAML::Node& map, const std::string& key, bool required, std::string& out,
                  const std::string& where) {
    auto v = scalar(map, key, required, where);
    if (!v) return;
    if (v->size() > 63) {
      error(map[key], key + ": \"" + *v + "\" is longer than PostgreSQL's 63-byte limit");
    } else if (std::any_of(v->begin(), v->end(), [](char c) {
                 return c == '"' || static_cast<unsigned char>(c) < 0x20;
               })) {
      error(map[key], key + ": \"" + printable(*v) + "\" contains a quote or control character");
    } else {
      out = *v;
    }
  }

  // An SQL expression that tandem embeds in a function body.
  std::optional<std::string> expression(const YAML::Node& map, const std::string& key) {
    auto v = scalar(map, key, false, "");
    if (v && v->find(';') != std::string::npos) {
      error(map[key], key + ": expected one SQL expression, found ';'");
      return std::nullopt;
    }
    return v;
  }

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

  // `table` (with "schema.table" accepted as a shorthand) and `schema`.
  void table_ref(const YAML::Node& n, const std::string& where, std::string& schema,
                 std::string& table) {
    identifier(n, "table", true, table, where);
    identifier(n, "schema", false, schema, where);
    auto dot = table.find('.');
    if (dot != std::string::npos && !n["schema"].IsDefined()) {
      schema = table.substr(0, dot);
      table = table.substr(dot + 1);
    }
  }

  std::optional<std::string> type_name(const YAML::Node& n, bool required,
                                       const std::string& where) {
    auto t = scalar(n, "type", required, where);
    if (!t) return t;
    std::string problem = type_name_problem(*t);
    if (!problem.empty()) {
      error(n["type"], "type: \"" + *t + "\" is not a type name (" + problem + ")");
      return std::nullopt;
    }
    return t;
  }

  // An index access method: a plain name such as btree, gin or an extension's.
  void method_name(const YAML::Node& n, std::string& out) {
    auto m = scalar(n, "method", false, "create_index");
    if (!m) return;
    const bool plain =
        std::all_of(
            m->begin(), m->end(),
            [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }) &&
        !((*m)[0] >= '0' && (*m)[0] <= '9');
    if (!plain || m->size() > 63) {
      error(n["method"], "method: \"" + *m +
                             "\" is not an index method name (btree, hash, gist, spgist, gin, "
                             "brin, or one an extension adds)");
      return;
    }
    out = *m;
  }

  // A list of column names or expressions: [a, b] or a single scalar.
  std::vector<std::string> string_list(const YAML::Node& map, const std::string& key,
                                       const std::string& where) {
    std::vector<std::string> out;
    YAML::Node n = map[key];
    if (!n.IsDefined() || n.IsNull()) {
      missing(map, key, where);
      return out;
    }
    if (n.IsScalar()) {
      out.push_back(n.Scalar());
    } else if (n.IsSequence() && n.size() > 0) {
      for (const auto& item : n) {
        if (!item.IsScalar() || item.Scalar().empty()) {
          error(item, key + ": expected a column name or expression, got " + kind_name(item));
          continue;
        }
        out.push_back(item.Scalar());
      }
    } else if (n.IsSequence()) {
      error(n, key + ": the list is empty; name at least one column");
      return out;
    } else {
      error(n, key + ": expected a list of columns, got " + kind_name(n));
      return out;
    }
    for (const auto& c : out) {
      if (c.find(';') != std::string::npos) {
        error(n, key + ": expected column names or expressions, found ';'");
        break;
      }
    }
    return out;
  }

  std::optional<AlterColumnType> alter_column_type(const YAML::Node& n) {
    const std::string w = "alter_column_type";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "column", "type", "up", "down"}, w);
    size_t before = errors.size();
    AlterColumnType a;
    table_ref(n, w, a.schema, a.table);
    identifier(n, "column", true, a.column, w);
    if (auto t = type_name(n, true, w)) a.type = *t;
    a.up = expression(n, "up");
    a.down = expression(n, "down");
    if (errors.size() != before) return std::nullopt;
    return a;
  }

  std::optional<AddColumn> add_column(const YAML::Node& n) {
    const std::string w = "add_column";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(
        n, {"schema", "table", "column", "type", "backfill", "default", "unique", "not_null"}, w);
    size_t before = errors.size();
    AddColumn a;
    table_ref(n, w, a.schema, a.table);
    identifier(n, "column", true, a.column, w);
    if (auto t = type_name(n, true, w)) a.type = *t;
    if (!n["backfill"].IsDefined()) {
      missing(n, "backfill", w);
    } else if (auto e = expression(n, "backfill")) {
      a.backfill = *e;
    }
    a.default_value = expression(n, "default");
    if (auto u = boolean(n, "unique")) a.unique = *u;
    if (auto nn = boolean(n, "not_null")) a.not_null = *nn;
    if (errors.size() != before) return std::nullopt;
    return a;
  }

  std::optional<CreateIndex> create_index(const YAML::Node& n) {
    const std::string w = "create_index";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "name", "columns", "unique", "method", "where", "phase"}, w);
    size_t before = errors.size();
    CreateIndex c;
    table_ref(n, w, c.schema, c.table);
    identifier(n, "name", true, c.name, w);
    c.columns = string_list(n, "columns", w);
    if (auto u = boolean(n, "unique")) c.unique = *u;
    method_name(n, c.method);
    c.where = expression(n, "where");
    if (n["phase"].IsDefined()) {
      if (auto p = phase(n["phase"], "phase")) c.phase = *p;
    }
    if (errors.size() != before) return std::nullopt;
    return c;
  }

  std::optional<AddConstraint> add_constraint(const YAML::Node& n) {
    const std::string w = "add_constraint";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n,
               {"schema", "table", "name", "check", "foreign_key", "unique", "references",
                "referenced_columns", "on_delete"},
               w);
    size_t before = errors.size();
    AddConstraint c;
    table_ref(n, w, c.schema, c.table);
    identifier(n, "name", true, c.name, w);
    int kinds = n["check"].IsDefined() + n["foreign_key"].IsDefined() + n["unique"].IsDefined();
    if (kinds != 1) {
      error(n, "add_constraint: give exactly one of \"check\", \"foreign_key\" or \"unique\"");
      return std::nullopt;
    }
    if (n["check"].IsDefined()) {
      c.kind = AddConstraint::Kind::kCheck;
      if (auto e = expression(n, "check")) c.check = *e;
      if (c.check.empty() && errors.size() == before) error(n["check"], "check: must not be empty");
    } else if (n["unique"].IsDefined()) {
      c.kind = AddConstraint::Kind::kUnique;
      c.columns = string_list(n, "unique", w);
    } else {
      c.kind = AddConstraint::Kind::kForeignKey;
      c.columns = string_list(n, "foreign_key", w);
      std::string ref_schema = "public";
      std::string ref_table;
      identifier(n, "references", true, ref_table, w);
      auto dot = ref_table.find('.');
      if (dot != std::string::npos) {
        ref_schema = ref_table.substr(0, dot);
        ref_table = ref_table.substr(dot + 1);
      }
      c.references = qualified(ref_schema, ref_table);
      c.referenced_columns = string_list(n, "referenced_columns", w);
      on_delete(n, w, c.on_delete);
      if (c.columns.size() != c.referenced_columns.size() && errors.size() == before) {
        error(n, "add_constraint: foreign_key has " + std::to_string(c.columns.size()) +
                     " columns but referenced_columns has " +
                     std::to_string(c.referenced_columns.size()));
      }
    }
    if (errors.size() != before) return std::nullopt;
    return c;
  }

  std::optional<SetNotNull> set_not_null(const YAML::Node& n) {
    const std::string w = "set_not_null";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "column"}, w);
    size_t before = errors.size();
    SetNotNull s;
    table_ref(n, w, s.schema, s.table);
    identifier(n, "column", true, s.column, w);
    if (errors.size() != before) return std::nullopt;
    return s;
  }

  std::optional<DropColumn> drop_column(const YAML::Node& n) {
    const std::string w = "drop_column";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "column", "type", "down"}, w);
    size_t before = errors.size();
    DropColumn d;
    table_ref(n, w, d.schema, d.table);
    identifier(n, "column", true, d.column, w);
    d.type = type_name(n, false, w);
    d.down = expression(n, "down");
    if (d.down && !d.type && errors.size() == before) {
      error(n, "drop_column: \"down\" needs \"type\", the type the column is re-created with");
    }
    if (errors.size() != before) return std::nullopt;
    return d;
  }

  // A foreign key's ON DELETE action.
  void on_delete(const YAML::Node& n, const std::string& where, std::string& out) {
    auto d = scalar(n, "on_delete", false, where);
    if (!d) return;
    static const std::vector<std::string> kActions = {"no action", "restrict", "cascade",
                                                      "set null", "set default"};
    if (std::find(kActions.begin(), kActions.end(), *d) == kActions.end()) {
      error(n["on_delete"],
            "on_delete: unknown action \"" + *d + "\"" + did_you_mean(*d, kActions));
    } else {
      out = *d;
    }
  }

  // A relation name under `key`: "name" or "schema.name".
  bool relation(const YAML::Node& map, const std::string& key, bool required, std::string& schema,
                std::string& name, const std::string& where) {
    std::string v;
    identifier(map, key, required, v, where);
    if (v.empty()) return false;
    auto dot = v.find('.');
    if (dot != std::string::npos) {
      schema = v.substr(0, dot);
      v = v.substr(dot + 1);
    }
    name = v;
    return true;
  }

  std::optional<ViewName> compat_view(const YAML::Node& map, const std::string& where) {
    ViewName view;
    if (!relation(map, "compat_view", false, view.schema, view.name, where)) return std::nullopt;
    return view;
  }

  // A mapping of column names to SQL expressions, in file order.
  std::vector<std::pair<std::string, std::string>> column_map(const YAML::Node& map,
                                                              const std::string& key,
                                                              const std::string& where) {
    std::vector<std::pair<std::string, std::string>> out;
    YAML::Node n = map[key];
    if (!n.IsDefined() || n.IsNull()) {
      missing(map, key, where);
      return out;
    }
    if (!n.IsMap() || n.size() == 0) {
      error(n, key + ": expected a mapping of column names to SQL expressions, got " +
                   (n.IsMap() ? std::string("an empty mapping") : kind_name(n)));
      return out;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->first.IsScalar()) {
        error(it->first, key + ": column names must be plain names");
        continue;
      }
      size_t before = errors.size();
      if (it->first.Scalar().size() > 63 || it->first.Scalar().find('"') != std::string::npos) {
        error(it->first,
              key + ": \"" + printable(it->first.Scalar()) + "\" is not a usable column name");
        continue;
      }
      if (!it->second.IsScalar() || it->second.Scalar().empty()) {
        error(it->second, key + "." + it->first.Scalar() + ": expected an SQL expression, got " +
                              kind_name(it->second));
        continue;
      }
      const std::string& e = it->second.Scalar();
      if (e.find(';') != std::string::npos) {
        error(it->second,
              key + "." + it->first.Scalar() + ": expected one SQL expression, found ';'");
      } else if (!clean_text(e)) {
        error(it->second, key + "." + it->first.Scalar() +
                              ": contains a control character or bytes that are not UTF-8");
      }
      if (errors.size() == before) out.emplace_back(it->first.Scalar(), e);
    }
    return out;
  }

  std::optional<MoveColumn> move_column(const YAML::Node& n) {
    const std::string w = "move_column";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "column", "key", "to", "to_column", "compat_view"}, w);
    size_t before = errors.size();
    MoveColumn m;
    table_ref(n, w, m.schema, m.table);
    identifier(n, "column", true, m.column, w);
    m.key = string_list(n, "key", w);
    m.to_schema = m.schema;
    relation(n, "to", true, m.to_schema, m.to_table, w);
    identifier(n, "to_column", false, m.to_column, w);
    if (m.to_column.empty()) m.to_column = m.column;
    m.compat_view = compat_view(n, w);
    if (errors.size() == before && std::find(m.key.begin(), m.key.end(), m.column) != m.key.end()) {
      error(n["column"], "move_column: \"" + m.column + "\" is part of the key; it cannot move");
    }
    if (errors.size() != before) return std::nullopt;
    return m;
  }

  std::optional<CopyTable> copy_table(const YAML::Node& n) {
    const std::string w = "copy_table";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "to", "key", "up", "down", "create", "compat_view"}, w);
    size_t before = errors.size();
    CopyTable c;
    table_ref(n, w, c.schema, c.table);
    c.to_schema = c.schema;
    relation(n, "to", true, c.to_schema, c.to_table, w);
    c.key = string_list(n, "key", w);
    c.up = column_map(n, "up", w);
    if (n["down"].IsDefined()) c.down = column_map(n, "down", w);
    c.create = scalar(n, "create", false, w);
    c.compat_view = compat_view(n, w);
    if (c.compat_view && c.down.empty() && errors.size() == before) {
      error(n["compat_view"],
            "copy_table: compat_view needs \"down\", which gives the view its "
            "columns");
    }
    for (const auto* m : {&c.up, &c.down}) {
      for (const auto& [column, expr] : *m) {
        if (std::find(c.key.begin(), c.key.end(), column) != c.key.end()) {
          error(n, "copy_table: key column \"" + column +
                       "\" is copied as it is; leave it out of up and down");
        }
      }
    }
    if (errors.size() != before) return std::nullopt;
    return c;
  }

  std::optional<AddReference> add_reference(const YAML::Node& n) {
    const std::string w = "add_reference";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n,
               {"schema", "table", "column", "type", "via", "references", "referenced_column",
                "lookup", "on_delete", "not_null", "index", "drop_via", "compat_view"},
               w);
    size_t before = errors.size();
    AddReference a;
    table_ref(n, w, a.schema, a.table);
    identifier(n, "column", true, a.column, w);
    if (auto t = type_name(n, true, w)) a.type = *t;
    identifier(n, "via", true, a.via, w);
    a.references_schema = a.schema;
    relation(n, "references", true, a.references_schema, a.references, w);
    identifier(n, "referenced_column", true, a.referenced_column, w);
    identifier(n, "lookup", true, a.lookup, w);
    on_delete(n, w, a.on_delete);
    if (auto b = boolean(n, "not_null")) a.not_null = *b;
    if (auto b = boolean(n, "index")) a.index = *b;
    if (auto b = boolean(n, "drop_via")) a.drop_via = *b;
    a.compat_view = compat_view(n, w);
    if (errors.size() != before) return std::nullopt;
    return a;
  }

  std::optional<RenameColumn> rename_column(const YAML::Node& n) {
    const std::string w = "rename_column";
    if (!expect_map(n, w)) return std::nullopt;
    check_keys(n, {"schema", "table", "column", "to", "compat_view"}, w);
    size_t before = errors.size();
    RenameColumn r;
    table_ref(n, w, r.schema, r.table);
    identifier(n, "column", true, r.column, w);
    identifier(n, "to", true, r.to, w);
    r.compat_view = compat_view(n, w);
    if (errors.size() == before && r.column == r.to) {
      error(n["to"], "rename_column: \"to\" is the column's current name");
    }
    if (errors.size() != before) return std::nullopt;
    return r;
  }

  std::optional<SqlOperation> sql(const YAML::Node& n) {
    if (!expect_map(n, "sql")) return std::nullopt;
    check_keys(n, {"phase", "up", "down", "transaction", "lock"}, "sql");
    size_t before = errors.size();
    SqlOperation s;
    if (!n["phase"].IsDefined()) {
      missing(n, "phase", "sql");
    } else if (auto p = phase(n["phase"], "phase")) {
      s.phase = *p;
    }
    if (auto up = scalar(n, "up", true, "sql")) s.up = *up;
    s.down = scalar(n, "down", false, "sql");
    if (auto t = boolean(n, "transaction")) s.transaction = *t;
    s.lock = scalar(n, "lock", false, "sql");
    if (errors.size() != before) return std::nullopt;
    return s;
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
      auto keep = [&](auto parsed) {
        if (!parsed) return;
        o.op = *parsed;
        spec.operations.push_back(o);
      };
      if (op == "alter_column_type") {
        keep(alter_column_type(entry.second));
      } else if (op == "add_column") {
        keep(add_column(entry.second));
      } else if (op == "create_index") {
        keep(create_index(entry.second));
      } else if (op == "add_constraint") {
        keep(add_constraint(entry.second));
      } else if (op == "set_not_null") {
        keep(set_not_null(entry.second));
      } else if (op == "drop_column") {
        keep(drop_column(entry.second));
      } else if (op == "move_column") {
        keep(move_column(entry.second));
      } else if (op == "copy_table") {
        keep(copy_table(entry.second));
      } else if (op == "add_reference") {
        keep(add_reference(entry.second));
      } else if (op == "rename_column") {
        keep(rename_column(entry.second));
      } else if (op == "sql") {
        keep(sql(entry.second));
      } else {
        error(entry.first,
              "unknown operation \"" + op + "\"" + did_you_mean(op, operation_names()));
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
    // YAML allows no control characters in a stream but tab, CR and LF.
    size_t bad = invalid_utf8_at(text);
    for (size_t i = 0; i < text.size() && i < bad; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
        bad = i;
        break;
      }
    }
    if (bad != std::string::npos) {
      int line = 1, column = 1;
      for (size_t i = 0; i < bad; ++i) {
        if (text[i] == '\n') {
          ++line;
          column = 1;
        } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
          ++column;
        }
      }
      errors.push_back({{file_, line, column},
                        (static_cast<unsigned char>(text[bad]) < 0x80
                             ? "the file contains a control character (byte 0x"
                             : "the file is not valid UTF-8 (byte 0x") +
                            hex(static_cast<unsigned char>(text[bad]), 2) + ")"});
      return std::nullopt;
    }
    if (text.size() > kMaxSpecBytes) {
      errors.push_back({{file_, 1, 1},
                        "the spec is " + with_commas(static_cast<long long>(text.size())) +
                            " bytes; tandem reads specs of up to " + with_commas(kMaxSpecBytes) +
                            " bytes: split the migration into several"});
      return std::nullopt;
    }
    if (auto deep = too_deep_flow(text)) {
      errors.push_back({*deep, "nested more than " + std::to_string(kMaxDepth) +
                                   " levels deep; a migration spec needs a few"});
      return std::nullopt;
    }
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::DeepRecursion& e) {
      errors.push_back({{file_, e.mark.line + 1, e.mark.column + 1},
                        "YAML nested more than " + std::to_string(e.depth() - 1) +
                            " levels deep here; a migration spec nests " +
                            std::to_string(kMaxDepth) + " at most"});
      return std::nullopt;
    } catch (const YAML::ParserException& e) {
      errors.push_back({{file_, e.mark.line + 1, e.mark.column + 1}, "YAML syntax: " + e.msg});
      return std::nullopt;
    } catch (const YAML::Exception& e) {
      errors.push_back({{file_, 1, 1}, std::string("YAML: ") + e.what()});
      return std::nullopt;
    }
    if (root.IsNull() || !root.IsDefined()) {
      errors.push_back({{file_, 1, 1},
                        "the spec is empty; expected a mapping with \"name\" and "
                        "\"operations\""});
      return std::nullopt;
    }
    if (!root.IsMap()) {
      error(root, std::string("expected a mapping at the top level, got ") + kind_name(root));
      return std::nullopt;
    }
    if (!well_formed(root, 0)) return std::nullopt;
    check_keys(root, {"name", "description", "settings", "operations", "gates"}, "the spec");
    Spec spec;
    spec.file = file_;
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
    if (!errors.empty()) return std::nullopt;
    return spec;
  }

 private:
  std::optional<SourceLocation> too_deep_flow(const std::string& text) const {
    // yaml-cpp recurses once per level of a flow collection and gives up
    // only at about 500, far from the place.
    auto at = flow_nesting_deeper_than(text, kMaxDepth);
    if (!at) return std::nullopt;
    return SourceLocation{file_, at->first, at->second};
  }

  // Reports a key that a mapping holds twice (yaml-cpp keeps both and reads
  // the first) and nesting deeper than any spec needs. Returns false when
  // the tree is too deep to read further.
  bool well_formed(const YAML::Node& n, int depth) {
    if (depth > kMaxDepth) {
      error(n, "nested more than " + std::to_string(kMaxDepth) +
                   " levels deep; a migration spec needs a few");
      return false;
    }
    if (n.IsSequence()) {
      for (const auto& item : n) {
        if (!well_formed(item, depth + 1)) return false;
      }
    } else if (n.IsMap()) {
      std::map<std::string, SourceLocation> seen;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (it->first.IsScalar()) {
          auto [first, fresh] = seen.emplace(it->first.Scalar(), at(it->first));
          if (!fresh) {
            error(it->first, "duplicate key \"" + printable(it->first.Scalar()) + "\" (first at " +
                                 first->second.to_string() + "); a key may appear once");
          }
        }
        if (!well_formed(it->first, depth + 1) || !well_formed(it->second, depth + 1)) {
          return false;
        }
      }
    }
    return true;
  }

  static std::string place(const YAML::Node& n) {
    return std::to_string(n.Mark().line) + ":" + std::to_string(n.Mark().column) + ":";
  }

  std::string file_;
  std::set<std::string> suggested_;  // "line:column:key" of keys a typo pointed at
};

}  // namespace

SpecParseResult parse_spec(const std::string& text, const std::string& file) {
  Parser parser(file);
  SpecParseResult result;
  try {
    result.spec = parser.parse(text);
  } catch (const YAML::Exception& e) {
    parser.errors.push_back({{file, e.mark.line + 1, e.mark.column + 1}, e.msg});
    result.spec.reset();
  }
  result.errors = std::move(parser.errors);
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
