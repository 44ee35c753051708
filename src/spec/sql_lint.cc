#include "spec/sql_lint.h"

#include <algorithm>
#include <cctype>

namespace tandem {
namespace {

struct Token {
  enum Kind { kWord, kQuoted, kPunct, kOther } kind;
  std::string text;  // a word upper-cased; a quoted identifier without its quotes
};

using Statement = std::vector<Token>;

// Splits `sql` into statements of tokens, skipping comments, strings and
// dollar-quoted bodies (each becomes one kOther token).
std::vector<Statement> statements(const std::string& sql) {
  std::vector<Statement> out(1);
  size_t i = 0;
  const size_t n = sql.size();
  while (i < n) {
    const char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 0;
      do {
        if (sql.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (sql.compare(i, 2, "*/") == 0) {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      } while (i < n && depth > 0);
    } else if (c == '\'') {
      // 'it''s'; E'\'' with backslashes when the word before was E.
      const bool escapes = !out.back().empty() && out.back().back().kind == Token::kWord &&
                           out.back().back().text == "E";
      ++i;
      while (i < n) {
        if (escapes && sql[i] == '\\') {
          i += 2;
        } else if (sql[i] == '\'' && i + 1 < n && sql[i + 1] == '\'') {
          i += 2;
        } else if (sql[i] == '\'') {
          ++i;
          break;
        } else {
          ++i;
        }
      }
      out.back().push_back({Token::kOther, "'...'"});
    } else if (c == '"') {
      ++i;
      std::string text;
      while (i < n) {
        if (sql[i] == '"' && i + 1 < n && sql[i + 1] == '"') {
          text += '"';
          i += 2;
        } else if (sql[i] == '"') {
          break;
        } else {
          text += sql[i++];
        }
      }
      ++i;
      out.back().push_back({Token::kQuoted, text});
    } else if (c == '$' && i + 1 < n &&
               (sql[i + 1] == '$' || std::isalpha(static_cast<unsigned char>(sql[i + 1])) ||
                sql[i + 1] == '_')) {
      size_t close = sql.find('$', i + 1);
      const std::string tag = close == std::string::npos ? "" : sql.substr(i, close - i + 1);
      const bool valid = !tag.empty() && std::all_of(tag.begin() + 1, tag.end() - 1, [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
      });
      if (!valid) {
        out.back().push_back({Token::kPunct, "$"});
        ++i;
        continue;
      }
      const size_t end = sql.find(tag, close + 1);
      i = end == std::string::npos ? n : end + tag.size();
      out.back().push_back({Token::kOther, "$$...$$"});
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
               static_cast<unsigned char>(c) >= 0x80) {
      std::string w;
      while (i < n && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' ||
                       sql[i] == '$' || static_cast<unsigned char>(sql[i]) >= 0x80)) {
        w += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
      }
      out.back().push_back({Token::kWord, w});
    } else if (c == ';') {
      ++i;
      if (!out.back().empty()) out.emplace_back();
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      while (i < n && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '.')) ++i;
      out.back().push_back({Token::kOther, "0"});
    } else {
      out.back().push_back({Token::kPunct, std::string(1, c)});
      ++i;
    }
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

bool word(const Statement& s, size_t i, const char* w) {
  return i < s.size() && s[i].kind == Token::kWord && s[i].text == w;
}

// The index of the first word `w` at or after `from`; npos when none.
size_t find_word(const Statement& s, size_t from, const char* w) {
  for (size_t i = from; i < s.size(); ++i) {
    if (word(s, i, w)) return i;
  }
  return std::string::npos;
}

bool has_word(const Statement& s, const char* w) { return find_word(s, 0, w) != std::string::npos; }

// A (maybe qualified) name at `i`, as the lint names it: lower case
// unless quoted. Advances `i` past it.
std::string name_at(const Statement& s, size_t& i) {
  std::string out;
  for (;;) {
    if (i >= s.size() || (s[i].kind != Token::kWord && s[i].kind != Token::kQuoted)) break;
    std::string part = s[i].text;
    if (s[i].kind == Token::kWord) {
      std::transform(part.begin(), part.end(), part.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    }
    out += part;
    ++i;
    if (i < s.size() && s[i].kind == Token::kPunct && s[i].text == ".") {
      out += ".";
      ++i;
    } else {
      break;
    }
  }
  return out;
}

// The last part of a qualified name.
std::string bare(const std::string& name) { return name.substr(name.rfind('.') + 1); }

// The table of `ALTER TABLE [IF EXISTS] [ONLY] name`, or "".
std::string altered_table(const Statement& s) {
  if (!word(s, 0, "ALTER") || !word(s, 1, "TABLE")) return "";
  size_t i = 2;
  if (word(s, i, "IF") && word(s, i + 1, "EXISTS")) i += 2;
  if (word(s, i, "ONLY")) ++i;
  return name_at(s, i);
}

// The statement's comma-separated actions after `from` (top level only).
std::vector<std::pair<size_t, size_t>> actions(const Statement& s, size_t from) {
  std::vector<std::pair<size_t, size_t>> out;
  int depth = 0;
  size_t start = from;
  for (size_t i = from; i < s.size(); ++i) {
    if (s[i].kind == Token::kPunct && s[i].text == "(") ++depth;
    if (s[i].kind == Token::kPunct && s[i].text == ")") --depth;
    if (depth == 0 && s[i].kind == Token::kPunct && s[i].text == ",") {
      out.emplace_back(start, i);
      start = i + 1;
    }
  }
  out.emplace_back(start, s.size());
  return out;
}

bool word_in(const Statement& s, size_t from, size_t to, const char* w) {
  for (size_t i = from; i < to && i < s.size(); ++i) {
    if (word(s, i, w)) return true;
  }
  return false;
}

const char* const kVolatile[] = {"RANDOM",           "GEN_RANDOM_UUID", "UUID_GENERATE_V1",
                                 "UUID_GENERATE_V4", "CLOCK_TIMESTAMP", "TIMEOFDAY",
                                 "NEXTVAL",          "TXID_CURRENT",    "UUIDV7"};
const char* const kSerial[] = {"SERIAL",  "BIGSERIAL", "SMALLSERIAL",
                               "SERIAL4", "SERIAL8",   "SERIAL2"};

}  // namespace

std::vector<SqlLintFinding> lint_sql(const std::string& sql, bool in_transaction,
                                     SqlLintContext& context) {
  std::vector<SqlLintFinding> out;
  std::set<std::string> strongly_locked;  // tables this SQL locks against writes
  for (const Statement& s : statements(sql)) {
    // CREATE TABLE: new and empty; nothing waits on it.
    if (word(s, 0, "CREATE")) {
      size_t i = find_word(s, 1, "TABLE");
      if (i != std::string::npos && i <= 3) {
        ++i;
        if (word(s, i, "IF") && word(s, i + 2, "EXISTS")) i += 3;
        context.created.insert(bare(name_at(s, i)));
        continue;
      }
    }
    // CREATE [UNIQUE] INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON table
    if (word(s, 0, "CREATE") &&
        (word(s, 1, "INDEX") || (word(s, 1, "UNIQUE") && word(s, 2, "INDEX")))) {
      const size_t on = find_word(s, 2, "ON");
      size_t t = on == std::string::npos ? s.size() : on + 1;
      if (word(s, t, "ONLY")) ++t;
      const std::string table = name_at(s, t);
      if (!has_word(s, "CONCURRENTLY") && !context.created.count(bare(table))) {
        out.push_back({"CREATE INDEX without CONCURRENTLY on " + table,
                       "it blocks every write to " + table + " for the whole build",
                       "the create_index operation (CONCURRENTLY, an invalid leftover repaired), "
                       "or CREATE INDEX CONCURRENTLY in a step with transaction: false"});
      }
      continue;
    }
    if (word(s, 0, "DROP") && word(s, 1, "INDEX") && !word(s, 2, "CONCURRENTLY")) {
      out.push_back({"DROP INDEX without CONCURRENTLY",
                     "it takes an ACCESS EXCLUSIVE lock on the index's table: every read and "
                     "write of it waits",
                     "the drop_index operation (DROP INDEX CONCURRENTLY, at cleanup), or DROP "
                     "INDEX CONCURRENTLY in a step with transaction: false"});
      continue;
    }
    if (word(s, 0, "REINDEX") && !has_word(s, "CONCURRENTLY")) {
      out.push_back({"REINDEX without CONCURRENTLY",
                     "it blocks writes to the table (and reads that use the index) until done",
                     "REINDEX ... CONCURRENTLY in a step with transaction: false"});
      continue;
    }
    if ((word(s, 0, "VACUUM") && has_word(s, "FULL")) || word(s, 0, "CLUSTER")) {
      out.push_back({word(s, 0, "CLUSTER") ? "CLUSTER" : "VACUUM FULL",
                     "it rewrites the table under an ACCESS EXCLUSIVE lock: every read and write "
                     "waits until it ends",
                     "pg_repack, or copy_table into a new table"});
      continue;
    }
    if (word(s, 0, "LOCK")) {
      out.push_back({"LOCK TABLE",
                     "an explicit lock holds the application back until the step commits",
                     "let each statement take the lock it needs, under lock_timeout"});
      continue;
    }
    const std::string table = altered_table(s);
    if (table.empty()) continue;
    if (context.created.count(bare(table))) continue;
    // The first action, after the table's name.
    size_t after = 2;
    if (word(s, after, "IF") && word(s, after + 1, "EXISTS")) after += 2;
    if (word(s, after, "ONLY")) ++after;
    name_at(s, after);
    if (word(s, after, "RENAME") || word(s, after, "SET") || word(s, after, "RESET") ||
        word(s, after, "OWNER")) {
      // Renames and table-level settings: brief metadata changes.
      if (word(s, after, "SET") &&
          (word(s, after + 1, "TABLESPACE") ||
           (word(s, after + 1, "LOGGED") || word(s, after + 1, "UNLOGGED")))) {
        out.push_back({"ALTER TABLE " + table + " SET " + s[after + 1].text,
                       "it rewrites " + table + " under an ACCESS EXCLUSIVE lock",
                       "copy_table into the new place, or pg_repack"});
      }
      continue;
    }
    bool locks = false;
    for (const auto& [from, to] : actions(s, after)) {
      // ALTER [COLUMN] c [SET DATA] TYPE t
      if (word(s, from, "ALTER")) {
        size_t c = from + 1;
        if (word(s, c, "COLUMN")) ++c;
        size_t k = c;
        const std::string column = name_at(s, k);
        if (word(s, k, "TYPE") || (word(s, k, "SET") && word(s, k + 1, "DATA"))) {
          out.push_back({"ALTER COLUMN " + column + " TYPE on " + table,
                         "a type change rewrites " + table +
                             " and its indexes under an ACCESS EXCLUSIVE lock (unless the new "
                             "type is binary-coercible, such as varchar(n) to text)",
                         "the alter_column_type operation (a shadow column, a batched backfill, "
                         "a swap in one short transaction)"});
        } else if (word(s, k, "SET") && word(s, k + 1, "NOT") && word(s, k + 2, "NULL")) {
          if (!context.validated.count(bare(table))) {
            out.push_back({"SET NOT NULL on " + table + "." + column,
                           "without a validated CHECK (" + column +
                               " IS NOT NULL) it scans all of " + table +
                               " under an ACCESS EXCLUSIVE lock",
                           "the set_not_null operation (a CHECK added NOT VALID, validated while "
                           "writes go on, then SET NOT NULL without a scan)"});
          }
        }
        locks = true;
        continue;
      }
      if (word(s, from, "ADD")) {
        const bool constraint = word_in(s, from, from + 2, "CONSTRAINT") ||
                                word(s, from + 1, "CHECK") || word(s, from + 1, "FOREIGN") ||
                                word(s, from + 1, "UNIQUE") || word(s, from + 1, "PRIMARY");
        const bool not_valid = word_in(s, from, to, "NOT") && word_in(s, from, to, "VALID");
        if (constraint) {
          const bool fk = word_in(s, from, to, "FOREIGN") || word_in(s, from, to, "REFERENCES");
          const bool check = word_in(s, from, to, "CHECK");
          const bool index = (word_in(s, from, to, "UNIQUE") || word_in(s, from, to, "PRIMARY")) &&
                             !word_in(s, from, to, "USING");
          if ((fk || check) && !not_valid) {
            out.push_back({std::string("ADD CONSTRAINT ... ") + (fk ? "FOREIGN KEY" : "CHECK") +
                               " without NOT VALID on " + table,
                           "it checks every row of " + table + " while holding its lock" +
                               (fk ? " (and the referenced table's)" : ""),
                           "add it NOT VALID, then VALIDATE CONSTRAINT in a later step (or the "
                           "add_constraint operation, which does both)"});
          } else if (index) {
            out.push_back({"ADD CONSTRAINT ... UNIQUE/PRIMARY KEY on " + table,
                           "it builds the index under an ACCESS EXCLUSIVE lock: every read and "
                           "write waits for the build",
                           "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX "
                           "(add_primary_key does this)"});
          }
        } else {
          // ADD [COLUMN] c type [DEFAULT expr] [REFERENCES t]
          bool is_volatile = false;
          const size_t d = find_word(s, from, "DEFAULT");
          if (d != std::string::npos && d < to) {
            for (const char* v : kVolatile) is_volatile = is_volatile || word_in(s, d, to, v);
          }
          for (const char* v : kSerial) is_volatile = is_volatile || word_in(s, from, to, v);
          if (is_volatile) {
            out.push_back({"ADD COLUMN with a volatile default on " + table,
                           "a default that differs per row (random(), a sequence, "
                           "clock_timestamp()...) rewrites " +
                               table + " under an ACCESS EXCLUSIVE lock; a constant one does not",
                           "the add_column operation (a constant or no default, then a batched "
                           "backfill)"});
          }
          if (word_in(s, from, to, "REFERENCES")) {
            out.push_back({"ADD COLUMN ... REFERENCES on " + table,
                           "the foreign key is checked at once, under locks on " + table +
                               " and on the referenced table",
                           "add the column, then the constraint NOT VALID and VALIDATE it (the "
                           "add_reference or add_constraint operation)"});
          }
        }
      }
      if (word(s, from, "VALIDATE")) context.validated.insert(bare(table));
      locks = locks || !word(s, from, "VALIDATE");
      // A foreign key locks the table it references too.
      const size_t ref = find_word(s, from, "REFERENCES");
      if (ref != std::string::npos && ref < to) {
        size_t k = ref + 1;
        const std::string other = name_at(s, k);
        if (!other.empty() && bare(other) != bare(table) && !context.created.count(bare(other))) {
          strongly_locked.insert(bare(other));
        }
      }
    }
    if (locks) strongly_locked.insert(bare(table));
  }
  if (in_transaction && strongly_locked.size() > 1) {
    std::string names;
    for (const auto& t : strongly_locked) names += (names.empty() ? "" : ", ") + t;
    out.push_back({"one step locks " + names,
                   "its transaction holds each lock until it commits, so writes to every one of "
                   "them queue behind the slowest, and applications that take them in another "
                   "order can deadlock with it",
                   "one table per step (a step each), or a built-in operation that orders its "
                   "locks"});
  }
  return out;
}

}  // namespace tandem
