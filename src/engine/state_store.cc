#include "engine/state_store.h"

#include "engine/state_schema.h"
#include "util/json.h"

namespace tandem {
namespace {

std::string pg_text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// A write to the state store that must change exactly one row. One that
// changes none means this server does not hold the state the caller read.
void expect_one_row(const Rows& r, const std::string& what) {
  if (r.affected == 1) return;
  throw state_not_held(what + " changed " + std::to_string(r.affected) +
                       " rows of the state store instead of one");
}

}  // namespace

std::set<Phase> parse_phase_array(const std::string& text) {
  // "{1,3}" → {kPrepare, kBackfill}
  std::set<Phase> out;
  std::string num;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      num += c;
    } else if (!num.empty()) {
      out.insert(static_cast<Phase>(std::stoi(num)));
      num.clear();
    }
  }
  return out;
}

int StateStore::schema_version(Connection& conn) {
  Rows r = conn.exec("SELECT to_regclass('tandem.schema_version') IS NOT NULL");
  if (r.text(0, 0) != "t") return 0;
  return static_cast<int>(
      conn.exec("SELECT coalesce(max(version), 0) FROM tandem.schema_version").integer(0, 0));
}

void StateStore::ensure_schema(Connection& conn) {
  const auto& versions = state_schema_versions();
  Transaction tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock($1::int, 0)", {std::to_string(kAdvisoryLockClass)});
  tx.exec("CREATE SCHEMA IF NOT EXISTS tandem");
  tx.exec(
      "CREATE TABLE IF NOT EXISTS tandem.schema_version ("
      " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
  int current = static_cast<int>(
      tx.exec("SELECT coalesce(max(version), 0) FROM tandem.schema_version").integer(0, 0));
  if (current > static_cast<int>(versions.size())) {
    throw Error(ErrorKind::kFatal, "the tandem state schema in this database is at version " +
                                       std::to_string(current) +
                                       ", newer than this tandemd understands (" +
                                       std::to_string(versions.size()) + "); upgrade tandemd");
  }
  for (size_t v = current; v < versions.size(); ++v) {
    tx.exec(versions[v]);
    tx.exec("INSERT INTO tandem.schema_version (version) VALUES ($1)", {std::to_string(v + 1)});
  }
  tx.commit();
}

bool StateStore::try_lock(Connection& conn, std::string& holder) {
  return try_lock_named(conn, migration_, holder);
}

bool StateStore::try_range_lock(Connection& conn, int range, std::string& holder) {
  return try_lock_named(conn, range_lock_name(range), holder);
}

void StateStore::release_range_lock(Connection& conn, int range) {
  conn.exec("SELECT pg_advisory_unlock($1::int, hashtext($2))",
            {std::to_string(kAdvisoryLockClass), range_lock_name(range)});
}

std::string StateStore::range_lock_name(int range) const {
  // Named "worker" since state schema 5, when there was one worker per range.
  return migration_ + " worker " + std::to_string(range);
}

bool StateStore::try_lock_named(Connection& conn, const std::string& name, std::string& holder) {
  const std::vector<std::string> key = {std::to_string(kAdvisoryLockClass), name};
  Rows r = conn.exec("SELECT pg_try_advisory_lock($1::int, hashtext($2))", key);
  if (r.text(0, 0) == "t") return true;
  Rows h = conn.exec(
      "SELECT a.pid, coalesce(nullif(a.application_name, ''), '(no application_name)'),"
      "       coalesce(host(a.client_addr), 'local socket'),"
      "       to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')"
      "  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
      " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
      "   AND l.classid = $1::bigint::oid"
      "   AND l.objid = ((hashtext($2)::bigint + 4294967296) % 4294967296)::oid",
      key);
  if (h.empty()) {
    holder = "another session (it has just let go; try again)";
  } else {
    holder = "backend pid " + h.text(0, 0) + " (" + h.text(0, 1) + ", from " + h.text(0, 2) +
             ", connected since " + h.text(0, 3) + ")";
  }
  return false;
}

std::string rfc3339_sql(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
}

std::optional<MigrationRecord> StateStore::load(Connection& conn) {
  Rows r = conn.exec(
      "SELECT name, spec_hash, state, phase, approved_phases::text, coalesce(last_step, ''),"
      " coalesce(last_error, ''), coalesce(last_sqlstate, ''), " +
          rfc3339_sql("created_at") + ", " + rfc3339_sql("updated_at") +
          " FROM tandem.migrations WHERE name = $1",
      {migration_});
  if (r.empty()) return std::nullopt;
  MigrationRecord m;
  m.name = r.text(0, 0);
  m.spec_hash = r.text(0, 1);
  m.state = parse_migration_state(r.text(0, 2));
  m.phase = static_cast<Phase>(r.integer(0, 3));
  m.approved = parse_phase_array(r.text(0, 4));
  m.last_step = r.text(0, 5);
  m.last_error = r.text(0, 6);
  m.last_sqlstate = r.text(0, 7);
  m.created_at = r.text(0, 8);
  m.updated_at = r.text(0, 9);
  return m;
}

std::vector<StepRecord> StateStore::steps(Connection& conn) {
  Rows r =
      conn.exec("SELECT step_id, phase, status, attempts, coalesce(" + rfc3339_sql("started_at") +
                    ", ''), coalesce(" + rfc3339_sql("finished_at") +
                    ", ''), coalesce(last_error, ''), coalesce(last_sqlstate, '')"
                    " FROM tandem.steps WHERE migration = $1 ORDER BY seq",
                {migration_});
  std::vector<StepRecord> out;
  for (size_t i = 0; i < r.size(); ++i) {
    StepRecord s;
    s.step_id = r.text(i, 0);
    s.phase = static_cast<Phase>(r.integer(i, 1));
    s.status = parse_step_status(r.text(i, 2));
    s.attempts = static_cast<int>(r.integer(i, 3));
    s.started_at = r.text(i, 4);
    s.finished_at = r.text(i, 5);
    s.last_error = r.text(i, 6);
    s.last_sqlstate = r.text(i, 7);
    out.push_back(s);
  }
  return out;
}

std::optional<Checkpoint> StateStore::checkpoint(Connection& conn, const std::string& step_id) {
  Rows r = conn.exec(
      "SELECT sum(rows_done), sum(rows_total), sum(mismatches),"
      " coalesce(left(string_agg(sample, ' ' ORDER BY worker), 2000), ''),"
      " extract(epoch FROM max(updated_at) - min(started_at)),"
      " count(*), count(*) FILTER (WHERE finished)"
      " FROM tandem.checkpoints WHERE migration = $1 AND step_id = $2 HAVING count(*) > 0",
      {migration_, step_id});
  if (r.empty()) return std::nullopt;
  Checkpoint c;
  c.rows_done = r.integer(0, 0);
  if (!r.is_null(0, 1)) c.rows_total = r.integer(0, 1);
  c.mismatches = r.integer(0, 2);
  c.sample = r.text(0, 3);
  c.seconds = std::stod(r.text(0, 4).empty() ? "0" : r.text(0, 4));
  c.ranges = static_cast<int>(r.integer(0, 5));
  c.ranges_finished = static_cast<int>(r.integer(0, 6));
  return c;
}

std::vector<Partition> StateStore::partitions(Connection& conn, const std::string& step_id) {
  // One statement, so one snapshot: a worker may split its range (a new row,
  // a changed one) between two statements of a reader's.
  // The keys, one row per element: 1 = after, 2 = upper, 3 = last_key.
  Rows r = conn.exec(
      "SELECT c.worker, c.rows_done, c.mismatches, c.finished, a.which, a.k"
      " FROM tandem.checkpoints c LEFT JOIN LATERAL"
      " (SELECT 1, k, i FROM unnest(c.range_after) WITH ORDINALITY u(k, i)"
      "  UNION ALL SELECT 2, k, i FROM unnest(c.range_upper) WITH ORDINALITY u(k, i)"
      "  UNION ALL SELECT 3, k, i FROM unnest(c.last_key) WITH ORDINALITY u(k, i))"
      "  AS a(which, k, i) ON true"
      " WHERE c.migration = $1 AND c.step_id = $2 ORDER BY c.worker, a.which, a.i",
      {migration_, step_id});
  std::vector<Partition> out;
  for (size_t i = 0; i < r.size(); ++i) {
    const int worker = static_cast<int>(r.integer(i, 0));
    if (out.empty() || out.back().worker != worker) {
      out.emplace_back();
      out.back().worker = worker;
      out.back().rows_done = r.integer(i, 1);
      out.back().mismatches = r.integer(i, 2);
      out.back().finished = r.text(i, 3) == "t";
    }
    if (r.is_null(i, 4)) continue;  // no keys: one range over the whole table
    Partition& p = out.back();
    const long long which = r.integer(i, 4);
    auto& keys = which == 1 ? p.after : which == 2 ? p.upper : p.last_key;
    keys.push_back(r.text(i, 5));
  }
  return out;
}

std::string StateStore::spec_hash(Connection& conn, const std::string& text) {
  return conn.exec("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", {text}).text(0, 0);
}

std::string StateStore::spec_text(Connection& conn) {
  Rows r = conn.exec("SELECT spec_text FROM tandem.migrations WHERE name = $1", {migration_});
  if (r.empty()) throw Error(ErrorKind::kFatal, "migration \"" + migration_ + "\" is not recorded");
  return r.text(0, 0);
}

void StateStore::replace_spec(Connection& conn, const std::string& spec_text,
                              const std::string& actor) {
  Transaction tx(conn);
  expect_one_row(tx.exec("UPDATE tandem.migrations SET spec_text = $2,"
                         " spec_hash = encode(sha256(convert_to($2, 'UTF8')), 'hex'),"
                         " updated_at = now() WHERE name = $1",
                         {migration_, spec_text}),
                 "recording the new spec text of migration " + migration_);
  event(conn, "spec_replaced", std::nullopt, "", actor);
  tx.commit();
}

void StateStore::start(Connection& conn, const std::string& spec_text, const Plan& plan,
                       const std::string& actor) {
  Transaction tx(conn);
  bool restart = !tx.exec("SELECT 1 FROM tandem.migrations WHERE name = $1", {migration_}).empty();
  tx.exec("DELETE FROM tandem.migrations WHERE name = $1", {migration_});
  tx.exec(
      "INSERT INTO tandem.migrations (name, spec_text, spec_hash, state, phase)"
      " VALUES ($1, $2, encode(sha256(convert_to($2, 'UTF8')), 'hex'), 'running', $3)",
      {migration_, spec_text, std::to_string(static_cast<int>(Phase::kPrepare))});
  int seq = 0;
  for (const auto& s : plan.steps) {
    tx.exec("INSERT INTO tandem.steps (migration, step_id, phase, seq) VALUES ($1, $2, $3, $4)",
            {migration_, s.id, std::to_string(static_cast<int>(s.phase)), std::to_string(++seq)});
  }
  tx.exec(
      "INSERT INTO tandem.events (migration, kind, actor, detail)"
      " VALUES ($1, $2, $3, jsonb_build_object('steps', $4::int))",
      {migration_, restart ? "restarted" : "started", actor, std::to_string(plan.steps.size())});
  tx.commit();
}

void StateStore::set_state(Connection& conn, MigrationState state, Phase phase) {
  expect_one_row(
      conn.exec(
          "UPDATE tandem.migrations SET state = $2, phase = $3, updated_at = now() WHERE name = $1",
          {migration_, to_string(state), std::to_string(static_cast<int>(phase))}),
      "recording migration " + migration_ + " as " + to_string(state));
}

void StateStore::approve(Connection& conn, Phase phase, const std::string& actor) {
  Transaction tx(conn);
  tx.exec(
      "UPDATE tandem.migrations SET approved_phases = array_append(approved_phases, $2::int),"
      " updated_at = now() WHERE name = $1 AND NOT ($2::int = ANY (approved_phases))",
      {migration_, std::to_string(static_cast<int>(phase))});
  event(conn, "approved", phase, "", actor);
  tx.commit();
}

void StateStore::reset_unfinished_steps(Connection& conn) {
  conn.exec(
      "UPDATE tandem.steps SET status = 'pending', attempts = 0 WHERE migration = $1"
      " AND status IN ('running', 'failed')",
      {migration_});
}

void StateStore::mark_step(Connection& conn, const std::string& step_id, StepStatus status) {
  Rows r = conn.exec(
      "UPDATE tandem.steps SET status = $3,"
      " started_at = CASE WHEN $3 IN ('running', 'done') THEN coalesce(started_at, now()) ELSE "
      "started_at END,"
      " finished_at = CASE WHEN $3 IN ('done', 'rolled_back') THEN now() ELSE NULL END,"
      " last_error = CASE WHEN $3 = 'done' THEN NULL ELSE last_error END"
      " WHERE migration = $1 AND step_id = $2",
      {migration_, step_id, to_string(status)});
  expect_one_row(r, "recording step " + step_id + " as " + to_string(status));
  conn.exec("UPDATE tandem.migrations SET last_step = $2, updated_at = now() WHERE name = $1",
            {migration_, step_id});
}

void StateStore::record_failure(Connection& conn, const std::string& step_id, const Error& e,
                                bool migration_failed, int attempts) {
  if (!conn.is_open()) return;
  try {
    Transaction tx(conn);
    tx.exec(
        "UPDATE tandem.steps SET attempts = attempts + 1, last_error = $3, last_sqlstate = $4,"
        " status = CASE WHEN $5 THEN 'failed' ELSE status END"
        " WHERE migration = $1 AND step_id = $2",
        {migration_, step_id, e.what(), e.sqlstate(), migration_failed ? "true" : "false"});
    if (migration_failed) {
      tx.exec(
          "UPDATE tandem.migrations SET state = 'failed', last_step = $2, last_error = $3,"
          " last_sqlstate = $4, updated_at = now() WHERE name = $1",
          {migration_, step_id, e.what(), e.sqlstate()});
      event(conn, "step_failed", std::nullopt, step_id, "",
            {{"error", e.what()}, {"sqlstate", e.sqlstate()}, {"attempts", attempts}});
    }
    tx.commit();
  } catch (const Error&) {
    // Best effort: the caller reports the original error either way.
  }
}

void StateStore::init_partitions(Connection& conn, const std::string& step_id,
                                 std::optional<long long> rows_total,
                                 const std::vector<std::vector<std::string>>& bounds) {
  for (size_t w = 0; w <= bounds.size(); ++w) {
    // NULL for an open end: the first range has no lower bound, the last no upper.
    conn.exec(
        "INSERT INTO tandem.checkpoints (migration, step_id, worker, rows_total, range_after,"
        " range_upper) VALUES ($1, $2, $3::int, nullif($4, '')::bigint,"
        " nullif($5, '')::text[], nullif($6, '')::text[])",
        {migration_, step_id, std::to_string(w),
         w == 0 && rows_total ? std::to_string(*rows_total) : std::string(),
         w == 0 ? std::string() : pg_text_array(bounds[w - 1]),
         w == bounds.size() ? std::string() : pg_text_array(bounds[w])});
  }
}

void StateStore::split_partition(Connection& conn, const std::string& step_id, int worker,
                                 const std::vector<std::string>& at, int next) {
  const std::vector<std::string> params = {migration_, step_id, std::to_string(worker),
                                           pg_text_array(at), std::to_string(next)};
  const std::string what = "splitting range " + params[2] + " of step " + step_id;
  expect_one_row(
      conn.exec(
          "INSERT INTO tandem.checkpoints (migration, step_id, worker, range_after, range_upper)"
          " SELECT migration, step_id, $5::int, $4::text[], range_upper FROM tandem.checkpoints"
          " WHERE migration = $1 AND step_id = $2 AND worker = $3::int",
          params),
      what);
  expect_one_row(
      conn.exec("UPDATE tandem.checkpoints SET range_upper = $4::text[], updated_at = now()"
                " WHERE migration = $1 AND step_id = $2 AND worker = $3::int",
                {params[0], params[1], params[2], params[3]}),
      what);
}

void StateStore::save_checkpoint(Connection& conn, const std::string& step_id, int worker,
                                 const std::vector<std::string>& from,
                                 const std::vector<std::string>& last_key, long long rows,
                                 long long mismatches, const std::string& sample, bool finished) {
  // Only from where the batch started: a checkpoint that moved meanwhile, or
  // is missing, means the batch worked from a state the server does not hold.
  Rows r = conn.exec(
      "UPDATE tandem.checkpoints SET last_key = $4::text[], rows_done = rows_done + $5,"
      " mismatches = mismatches + $6,"
      " sample = CASE WHEN $7 = '' THEN sample ELSE left(concat_ws(' ', sample, $7), 2000) END,"
      " finished = $8::boolean, updated_at = now()"
      " WHERE migration = $1 AND step_id = $2 AND worker = $3::int AND NOT finished"
      "   AND last_key IS NOT DISTINCT FROM nullif($9, '')::text[]",
      {migration_, step_id, std::to_string(worker), pg_text_array(last_key), std::to_string(rows),
       std::to_string(mismatches), sample, finished ? "true" : "false",
       from.empty() ? std::string() : pg_text_array(from)});
  expect_one_row(r, "the checkpoint of step " + step_id + " range " + std::to_string(worker));
}

void StateStore::clear_checkpoint(Connection& conn, const std::string& step_id) {
  conn.exec("DELETE FROM tandem.checkpoints WHERE migration = $1 AND step_id = $2",
            {migration_, step_id});
}

void StateStore::event(Connection& conn, const std::string& kind, std::optional<Phase> phase,
                       const std::string& step_id, const std::string& actor,
                       const nlohmann::json& detail) {
  conn.exec(
      "INSERT INTO tandem.events (migration, kind, phase, step_id, actor, detail)"
      " VALUES ($1, $2, nullif($3, '')::int, nullif($4, ''), $5, $6::jsonb)",
      {migration_, kind, phase ? std::to_string(static_cast<int>(*phase)) : "", step_id, actor,
       detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

nlohmann::json StateStore::events_json(Connection& conn, int limit, long long after) const {
  Rows r = conn.exec("SELECT id, " + rfc3339_sql("at") +
                         ", kind, coalesce(phase, 0), coalesce(step_id, ''),"
                         " coalesce(actor, ''), coalesce(detail::text, '{}') FROM ("
                         "  SELECT * FROM tandem.events WHERE migration = $1 AND id > $3::bigint"
                         " ORDER BY id " +
                         (after > 0 ? "" : "DESC") + " LIMIT $2) e ORDER BY id",
                     {migration_, std::to_string(limit), std::to_string(after)});
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < r.size(); ++i) {
    nlohmann::json e = {{"id", r.integer(i, 0)}, {"at", r.text(i, 1)},
                        {"kind", r.text(i, 2)},  {"step", text_or_null(r.text(i, 4))},
                        {"actor", r.text(i, 5)}, {"detail", nlohmann::json::parse(r.text(i, 6))}};
    int phase = static_cast<int>(r.integer(i, 3));
    e["phase"] = phase ? nlohmann::json(phase_name(static_cast<Phase>(phase))) : nlohmann::json();
    out.push_back(e);
  }
  return out;
}

std::vector<std::pair<Phase, double>> StateStore::phase_seconds(Connection& conn) const {
  Rows r = conn.exec(
      "SELECT phase, extract(epoch FROM max(finished_at) - min(started_at)) FROM tandem.steps"
      " WHERE migration = $1 AND finished_at IS NOT NULL AND status = 'done'"
      " GROUP BY phase ORDER BY phase",
      {migration_});
  std::vector<std::pair<Phase, double>> out;
  for (size_t i = 0; i < r.size(); ++i) {
    out.emplace_back(static_cast<Phase>(r.integer(i, 0)), std::stod(r.text(i, 1)));
  }
  return out;
}

}  // namespace tandem
