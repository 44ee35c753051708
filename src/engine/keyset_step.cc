// The keyset step: a backfill or verify step cut into key ranges, each with
// its own checkpoint, done in batches by the executor's session or by worker
// sessions (see the contract in executor.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <thread>

#include "engine/executor.h"
#include "engine/range_pool.h"
#include "util/duration.h"
#include "util/ident.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;

// Key ranges a backfill or verify step is cut into: this many per worker,
// and at least kMinRanges, so that a worker that finishes early takes
// another range and backfill_workers can be raised while the step runs (one
// worker included). A table of fewer batches gets fewer ranges; one of a
// single range runs on the executor's own session.
constexpr int kRangesPerWorker = 4;
constexpr int kMinRanges = 8;
// A range is cut in two for an idle worker only with this many batches left.
constexpr int kSplitLeast = 4;
// How often the throttle is read while workers run.
constexpr auto kThrottleReadEvery = 200ms;

// Rows per verify chunk, in batches (with a fixed batch size).
constexpr int kVerifyChunkFactor = 10;

// Rows per batch of a step: a verify chunk takes no row lock and blocks no
// one, so it reads ten batches' worth of rows at a time (up to
// max_batch_size) and spends less on the per-chunk walk and commit. Not with
// a target batch time, which sizes the chunks itself.
int rows_per_batch(int batch_size, bool verify, const Settings& st) {
  if (!verify || st.target_batch_time.count() != 0) return batch_size;
  return std::max(batch_size,
                  std::min(batch_size * kVerifyChunkFactor, std::max(st.max_batch_size, 1)));
}

}  // namespace

struct ExecutorCore::StepTally {
  long long rows_done = 0;
  std::optional<long long> rows_total;
  long long mismatches = 0;
  RateMeter meter;
  std::optional<Clock::time_point> last_commit;  // of any range's batch
  int ranges = 1;
  int ranges_finished = 0;
  int workers = 0;  // running batches now
};

void ExecutorCore::start_keyset_step(const Step& step, std::vector<std::string>& key,
                                     std::vector<Partition>& ranges, StepTally& tally) {
  const BatchWork& work = *step.batch;
  const bool verify = step.kind == StepKind::kVerify;
  with_retries(
      step.id, "step " + step.id,
      [&] {
        key = walk_key_columns(*conn_, work.table);
        // A verification that failed starts over: its earlier verdict is void.
        if (verify && step_status(step.id) == StepStatus::kFailed)
          store_.clear_checkpoint(*conn_, step.id);
        store_.mark_step(*conn_, step.id, StepStatus::kRunning);
        ranges = store_.partitions(*conn_, step.id);
        if (ranges.empty()) {
          // The ranges are fixed when the step starts, so a resumed step
          // goes on over the same ranges whatever backfill_workers says now.
          // No range is smaller than a batch.
          const Settings st = settings();
          const TableSize size = table_size(*conn_, work.table);
          const long long rows = size.rows;
          if (!verify && work.statement.empty()) {
            const RewriteEstimate e = estimate_rewrite(size);
            spdlog::info(
                "step {}: about {} rows; expect about {} of WAL, and {} and its indexes to grow"
                " by about {} (estimates, which `tandemd plan --dsn` prints beforehand)",
                step.id, with_commas(rows), format_bytes(e.wal_bytes), work.table,
                format_bytes(e.growth_bytes));
          }
          const long long worth = rows / std::max(1, rows_per_batch(st.batch_size, verify, st));
          const long long most =
              std::max<long long>(kMinRanges, 1LL * kRangesPerWorker * st.backfill_workers);
          const int count = static_cast<int>(std::clamp<long long>(worth, 1, most));
          const auto bounds = KeysetWalker(work.table, key).split_points(*conn_, rows, count);
          Transaction tx(*conn_);
          store_.init_partitions(*conn_, step.id, rows, bounds);
          tx.commit();
          ranges = store_.partitions(*conn_, step.id);
        }
        tally.rows_total.reset();
        if (auto cp = store_.checkpoint(*conn_, step.id)) tally.rows_total = cp->rows_total;
        if (verify && !work.compare.empty() && !KeysetWalker(work.table, key).compares(work)) {
          spdlog::info(
              "step {}: {} is walked by ({}), not by the copy's key ({}): each row is looked up "
              "on its own, which is slower than comparing chunks",
              step.id, work.table, join(key, ", "), join(work.compare_key, ", "));
        }
      },
      [] { return false; });
}

