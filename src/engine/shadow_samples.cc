#include "engine/shadow_samples.h"

#include <cstdio>
#include <sstream>

#include "tandem/plan.h"

namespace tandem {
namespace {

// Before state schema version 11 there are no samples to read.
bool has_samples(Connection& conn) {
  return conn.exec("SELECT to_regclass('tandem.shadow_samples') IS NOT NULL").text(0, 0) == "t";
}

}  // namespace

SampleTally read_sample_tally(Connection& conn, const std::string& migration,
                              const std::string& step_id) {
  SampleTally t;
  if (!has_samples(conn)) return t;
  // percentile_cont leaves out the NULL times of sets not compared yet.
  Rows r = conn.exec(
      "SELECT count(*), count(done_at), count(diff),"
      " percentile_cont(0.5) WITHIN GROUP (ORDER BY old_ms),"
      " percentile_cont(0.99) WITHIN GROUP (ORDER BY old_ms),"
      " percentile_cont(0.5) WITHIN GROUP (ORDER BY new_ms),"
      " percentile_cont(0.99) WITHIN GROUP (ORDER BY new_ms),"
      " (SELECT params::text || E'\\n' || diff FROM tandem.shadow_samples d"
      "   WHERE d.migration = $1 AND d.step_id = $2 AND d.diff IS NOT NULL"
      "   ORDER BY ordinal LIMIT 1)"
      " FROM tandem.shadow_samples WHERE migration = $1 AND step_id = $2",
      {migration, step_id});
  const auto ms = [&](size_t c) { return r.is_null(0, c) ? 0.0 : std::stod(r.text(0, c)); };
  t.drawn = r.integer(0, 0);
  t.compared = r.integer(0, 1);
  t.mismatches = r.integer(0, 2);
  t.old_p50 = ms(3);
  t.old_p99 = ms(4);
  t.new_p50 = ms(5);
  t.new_p99 = ms(6);
  t.first_difference = r.text(0, 7);
  return t;
}

nlohmann::json read_differences(Connection& conn, const std::string& migration,
                                const std::string& pair, int limit) {
  nlohmann::json out = nlohmann::json::array();
  if (!has_samples(conn)) return out;
  const std::string prefix(kReadsPrefix);
  Rows r =
      conn.exec("SELECT substr(step_id, " + std::to_string(prefix.size() + 1) +
                    "), ordinal, to_json(params)::text, diff, old_ms, new_ms,"
                    " to_char(done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                    "  FROM tandem.shadow_samples"
                    " WHERE migration = $1 AND diff IS NOT NULL AND ($2 = '' OR step_id = $4 || $2)"
                    " ORDER BY step_id, ordinal LIMIT $3::int",
                {migration, pair, std::to_string(limit), prefix});
  for (size_t i = 0; i < r.size(); ++i) {
    const auto ms = [&](size_t c) {
      return r.is_null(i, c) ? nlohmann::json() : nlohmann::json(std::stod(r.text(i, c)));
    };
    out.push_back({{"pair", r.text(i, 0)},
                   {"ordinal", r.integer(i, 1)},
                   {"params", nlohmann::json::parse(r.text(i, 2))},
                   {"diff", r.text(i, 3)},
                   {"old_ms", ms(4)},
                   {"new_ms", ms(5)},
                   {"compared_at", r.text(i, 6)}});
  }
  return out;
}

std::string format_differences(const nlohmann::json& diffs) {
  if (diffs.empty()) return "no differences\n";
  std::ostringstream out;
  const auto ms = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("-");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f ms", v.get<double>());
    return std::string(buf);
  };
  for (const auto& d : diffs) {
    std::vector<std::string> params;
    for (const auto& p : d["params"])
      params.push_back(p.is_string() ? p.get<std::string>() : "NULL");
    out << d["pair"].get<std::string>() << " #" << d["ordinal"].get<long long>() << " {";
    for (size_t i = 0; i < params.size(); ++i) out << (i ? ", " : "") << params[i];
    out << "} (old " << ms(d["old_ms"]) << ", new " << ms(d["new_ms"]) << ", at "
        << d["compared_at"].get<std::string>() << ")\n";
    std::istringstream lines(d["diff"].get<std::string>());
    for (std::string line; std::getline(lines, line);) out << "  " << line << "\n";
  }
  return out.str();
}

}  // namespace tandem
