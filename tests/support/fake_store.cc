#include "support/fake_store.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace tandem::testing {

Rows one_value(const std::string& value) {
  Rows r;
  r.columns = {"value"};
  r.rows = {{value}};
  return r;
}

std::string four_step_spec(const std::string& settings) {
  return "name: rules\n" + (settings.empty() ? "" : "settings:\n" + settings) +
         "operations:\n"
         "  - sql: {phase: prepare, up: \"CREATE TABLE a (id int)\", down: \"DROP TABLE a\"}\n"
         "  - sql: {phase: dual_write, up: \"CREATE TABLE b (id int)\", down: \"DROP TABLE b\"}\n"
         "  - sql: {phase: cutover, up: \"ALTER TABLE a RENAME TO c\","
         " down: \"ALTER TABLE c RENAME TO a\"}\n"
         "  - sql: {phase: cleanup, up: \"DROP TABLE b\"}\n";
}

// ---- FakeStore ----

StepStatus FakeStore::status_of(const std::string& step_id) const {
  for (const auto& s : state_.steps) {
    if (s.step_id == step_id) return s.status;
  }
  throw std::out_of_range("no step " + step_id);
}

StepRecord& FakeStore::step(const std::string& step_id) {
  for (auto& s : state_.steps) {
    if (s.step_id == step_id) return s;
  }
  throw state_not_held("step " + step_id + " is not recorded");
}

std::vector<std::string> FakeStore::event_kinds() const {
  std::vector<std::string> out;
  for (const auto& e : state_.events) out.push_back(e.kind);
  return out;
}

void FakeStore::begin() {
  if (in_tx_) return;  // as PostgreSQL: a warning, the transaction goes on
  snapshot_ = state_;
  in_tx_ = true;
}

void FakeStore::commit() { in_tx_ = false; }

void FakeStore::rollback() {
  if (!in_tx_) return;
  state_ = snapshot_;
  in_tx_ = false;
}

MigrationRecord& FakeStore::record(const std::string& what) {
  if (!state_.migration) throw state_not_held(what + ": migration " + name_ + " is not recorded");
  return *state_.migration;
}

Partition& FakeStore::range(const std::string& step_id, int worker, const std::string& what) {
  for (auto& p : state_.partitions[step_id]) {
    if (p.worker == worker) return p;
  }
  throw state_not_held(what);
}

bool FakeStore::try_lock(Connection&, std::string& holder) {
  if (lock_holder.empty()) return true;
  holder = lock_holder;
  return false;
}

std::optional<Checkpoint> FakeStore::checkpoint(Connection&, const std::string& step_id) {
  auto it = state_.partitions.find(step_id);
  if (it == state_.partitions.end() || it->second.empty()) return std::nullopt;
  Checkpoint c;
  c.ranges = static_cast<int>(it->second.size());
  for (const auto& p : it->second) {
    c.rows_done += p.rows_done;
    c.mismatches += p.mismatches;
    c.ranges_finished += p.finished ? 1 : 0;
  }
  return c;
}

std::vector<Partition> FakeStore::partitions(Connection&, const std::string& step_id) {
  auto it = state_.partitions.find(step_id);
  return it == state_.partitions.end() ? std::vector<Partition>{} : it->second;
}

std::string FakeStore::spec_hash(Connection&, const std::string& text) {
  unsigned long long h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", h);
  return buf;
}

std::string FakeStore::spec_text(Connection&) {
  record("reading the spec text");
  return state_.spec_text;
}

void FakeStore::replace_spec(Connection& conn, const std::string& spec_text,
                             const std::string& actor) {
  record("recording the new spec text").spec_hash = spec_hash(conn, spec_text);
  state_.spec_text = spec_text;
  event(conn, "spec_replaced", std::nullopt, "", actor);
}

void FakeStore::start(Connection& conn, const std::string& spec_text, const Plan& plan,
                      const std::string& actor) {
  const bool restart = state_.migration.has_value();
  MigrationRecord m;
  m.name = name_;
  m.spec_hash = spec_hash(conn, spec_text);
  state_.migration = m;
  state_.spec_text = spec_text;
  state_.steps.clear();
  state_.partitions.clear();
  for (const auto& s : plan.steps) {
    StepRecord r;
    r.step_id = s.id;
    r.phase = s.phase;
    state_.steps.push_back(r);
  }
  event(conn, restart ? "restarted" : "started", std::nullopt, "", actor,
        {{"steps", plan.steps.size()}});
}

void FakeStore::set_state(Connection&, MigrationState state, Phase phase) {
  MigrationRecord& m = record(std::string("recording state ") + to_string(state));
  m.state = state;
  m.phase = phase;
}

void FakeStore::approve(Connection& conn, Phase phase, const std::string& actor) {
  record("recording an approval").approved.insert(phase);
  event(conn, "approved", phase, "", actor);
}

void FakeStore::mark_step(Connection&, const std::string& step_id, StepStatus status) {
  StepRecord& s = step(step_id);
  s.status = status;
  if (status == StepStatus::kDone) s.last_error.clear();
  record("recording step " + step_id).last_step = step_id;
}

void FakeStore::reset_unfinished_steps(Connection&) {
  for (auto& s : state_.steps) {
    if (s.status == StepStatus::kRunning || s.status == StepStatus::kFailed) {
      s.status = StepStatus::kPending;
      s.attempts = 0;
    }
  }
}