bool ExecutorCore::finish_keyset_step(const Step& step, std::vector<Partition>& ranges) {
  // Done only when the server holds every range as finished, read in the
  // transaction that says so: a batch commit it acknowledged can still be
  // lost in a crash or a failover (batches commit with synchronous_commit
  // off), and the range it finished is then to do again. This commit,
  // synchronous, makes every earlier one durable.
  std::vector<int> unfinished;
  with_retries(
      step.id, "step " + step.id,
      [&] {
        Transaction tx(*conn_);
        ranges = store_.partitions(*conn_, step.id);
        unfinished.clear();
        for (const auto& r : ranges) {
          if (!r.finished) unfinished.push_back(r.worker);
        }
        if (!unfinished.empty()) return;
        store_.mark_step(*conn_, step.id, StepStatus::kDone);
        long long rows = 0;
        for (const auto& r : ranges) rows += r.rows_done;
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor, {{"rows", rows}});
        tx.commit();
      },
      [&] { return step_status(step.id) == StepStatus::kDone; });
  if (unfinished.empty()) return true;
  std::vector<std::string> names;
  for (int w : unfinished) names.push_back(std::to_string(w));
  spdlog::warn(
      "step {}: the server does not hold range(s) {} as finished (a batch commit lost in a "
      "crash or a failover); going on from their checkpoints",
      step.id, join(names, ", "));
  return false;
}

bool ExecutorCore::run_keyset_step(const Step& step) {
  const BatchWork& work = *step.batch;
  std::vector<std::string> key;
  std::vector<Partition> ranges;
  StepTally tally;
  start_keyset_step(step, key, ranges, tally);
  KeysetWalker walker(work.table, key);
  if (step.kind == StepKind::kVerify && !walker.compares(work)) {
    with_retries(
        step.id, "step " + step.id,
        [&] { walker.integer_key = single_integer_key(*conn_, work.table, key); },
        [] { return false; });
    if (walker.integer_key) {
      spdlog::info("step {}: chunks cut by values of {}, each read page by page", step.id, key[0]);
    }
  }
  for (;;) {
    std::vector<Partition*> pending;
    {
      std::lock_guard<std::mutex> l(progress_mu_);
      tally.ranges = static_cast<int>(ranges.size());
      tally.rows_done = tally.mismatches = 0;
      tally.ranges_finished = 0;
      for (auto& r : ranges) {
        tally.rows_done += r.rows_done;
        tally.mismatches += r.mismatches;
        if (r.finished) ++tally.ranges_finished;
        if (!r.finished) pending.push_back(&r);
      }
    }
    // A step cut into ranges runs them on worker sessions, which take the
    // ranges' locks; one of a single range (a small table, or a checkpoint of
    // state schema 4) runs on this session, under the migration's lock.
    if (ranges.size() > 1 && !pending.empty()) {
      if (!run_ranges_in_parallel(step, walker, pending, tally)) return false;
    } else if (pending.size() == 1) {
      BatchSizer sizer(settings());
      if (!run_range(main_, step, walker, *pending[0], tally, sizer, false,
                     [&] { return throttle_.wait(); }))
        return false;
    }
    if (tally.mismatches > 0) {
      // The checkpoints hold the sample keys of every chunk, including chunks
      // verified by an earlier, interrupted run.
      std::string sample = store_.checkpoint(*conn_, step.id)->sample;
      fail(main_, step.id, "step " + step.id,
           Error(ErrorKind::kFatal,
                 std::to_string(tally.mismatches) +
                     " rows differ between old and new storage (first keys: " + sample + ")"),
           1);
    }
    if (finish_keyset_step(step, ranges)) return true;
  }
}

