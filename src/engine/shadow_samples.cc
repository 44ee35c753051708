#include "engine/shadow_samples.h"

#include <cstdio>
#include <sstream>

#include "engine/state_store.h"
#include "tandem/plan.h"
#include "util/json.h"
#include "util/text.h"

namespace tandem {
namespace {

// Whether a table of the state schema exists: shadow_samples came with
// version 11, shadow_rounds with 12.
bool has_table(Connection& conn, const std::string& table) {
  return conn.exec("SELECT to_regclass($1) IS NOT NULL", {table}).text(0, 0) == "t";
}

// What a step_done event and a round report say of a pair's sets.
nlohmann::json counts_json(long long samples, long long mismatches, double old_p50, double old_p99,
                           double new_p50, double new_p99) {
  return {{"samples", samples},
          {"mismatches", mismatches},
          {"old_ms", {{"p50", old_p50}, {"p99", old_p99}}},
          {"new_ms", {{"p50", new_p50}, {"p99", new_p99}}}};
}

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.2f ms" : "%.0f ms", ms);
  return buf;
}

std::string format_ratio(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fx", x);
  return buf;
}

// The latencies a gate judges, p50 then p99.
struct Latency {
  const char* name;
  double old_ms, new_ms, most;
};
std::vector<Latency> latencies(const ShadowReadPair& pair, const SampleTally& t) {
  return {{"p50", t.old_p50, t.new_p50, pair.max_p50_ratio},
          {"p99", t.old_p99, t.new_p99, pair.max_p99_ratio}};
}

}  // namespace

SampleTally read_sample_tally(Connection& conn, const std::string& migration,
                              const std::string& step_id, int round) {
  SampleTally t;
  if (!has_table(conn, "tandem.shadow_samples")) return t;
  // percentile_cont leaves out the NULL times of sets not compared yet.
  Rows r = conn.exec(
      "SELECT count(*), count(done_at), count(diff),"
      " percentile_cont(0.5) WITHIN GROUP (ORDER BY old_ms),"
      " percentile_cont(0.99) WITHIN GROUP (ORDER BY old_ms),"
      " percentile_cont(0.5) WITHIN GROUP (ORDER BY new_ms),"
      " percentile_cont(0.99) WITHIN GROUP (ORDER BY new_ms),"
      " (SELECT params::text || E'\\n' || diff FROM tandem.shadow_samples d"
      "   WHERE d.migration = $1 AND d.step_id = $2 AND d.round = $3::int"
      "     AND d.diff IS NOT NULL ORDER BY ordinal LIMIT 1)"
      " FROM tandem.shadow_samples WHERE migration = $1 AND step_id = $2 AND round = $3::int",
      {migration, step_id, std::to_string(round)});
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
  if (!has_table(conn, "tandem.shadow_samples")) return out;
  const std::string prefix(kReadsPrefix);
  Rows r =
      conn.exec("SELECT substr(step_id, " + std::to_string(prefix.size() + 1) +
                    "), ordinal, to_json(params)::text, diff, old_ms, new_ms,"
                    " to_char(done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
                    " round FROM tandem.shadow_samples"
                    " WHERE migration = $1 AND diff IS NOT NULL AND ($2 = '' OR step_id = $4 || $2)"
                    " ORDER BY step_id, round, ordinal LIMIT $3::int",
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
                   {"compared_at", r.text(i, 6)},
                   {"round", r.integer(i, 7)}});
  }
  return out;
}

