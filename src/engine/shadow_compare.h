// Comparison of the results of a shadow-read pair: the old query's and the
// new query's answers to the same parameters, read on one snapshot. Pure
// logic; the executor runs the queries.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tandem {

// One side's answer: its rows as text (NULL as nullopt), or the error it
// raised instead.
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<unsigned> types;  // PostgreSQL type OIDs, one per column
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::optional<std::string> sqlstate;  // set when the query failed
  std::string error;                    // its message
};

enum class CompareMode {
  kOrdered,    // row i with row i: the queries ORDER BY what the application relies on
  kUnordered,  // the same rows as a multiset, in any order
  kKeyed,      // rows matched by key columns; each column of each key compared
};

struct CompareRules {
  CompareMode mode = CompareMode::kUnordered;
  std::vector<std::string> key;     // kKeyed: column names (after `ignore`)
  std::vector<std::string> ignore;  // column names left out of both sides
  // Equalities the user asked for; by default a column's type must be the
  // same on both sides, and its values the same text.
  bool integer_width = false;  // smallint, integer and bigint are one type
  bool text_types = false;     // text, varchar, char (trailing blanks dropped) and name
  bool numeric_scale = false;  // numeric 1.50 equals 1.5
};

// "" when the two answers are the same under `rules`; otherwise a readable
// account of how they differ (which rows and columns, old and new values),
// at most about 2,000 bytes. Two failures are the same when their SQLSTATEs
// are; one failure against rows is a difference.
std::string compare_results(const QueryResult& old_side, const QueryResult& new_side,
                            const CompareRules& rules);

// A type's name for a report ("integer", "numeric"), or "type <oid>".
std::string type_name(unsigned oid);

}  // namespace tandem