namespace {

// The next key span of a verify cut by key values: toward `want` rows a
// chunk, at most 8 times wider or narrower than the last, 8 times wider over
// a gap without rows; never past 2^59, so that 8 times it cannot overflow.
long long next_stride(long long stride, long long rows, long long want) {
  const double scaled = rows == 0 ? 8.0 * stride : static_cast<double>(stride) * want / rows;
  const double bounded = std::min(8.0 * stride, std::max(stride / 8.0, scaled));
  return std::max(1LL, std::min(static_cast<long long>(bounded), 1LL << 59));
}

}  // namespace

bool ExecutorCore::run_range(Lane& lane, const Step& step, const KeysetWalker& walker,
                             Partition& range, StepTally& tally, BatchSizer& sizer, bool reread,
                             const std::function<bool()>& may_go) {
  const BatchWork& work = *step.batch;
  const bool verify = step.kind == StepKind::kVerify;
  const std::string what = "batch of step " + step.id +
                           (lane.worker >= 0 ? " (range " + std::to_string(range.worker) +
                                                   ", worker " + std::to_string(lane.worker) + ")"
                                             : "");
  // `range` mirrors the committed checkpoint. It is read again when an
  // attempt did not finish (after a failure, or a commit whose outcome is
  // unknown, only the database knows where the range stands) and, with
  // `reread`, once its lock is held: a worker of an earlier tandemd may have
  // committed a batch since the step read it.
  bool current = !reread;
  // A verify checking row by row over one integer key: chunks are key
  // spans (lo, lo + stride], the stride steered toward the batch's rows,
  // up to the range's greatest key, read once its first chunk begins.
  const bool spans = walker.integer_key;  // set for such verify steps only
  std::optional<std::pair<long long, long long>> span;
  bool span_read = false;
  long long stride = 0;
  double batch_seconds = 0;  // the last batch's, when it committed
  double rested = 0;         // the rest after it, counted in the next batch's rate
  while (!range.finished) {
    if (stop_requested() || !may_go()) return false;
    const Settings st = settings();
    const int batch_size = rows_per_batch(sizer.size(st), verify, st);
    with_retries(
        lane, step.id, what,
        [&] {
          Connection& c = *lane.conn;
          if (!current) {
            reread_range(c, step, range, tally);
            if (range.finished) return;
          }
          current = false;
          const auto t0 = time_.now();
          Transaction tx(c);
          tx.set_timeouts(lock_wait(st), st.statement_timeout);
          // A batch and its checkpoint commit together, so a commit the server
          // loses in a crash loses both and the batch runs again: there is no
          // need to wait for the WAL flush.
          c.exec("SET LOCAL synchronous_commit = off");
          const auto& from = range.last_key.empty() ? range.after : range.last_key;
          KeyRange batch{from, {}};
          KeysetWalker::VerifyResult v;
          // A chunk checked row by row is found and read in one pass; the
          // others are found first, so that both tables' rows of the range
          // are joined, or the batch's rows locked by one UPDATE.
          const bool one_pass = verify && !walker.compares(work) && !spans;
          if (spans) {
            if (!span_read) {
              span = walker.integer_span(c, {from, range.upper});
              span_read = true;
              stride = batch_size;
            }
            if (span) {
              const long long lo =
                  from.empty() ? std::max(span->first, LLONG_MIN + 1) - 1 : std::stoll(from[0]);
              // The range may have been cut short since (split_range).
              const long long hi = range.upper.empty()
                                       ? span->second
                                       : std::min(span->second, std::stoll(range.upper[0]));
              // hi - lo in unsigned arithmetic: exact for any lo < hi.
              if (lo < hi &&
                  static_cast<unsigned long long>(stride) <
                      static_cast<unsigned long long>(hi) - static_cast<unsigned long long>(lo)) {
                batch.upper = {std::to_string(lo + stride)};
              }
            }
          } else if (one_pass) {
            v = walker.verify_next(c, work, {from, range.upper}, batch_size, batch.upper);
          } else {
            batch.upper = walker.upper_bound(c, {from, range.upper}, batch_size);
          }
          const bool last = batch.upper.empty();
          if (last) batch.upper = range.upper;
          if (spans) {
            v = walker.verify_span(c, work, batch);
            stride = next_stride(stride, v.rows, batch_size);
          } else if (verify && !one_pass) {
            v = walker.verify(c, work, batch);
          }
          const long long rows = verify ? v.rows : walker.backfill(c, work, batch);
          const std::vector<std::string> reached = last ? from : batch.upper;
          store_.save_checkpoint(c, step.id, range.worker, range.last_key, reached, rows,
                                 v.mismatches, v.sample, last);
          tx.commit();
          range.last_key = reached;
          range.rows_done += rows;
          range.mismatches += v.mismatches;
          range.finished = last;
          current = true;
          const auto now = time_.now();
          const double seconds = time_.seconds_since(t0);
          batch_seconds = seconds;
          if (!last) sizer.observe(batch_size, seconds, st);
          count_batch(step, tally,
                      {t0, now, rested, seconds, batch_size, rows, v.mismatches, last});
          rested = 0;
        },
        [] { return false; });  // the next attempt reads the checkpoint again
    // Rest a share of the batch's time: the application has the database to
    // itself meanwhile. The rate counts it, so the ETA stays honest.
    const double rest = range.finished ? 0 : batch_seconds * st.batch_rest_percent / 100.0;
    batch_seconds = 0;
    if (rest > 0 && !rest_for(rest, rested)) return false;
  }
  return true;
}

