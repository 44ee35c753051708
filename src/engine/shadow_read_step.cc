// The shadow-read step: a spec's query pair (ShadowReadPair) answered with
// the old and the new query for each sampled parameter set.
//
// The sample is drawn once, in the transaction that marks the step running,
// into tandem.shadow_samples, so a resumed run goes on with the same sets
// and never compares one twice. Each set is then compared in a READ ONLY
// REPEATABLE READ transaction of its own: both queries read one snapshot,
// and since tandem's dual-write keeps old and new storage in step inside
// every writer's transaction, any difference is the new query's (or the
// sync's), never a write that landed between the two reads. Its outcome
// (the time each side took and the difference, if any) is recorded in a
// second, short transaction; a crash between the two repeats that one set.
// Either query failing is an outcome too (a savepoint keeps the snapshot for
// the other side); the same failure on both sides is no difference.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/executor.h"
#include "engine/shadow_compare.h"
#include "engine/shadow_samples.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {

namespace {

constexpr int kSamplesPerRead = 100;  // pending samples read from the state at a time

}  // namespace

CompareRules pair_rules(const ShadowReadPair& pair) {
  CompareRules r;
  r.mode = pair.compare == "ordered" ? CompareMode::kOrdered
           : pair.compare == "keyed" ? CompareMode::kKeyed
                                     : CompareMode::kUnordered;
  r.key = pair.key;
  r.ignore = pair.ignore;
  for (const auto& t : pair.tolerate) {
    if (t == "integer_width") r.integer_width = true;
    if (t == "text_types") r.text_types = true;
    if (t == "numeric_scale") r.numeric_scale = true;
  }
  return r;
}

namespace {

// Runs one side under a savepoint: its rows, or the error it raised (the
// transaction, and its snapshot, go on). Errors that are no answer (a lost
// connection, a lock or statement timeout) propagate, to retry the set.
QueryResult answer_side(Transaction& tx, const std::string& sql,
                        const std::vector<std::string>& params, double& ms) {
  QueryResult out;
  tx.exec("SAVEPOINT tandem_side");
  const auto t0 = std::chrono::steady_clock::now();
  try {
    Rows r = tx.exec(sql, params);
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    out.columns = std::move(r.columns);
    out.types = std::move(r.types);
    out.rows = std::move(r.rows);
    tx.exec("RELEASE SAVEPOINT tandem_side");
  } catch (const Error& e) {
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (e.kind() != ErrorKind::kFatal || e.sqlstate().empty()) throw;
    out.sqlstate = e.sqlstate();
    out.error = e.what();
    tx.exec("ROLLBACK TO SAVEPOINT tandem_side");
  }
  return out;
}

}  // namespace

