// Shadow-read rounds at the cutover gate: while a migration waits for the
// approval of cutover, its query pairs are compared again on new samples,
// round after round, against live traffic (the daemon runs one every
// shadow_round_interval; `tandemd rounds` runs them by hand).
//
// A round is a row of tandem.shadow_rounds; its samples are those of
// tandem.shadow_samples with its number, drawn for every pair in the
// transaction that records the round, so a stopped or killed round goes on
// with the same sets and compares none twice. The round is finished (and its
// verdicts count) when every pair's sets are compared. Approving cutover
// looks at the last finished round: a pair whose gate failed there withholds
// the approval unless the operator accepts its differences.
#include <spdlog/spdlog.h>

#include "engine/executor.h"
#include "engine/shadow_samples.h"

namespace tandem {

namespace {

// Rounds whose every sample is kept; older ones keep their differences only.
constexpr int kRoundsKept = 10;

}  // namespace

std::vector<const Step*> ExecutorCore::pair_steps() const {
  std::vector<const Step*> out;
  for (const Step* s : plan_.steps_in(Phase::kShadowRead))
    if (s->kind == StepKind::kShadowRead) out.push_back(s);
  return out;
}

RoundReport ExecutorCore::shadow_round() {
  const std::vector<const Step*> steps = pair_steps();
  if (steps.empty()) {
    throw Error(ErrorKind::kBadInput,
                "migration \"" + spec_.name + "\" has no shadow_reads to compare in rounds");
  }
  SessionScope session(*this);
  std::optional<MigrationRecord> record;
  with_retries(
      "", "reading the migration", [&] { record = store_.load(*conn_); }, [] { return false; });
  if (!record || record->state != MigrationState::kWaitingApproval ||
      record->phase != Phase::kCutover) {
    throw Error(
        ErrorKind::kBadInput,
        "migration \"" + spec_.name + "\" is not waiting at the cutover gate (" +
            (record ? std::string(to_string(record->state)) + ", phase " + phase_name(record->phase)
                    : std::string("not started")) +
            "): rounds run only there");
  }
  RoundReport report;
  // The round left unfinished, or a new one drawn for every pair.
  with_retries(
      "", "starting a shadow-read round",
      [&] {
        Transaction tx(*conn_);
        set_step_timeouts(tx);
        Rows open = tx.exec(
            "SELECT round FROM tandem.shadow_rounds WHERE migration = $1"
            " AND finished_at IS NULL ORDER BY round DESC LIMIT 1",
            {spec_.name});
        report.round = static_cast<int>(
            open.empty() ? tx.exec("INSERT INTO tandem.shadow_rounds (migration, round)"
                                   " SELECT $1, coalesce(max(round), 0) + 1"
                                   " FROM tandem.shadow_rounds WHERE migration = $1"
                                   " RETURNING round",
                                   {spec_.name})
                               .integer(0, 0)
                         : open.integer(0, 0));
        for (const Step* s : steps) draw_sample(*s, report.round, tx);
        tx.commit();
      },
      [] { return false; });
  spdlog::info("migration {}: shadow-read round {}", spec_.name, report.round);
  for (const Step* s : steps) {
    if (!compare_samples(*s, report.round)) {
      report.stopped = true;
      return report;
    }
  }
  const std::string round = std::to_string(report.round);
  std::vector<SampleTally> tallies;
  with_retries(
      "", "finishing shadow-read round " + round,
      [&] {
        report.pairs.clear();
        tallies.clear();
        for (const Step* s : steps) {
          tallies.push_back(read_sample_tally(*conn_, spec_.name, s->id, report.round));
          report.pairs.push_back(round_pair(*s->reads, tallies.back()));
        }
        Transaction tx(*conn_);
        const long long changed =
            tx.exec(
                  "UPDATE tandem.shadow_rounds SET finished_at = now() WHERE migration = $1"
                  " AND round = $2::int AND finished_at IS NULL",
                  {spec_.name, round})
                .affected;
        if (changed != 1) {
          throw Error(ErrorKind::kFatal, "the end of shadow-read round " + round +
                                             " changed no row of the state store");
        }
        store_.event(*conn_, "round_done", Phase::kCutover, "", options_.actor,
                     round_json(report, ""));
        tx.exec(
            "DELETE FROM tandem.shadow_samples WHERE migration = $1 AND round > 0"
            " AND round <= $2::int - " +
                std::to_string(kRoundsKept) + " AND diff IS NULL",
            {spec_.name, round});
        tx.commit();
      },
      [&] {
        return conn_
                   ->exec(
                       "SELECT 1 FROM tandem.shadow_rounds WHERE migration = $1"
                       " AND round = $2::int AND finished_at IS NOT NULL",
                       {spec_.name, round})
                   .size() == 1;
      });
  for (size_t i = 0; i < report.pairs.size(); ++i) {
    const RoundPair& p = report.pairs[i];
    if (p.verdict.empty()) {
      spdlog::info("migration {}: round {} of {}: {}", spec_.name, round, p.pair,
                   tally_summary(tallies[i]));
    } else {
      spdlog::warn("migration {}: round {} of {} failed its gate: {}", spec_.name, round, p.pair,
                   p.verdict);
    }
  }
  return report;
}

std::string ExecutorCore::round_blocker() {
  if (spec_.shadow_reads.empty()) return "";
  const RoundReport last = read_last_round(*conn_, spec_.name, spec_.shadow_reads, nullptr);
  std::vector<const RoundPair*> accepted;
  for (const auto& p : last.pairs) {
    if (p.verdict.empty()) continue;
    if (!options_.accept_differences.count(p.pair)) {
      return "round " + std::to_string(last.round) + " of the shadow reads failed the gate of " +
             p.pair + ": " + p.verdict;
    }
    accepted.push_back(&p);
  }
  for (const RoundPair* p : accepted) {
    spdlog::warn("migration {}: round {} failed the gate of {} and {} accepted it: {}", spec_.name,
                 last.round, p->pair, options_.actor, p->verdict);
    store_.event(*conn_, "differences_accepted", Phase::kCutover, "", options_.actor,
                 {{"pair", p->pair}, {"round", last.round}, {"gate", p->verdict}});
  }
  return "";
}

}  // namespace tandem
