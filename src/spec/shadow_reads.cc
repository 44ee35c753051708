// The spec's `shadow_reads:` list: golden-master query pairs.
#include "spec/shadow_reads.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "spec/schema.h"
#include "spec/suggest.h"
#include "util/ident.h"

namespace tandem {

namespace {

const std::vector<std::string> kTolerances = {"integer_width", "text_types", "numeric_scale"};
const std::vector<std::string> kModes = {"ordered", "unordered", "keyed"};

// The highest $N a query names (0 for none), outside quotes.
int highest_parameter(const std::string& sql) {
  int highest = 0;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '$' && i + 1 < sql.size() &&
               std::isdigit(static_cast<unsigned char>(sql[i + 1])) &&
               (i == 0 || !std::isalnum(static_cast<unsigned char>(sql[i - 1])))) {
      int n = 0;
      size_t j = i + 1;
      while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j])) && n < 100000)
        n = n * 10 + (sql[j++] - '0');
      highest = std::max(highest, n);
    }
  }
  return highest;
}

// One statement: text with no ';' but trailing ones (and blanks).
std::optional<std::string> query(SpecReader& r, const YAML::Node& n, const std::string& key,
                                 bool required, const std::string& where) {
  auto q = r.scalar(n, key, required, where);
  if (!q) return std::nullopt;
  std::string s = *q;
  while (!s.empty() && (s.back() == ';' || std::isspace(static_cast<unsigned char>(s.back()))))
    s.pop_back();
  char quote = 0;
  for (char c : s) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == ';') {
      r.error(n[key], key + ": one statement only; found ';' inside");
      return std::nullopt;
    }
  }
  return s;
}

void positive(SpecReader& r, const YAML::Node& n, const std::string& key, long long lowest,
              long long& out, const std::string& where) {
  r.whole_number(n, key, lowest, 100000000, out, where);
}

// `max_latency_ratio`: one ratio for p50 and p99, or {p50: x, p99: y}.
void latency_ratio(SpecReader& r, const YAML::Node& n, ShadowReadPair& p) {
  const YAML::Node v = n["max_latency_ratio"];
  if (!v.IsDefined()) return;
  const auto ratio = [&](const YAML::Node& node, double& out) {
    if (!node.IsScalar()) {
      r.error(node, "max_latency_ratio: expected a number, got " + kind_name(node));
      return;
    }
    char* end = nullptr;
    const double x = std::strtod(node.Scalar().c_str(), &end);
    if (end == node.Scalar().c_str() || *end != '\0' || !(x >= 1) || x > 1000) {
      r.error(node,
              "max_latency_ratio: expected a number from 1 to 1000 (the new query's time "
              "over the old one's), got \"" +
                  node.Scalar() + "\"");
      return;
    }
    out = x;
  };
  if (v.IsMap()) {
    r.check_keys(v, schema_keys("max_latency_ratio"), "max_latency_ratio");
    if (v["p50"].IsDefined()) ratio(v["p50"], p.max_p50_ratio);
    if (v["p99"].IsDefined()) ratio(v["p99"], p.max_p99_ratio);
  } else {
    ratio(v, p.max_p50_ratio);
    p.max_p99_ratio = p.max_p50_ratio;
  }
}