void ExecutorCore::reread_range(Connection& c, const Step& step, Partition& range,
                                StepTally& tally) {
  bool found = false;
  for (const auto& stored : store_.partitions(c, step.id)) {
    if (stored.worker != range.worker) continue;
    found = true;
    std::lock_guard<std::mutex> l(progress_mu_);
    tally.rows_done += stored.rows_done - range.rows_done;
    tally.mismatches += stored.mismatches - range.mismatches;
    if (stored.finished && !range.finished) ++tally.ranges_finished;
    range = stored;
  }
  if (!found) {
    throw state_not_held("range " + std::to_string(range.worker) + " of step " + step.id +
                         " has no checkpoint");
  }
}

void ExecutorCore::count_batch(const Step& step, StepTally& tally, const BatchCommit& b) {
  std::lock_guard<std::mutex> l(progress_mu_);
  // The rate counts wall time between commits of any range (with several
  // workers, rows arrive that much faster), from the start of this batch's
  // rest at most: a throttle's wait is not work.
  auto began = b.started -
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(b.rested));
  if (tally.last_commit && *tally.last_commit > began) began = *tally.last_commit;
  tally.meter.add(b.rows, std::chrono::duration<double>(b.committed - began).count());
  tally.last_commit = b.committed;
  tally.rows_done += b.rows;
  tally.mismatches += b.mismatches;
  if (b.last) ++tally.ranges_finished;
  if (!options_.progress) return;
  options_.progress->batch_done(step, b.batch_size, b.rows, b.seconds, b.mismatches);
  ProgressUpdate u{&step, tally.rows_done, tally.rows_total, tally.meter.rows_per_second(), {}};
  u.ranges = tally.ranges;
  u.ranges_finished = tally.ranges_finished;
  u.workers = std::max(1, tally.workers);
  if (tally.rows_total)
    u.eta_seconds = tally.meter.eta_seconds(*tally.rows_total - tally.rows_done);
  options_.progress->progress(u);
}

