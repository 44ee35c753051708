// What a shadow-read step's samples say, read from tandem.shadow_samples:
// the gate (shadow_read_step.cc) and `tandemd status` read it the same way.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "db/connection.h"

namespace tandem {

struct SampleTally {
  long long drawn = 0, compared = 0, mismatches = 0;
  // Each side's p50 and p99 in milliseconds over the sets compared; 0
  // before the first comparison.
  double old_p50 = 0, old_p99 = 0, new_p50 = 0, new_p99 = 0;
  std::string first_difference;  // "{params}\n<diff>" of the first, or ""
};

// One query; an empty tally when the state schema predates version 11.
SampleTally read_sample_tally(Connection& conn, const std::string& migration,
                              const std::string& step_id);

// The parameter sets whose old and new answers differed, first drawn first:
// up to `limit`, of one pair (`pair` its name) or of every pair (""). Each:
// {"pair", "ordinal", "params" (array of text), "diff" (the readable
// difference), "old_ms", "new_ms", "compared_at"}. An empty array before
// state schema version 11.
nlohmann::json read_differences(Connection& conn, const std::string& migration,
                                const std::string& pair, int limit);

// Those differences for a terminal: per set, "pair #ordinal {params} (old
// 1.20 ms, new 0.81 ms, at ...)" and the difference indented under it; "no
// differences" when there are none.
std::string format_differences(const nlohmann::json& diffs);

}  // namespace tandem
