// What parsing a spec's mappings shares: keys, scalars, names, expressions
// and lists, read from YAML nodes with every problem recorded at its place
// (file:line:column). Parsing goes on after an error, so that one run reports
// all of them; a caller compares errors.size() before and after to know
// whether what it read is whole. Each operation's parse (src/ops/) uses it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tandem/spec.h"

namespace tandem {

// Control bytes shown as \xNN, so a message never carries them.
std::string printable(const std::string& s);
// "a mapping", "a list", "a scalar", "nothing".
std::string kind_name(const YAML::Node& n);
// UTF-8 without control characters other than tab and line breaks.
bool clean_text(const std::string& v);
// Why `t` is not a type name as SQL writes one, or "" when it is.
std::string type_name_problem(const std::string& t);

class SpecReader {
 public:
  explicit SpecReader(std::string file) : file_(std::move(file)) {}

  std::vector<SpecError> errors;

  // Where a node or a mark is; 1:1 for what has no place in the file (a
  // node that is not there, a mark yaml-cpp left unset).
  SourceLocation at(const YAML::Node& n) const;
  SourceLocation at(const YAML::Mark& m) const;
  void error(const YAML::Node& n, const std::string& message);
  // Reports keys of `map` that are not in `allowed`, with "did you mean".
  void check_keys(const YAML::Node& map, const std::vector<std::string>& allowed,
                  const std::string& where);
  // Reports a missing required key, unless a misspelt key already pointed at it.
  void missing(const YAML::Node& map, const std::string& key, const std::string& where);
  bool expect_map(const YAML::Node& n, const std::string& what);
  // How every operation's parse begins: `n` must be a mapping (false when
  // it is not, with the error recorded) whose keys are among `allowed`
  // (each other key an error, with a suggestion).
  bool open_operation(const YAML::Node& n, const std::string& what,
                      const std::vector<std::string>& allowed) {
    if (!expect_map(n, what)) return false;
    check_keys(n, allowed, what);
    return true;
  }

  // A non-empty string of clean text under `key`; nullopt when absent (an
  // error when `required`) or unusable (an error).
  std::optional<std::string> scalar(const YAML::Node& map, const std::string& key, bool required,
                                    const std::string& where);
  // true/yes/on or false/no/off.
  std::optional<bool> boolean(const YAML::Node& map, const std::string& key);
  std::optional<Phase> phase(const YAML::Node& n, const std::string& what);
  // Table, column and type names: a single line of at most 63 bytes, no quote.
  void identifier(const YAML::Node& map, const std::string& key, bool required, std::string& out,
                  const std::string& where);
  // A rename's `to` (an identifier), which must differ from `current`, the
  // name of the `what` ("column", "table"...) read before it.
  void new_name(const YAML::Node& map, const std::string& current, std::string& out,
                const std::string& where, const std::string& what);
  // One SQL expression (no ';'), which tandem embeds in a function body.
  std::optional<std::string> expression(const YAML::Node& map, const std::string& key);
  // A value that may be null (a default to drop, a comment to remove):
  // absent, nothing (reported when `required`); null, an empty inner value;
  // otherwise the text, read as an expression when `is_expression`.
  std::optional<std::optional<std::string>> value_or_null(const YAML::Node& map,
                                                          const std::string& key,
                                                          bool is_expression, bool required,
                                                          const std::string& where);
  // `table` (with "schema.table" accepted as a shorthand) and `schema`.
  void table_ref(const YAML::Node& n, const std::string& where, std::string& schema,
                 std::string& table);
  // `type`: a type name as SQL writes one.
  std::optional<std::string> type_name(const YAML::Node& n, bool required,
                                       const std::string& where);
  // `method`: an index access method (btree, gin, an extension's).
  void method_name(const YAML::Node& n, std::string& out);
  // A list of column names or expressions: [a, b] or a single scalar.
  std::vector<std::string> string_list(const YAML::Node& map, const std::string& key,
                                       const std::string& where);
  // A foreign key's `on_delete` action.
  void on_delete(const YAML::Node& n, const std::string& where, std::string& out);
  // `orphans`: fail, set_null or delete.
  void orphans(const YAML::Node& n, const std::string& where, Orphans& out);
  // A relation name under `key`: "name" or "schema.name".
  bool relation(const YAML::Node& map, const std::string& key, bool required, std::string& schema,
                std::string& name, const std::string& where);
  std::optional<ViewName> compat_view(const YAML::Node& map, const std::string& where);
  // A mapping of column names to SQL expressions, in file order; `noun` and
  // `values` name them in errors (a transform's tables and their column
  // definitions).
  std::vector<std::pair<std::string, std::string>> column_map(
      const YAML::Node& map, const std::string& key, const std::string& where,
      const std::string& noun = "column", const std::string& values = "SQL expression");

  // Reads `text` as one YAML document whose top level is a mapping (a list
  // when `sequence`): refuses control characters, bytes that are not
  // UTF-8, more than kMaxSpecBytes, nesting deeper than kMaxDepth and
  // duplicate keys, each an error located in the file. `noun` ("spec") and
  // `what` ("migration spec") name the file in messages; `expected` is what
  // an empty one should have held. nullopt when unusable.
  std::optional<YAML::Node> load_document(const std::string& text, const std::string& noun,
                                          const std::string& what, const std::string& expected,
                                          bool sequence = false);
  // A whole number from `lowest` to `highest` under `key`, into `out`; an
  // error when it is something else. Absent: `out` is left as it is.
  void whole_number(const YAML::Node& map, const std::string& key, long long lowest,
                    long long highest, long long& out, const std::string& where);

  // Limits that keep a hostile or generated file from taking the parser's
  // time, memory or stack: no hand-written file comes near them.
  static constexpr size_t kMaxSpecBytes = 1 << 20;
  static constexpr int kMaxDepth = 32;

 protected:
  static std::string place(const YAML::Node& n);
  std::optional<SourceLocation> too_deep_flow(const std::string& text) const;
  // Reports a key that a mapping holds twice (yaml-cpp keeps both and reads
  // the first) and nesting deeper than any `what` needs. Returns false when
  // the tree is too deep to read further.
  bool well_formed(const YAML::Node& n, int depth, const std::string& what);
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::set<std::string> suggested_;  // "line:column:key" of keys a typo pointed at
};

}  // namespace tandem
