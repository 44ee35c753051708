// The state store: schema `tandem` in the target database. Every record of
// progress is written in the same transaction as the work it describes, so
// what the store says happened is exactly what happened.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "db/connection.h"
#include "engine/migration_store.h"

namespace tandem {

// PostgreSQL's text form of an int[] of phases, "{1,6}", as phases.
std::set<Phase> parse_phase_array(const std::string& text);

// SQL that gives the timestamptz `column` as RFC 3339 text in UTC with
// milliseconds ("2026-12-07T05:12:44.123Z"), NULL for NULL: how every time
// leaves tandem (status JSON, events, rounds).
std::string rfc3339_sql(const std::string& column);

class StateStore : public MigrationStore {
 public:
  explicit StateStore(std::string migration) : migration_(std::move(migration)) {}

  // Creates schema `tandem` or upgrades it to the newest version this binary
  // knows. Safe to call from several processes at once. Throws Error(kFatal)
  // when the database holds a newer version than this binary understands.
  static void ensure_schema(Connection& conn);
  // 0 when tandem has never run on this database.
  static int schema_version(Connection& conn);

  void prepare(Connection& conn) override { ensure_schema(conn); }
  bool try_lock(Connection& conn, std::string& holder) override;
  bool try_range_lock(Connection& conn, int range, std::string& holder) override;
  void release_range_lock(Connection& conn, int range) override;

  std::optional<MigrationRecord> load(Connection& conn) override;
  std::vector<StepRecord> steps(Connection& conn) override;
  std::optional<Checkpoint> checkpoint(Connection& conn, const std::string& step_id) override;
  std::vector<Partition> partitions(Connection& conn, const std::string& step_id) override;
  // sha256 of the text, in hex, computed by the server.
  std::string spec_hash(Connection& conn, const std::string& text) override;
  std::string spec_text(Connection& conn) override;
  void replace_spec(Connection& conn, const std::string& spec_text,
                    const std::string& actor) override;

  void start(Connection& conn, const std::string& spec_text, const Plan& plan,
             const std::string& actor) override;
  void set_state(Connection& conn, MigrationState state, Phase phase) override;
  void approve(Connection& conn, Phase phase, const std::string& actor) override;
  void mark_step(Connection& conn, const std::string& step_id, StepStatus status) override;
  void reset_unfinished_steps(Connection& conn) override;
  void record_failure(Connection& conn, const std::string& step_id, const Error& e,
                      bool migration_failed, int attempts) override;
  void init_partitions(Connection& conn, const std::string& step_id,
                       std::optional<long long> rows_total,
                       const std::vector<std::vector<std::string>>& bounds) override;
  void split_partition(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& at, int next) override;
  void save_checkpoint(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& from,
                       const std::vector<std::string>& last_key, long long rows,
                       long long mismatches, const std::string& sample, bool finished) override;
  void clear_checkpoint(Connection& conn, const std::string& step_id) override;
  void event(Connection& conn, const std::string& kind, std::optional<Phase> phase,
             const std::string& step_id, const std::string& actor,
             const nlohmann::json& detail = nlohmann::json::object()) override;

  // For status and reports (not part of a run).
  // The newest `limit` events, oldest first; with `after`, the first
  // `limit` events whose id is greater (to follow the log).
  nlohmann::json events_json(Connection& conn, int limit, long long after = 0) const;
  // Wall time of each phase with finished steps: first step start to last step end.
  std::vector<std::pair<Phase, double>> phase_seconds(Connection& conn) const;

 private:
  static bool try_lock_named(Connection& conn, const std::string& name, std::string& holder);
  std::string range_lock_name(int range) const;

  std::string migration_;
};

}  // namespace tandem
