// What the daemon exposes to Prometheus: per-migration counters kept by the
// worker that drives it, and their text exposition (format 0.0.4). Pure.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tandem/phase.h"

namespace tandem {

// A cumulative histogram over fixed bucket bounds (seconds).
class Histogram {
 public:
  // 5 ms to 60 s: a batch is meant to take tens to hundreds of milliseconds.
  static const std::vector<double>& bounds();
  // 0.25 ms to 5 s: one query of a shadow-read pair.
  static const std::vector<double>& query_bounds();
  explicit Histogram(const std::vector<double>& b = bounds()) : bounds_(&b), counts_(b.size(), 0) {}
  void observe(double seconds);
  const std::vector<double>& upper_bounds() const { return *bounds_; }
  const std::vector<long long>& counts() const { return counts_; }  // per bound, cumulative
  long long count() const { return count_; }
  double sum() const { return sum_; }

 private:
  const std::vector<double>* bounds_;
  std::vector<long long> counts_;
  long long count_ = 0;
  double sum_ = 0;
};

struct MigrationMetrics {
  std::string name;
  std::string state;  // as `status` reports it
  std::optional<Phase> phase;
  long long backfill_rows = 0;
  long long verify_rows = 0;
  long long verify_mismatches = 0;
  Histogram backfill_batch_seconds;
  Histogram verify_batch_seconds;
  std::map<std::string, double> throttled_seconds;  // by reason
  std::string throttle_reason;                      // "" when not throttled
  long long lock_timeouts = 0;
  long long retries = 0;
  long long batch_size = 0;  // the size of the last batch asked for
  // The current backfill or verify step's progress, as `status` shows it.
  long long step_rows_done = 0;
  std::optional<long long> step_rows_total;
  std::optional<double> eta_seconds;
  int ranges = 1;
  int ranges_finished = 0;
  int workers = 1;  // running batches of the current step
  // Per shadow-read pair: parameter sets compared, how many differed, and
  // each side's query time.
  struct Pair {
    long long compared = 0;
    long long differed = 0;
    Histogram old_seconds{Histogram::query_bounds()};
    Histogram new_seconds{Histogram::query_bounds()};
  };
  std::map<std::string, Pair> shadow_reads;
  // In slices, as last read: each slice's stage and keys; canary rollbacks
  // since this daemon started.
  struct SliceGauge {
    std::string stage;
    long long keys = 0;
  };
  std::map<std::string, SliceGauge> slices;
  long long canary_rollbacks = 0;
};

// Every metric, with HELP and TYPE lines, one series per migration (and per
// reason or bucket); no per-row labels.
// `database_up`: whether the daemon's own session reached the database the
// last time it tried.
std::string render_metrics(const std::vector<MigrationMetrics>& migrations,
                           const std::string& version, bool database_up = true);

// A label value escaped for the text format: backslash, quote, newline.
std::string escape_label(const std::string& value);

}  // namespace tandem
