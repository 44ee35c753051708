#include "daemon/metrics.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>

#include "tandem/phase.h"

namespace tandem {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string migration_label(const MigrationMetrics& m) {
  return "migration=\"" + escape_label(m.name) + "\"";
}

class Writer {
 public:
  void family(const std::string& name, const std::string& type, const std::string& help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const std::string& name, const std::string& labels, double value) {
    out_ << name;
    if (!labels.empty()) out_ << "{" << labels << "}";
    out_ << " " << number(value) << "\n";
  }
  void histogram(const std::string& name, const std::string& labels, const Histogram& h) {
    const auto& bounds = h.upper_bounds();
    for (size_t i = 0; i < bounds.size(); ++i) {
      sample(name + "_bucket", labels + ",le=\"" + number(bounds[i]) + "\"",
             static_cast<double>(h.counts()[i]));
    }
    sample(name + "_bucket", labels + ",le=\"+Inf\"", static_cast<double>(h.count()));
    sample(name + "_sum", labels, h.sum());
    sample(name + "_count", labels, static_cast<double>(h.count()));
  }
  // A family with one sample per migration; `value` may leave one out
  // (nullopt: not known, so no series rather than a misleading 0).
  void per_migration(const std::string& name, const std::string& type, const std::string& help,
                     const std::vector<MigrationMetrics>& migrations,
                     const std::function<std::optional<double>(const MigrationMetrics&)>& value) {
    family(name, type, help);
    for (const auto& m : migrations) {
      if (auto v = value(m)) sample(name, migration_label(m), *v);
    }
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace

const std::vector<double>& Histogram::bounds() {
  static const std::vector<double> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                              1,     2.5,  5,     10,   30,  60};
  return kBounds;
}

const std::vector<double>& Histogram::query_bounds() {
  static const std::vector<double> kBounds = {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,    0.1,    0.25,  0.5,    1,     5};
  return kBounds;
}

void Histogram::observe(double seconds) {
  const auto& b = *bounds_;
  for (size_t i = 0; i < b.size(); ++i) {
    if (seconds <= b[i]) ++counts_[i];
  }
  ++count_;
  sum_ += seconds;
}

std::string escape_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Long, and left so: one metric family after another, in the order
// docs/daemon.md lists them.
std::string render_metrics(const std::vector<MigrationMetrics>& migrations,
                           const std::string& version, bool database_up) {
  using M = MigrationMetrics;
  using Value = std::optional<double>;
  Writer w;
  w.family("tandem_build_info", "gauge", "Always 1; the version of tandemd.");
  w.sample("tandem_build_info", "version=\"" + escape_label(version) + "\"", 1);

  w.family("tandem_database_up", "gauge",
           "1 when the daemon's session reached the database the last time it tried (it "
           "tries every few seconds), else 0.");
  w.sample("tandem_database_up", "", database_up ? 1 : 0);

  w.family("tandem_migrations", "gauge", "Migrations this daemon owns.");
  w.sample("tandem_migrations", "", static_cast<double>(migrations.size()));

  w.per_migration("tandem_migration_phase", "gauge",
                  "The phase a migration is in: 1 prepare, 2 dual_write, 3 backfill, "
                  "4 shadow_read, 5 cutover, 6 cleanup; 0 before the first.",
                  migrations,
                  [](const M& m) -> Value { return m.phase ? static_cast<int>(*m.phase) : 0; });
  w.family("tandem_migration_phase_info", "gauge",
           "1 for the phase a migration is in, as a label (as tandem_migration_state has the "
           "state); none before the first.");
  for (const auto& m : migrations) {
    if (!m.phase) continue;
    w.sample("tandem_migration_phase_info",
             migration_label(m) + ",phase=\"" + phase_name(*m.phase) + "\"", 1);
  }
  w.family("tandem_migration_state", "gauge",
           "1 for the state a migration is in (running, paused, waiting_approval, ...).");
  for (const auto& m : migrations) {
    w.sample("tandem_migration_state",
             migration_label(m) + ",state=\"" + escape_label(m.state) + "\"", 1);
  }
  w.per_migration("tandem_backfill_rows_total", "counter",
                  "Rows written by backfill batches since this daemon started.", migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.backfill_rows); });
  w.per_migration("tandem_verify_rows_total", "counter",
                  "Rows compared by verify batches since this daemon started.", migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.verify_rows); });
  w.per_migration("tandem_verify_mismatches_total", "counter",
                  "Rows whose old and new storage differed when verified.", migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.verify_mismatches); });
  w.family("tandem_backfill_batch_duration_seconds", "histogram",
           "How long each backfill batch's transaction took, commit included.");
  for (const auto& m : migrations) {
    w.histogram("tandem_backfill_batch_duration_seconds", migration_label(m),
                m.backfill_batch_seconds);
  }
  w.family("tandem_verify_batch_duration_seconds", "histogram",
           "How long each verify batch's transaction took.");
  for (const auto& m : migrations) {
    w.histogram("tandem_verify_batch_duration_seconds", migration_label(m), m.verify_batch_seconds);
  }
  const auto pair_label = [](const M& m, const std::string& pair) {
    return migration_label(m) + ",pair=\"" + escape_label(pair) + "\"";
  };
  // One counter per shadow-read pair.
  const auto per_pair = [&](const std::string& name, const std::string& help,
                            long long MigrationMetrics::Pair::*count) {
    w.family(name, "counter", help);
    for (const auto& m : migrations) {
      for (const auto& [pair, p] : m.shadow_reads) {
        w.sample(name, pair_label(m, pair), static_cast<double>(p.*count));
      }
    }
  };
  per_pair("tandem_shadow_reads_compared_total",
           "Parameter sets a shadow-read pair answered with both queries since this daemon "
           "started.",
           &MigrationMetrics::Pair::compared);
  per_pair("tandem_shadow_reads_differed_total",
           "Parameter sets whose old and new answers differed (`tandemd diffs`, `tandemctl "
           "diffs`).",
           &MigrationMetrics::Pair::differed);
  w.family("tandem_shadow_read_query_seconds", "histogram",
           "How long each side's query of a shadow-read pair took, side=\"old\" or \"new\".");
  for (const auto& m : migrations) {
    for (const auto& [pair, p] : m.shadow_reads) {
      w.histogram("tandem_shadow_read_query_seconds", pair_label(m, pair) + ",side=\"old\"",
                  p.old_seconds);
      w.histogram("tandem_shadow_read_query_seconds", pair_label(m, pair) + ",side=\"new\"",
                  p.new_seconds);
    }
  }
  w.family("tandem_slice_stage", "gauge",
           "1 for the stage each slice of a migration in slices is in (old, shadow, live, "
           "complete), as last read.");
  for (const auto& m : migrations) {
    for (const auto& [slice, s] : m.slices) {
      w.sample("tandem_slice_stage",
               migration_label(m) + ",slice=\"" + escape_label(slice) + "\",stage=\"" +
                   escape_label(s.stage) + "\"",
               1);
    }
  }
  w.family("tandem_slice_keys", "gauge", "Routing keys of each slice, fixed when defined.");
  for (const auto& m : migrations) {
    for (const auto& [slice, s] : m.slices) {
      w.sample("tandem_slice_keys", migration_label(m) + ",slice=\"" + escape_label(slice) + "\"",
               static_cast<double>(s.keys));
    }
  }
  w.per_migration("tandem_canary_rollbacks_total", "counter",
                  "Times the canary sent live slices back to shadow since this daemon started.",
                  migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.canary_rollbacks); });
  w.per_migration("tandem_backfill_batch_size", "gauge", "Rows asked for in the last batch.",
                  migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.batch_size); });
  w.per_migration("tandem_step_rows_done", "gauge",
                  "Rows the current backfill or verify step has done, all its ranges together.",
                  migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.step_rows_done); });
  w.per_migration("tandem_step_rows_total", "gauge",
                  "Rows the current step is estimated to cover; absent while not known.",
                  migrations, [](const M& m) -> Value {
                    if (!m.step_rows_total) return std::nullopt;
                    return static_cast<double>(*m.step_rows_total);
                  });
  w.per_migration("tandem_step_eta_seconds", "gauge",
                  "Estimated seconds until the current step is done; absent while not known.",
                  migrations, [](const M& m) -> Value { return m.eta_seconds; });
  w.per_migration("tandem_step_ranges", "gauge", "Key ranges of the current step.", migrations,
                  [](const M& m) -> Value { return m.ranges; });
  w.per_migration("tandem_step_ranges_finished", "gauge",
                  "Key ranges of the current step finished.", migrations,
                  [](const M& m) -> Value { return m.ranges_finished; });
  w.per_migration("tandem_step_workers", "gauge",
                  "Workers running batches of the current step (up to backfill_workers).",
                  migrations, [](const M& m) -> Value { return m.workers; });
  w.per_migration("tandem_throttled", "gauge", "1 while the migration's backfill is held back.",
                  migrations,
                  [](const M& m) -> Value { return m.throttle_reason.empty() ? 0 : 1; });
  w.family("tandem_throttled_seconds_total", "counter",
           "Time the backfill was held back, by reason (manual, active_sessions, lock_waits).");
  for (const auto& m : migrations) {
    for (const auto& [reason, seconds] : m.throttled_seconds) {
      w.sample("tandem_throttled_seconds_total",
               migration_label(m) + ",reason=\"" + escape_label(reason) + "\"", seconds);
    }
  }
  w.per_migration("tandem_lock_timeouts_total", "counter",
                  "Statements that gave up waiting for a lock (SQLSTATE 55P03) and were retried.",
                  migrations,
                  [](const M& m) -> Value { return static_cast<double>(m.lock_timeouts); });
  w.per_migration("tandem_retries_total", "counter", "Attempts that failed with a retryable error.",
                  migrations, [](const M& m) -> Value { return static_cast<double>(m.retries); });
  return w.str();
}

}  // namespace tandem
