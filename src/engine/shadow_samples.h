// What a shadow-read step's samples say, read from tandem.shadow_samples:
// the gate (shadow_read_step.cc) and `tandemd status` read it the same way.
#pragma once

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

}  // namespace tandem