void FakeStore::record_failure(Connection& conn, const std::string& step_id, const Error& e,
                               bool migration_failed, int attempts) {
  if (!conn.is_open()) return;
  for (auto& s : state_.steps) {
    if (s.step_id != step_id) continue;
    ++s.attempts;
    s.last_error = e.what();
    s.last_sqlstate = e.sqlstate();
    if (migration_failed) s.status = StepStatus::kFailed;
  }
  if (!migration_failed || !state_.migration) return;
  state_.migration->state = MigrationState::kFailed;
  state_.migration->last_step = step_id;
  state_.migration->last_error = e.what();
  state_.migration->last_sqlstate = e.sqlstate();
  event(conn, "step_failed", std::nullopt, step_id, "",
        {{"error", e.what()}, {"sqlstate", e.sqlstate()}, {"attempts", attempts}});
}

void FakeStore::init_partitions(Connection&, const std::string& step_id,
                                std::optional<long long> rows_total,
                                const std::vector<std::vector<std::string>>& bounds) {
  (void)rows_total;
  auto& ranges = state_.partitions[step_id];
  ranges.clear();
  for (size_t w = 0; w <= bounds.size(); ++w) {
    Partition p;
    p.worker = static_cast<int>(w);
    if (w > 0) p.after = bounds[w - 1];
    if (w < bounds.size()) p.upper = bounds[w];
    ranges.push_back(p);
  }
}

void FakeStore::split_partition(Connection&, const std::string& step_id, int worker,
                                const std::vector<std::string>& at, int next) {
  const std::string what = "splitting range " + std::to_string(worker) + " of step " + step_id;
  Partition& p = range(step_id, worker, what);
  Partition n;
  n.worker = next;
  n.after = at;
  n.upper = p.upper;
  p.upper = at;
  state_.partitions[step_id].push_back(n);
}

void FakeStore::save_checkpoint(Connection&, const std::string& step_id, int worker,
                                const std::vector<std::string>& from,
                                const std::vector<std::string>& last_key, long long rows,
                                long long mismatches, const std::string& sample, bool finished) {
  const std::string what = "the checkpoint of step " + step_id + " range " + std::to_string(worker);
  Partition& p = range(step_id, worker, what);
  if (p.finished || p.last_key != from) throw state_not_held(what);
  (void)sample;
  p.last_key = last_key;
  p.rows_done += rows;
  p.mismatches += mismatches;
  p.finished = finished;
}

void FakeStore::clear_checkpoint(Connection&, const std::string& step_id) {
  state_.partitions.erase(step_id);
}

void FakeStore::event(Connection&, const std::string& kind, std::optional<Phase> phase,
                      const std::string& step_id, const std::string& actor,
                      const nlohmann::json& detail) {
  state_.events.push_back({kind, phase, step_id, actor, detail});
}

// ---- FakeSession ----

Rows FakeSession::exec(const std::string& sql, const std::vector<std::string>&) {
  std::lock_guard<std::recursive_mutex> l(db_.mu);
  db_.log.push_back(sql);
  // A rule broken into a loop (a step run again and again) ends the test
  // instead of hanging it: this is not a tandem::Error, so nothing retries it.
  if (db_.log.size() > FakeDatabase::kMaxStatements) throw std::logic_error("runaway: " + sql);
  if (!open_) throw Error(ErrorKind::kRetryable, "server closed the connection", "08006");
  if (db_.fault) db_.fault(*this, sql);
  if (sql == "BEGIN") db_.store.begin();
  if (sql == "ROLLBACK") db_.store.rollback();
  for (const auto& [text, rows] : db_.answers) {
    if (sql.find(text) != std::string::npos) return rows;
  }
  return {};
}

void FakeSession::commit() {
  std::lock_guard<std::recursive_mutex> l(db_.mu);
  db_.log.push_back("COMMIT");
  if (!open_) throw Error(ErrorKind::kInDoubt, "server closed the connection during COMMIT");
  if (db_.fault) db_.fault(*this, "COMMIT");
  db_.store.commit();
}

void FakeSession::lose() {
  if (open_) db_.store.rollback();
  open_ = false;
}

// ---- FakeDatabase ----

FakeDatabase::FakeDatabase(const std::string& migration) : store(migration) {
  answers.emplace_back("deadlock_timeout", one_value("1000"));
}

std::unique_ptr<Connection> FakeDatabase::connect() {
  std::lock_guard<std::recursive_mutex> l(mu);
  if (refuse_connections) throw *refuse_connections;
  return std::make_unique<FakeSession>(*this, 1000 + ++sessions_opened);
}

RunOptions FakeDatabase::options() {
  RunOptions o;
  o.actor = "test";
  o.store = &store;
  o.time = &time;
  o.connect = [this](const std::string&, const std::string&) { return connect(); };
  return o;
}

int FakeDatabase::count(const std::string& sql) const {
  std::lock_guard<std::recursive_mutex> l(mu);
  return static_cast<int>(std::count(log.begin(), log.end(), sql));
}

std::vector<std::string> FakeDatabase::sent_of(const std::vector<std::string>& of) const {
  std::lock_guard<std::recursive_mutex> l(mu);
  std::vector<std::string> out;
  for (const auto& s : log) {
    if (std::find(of.begin(), of.end(), s) != of.end()) out.push_back(s);
  }
  return out;
}

}  // namespace tandem::testing
