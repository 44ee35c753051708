// The spec reader: what parsing a spec's mappings shares (keys, scalars,
// names, expressions, lists), each problem recorded with its place. The
// top level is in spec_parser.cc; each operation parses its own mapping
// with these (src/ops/).
#include "spec/reader.h"

#include <yaml-cpp/depthguard.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "spec/suggest.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

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

SourceLocation SpecReader::at(const YAML::Node& n) const {
  // Mark() of a node that is not there throws.
  if (!n.IsDefined()) return {file_, 1, 1};
  return at(n.Mark());
}

SourceLocation SpecReader::at(const YAML::Mark& m) const {
  if (m.line < 0 || m.column < 0) return {file_, 1, 1};
  return {file_, m.line + 1, m.column + 1};
}

void SpecReader::error(const YAML::Node& n, const std::string& message) {
  errors.push_back({at(n), message});
}

// Reports keys of `map` that are not in `allowed`.
void SpecReader::check_keys(const YAML::Node& map, const std::vector<std::string>& allowed,
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
void SpecReader::missing(const YAML::Node& map, const std::string& key, const std::string& where) {
  if (suggested_.count(place(map) + key)) return;
  error(map, where + ": missing required key \"" + key + "\"");
}

bool SpecReader::expect_map(const YAML::Node& n, const std::string& what) {
  if (n.IsMap()) return true;
  error(n, what + ": expected a mapping, got " + kind_name(n));
  return false;
}

std::optional<std::string> SpecReader::scalar(const YAML::Node& map, const std::string& key,
                                              bool required, const std::string& where) {
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

std::optional<bool> SpecReader::boolean(const YAML::Node& map, const std::string& key) {
  auto text = scalar(map, key, false, "");
  if (!text) return std::nullopt;
  std::string t = *text;
  if (t == "true" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "no" || t == "off") return false;
  error(map[key], key + ": expected true or false, got \"" + t + "\"");
  return std::nullopt;
}

std::optional<Phase> SpecReader::phase(const YAML::Node& n, const std::string& what) {
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
void SpecReader::identifier(const YAML::Node& map, const std::string& key, bool required,
                            std::string& out, const std::string& where) {
  auto v = scalar(map, key, required, where);
  if (!v) return;
  if (v->size() > 63) {
    error(map[key], key + ": \"" + *v + "\" is longer than PostgreSQL's 63-byte limit");
  } else if (std::any_of(v->begin(), v->end(),
                         [](char c) { return c == '"' || static_cast<unsigned char>(c) < 0x20; })) {
    error(map[key], key + ": \"" + printable(*v) + "\" contains a quote or control character");
  } else {
    out = *v;
  }
}

// An SQL expression that tandem embeds in a function body.
void SpecReader::new_name(const YAML::Node& map, const std::string& current, std::string& out,
                          const std::string& where, const std::string& what) {
  const size_t before = errors.size();
  identifier(map, "to", true, out, where);
  if (errors.size() == before && !current.empty() && out == current) {
    error(map["to"], where + ": \"to\" is the " + what + "'s current name");
  }
}

std::optional<std::optional<std::string>> SpecReader::value_or_null(const YAML::Node& map,
                                                                    const std::string& key,
                                                                    bool is_expression,
                                                                    bool required,
                                                                    const std::string& where) {
  if (!map[key].IsDefined()) {
    if (required) missing(map, key, where);
    return std::nullopt;
  }
  if (map[key].IsNull()) return std::optional<std::string>();
  return is_expression ? expression(map, key) : scalar(map, key, true, where);
}

std::optional<std::string> SpecReader::expression(const YAML::Node& map, const std::string& key) {
  auto v = scalar(map, key, false, "");
  if (v && v->find(';') != std::string::npos) {
    error(map[key], key + ": expected one SQL expression, found ';'");
    return std::nullopt;
  }
  return v;
}

// `table` (with "schema.table" accepted as a shorthand) and `schema`.
void SpecReader::table_ref(const YAML::Node& n, const std::string& where, std::string& schema,
                           std::string& table) {
  identifier(n, "table", true, table, where);
  identifier(n, "schema", false, schema, where);
  auto dot = table.find('.');
  if (dot != std::string::npos && !n["schema"].IsDefined()) {
    schema = table.substr(0, dot);
    table = table.substr(dot + 1);
  }
}

std::optional<std::string> SpecReader::type_name(const YAML::Node& n, bool required,
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
void SpecReader::method_name(const YAML::Node& n, std::string& out) {
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
std::vector<std::string> SpecReader::string_list(const YAML::Node& map, const std::string& key,
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

// A foreign key's ON DELETE action.
void SpecReader::orphans(const YAML::Node& n, const std::string& where, Orphans& out) {
  static const std::vector<std::string> kChoices = {"fail", "set_null", "delete"};
  auto o = scalar(n, "orphans", false, where);
  if (!o) return;
  if (*o == "set_null") {
    out = Orphans::kSetNull;
  } else if (*o == "delete") {
    out = Orphans::kDelete;
  } else if (*o == "fail") {
    out = Orphans::kFail;
  } else {
    const std::string hint = did_you_mean(*o, kChoices);  // a close one only: all are listed
    error(n["orphans"], "orphans: expected fail, set_null or delete, got \"" + *o + "\"" +
                            (hint.rfind("; did you mean", 0) == 0 ? hint : ""));
  }
}

void SpecReader::on_delete(const YAML::Node& n, const std::string& where, std::string& out) {
  auto d = scalar(n, "on_delete", false, where);
  if (!d) return;
  static const std::vector<std::string> kActions = {"no action", "restrict", "cascade", "set null",
                                                    "set default"};
  if (std::find(kActions.begin(), kActions.end(), *d) == kActions.end()) {
    error(n["on_delete"], "on_delete: unknown action \"" + *d + "\"" + did_you_mean(*d, kActions));
  } else {
    out = *d;
  }
}

// A relation name under `key`: "name" or "schema.name".
bool SpecReader::relation(const YAML::Node& map, const std::string& key, bool required,
                          std::string& schema, std::string& name, const std::string& where) {
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

std::optional<ViewName> SpecReader::compat_view(const YAML::Node& map, const std::string& where) {
  ViewName view;
  if (!relation(map, "compat_view", false, view.schema, view.name, where)) return std::nullopt;
  return view;
}

// A mapping of column names to SQL expressions, in file order.
std::vector<std::pair<std::string, std::string>> SpecReader::column_map(const YAML::Node& map,
                                                                        const std::string& key,
                                                                        const std::string& where,
                                                                        const std::string& noun,
                                                                        const std::string& values) {
  std::vector<std::pair<std::string, std::string>> out;
  // One SQL expression per name; or several column definitions.
  const bool singular = values.back() != 's';
  YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) {
    missing(map, key, where);
    return out;
  }
  if (!n.IsMap() || n.size() == 0) {
    error(n, key + ": expected a mapping of " + noun + " names to " + values +
                 (singular ? "s" : "") + ", got " +
                 (n.IsMap() ? std::string("an empty mapping") : kind_name(n)));
    return out;
  }
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!it->first.IsScalar()) {
      error(it->first, key + ": " + noun + " names must be plain names");
      continue;
    }
    size_t before = errors.size();
    if (it->first.Scalar().size() > 63 || it->first.Scalar().find('"') != std::string::npos) {
      error(it->first,
            key + ": \"" + printable(it->first.Scalar()) + "\" is not a usable " + noun + " name");
      continue;
    }
    if (!it->second.IsScalar() || it->second.Scalar().empty()) {
      error(it->second, key + "." + it->first.Scalar() + ": expected " + (singular ? "an " : "") +
                            values + ", got " + kind_name(it->second));
      continue;
    }
    const std::string& e = it->second.Scalar();
    if (e.find(';') != std::string::npos) {
      error(it->second, key + "." + it->first.Scalar() + ": expected " + (singular ? "one " : "") +
                            values + ", found ';'");
    } else if (!clean_text(e)) {
      error(it->second, key + "." + it->first.Scalar() +
                            ": contains a control character or bytes that are not UTF-8");
    }
    if (errors.size() == before) out.emplace_back(it->first.Scalar(), e);
  }
  return out;
}

std::string SpecReader::place(const YAML::Node& n) {
  return std::to_string(n.Mark().line) + ":" + std::to_string(n.Mark().column) + ":";
}

std::optional<YAML::Node> SpecReader::load_document(const std::string& text,
                                                    const std::string& noun,
                                                    const std::string& what,
                                                    const std::string& expected, bool sequence) {
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
    errors.push_back({{file(), line, column},
                      (static_cast<unsigned char>(text[bad]) < 0x80
                           ? "the file contains a control character (byte 0x"
                           : "the file is not valid UTF-8 (byte 0x") +
                          hex(static_cast<unsigned char>(text[bad]), 2) + ")"});
    return std::nullopt;
  }
  if (text.size() > kMaxSpecBytes) {
    errors.push_back({{file(), 1, 1},
                      "the " + noun + " is " + with_commas(static_cast<long long>(text.size())) +
                          " bytes; tandem reads " + noun + "s of up to " +
                          with_commas(kMaxSpecBytes) + " bytes" +
                          (noun == "spec" ? ": split the migration into several" : "")});
    return std::nullopt;
  }
  if (auto deep = too_deep_flow(text)) {
    errors.push_back({*deep, "nested more than " + std::to_string(kMaxDepth) + " levels deep; a " +
                                 what + " needs a few"});
    return std::nullopt;
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    errors.push_back({at(e.mark), "YAML nested more than " + std::to_string(e.depth() - 1) +
                                      " levels deep here; a " + what + " nests " +
                                      std::to_string(kMaxDepth) + " at most"});
    return std::nullopt;
  } catch (const YAML::ParserException& e) {
    errors.push_back({at(e.mark), "YAML syntax: " + e.msg});
    return std::nullopt;
  } catch (const YAML::Exception& e) {
    errors.push_back({{file(), 1, 1}, std::string("YAML: ") + e.what()});
    return std::nullopt;
  }
  if (root.IsNull() || !root.IsDefined()) {
    errors.push_back({{file(), 1, 1}, "the " + noun + " is empty; " + expected});
    return std::nullopt;
  }
  if (sequence ? !root.IsSequence() : !root.IsMap()) {
    error(root, std::string(sequence ? "expected a list" : "expected a mapping") +
                    " at the top level, got " + kind_name(root));
    return std::nullopt;
  }
  if (!well_formed(root, 0, what)) return std::nullopt;
  return root;
}

std::optional<SourceLocation> SpecReader::too_deep_flow(const std::string& text) const {
  // yaml-cpp recurses once per level of a flow collection and gives up
  // only at about 500, far from the place.
  auto at = flow_nesting_deeper_than(text, kMaxDepth);
  if (!at) return std::nullopt;
  return SourceLocation{file(), at->first, at->second};
}

// Reports a key that a mapping holds twice (yaml-cpp keeps both and reads
// the first) and nesting deeper than any spec needs. Returns false when
// the tree is too deep to read further.
bool SpecReader::well_formed(const YAML::Node& n, int depth, const std::string& what) {
  if (depth > kMaxDepth) {
    error(n, "nested more than " + std::to_string(kMaxDepth) + " levels deep; a " + what +
                 " needs a few");
    return false;
  }
  if (n.IsSequence()) {
    for (const auto& item : n) {
      if (!well_formed(item, depth + 1, what)) return false;
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
      if (!well_formed(it->first, depth + 1, what) || !well_formed(it->second, depth + 1, what)) {
        return false;
      }
    }
  }
  return true;
}

void SpecReader::whole_number(const YAML::Node& map, const std::string& key, long long lowest,
                              long long highest, long long& out, const std::string& where) {
  auto v = scalar(map, key, false, where);
  if (!v) return;
  try {
    size_t used = 0;
    const long long x = std::stoll(*v, &used);
    if (used != v->size() || x < lowest || x > highest) throw std::out_of_range(*v);
    out = x;
  } catch (const std::exception&) {
    error(map[key], key + ": expected a whole number from " + std::to_string(lowest) + " to " +
                        std::to_string(highest) + ", got \"" + printable(*v) + "\"");
  }
}

}  // namespace tandem