bool ExecutorCore::rest_for(double seconds, double& rested) {
  const auto t0 = time_.now();
  const auto end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (time_.now() < end) {
    if (stop_requested()) return false;
    time_.sleep_for(std::min<Clock::duration>(end - time_.now(), 50ms));
  }
  rested = time_.seconds_since(t0);
  return true;
}

std::optional<Partition> ExecutorCore::split_range(Lane& lane, const Step& step,
                                                   const KeysetWalker& walker, Partition& range,
                                                   int batch_rows) {
  std::optional<Partition> piece;
  with_retries(
      lane, step.id, "splitting range " + std::to_string(range.worker) + " of step " + step.id,
      [&] {
        piece.reset();
        Connection& c = *lane.conn;
        const Settings st = settings();
        Transaction tx(c);
        tx.set_timeouts(lock_wait(st), st.statement_timeout);
        // Only this worker, under the range's lock, splits the range; the
        // checkpoints are read as committed, since an attempt whose commit
        // was in doubt may have split it already.
        const auto stored = store_.partitions(c, step.id);
        const Partition* own = nullptr;
        int next = 0;
        for (const auto& p : stored) {
          next = std::max(next, p.worker + 1);
          if (p.worker == range.worker) own = &p;
        }
        if (!own || own->finished) return;
        if (own->upper != range.upper) {
          for (const auto& p : stored) {
            if (p.worker != range.worker && p.after == own->upper && p.upper == range.upper)
              piece = p;
          }
          range.upper = own->upper;
          return;
        }
        const auto& from = own->last_key.empty() ? own->after : own->last_key;
        const long long left = walker.count(c, {from, own->upper});
        if (left < 1LL * kSplitLeast * batch_rows) return;
        auto at = walker.upper_bound(c, {from, own->upper}, static_cast<int>(left / 2));
        if (at.empty()) return;
        store_.split_partition(c, step.id, range.worker, at, next);
        tx.commit();
        piece.emplace();
        piece->worker = next;
        piece->after = at;
        piece->upper = own->upper;
        range.upper = std::move(at);
      },
      [] { return false; });  // the next attempt reads the checkpoints again
  return piece;
}

// One worker thread's turn at a step: it takes ranges until none is left,
// and before each batch waits while the throttle holds the step back,
// retires when more work than backfill_workers allows, and cuts its range
// in two when a worker could start but has no range to take.
struct ExecutorCore::WorkerTurn {
  ExecutorCore& e;
  RangePool& pool;
  std::mutex& split_mu;  // one split at a time: each numbers its new range after the others
  const std::atomic<bool>& hold;
  const Step& step;
  const KeysetWalker& walker;
  StepTally& tally;
  Lane& lane;
  Partition* range;  // the one it works on
  BatchSizer sizer{e.settings()};
  bool retired = false;
  bool too_short = false;  // to split, the range it works on

  void run(std::atomic<bool>& stopped) {
    try {
      for (; range; range = pool.next()) {
        lane.range = range->worker;  // its lock is taken before the first batch
        too_short = false;
        spdlog::debug("step {}: worker {} takes range {}", step.id, lane.worker, range->worker);
        if (!e.run_range(lane, step, walker, *range, tally, sizer, true,
                         [this] { return may_go(); })) {
          if (!range->finished) pool.put_first(range);
          if (!retired) stopped = true;
          break;
        }
      }
      // Out of ranges: the session waits for the next step's.
      e.release(lane, retired || stopped.load());
    } catch (const StoppedError&) {
      failed(true);
    } catch (...) {
      failed(false);
    }
    pool.ended(static_cast<size_t>(lane.worker), retired);
  }

  void failed(bool is_stop) {
    pool.record_error(std::current_exception(), is_stop);
    e.halt_workers_ = true;
    e.release(lane, true);
  }

