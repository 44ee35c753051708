// What a shadow-read step's samples say, read from tandem.shadow_samples:
// the gate (shadow_read_step.cc) and `tandemd status` read it the same way.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "db/connection.h"
#include "engine/shadow_compare.h"
#include "tandem/run.h"
#include "tandem/spec.h"

namespace tandem {

// The comparison rules a pair's spec asks for (compare, key, ignore, tolerate).
CompareRules pair_rules(const ShadowReadPair& pair);

// One parameter set of `pair` answered both ways on one REPEATABLE READ
// snapshot (its write probe first; a transaction with a probe is never
// committed), `limits` setting the transaction's timeouts: the difference
// ("" when alike, the probe's failure first) and each side's time.
struct SetOutcome {
  std::string diff;
  double old_ms = 0, new_ms = 0;
};
SetOutcome compare_set(Connection& conn, const ShadowReadPair& pair, const CompareRules& rules,
                       const std::vector<std::string>& params,
                       const std::function<void(Transaction&)>& limits);

struct SampleTally {
  long long drawn = 0, compared = 0, mismatches = 0;
  // Each side's p50 and p99 in milliseconds over the sets compared; 0
  // before the first comparison.
  double old_p50 = 0, old_p99 = 0, new_p50 = 0, new_p99 = 0;
  std::string first_difference;  // "{params}\n<diff>" of the first, or ""
};

// One query over the samples of one round (0: the shadow_read phase's; see
// docs/spec.md); an empty tally when the state schema predates version 11.
SampleTally read_sample_tally(Connection& conn, const std::string& migration,
                              const std::string& step_id, int round);

// Why `pair`'s gate fails over `t`, or "": more differences than
// max_mismatches, fewer sets than min_samples, or a latency ratio over
// max_latency_ratio, checked in that order.
std::string gate_verdict(const ShadowReadPair& pair, const SampleTally& t);
// A pair's part of a round: its tally and the gate's verdict over it.
RoundPair round_pair(const ShadowReadPair& pair, const SampleTally& t);

// The last finished round (> 0) of the migration's pairs (those of
// `pairs`, in that order), with when it finished (ISO 8601 UTC); round 0
// and no pairs when none has finished (or before state schema version 12).
RoundReport read_last_round(Connection& conn, const std::string& migration,
                            const std::vector<ShadowReadPair>& pairs, std::string* finished_at);
// {"round", "passed", "pairs": {name: {"samples", "mismatches", "old_ms",
// "new_ms", "verdict"}}}, and "finished_at" when it is given.
nlohmann::json round_json(const RoundReport& r, const std::string& finished_at);

// "1,000 parameter sets, 0 answered differently; old query p50 ... p99 ...,
// new query p50 ... p99 ..."
std::string tally_summary(const SampleTally& t);
// {"samples", "mismatches", "old_ms": {"p50", "p99"}, "new_ms": {...}}
nlohmann::json tally_json(const SampleTally& t);

// The parameter sets whose old and new answers differed, first drawn first:
// up to `limit`, of one pair (`pair` its name) or of every pair (""). Each:
// {"pair", "round", "ordinal", "params" (array of text), "diff" (the
// readable difference), "old_ms", "new_ms", "compared_at"}. An empty array before
// state schema version 11.
nlohmann::json read_differences(Connection& conn, const std::string& migration,
                                const std::string& pair, int limit);

// Those differences for a terminal: per set, "pair #ordinal {params} (old
// 1.20 ms, new 0.81 ms, at ...)" and the difference indented under it; "no
// differences" when there are none.
std::string format_differences(const nlohmann::json& diffs);

}  // namespace tandem
