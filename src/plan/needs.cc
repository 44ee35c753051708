#include "plan/needs.h"

#include <cctype>

namespace tandem {

void Needs::on_table(const std::string& schema, const std::string& name) {
  table = schema + "." + name;
  needs.push_back(table);
}

void Needs::adds_column(const std::string& name) {
  produces.push_back(column(name));
  takes_column_name(name);
}

void Needs::reads(const std::string& expr, bool attached) {
  for (const auto& name : names_in(expr)) {
    needs.push_back(column(name));
    if (attached) attaches.insert(name);
  }
}

std::set<std::string> names_in(const std::string& expr) {
  std::set<std::string> out;
  for (size_t i = 0; i < expr.size();) {
    const char c = expr[i];
    if (c == '\'') {
      const size_t close = expr.find('\'', i + 1);
      i = close == std::string::npos ? expr.size() : close + 1;
    } else if (c == '"') {
      const size_t close = expr.find('"', i + 1);
      if (close == std::string::npos) break;
      out.insert(expr.substr(i + 1, close - i - 1));
      i = close + 1;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
               static_cast<unsigned char>(c) >= 0x80) {
      size_t j = i;
      std::string word;
      while (j < expr.size() &&
             (std::isalnum(static_cast<unsigned char>(expr[j])) || expr[j] == '_' ||
              expr[j] == '$' || static_cast<unsigned char>(expr[j]) >= 0x80)) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(expr[j])));
        ++j;
      }
      out.insert(word);
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

}  // namespace tandem
