// The lint of hand-written SQL (`sql` steps): statements that take a lock
// applications queue behind for longer than a moment, each with why and the
// online way to do the same (docs/spec.md, "Lint of sql steps"). It reads
// the text, not the database: comments, string literals, quoted
// identifiers and dollar-quoted bodies are skipped, not parsed.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace tandem {

struct SqlLintFinding {
  std::string what;     // "CREATE INDEX without CONCURRENTLY on orders"
  std::string why;      // what it does to the application
  std::string instead;  // the online way
  std::string to_string() const { return what + ": " + why + "; instead: " + instead; }
};

// What the lint remembers from one statement to the next, across the
// spec's sql steps in order: tables created by the spec (new and empty, so
// no lock on them matters) and tables with a CHECK constraint validated.
struct SqlLintContext {
  std::set<std::string> created;
  std::set<std::string> validated;
};

std::vector<SqlLintFinding> lint_sql(const std::string& sql, bool in_transaction,
                                     SqlLintContext& context);

}  // namespace tandem