void parse_pair(SpecReader& r, const YAML::Node& n, Spec& spec) {
  const std::string w = "shadow_reads";
  if (!r.open_operation(n, w, schema_keys("shadow_reads"))) return;
  const size_t before = r.errors.size();
  ShadowReadPair p;
  p.where = r.at(n);
  r.identifier(n, "name", true, p.name, w);
  if (auto q = query(r, n, "old", true, w)) p.old_query = *q;
  if (auto q = query(r, n, "new", true, w)) p.new_query = *q;
  if (auto q = query(r, n, "write", false, w)) p.write = *q;
  if (auto q = query(r, n, "write_after_cutover", false, w)) p.write_after_cutover = *q;
  int params = -1;  // how many parameters each set has, when the spec says
  if (!n["params"].IsDefined()) {
    r.missing(n, "params", w);
  } else if (r.open_operation(n["params"], "params", schema_keys("params"))) {
    const YAML::Node ps = n["params"];
    if (ps["query"].IsDefined() == ps["table"].IsDefined()) {
      r.error(ps, "params: give either table (and columns) or query");
    } else if (ps["query"].IsDefined()) {
      if (auto q = query(r, ps, "query", true, "params")) p.query = *q;
      for (const char* k : {"columns", "seed", "schema"}) {
        if (ps[k].IsDefined()) r.error(ps[k], std::string("params: ") + k + " goes with table");
      }
    } else {
      std::string schema = "public", table;
      r.table_ref(ps, "params", schema, table);
      p.table = qualified(schema, table);
      p.columns = r.string_list(ps, "columns", "params");
      for (const auto& c : p.columns) {
        if (c.empty() || c.size() > 63 || c.find('"') != std::string::npos)
          r.error(ps["columns"], "params: columns: \"" + c + "\" is not a column name");
      }
      params = static_cast<int>(p.columns.size());
      long long seed = p.seed;
      positive(r, ps, "seed", 0, seed, "params");
      p.seed = static_cast<int>(seed);
    }
    long long sample = p.sample;
    positive(r, ps, "sample", 1, sample, "params");
    p.sample = static_cast<int>(std::min<long long>(sample, 1000000));
  }
  if (params >= 0) {
    for (const char* k : {"old", "new", "write", "write_after_cutover"}) {
      const std::string& q = std::string(k) == "old"     ? p.old_query
                             : std::string(k) == "new"   ? p.new_query
                             : std::string(k) == "write" ? p.write
                                                         : p.write_after_cutover;
      const int highest = highest_parameter(q);
      if (highest > params) {
        r.error(n[k], std::string(k) + ": uses $" + std::to_string(highest) + " but params gives " +
                          std::to_string(params) + " value" + (params == 1 ? "" : "s") +
                          " per sample (columns)");
      }
    }
  }
  if (auto m = r.scalar(n, "compare", false, w)) {
    if (std::find(kModes.begin(), kModes.end(), *m) == kModes.end()) {
      r.error(n["compare"], "compare: expected ordered, unordered or keyed, got \"" + *m + "\"" +
                                did_you_mean(*m, kModes));
    } else {
      p.compare = *m;
    }
  }
  if (n["key"].IsDefined()) p.key = r.string_list(n, "key", w);
  if (p.compare == "keyed" && p.key.empty() && r.errors.size() == before) {
    r.error(n, "shadow_reads: compare: keyed needs key: the columns rows are matched by");
  } else if (p.compare != "keyed" && n["key"].IsDefined()) {
    r.error(n["key"], "key: only compare: keyed matches rows by key");
  }
  if (n["ignore"].IsDefined()) p.ignore = r.string_list(n, "ignore", w);
  if (n["tolerate"].IsDefined()) {
    for (const auto& t : r.string_list(n, "tolerate", w)) {
      if (std::find(kTolerances.begin(), kTolerances.end(), t) == kTolerances.end()) {
        r.error(n["tolerate"],
                "tolerate: expected integer_width, text_types or numeric_scale, got \"" + t + "\"" +
                    did_you_mean(t, kTolerances));
      } else {
        p.tolerate.push_back(t);
      }
    }
  }
  positive(r, n, "max_mismatches", 0, p.max_mismatches, w);
  positive(r, n, "min_samples", 0, p.min_samples, w);
  latency_ratio(r, n, p);
  if (p.min_samples > p.sample && r.errors.size() == before) {
    r.error(n["min_samples"],
            "min_samples: " + std::to_string(p.min_samples) +
                " is more than params draws (sample: " + std::to_string(p.sample) + ")");
  }
  for (const auto& other : spec.shadow_reads) {
    if (other.name == p.name && !p.name.empty()) {
      r.error(n["name"], "name: \"" + p.name + "\" is the name of the pair at " +
                             other.where.to_string() + " too");
    }
  }
  if (r.errors.size() == before) spec.shadow_reads.push_back(std::move(p));
}

}  // namespace

void parse_shadow_reads(SpecReader& r, const YAML::Node& n, Spec& spec) {
  if (!n.IsSequence()) {
    r.error(n, "shadow_reads: expected a list of query pairs, got " + kind_name(n));
    return;
  }
  for (const auto& item : n) parse_pair(r, item, spec);
}

}  // namespace tandem
