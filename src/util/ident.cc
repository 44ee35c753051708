#include "util/ident.h"

#include <algorithm>
#include <iterator>

namespace tandem {
namespace {

// Reserved and type-like keywords that cannot stand bare as column names.
constexpr const char* kKeywords[] = {"all",          "analyse",
                                     "analyze",      "and",
                                     "any",          "array",
                                     "as",           "asc",
                                     "asymmetric",   "authorization",
                                     "between",      "bigint",
                                     "binary",       "both",
                                     "case",         "cast",
                                     "check",        "collate",
                                     "column",       "constraint",
                                     "create",       "cross",
                                     "current_date", "current_role",
                                     "current_time", "current_timestamp",
                                     "current_user", "default",
                                     "deferrable",   "desc",
                                     "distinct",     "do",
                                     "else",         "end",
                                     "except",       "false",
                                     "fetch",        "for",
                                     "foreign",      "freeze",
                                     "from",         "full",
                                     "grant",        "group",
                                     "having",       "ilike",
                                     "in",           "initially",
                                     "inner",        "intersect",
                                     "into",         "is",
                                     "isnull",       "join",
                                     "lateral",      "leading",
                                     "left",         "like",
                                     "limit",        "localtime",
                                     "natural",      "not",
                                     "notnull",      "null",
                                     "offset",       "on",
                                     "only",         "or",
                                     "order",        "outer",
                                     "overlaps",     "placing",
                                     "primary",      "references",
                                     "returning",    "right",
                                     "select",       "table",
                                     "user"};

bool is_keyword(const std::string& s) {
  return std::any_of(std::begin(kKeywords), std::end(kKeywords),
                     [&](const char* k) { return s == k; });
}

}  // namespace

std::string quote_ident(const std::string& name) {
  bool bare = !name.empty() && ((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_');
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) bare = false;
  }
  if (bare && !is_keyword(name)) return name;
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string qualified(const std::string& schema, const std::string& name) {
  return quote_ident(schema) + "." + quote_ident(name);
}

std::string quote_literal(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string quote_literals(const std::vector<std::string>& texts) {
  std::string out;
  for (const auto& t : texts) out += (out.empty() ? "" : ", ") + quote_literal(t);
  return out;
}

}  // namespace tandem
