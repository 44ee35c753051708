#include "engine/shadow_compare.h"

#include <algorithm>
#include <map>

namespace tandem {

namespace {

constexpr size_t kMaxReport = 2000;  // bytes of a diff
constexpr int kMaxListed = 5;        // rows or keys listed per kind of difference

using Row = std::vector<std::optional<std::string>>;

// Type OIDs (pg_type.h).
constexpr unsigned kInt2 = 21, kInt4 = 23, kInt8 = 20, kText = 25, kVarchar = 1043, kBpchar = 1042,
                   kName = 19, kNumeric = 1700;

// The class a type compares in: its own OID, or a shared one when the rules
// tolerate the difference.
unsigned type_class(unsigned oid, const CompareRules& rules) {
  if (rules.integer_width && (oid == kInt2 || oid == kInt4 || oid == kInt8)) return kInt8;
  if (rules.text_types && (oid == kText || oid == kVarchar || oid == kBpchar || oid == kName))
    return kText;
  return oid;
}

// A value as it compares: numeric without trailing fractional zeros, char
// without its padding, when the rules say so.
std::optional<std::string> normalized(const std::optional<std::string>& v, unsigned oid,
                                      const CompareRules& rules) {
  if (!v) return v;
  std::string s = *v;
  if (rules.numeric_scale && oid == kNumeric && s.find('.') != std::string::npos &&
      s.find_first_of("eEN") == std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    if (s == "-0") s = "0";
  }
  if (rules.text_types && oid == kBpchar) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
  }
  return s;
}

std::string shown(const std::optional<std::string>& v) {
  if (!v) return "NULL";
  std::string s = *v;
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return "'" + s + "'";
}

std::string shown_row(const Row& r) {
  std::string out = "(";
  for (size_t i = 0; i < r.size(); ++i) out += (i ? ", " : "") + shown(r[i]);
  return out + ")";
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

// One side with the ignored columns left out and its values normalised.
struct Side {
  std::vector<std::string> columns;
  std::vector<unsigned> types;
  std::vector<Row> rows;
};

Side project(const QueryResult& r, const CompareRules& rules) {
  std::vector<size_t> kept;
  for (size_t c = 0; c < r.columns.size(); ++c) {
    if (std::find(rules.ignore.begin(), rules.ignore.end(), r.columns[c]) == rules.ignore.end())
      kept.push_back(c);
  }
  Side s;
  for (size_t c : kept) {
    s.columns.push_back(r.columns[c]);
    s.types.push_back(c < r.types.size() ? r.types[c] : 0);
  }
  for (const auto& row : r.rows) {
    Row out;
    for (size_t i = 0; i < kept.size(); ++i)
      out.push_back(
          normalized(kept[i] < row.size() ? row[kept[i]] : std::nullopt, s.types[i], rules));
    s.rows.push_back(std::move(out));
  }
  return s;
}

class Report {
 public:
  void line(const std::string& text) {
    if (full_) return;
    if (out_.size() + text.size() + 1 > kMaxReport) {
      out_ += "...";
      full_ = true;
      return;
    }
    out_ += (out_.empty() ? "" : "\n") + text;
  }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
  bool full_ = false;
};

// Rows in `a` that `b` lacks, as a multiset difference (a row twice in `a`
// and once in `b` is listed once).
std::vector<Row> missing_from(const std::vector<Row>& a, const std::vector<Row>& b) {
  std::map<Row, int> count;
  for (const auto& r : b) ++count[r];
  std::vector<Row> out;
  for (const auto& r : a) {
    auto it = count.find(r);
    if (it != count.end() && it->second > 0) {
      --it->second;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

void list_rows(Report& report, const std::string& what, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  report.line(std::to_string(rows.size()) + " row" + (rows.size() == 1 ? "" : "s") + " " + what +
              ":");
  for (size_t i = 0; i < rows.size() && i < kMaxListed; ++i) report.line("  " + shown_row(rows[i]));
  if (rows.size() > kMaxListed) report.line("  ...");
}

// The columns of `row` that differ from `other`'s: "name: old X, new Y; ...".
std::string column_diffs(const Side& s, const Row& old_row, const Row& new_row) {
  std::string out;
  for (size_t c = 0; c < old_row.size(); ++c) {
    if (old_row[c] == new_row[c]) continue;
    out += (out.empty() ? "" : "; ") + s.columns[c] + ": old " + shown(old_row[c]) + ", new " +
           shown(new_row[c]);
  }
  return out;
}

void compare_ordered(Report& report, const Side& o, const Side& n) {
  int listed = 0;
  for (size_t i = 0; i < std::min(o.rows.size(), n.rows.size()); ++i) {
    if (o.rows[i] == n.rows[i]) continue;
    if (listed++ == kMaxListed) {
      report.line("...");
      break;
    }
    report.line("row " + std::to_string(i + 1) + ": " + column_diffs(o, o.rows[i], n.rows[i]));
  }
  if (o.rows.size() > n.rows.size()) {
    list_rows(report, "only in old (after row " + std::to_string(n.rows.size()) + ")",
              std::vector<Row>(o.rows.begin() + n.rows.size(), o.rows.end()));
  } else if (n.rows.size() > o.rows.size()) {
    list_rows(report, "only in new (after row " + std::to_string(o.rows.size()) + ")",
              std::vector<Row>(n.rows.begin() + o.rows.size(), n.rows.end()));
  }
}

void compare_keyed(Report& report, const Side& o, const Side& n, const CompareRules& rules) {
  std::vector<size_t> key;
  for (const auto& k : rules.key) {
    auto it = std::find(o.columns.begin(), o.columns.end(), k);
    if (it == o.columns.end()) {
      report.line("key column " + k + " is not in the results (" + join_names(o.columns) + ")");
      return;
    }
    key.push_back(static_cast<size_t>(it - o.columns.begin()));
  }
  auto key_of = [&](const Row& r) {
    Row k;
    for (size_t c : key) k.push_back(r[c]);
    return k;
  };
  auto index = [&](const Side& s, const char* side) {
    std::map<Row, const Row*> out;
    for (const auto& r : s.rows) {
      if (!out.emplace(key_of(r), &r).second)
        report.line(std::string("key ") + shown_row(key_of(r)) + " is twice in " + side);
    }
    return out;
  };
  const auto old_rows = index(o, "old");
  const auto new_rows = index(n, "new");
  std::vector<Row> only_old, only_new;
  int listed = 0;
  for (const auto& [k, row] : old_rows) {
    auto it = new_rows.find(k);
    if (it == new_rows.end()) {
      only_old.push_back(*row);
    } else if (*row != *it->second && listed++ < kMaxListed) {
      report.line("key " + shown_row(k) + ": " + column_diffs(o, *row, *it->second));
    }
  }
  if (listed > kMaxListed) report.line("... (" + std::to_string(listed) + " keys differ)");
  for (const auto& [k, row] : new_rows) {
    if (!old_rows.count(k)) only_new.push_back(*row);
  }
  list_rows(report, "only in old", only_old);
  list_rows(report, "only in new", only_new);
}

}  // namespace

std::string type_name(unsigned oid) {
  static const std::map<unsigned, const char*> kNames = {{16, "boolean"},
                                                         {kInt2, "smallint"},
                                                         {kInt4, "integer"},
                                                         {kInt8, "bigint"},
                                                         {kText, "text"},
                                                         {kVarchar, "varchar"},
                                                         {kBpchar, "char"},
                                                         {kName, "name"},
                                                         {kNumeric, "numeric"},
                                                         {700, "real"},
                                                         {701, "double precision"},
                                                         {1082, "date"},
                                                         {1114, "timestamp"},
                                                         {1184, "timestamptz"},
                                                         {2950, "uuid"},
                                                         {114, "json"},
                                                         {3802, "jsonb"}};
  auto it = kNames.find(oid);
  return it != kNames.end() ? it->second : "type " + std::to_string(oid);
}

std::string compare_results(const QueryResult& old_side, const QueryResult& new_side,
                            const CompareRules& rules) {
  Report report;
  if (old_side.sqlstate || new_side.sqlstate) {
    if (old_side.sqlstate && new_side.sqlstate && *old_side.sqlstate == *new_side.sqlstate)
      return "";
    auto account = [](const QueryResult& r) {
      return r.sqlstate ? "failed [" + *r.sqlstate + "]: " + r.error
                        : "returned " + std::to_string(r.rows.size()) + " rows";
    };
    report.line("old " + account(old_side));
    report.line("new " + account(new_side));
    return report.text();
  }
  for (const auto& name : rules.ignore) {
    if (std::find(old_side.columns.begin(), old_side.columns.end(), name) ==
            old_side.columns.end() &&
        std::find(new_side.columns.begin(), new_side.columns.end(), name) ==
            new_side.columns.end()) {
      report.line("ignore: column " + name + " is in neither result");
    }
  }
  const Side o = project(old_side, rules);
  const Side n = project(new_side, rules);
  if (o.columns.size() != n.columns.size()) {
    report.line("old has " + std::to_string(o.columns.size()) + " columns (" +
                join_names(o.columns) + "), new " + std::to_string(n.columns.size()) + " (" +
                join_names(n.columns) + ")");
    return report.text();
  }
  for (size_t c = 0; c < o.columns.size(); ++c) {
    if (type_class(o.types[c], rules) != type_class(n.types[c], rules)) {
      report.line("column " + std::to_string(c + 1) + " (" + o.columns[c] + "): old " +
                  type_name(o.types[c]) + ", new " + type_name(n.types[c]));
    }
  }
  if (!report.text().empty()) return report.text();
  const size_t header_at = report.text().size();
  switch (rules.mode) {
    case CompareMode::kOrdered:
      compare_ordered(report, o, n);
      break;
    case CompareMode::kUnordered:
      list_rows(report, "only in old", missing_from(o.rows, n.rows));
      list_rows(report, "only in new", missing_from(n.rows, o.rows));
      break;
    case CompareMode::kKeyed:
      compare_keyed(report, o, n, rules);
      break;
  }
  if (report.text().size() == header_at) return "";
  return "old " + std::to_string(o.rows.size()) + " rows, new " + std::to_string(n.rows.size()) +
         " rows (" + join_names(o.columns) + ")\n" + report.text();
}

}  // namespace tandem
