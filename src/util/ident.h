#pragma once

#include <string>
#include <vector>

namespace tandem {

// Quotes an SQL identifier the way PostgreSQL's quote_ident does: bare when it
// is lower case, starts with a letter or underscore and is not a keyword.
std::string quote_ident(const std::string& name);
// "schema"."table", each part quoted only when needed.
std::string qualified(const std::string& schema, const std::string& name);
// An SQL string literal, with quotes doubled.
std::string quote_literal(const std::string& text);
// Each one a literal, separated by ", ": for IN (...) and ARRAY[...].
std::string quote_literals(const std::vector<std::string>& texts);

}  // namespace tandem