  bool may_go() {
    for (; !e.stop_requested(); e.time_.sleep_for(50ms)) {
      const int allowed = e.settings().backfill_workers;
      if (pool.retire_if_over(allowed)) {
        retired = true;
        spdlog::info("step {}: worker {} stops after its batch: backfill_workers is {}", step.id,
                     lane.worker, allowed);
        return false;
      }
      if (hold.load()) continue;
      if (!too_short && pool.claim_split()) split();
      return true;
    }
    return false;
  }

  void split() {
    const Settings st = e.settings();
    const int batch_rows = rows_per_batch(sizer.size(st), step.kind == StepKind::kVerify, st);
    std::unique_lock<std::mutex> one(split_mu);
    if (auto piece = e.split_range(lane, step, walker, *range, batch_rows)) {
      one.unlock();
      spdlog::info(
          "step {}: range {} cut in two for a worker without one: range {} takes the keys "
          "after {}",
          step.id, range->worker, piece->worker, "(" + join(piece->after, ",") + ")");
      {
        std::lock_guard<std::mutex> l(e.progress_mu_);
        ++tally.ranges;
      }
      pool.add_split(std::move(*piece));
    } else {
      // Too little left to share: another worker may split instead, and
      // this one asks no more until it takes another range.
      too_short = true;
      pool.want_split();
    }
  }
};

bool ExecutorCore::run_ranges_in_parallel(const Step& step, const KeysetWalker& walker,
                                          const std::vector<Partition*>& ranges, StepTally& tally) {
  spdlog::info("step {}: {} key ranges to go, up to backfill_workers ({}) at a time", step.id,
               ranges.size(), settings().backfill_workers);
  RangePool pool(ranges, workers_.size());
  std::mutex split_mu;  // one split at a time: each numbers its new range after the others
  std::atomic<bool> hold{false};
  std::atomic<bool> stopped{false};
  std::vector<std::thread> threads;
  auto set_workers = [&](int n) {
    std::lock_guard<std::mutex> l(progress_mu_);
    tally.workers = n;
  };
  // A worker starts with the range it was started for, then takes the next.
  auto worker = [&](Lane& lane, Partition* range) {
    WorkerTurn turn{*this, pool, split_mu, hold, step, walker, tally, lane, range};
    turn.run(stopped);
  };
  halt_workers_ = false;
  // This thread watches the throttle for all of them (five readings a
  // second, not one per batch and worker) and starts workers as needed.
  std::exception_ptr watch_error;
  try {
    std::string last;
    auto since = time_.now();
    auto next_reading = time_.now();
    for (;;) {
      if (time_.now() >= next_reading) {
        hold = !throttle_.poll(last, since).reason.empty();
        next_reading = time_.now() + kThrottleReadEvery;
      }
      const int allowed = settings().backfill_workers;
      const int running = pool.staff(
          allowed, [&] { return !stop_requested() && !hold.load(); },
          [&](size_t i, Partition* range) {
            if (!threads.empty()) spdlog::info("step {}: worker {} starts", step.id, i);
            Lane& lane = worker_lane(i);
            threads.emplace_back([&worker, &lane, range, log = log_context()] {
              LogContextScope scope(log);
              worker(lane, range);
            });
          });
      set_workers(running);
      // Until a worker ends, or a changed backfill_workers may need more.
      if (!pool.wait(running, stop_requested(), !hold.load() && !stop_requested(), allowed, 50ms)) {
        break;
      }
    }
    if (!last.empty()) {
      const double held = time_.seconds_since(since);
      report([&](ProgressSink& p) { p.throttling("", held); });
    }
  } catch (...) {
    watch_error = std::current_exception();
    halt_workers_ = true;
    hold = false;
  }
  for (auto& t : threads) t.join();
  set_workers(0);
  halt_workers_ = false;
  if (watch_error) std::rethrow_exception(watch_error);
  pool.rethrow_error();
  return !stopped.load() && pool.empty();
}

}  // namespace tandem
