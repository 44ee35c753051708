#include "engine/shadow_samples.h"

namespace tandem {

SampleTally read_sample_tally(Connection& conn, const std::string& migration,
                              const std::string& step_id) {
  SampleTally t;
  if (conn.exec("SELECT to_regclass('tandem.shadow_samples') IS NULL").text(0, 0) == "t") return t;
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

}  // namespace tandem