SetOutcome compare_set(Connection& conn, const ShadowReadPair& pair, const CompareRules& rules,
                       const std::vector<std::string>& params,
                       const std::function<void(Transaction&)>& limits) {
  SetOutcome out;
  double write_ms = 0;
  QueryResult old_side, new_side, written;
  {
    // With a write probe: the write first, then both reads, all on one
    // snapshot, and never committed (the destructor rolls it back).
    Transaction tx(conn);
    limits(tx);
    tx.exec(pair.write.empty() ? "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                               : "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    if (!pair.write.empty()) written = answer_side(tx, pair.write, params, write_ms);
    old_side = answer_side(tx, pair.old_query, params, out.old_ms);
    new_side = answer_side(tx, pair.new_query, params, out.new_ms);
    if (pair.write.empty()) tx.commit();
  }
  out.diff = compare_results(old_side, new_side, rules);
  if (written.sqlstate) {
    out.diff = "the write failed [" + *written.sqlstate + "]: " + written.error +
               (out.diff.empty() ? "" : "\n" + out.diff);
  }
  return out;
}

namespace {

std::string params_text(const std::vector<std::string>& params) {
  std::string out = "(";
  for (size_t i = 0; i < params.size(); ++i) out += (i ? ", " : "") + params[i];
  return out + ")";
}

}  // namespace

long long ExecutorCore::draw_sample(const Step& step, int round, Transaction& tx) {
  const std::vector<std::string> key = {spec_.name, step.id, std::to_string(round)};
  long long drawn = tx.exec(
                          "SELECT count(*) FROM tandem.shadow_samples"
                          " WHERE migration = $1 AND step_id = $2 AND round = $3::int",
                          key)
                        .integer(0, 0);
  if (drawn == 0) {
    drawn = tx.exec(step.sql, key).affected;
    spdlog::info("step {}: {} parameter sets drawn{}", step.id, with_commas(drawn),
                 round ? " for round " + std::to_string(round) : "");
  }
  return drawn;
}

bool ExecutorCore::compare_samples(const Step& step, int round) {
  // backfill_workers sessions compare the sets at once, each the sets whose
  // ordinal leaves its number modulo their count: worker lanes take shares
  // 1.., the executor's own session share 0.
  const int n = std::max(1, settings().backfill_workers);
  if (n == 1) return compare_share(main_, step, round, 1, 0);
  std::mutex error_mu;
  std::exception_ptr error;
  std::atomic<bool> stopped{false};
  const auto take = [&](Lane& lane, int share) {
    try {
      if (!compare_share(lane, step, round, n, share)) stopped = true;
    } catch (...) {
      std::lock_guard<std::mutex> l(error_mu);
      if (!error) error = std::current_exception();
      halt_workers_ = true;
    }
  };
  halt_workers_ = false;
  std::vector<std::thread> threads;
  for (int share = 1; share < n; ++share) {
    Lane& lane = worker_lane(static_cast<size_t>(share - 1));
    threads.emplace_back([&take, &lane, share, log = log_context()] {
      LogContextScope scope(log);
      take(lane, share);
    });
  }
  take(main_, 0);
  for (auto& t : threads) t.join();
  halt_workers_ = false;
  if (error) std::rethrow_exception(error);
  return !stopped.load();
}

bool ExecutorCore::compare_share(Lane& lane, const Step& step, int round, int shares, int share) {
  const ShadowReadPair& pair = *step.reads;
  const CompareRules rules = pair_rules(pair);
  const std::string round_text = std::to_string(round);
  const std::string pair_label = step.id.substr(kReadsPrefix.size());
  for (;;) {
    if (stop_requested()) return false;
    Rows pending;
    with_retries(
        lane, step.id, "step " + step.id,
        [&] {
          pending = lane.conn->exec(
              "SELECT ordinal, array_to_json(params)::text FROM tandem.shadow_samples"
              " WHERE migration = $1 AND step_id = $2 AND round = $3::int AND done_at IS NULL"
              " AND ordinal % $4::int = $5::int ORDER BY ordinal LIMIT " +
                  std::to_string(kSamplesPerRead),
              {spec_.name, step.id, round_text, std::to_string(shares), std::to_string(share)});
        },
        [] { return false; });
    if (pending.empty()) return true;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (stop_requested()) return false;
      const std::string ordinal = pending.text(i, 0);
      const std::vector<std::string> params =
          nlohmann::json::parse(pending.text(i, 1)).get<std::vector<std::string>>();
      const std::vector<std::string> id = {spec_.name, step.id, round_text, ordinal};
      with_retries(
          lane, step.id, "step " + step.id + " (sample " + ordinal + ")",
          [&] {
            const SetOutcome set = compare_set(*lane.conn, pair, rules, params,
                                               [&](Transaction& tx) { set_step_timeouts(tx); });
            const std::string& diff = set.diff;
            const double old_ms = set.old_ms, new_ms = set.new_ms;
            Transaction tx(*lane.conn);
            const long long changed =
                tx.exec(
                      "UPDATE tandem.shadow_samples SET done_at = now(), old_ms = $5,"
                      " new_ms = $6, diff = nullif($7, '') WHERE migration = $1"
                      " AND step_id = $2 AND round = $3::int AND ordinal = $4 AND done_at IS NULL",
                      {spec_.name, step.id, round_text, ordinal, std::to_string(old_ms),
                       std::to_string(new_ms), diff})
                    .affected;
            if (changed != 1) {
              throw Error(ErrorKind::kFatal, "the outcome of sample " + ordinal + " of step " +
                                                 step.id + " changed no row of the state store");
            }
            tx.commit();
            report([&](ProgressSink& p) {
              p.shadow_compared(pair_label, !diff.empty(), old_ms, new_ms);
            });
            if (!diff.empty()) {
              spdlog::warn("step {}{}: {} {} differs:\n{}", step.id,
                           round ? " round " + round_text : "", pair.name, params_text(params),
                           diff);
            }
          },
          [&] {
            return lane.conn
                       ->exec(
                           "SELECT 1 FROM tandem.shadow_samples WHERE migration = $1"
                           " AND step_id = $2 AND round = $3::int AND ordinal = $4"
                           " AND done_at IS NOT NULL",
                           id)
                       .size() == 1;
          });
    }
  }
}

bool ExecutorCore::run_shadow_read_step(const Step& step) {
  const ShadowReadPair& pair = *step.reads;
  // Differences the operator accepts: the failed gate's sample stands.
  const bool accepted = options_.accept_differences.count(pair.name) > 0;
  // The sample, drawn when the step first starts. A step that failed its
  // gate starts over with a fresh sample (its verdict is void), unless the
  // operator accepts what it found.
  with_retries(
      step.id, "step " + step.id,
      [&] {
        Transaction tx(*conn_);
        set_step_timeouts(tx);
        if (step_status(step.id) == StepStatus::kFailed && !accepted) {
          tx.exec(
              "DELETE FROM tandem.shadow_samples WHERE migration = $1 AND step_id = $2"
              " AND round = 0",
              {spec_.name, step.id});
        }
        store_.mark_step(*conn_, step.id, StepStatus::kRunning);
        draw_sample(step, 0, tx);
        tx.commit();
      },
      [] { return false; });
  if (!compare_samples(step, 0)) return false;

  // The gate, over every sample of the step (earlier runs' included); each
  // side's p50 and p99 timed the same way on the same sets.
  SampleTally tally;
  with_retries(
      step.id, "step " + step.id,
      [&] { tally = read_sample_tally(*conn_, spec_.name, step.id, 0); }, [] { return false; });
  const std::string verdict = gate_verdict(pair, tally);
  if (!verdict.empty() && !accepted) {
    fail(main_, step.id, "step " + step.id,
         Error(ErrorKind::kFatal,
               pair.name + ": " + verdict +
                   "\n(each set's outcome is in tandem.shadow_samples; running again draws a new "
                   "sample; --accept-differences " +
                   pair.name + " goes on past the gate with these)"),
         1);
  }
  if (!verdict.empty()) {
    spdlog::warn("step {}: the gate of {} failed and {} accepted it: {}", step.id, pair.name,
                 options_.actor, verdict);
  }
  with_retries(
      step.id, "step " + step.id,
      [&] {
        Transaction tx(*conn_);
        store_.mark_step(*conn_, step.id, StepStatus::kDone);
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor, tally_json(tally));
        if (!verdict.empty()) {
          store_.event(*conn_, "differences_accepted", step.phase, step.id, options_.actor,
                       {{"pair", pair.name}, {"gate", verdict}});
        }
        tx.commit();
      },
      [&] { return step_status(step.id) == StepStatus::kDone; });
  spdlog::info("step {}: {}", step.id, tally_summary(tally));
  return true;
}

}  // namespace tandem