std::string gate_verdict(const ShadowReadPair& pair, const SampleTally& t) {
  if (t.mismatches > pair.max_mismatches) {
    return std::to_string(t.mismatches) + " of " + std::to_string(t.drawn) +
           " parameter sets answered differently (at most " + std::to_string(pair.max_mismatches) +
           " allowed); the first, " + t.first_difference;
  }
  if (t.drawn < pair.min_samples) {
    return std::to_string(t.drawn) + " parameter sets drawn, fewer than min_samples (" +
           std::to_string(pair.min_samples) + ")";
  }
  for (const auto& l : latencies(pair, t)) {
    if (l.most > 0 && l.old_ms > 0 && l.new_ms > l.most * l.old_ms) {
      return "the new query's " + std::string(l.name) + " is " + format_ms(l.new_ms) + ", " +
             format_ratio(l.new_ms / l.old_ms) + " the old query's " + format_ms(l.old_ms) +
             " over " + std::to_string(t.drawn) + " parameter sets (max_latency_ratio " + l.name +
             ": " + format_ratio(l.most) + ")";
    }
  }
  return "";
}

RoundPair round_pair(const ShadowReadPair& pair, const SampleTally& t) {
  RoundPair p;
  p.pair = pair.name;
  p.samples = t.drawn;
  p.mismatches = t.mismatches;
  p.old_p50 = t.old_p50;
  p.old_p99 = t.old_p99;
  p.new_p50 = t.new_p50;
  p.new_p99 = t.new_p99;
  p.verdict = gate_verdict(pair, t);
  return p;
}

RoundReport read_last_round(Connection& conn, const std::string& migration,
                            const std::vector<ShadowReadPair>& pairs, std::string* finished_at) {
  RoundReport out;
  if (!has_table(conn, "tandem.shadow_rounds")) return out;
  Rows r =
      conn.exec("SELECT round, " + rfc3339_sql("finished_at") +
                    " FROM tandem.shadow_rounds"
                    " WHERE migration = $1 AND finished_at IS NOT NULL ORDER BY round DESC LIMIT 1",
                {migration});
  if (r.empty()) return out;
  out.round = static_cast<int>(r.integer(0, 0));
  if (finished_at) *finished_at = r.text(0, 1);
  for (const auto& pair : pairs) {
    const std::string step_id = std::string(kReadsPrefix) + pair.name;
    out.pairs.push_back(round_pair(pair, read_sample_tally(conn, migration, step_id, out.round)));
  }
  return out;
}

nlohmann::json round_json(const RoundReport& r, const std::string& finished_at) {
  nlohmann::json pairs = nlohmann::json::object();
  for (const auto& p : r.pairs) {
    pairs[p.pair] =
        counts_json(p.samples, p.mismatches, p.old_p50, p.old_p99, p.new_p50, p.new_p99);
    pairs[p.pair]["verdict"] = text_or_null(p.verdict);
  }
  nlohmann::json out = {{"round", r.round}, {"passed", r.passed()}, {"pairs", pairs}};
  if (!finished_at.empty()) out["finished_at"] = finished_at;
  return out;
}

std::string tally_summary(const SampleTally& t) {
  return with_commas(t.drawn) + " parameter sets, " + std::to_string(t.mismatches) +
         " answered differently; old query p50 " + format_ms(t.old_p50) + " p99 " +
         format_ms(t.old_p99) + ", new query p50 " + format_ms(t.new_p50) + " p99 " +
         format_ms(t.new_p99);
}

nlohmann::json tally_json(const SampleTally& t) {
  return counts_json(t.drawn, t.mismatches, t.old_p50, t.old_p99, t.new_p50, t.new_p99);
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
    const long long round = d.value("round", 0LL);
    out << d["pair"].get<std::string>();
    if (round) out << " round " << round;
    out << " #" << d["ordinal"].get<long long>() << " {";
    for (size_t i = 0; i < params.size(); ++i) out << (i ? ", " : "") << params[i];
    out << "} (old " << ms(d["old_ms"]) << ", new " << ms(d["new_ms"]) << ", at "
        << d["compared_at"].get<std::string>() << ")\n";
    std::istringstream lines(d["diff"].get<std::string>());
    for (std::string line; std::getline(lines, line);) out << "  " << line << "\n";
  }
  return out.str();
}

}  // namespace tandem
