// Quoting: everything tandem puts between quotes goes through these, so no
// name or expression can end a quote that tandem opened.
#pragma once

#include <string>
#include <vector>

namespace tandem {

// Quotes an SQL identifier the way PostgreSQL's quote_ident does: bare when it
// is lower case, starts with a letter or underscore and is not a keyword that
// PostgreSQL reserves in any position (reserved, type or function name, or
// column name keywords: `time`, `values`, `user`...); quoted otherwise.
std::string quote_ident(const std::string& name);
// "schema"."table", each part quoted only when needed.
std::string qualified(const std::string& schema, const std::string& name);
// An SQL string literal, with quotes doubled. A text with a backslash becomes
// an E'...' literal with the backslashes doubled, as PostgreSQL's
// quote_literal does, so it reads the same whatever standard_conforming_strings
// is set to.
std::string quote_literal(const std::string& text);
// Each one a literal, separated by ", ": for IN (...) and ARRAY[...].
std::string quote_literals(const std::vector<std::string>& texts);
// `body` between dollar quotes whose tag does not occur in it: $tandem$ when
// the body holds no "$tandem$", else $tandem_1$, $tandem_2$... So a name or an
// expression inside a function body or a DO block can never end the quote.
std::string dollar_quote(const std::string& body);
// SQL rendering a key as text, "(v1,v2)": `columns` quoted, each prefixed.
std::string key_text(const std::vector<std::string>& columns, const std::string& prefix);

}  // namespace tandem
