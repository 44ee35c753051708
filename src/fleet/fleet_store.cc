#include "fleet/fleet_store.h"

#include <algorithm>
#include <sstream>

#include "engine/state_store.h"
#include "util/text.h"

namespace tandem {

void FleetStore::prepare(Connection& c) { StateStore::ensure_schema(c); }

void FleetStore::enrol(Connection& c, const std::string& migration, const std::string& spec_hash,
                       const std::vector<FleetMember>& members, const std::string& actor) {
  Transaction tx(c);
  // One runner enrols at a time: the second sees the first's rows.
  tx.exec("SELECT pg_advisory_xact_lock(" + lock_key_sql("enrol") + ")");
  Rows f = tx.exec("SELECT migration, spec_hash FROM tandem.fleets WHERE fleet = $1", {fleet_});
  if (f.empty()) {
    tx.exec("INSERT INTO tandem.fleets (fleet, migration, spec_hash) VALUES ($1, $2, $3)",
            {fleet_, migration, spec_hash});
    tx.exec(
        "INSERT INTO tandem.fleet_events (fleet, kind, detail, actor) VALUES ($1, 'enrolled',"
        " $2, $3)",
        {fleet_, std::to_string(members.size()) + " targets, migration " + migration, actor});
  } else if (f.text(0, 0) != migration || f.text(0, 1) != spec_hash) {
    Rows started = tx.exec(
        "SELECT count(*) FROM tandem.fleet_targets WHERE fleet = $1 AND state NOT IN ('pending',"
        " 'rolled_back')",
        {fleet_});
    if (started.integer(0, 0) > 0) {
      throw Error(ErrorKind::kBadInput,
                  "fleet " + fleet_ + " runs migration " + f.text(0, 0) + " with another spec on " +
                      started.text(0, 0) +
                      " targets already; a fleet runs one spec: roll it back "
                      "(tandemd fleet rollback) or give this fleet another name");
    }
    tx.exec(
        "UPDATE tandem.fleets SET migration = $2, spec_hash = $3, reference = NULL,"
        " reference_target = NULL, reference_text = NULL WHERE fleet = $1",
        {fleet_, migration, spec_hash});
  }
  for (const auto& m : members) {
    tx.exec(
        "INSERT INTO tandem.fleet_targets (fleet, target, wave, wave_ordinal, ordinal, server, dsn)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (fleet, target) DO UPDATE SET wave = EXCLUDED.wave,"
        "   wave_ordinal = EXCLUDED.wave_ordinal, ordinal = EXCLUDED.ordinal,"
        "   server = EXCLUDED.server, dsn = EXCLUDED.dsn"
        " WHERE fleet_targets.state IN ('pending', 'rolled_back', 'held')",
        {fleet_, m.target, m.wave, std::to_string(m.wave_ordinal), std::to_string(m.ordinal),
         m.server, m.dsn_redacted});
  }
  retry(c, "", actor);
  tx.commit();
}

std::optional<FleetRecord> FleetStore::record(Connection& c) {
  Rows r = c.exec(
      "SELECT migration, coalesce(reference, ''), coalesce(reference_target, ''),"
      " coalesce(reference_text, ''), coalesce(cleanup_approved_by, '')"
      " FROM tandem.fleets WHERE fleet = $1",
      {fleet_});
  if (r.empty()) return std::nullopt;
  return FleetRecord{r.text(0, 0), r.text(0, 1), r.text(0, 2), r.text(0, 3), r.text(0, 4)};
}

std::vector<FleetTargetRow> FleetStore::targets(Connection& c) {
  Rows r = c.exec(
      "SELECT target, wave, server, state, coalesce(phase, ''), coalesce(step, ''),"
      " coalesce(last_error, ''), coalesce(owner, ''), wave_ordinal, rows_done,"
      " extract(epoch FROM clock_timestamp() - since)::float8, " +
          rfc3339_sql("since") + ", " + rfc3339_sql("started_at") + ", " + rfc3339_sql("ready_at") +
          ", " + rfc3339_sql("cutover_started_at") + ", " + rfc3339_sql("cut_over_at") + ", " +
          rfc3339_sql("completed_at") +
          ", coalesce(extract(epoch FROM clock_timestamp() - coalesce(ready_at, cut_over_at,"
          " completed_at)), 0)::float8"
          " FROM tandem.fleet_targets WHERE fleet = $1 ORDER BY wave_ordinal, ordinal",
      {fleet_});
  std::vector<FleetTargetRow> out;
  for (size_t i = 0; i < r.size(); ++i) {
    FleetTargetRow t;
    t.target = r.text(i, 0);
    t.wave = r.text(i, 1);
    t.server = r.text(i, 2);
    t.state = r.text(i, 3);
    t.phase = r.text(i, 4);
    t.step = r.text(i, 5);
    t.last_error = r.text(i, 6);
    t.owner = r.text(i, 7);
    t.wave_ordinal = static_cast<int>(r.integer(i, 8));
    t.rows_done = r.integer(i, 9);
    t.since_seconds = std::stod(r.text(i, 10));
    t.since = r.text(i, 11);
    t.started_at = r.text(i, 12);
    t.ready_at = r.text(i, 13);
    t.cutover_started_at = r.text(i, 14);
    t.cut_over_at = r.text(i, 15);
    t.completed_at = r.text(i, 16);
    t.passed_seconds = std::stod(r.text(i, 17));
    out.push_back(std::move(t));
  }
  return out;
}

void FleetStore::set_state(Connection& c, const std::string& target, const std::string& state,
                           const std::string& error, const std::string& owner,
                           const std::string& stamp, const std::string& actor) {
  static const std::set<std::string> kStamps = {"started_at", "ready_at", "cutover_started_at",
                                                "cut_over_at", "completed_at"};
  if (!stamp.empty() && !kStamps.count(stamp)) {
    throw Error(ErrorKind::kFatal, "fleet: no time column " + stamp);
  }
  Transaction tx(c);
  Rows r = tx.exec(
      "UPDATE tandem.fleet_targets SET state = $3, last_error = nullif($4, ''),"
      " owner = nullif($5, ''), since = CASE WHEN state = $3 THEN since ELSE clock_timestamp() END,"
      " updated_at = clock_timestamp()" +
          (stamp.empty() ? std::string() : ", " + stamp + " = clock_timestamp()") +
          // Starting over (after a rollback): the times of the last go are gone.
          (stamp == "started_at" ? ", ready_at = NULL, cutover_started_at = NULL, cut_over_at ="
                                   " NULL, completed_at = NULL"
                                 : "") +
          " WHERE fleet = $1 AND target = $2 RETURNING wave",
      {fleet_, target, state, error, owner});
  if (r.empty()) {
    throw Error(ErrorKind::kFatal, "fleet " + fleet_ + ": target " + target +
                                       " has no row in tandem.fleet_targets; was the fleet's "
                                       "control database changed by hand?");
  }
  tx.exec(
      "INSERT INTO tandem.fleet_events (fleet, target, wave, kind, detail, actor)"
      " VALUES ($1, $2, $3, $4, nullif($5, ''), $6)",
      {fleet_, target, r.text(0, 0), state, error, actor});
  tx.commit();
}

void FleetStore::progress(Connection& c, const std::string& target, const std::string& phase,
                          const std::string& step, long long rows_done) {
  // Progress is for people watching: a crash may lose the last of it, so
  // its commits do not wait for the disk (states and events do).
  Transaction tx(c);
  tx.exec("SET LOCAL synchronous_commit = off");
  tx.exec(
      "UPDATE tandem.fleet_targets SET phase = $3, step = $4, rows_done = $5,"
      " updated_at = clock_timestamp() WHERE fleet = $1 AND target = $2",
      {fleet_, target, phase, step, std::to_string(rows_done)});
  tx.commit();
}

void FleetStore::set_fingerprint(Connection& c, const std::string& target,
                                 const std::string& fingerprint) {
  c.exec("UPDATE tandem.fleet_targets SET fingerprint = $3 WHERE fleet = $1 AND target = $2",
         {fleet_, target, fingerprint});
}

FleetRecord FleetStore::reference(Connection& c, const std::string& target,
                                  const std::string& fingerprint, const std::string& text) {
  c.exec(
      "UPDATE tandem.fleets SET reference = $2, reference_target = $3, reference_text = $4"
      " WHERE fleet = $1 AND reference IS NULL",
      {fleet_, fingerprint, target, text});
  auto r = record(c);
  if (!r) throw Error(ErrorKind::kFatal, "fleet " + fleet_ + " has no row in tandem.fleets");
  return *r;
}

void FleetStore::approve_cleanup(Connection& c, const std::string& actor) {
  Transaction tx(c);
  Rows r = tx.exec(
      "UPDATE tandem.fleets SET cleanup_approved_by = $2, cleanup_approved_at = clock_timestamp()"
      " WHERE fleet = $1 AND cleanup_approved_by IS NULL RETURNING fleet",
      {fleet_, actor});
  if (!r.empty()) {
    tx.exec(
        "INSERT INTO tandem.fleet_events (fleet, kind, actor) VALUES ($1, 'approved cleanup',"
        " $2)",
        {fleet_, actor});
  }
  tx.commit();
}

bool FleetStore::pause(Connection& c, const std::string& wave, const std::string& actor) {
  Rows r = c.exec(
      "WITH p AS (INSERT INTO tandem.fleet_pauses (fleet, wave, actor) VALUES ($1, $2, $3)"
      " ON CONFLICT DO NOTHING RETURNING wave)"
      " INSERT INTO tandem.fleet_events (fleet, wave, kind, actor)"
      " SELECT $1, nullif(wave, ''), 'paused', $3 FROM p RETURNING id",
      {fleet_, wave, actor});
  return !r.empty();
}

int FleetStore::resume(Connection& c, const std::string& wave, const std::string& actor) {
  Rows r = c.exec(
      "WITH p AS (DELETE FROM tandem.fleet_pauses WHERE fleet = $1 AND ($2 = '' OR wave = $2)"
      " RETURNING wave)"
      " INSERT INTO tandem.fleet_events (fleet, wave, kind, actor)"
      " SELECT $1, nullif(wave, ''), 'resumed', $3 FROM p RETURNING id",
      {fleet_, wave, actor});
  return static_cast<int>(r.size());
}

std::map<std::string, std::string> FleetStore::pauses(Connection& c) {
  Rows r = c.exec("SELECT wave, actor FROM tandem.fleet_pauses WHERE fleet = $1", {fleet_});
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < r.size(); ++i) out[r.text(i, 0)] = r.text(i, 1);
  return out;
}

int FleetStore::retry(Connection& c, const std::string& target, const std::string& actor) {
  // One statement: the targets and their events change together.
  Rows r = c.exec(
      "WITH t AS (UPDATE tandem.fleet_targets SET state = 'pending', since = clock_timestamp(),"
      "   updated_at = clock_timestamp(), owner = NULL"
      "   WHERE fleet = $1 AND ($2 = '' OR target = $2) AND state IN ('failed', 'held')"
      "   RETURNING target, wave, last_error)"
      " INSERT INTO tandem.fleet_events (fleet, target, wave, kind, detail, actor)"
      " SELECT $1, target, wave, 'retried', 'was failed or held: ' || coalesce(last_error, ''),"
      " $3 FROM t RETURNING id",
      {fleet_, target, actor});
  return static_cast<int>(r.size());
}

void FleetStore::disown(Connection& c, const std::string& target) {
  c.exec(
      "UPDATE tandem.fleet_targets SET owner = NULL, updated_at = clock_timestamp()"
      " WHERE fleet = $1 AND target = $2",
      {fleet_, target});
}

nlohmann::json FleetStore::events(Connection& c, int limit) {
  Rows r = c.exec("SELECT id, " + rfc3339_sql("at") +
                      ", target, wave, kind, detail, actor FROM (SELECT * FROM tandem.fleet_events"
                      " WHERE fleet = $1 ORDER BY id DESC LIMIT $2) e ORDER BY id",
                  {fleet_, std::to_string(limit)});
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < r.size(); ++i) {
    nlohmann::json e = {{"id", r.integer(i, 0)},
                        {"at", r.text(i, 1)},
                        {"kind", r.text(i, 4)},
                        {"actor", r.text(i, 6)}};
    for (auto [col, key] : {std::pair<int, const char*>{2, "target"}, {3, "wave"}, {5, "detail"}}) {
      e[key] = r.is_null(i, col) ? nlohmann::json(nullptr) : nlohmann::json(r.text(i, col));
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string FleetStore::lock_key_sql(const std::string& what) const {
  std::string literal = "tandem.fleet/" + fleet_ + "/" + what;
  std::string quoted = "'";
  for (char ch : literal) {
    quoted += ch;
    if (ch == '\'') quoted += '\'';
  }
  return "hashtextextended(" + quoted + "', 0)";
}

std::string schema_fingerprint_text(Connection& c, const std::vector<std::string>& tables) {
  Rows r = c.exec(R"SQL(
WITH wanted AS (SELECT unnest(string_to_array($1, ',')) AS name),
t AS (
  SELECT w.name, c.oid
    FROM wanted w
    LEFT JOIN pg_namespace n ON n.nspname = split_part(w.name, '.', 1)
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = split_part(w.name, '.', 2)
                        AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
)
SELECT line FROM (
  SELECT t.name || ': no such table' AS line FROM t WHERE t.oid IS NULL
  UNION ALL
  SELECT t.name || ': column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT t.name || ': constraint ' || pg_get_constraintdef(k.oid)
         || CASE WHEN k.convalidated THEN '' ELSE ' (not valid)' END
    FROM t JOIN pg_constraint k ON k.conrelid = t.oid
  UNION ALL
  SELECT t.name || ': index ' || regexp_replace(pg_get_indexdef(i.indexrelid),
                                                '^CREATE (UNIQUE )?INDEX \S+ ON ', 'CREATE \1INDEX ON ')
         || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
    FROM t JOIN pg_index i ON i.indrelid = t.oid
  UNION ALL
  SELECT t.name || ': trigger ' || g.tgname
    FROM t JOIN pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal
) lines ORDER BY line
)SQL",
                  {join(tables, ",")});
  std::string out;
  for (size_t i = 0; i < r.size(); ++i) out += r.text(i, 0) + "\n";
  return out;
}

std::string fingerprint_of(const std::string& text) { return hex(fnv1a(text), 16); }

std::string fingerprint_diff(const std::string& a, const std::string& b, int limit) {
  auto lines = [](const std::string& s) {
    std::set<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) out.insert(l);
    return out;
  };
  const auto la = lines(a), lb = lines(b);
  std::vector<std::string> out;
  for (const auto& l : la) {
    if (!lb.count(l)) out.push_back("-" + l);
  }
  for (const auto& l : lb) {
    if (!la.count(l)) out.push_back("+" + l);
  }
  const size_t n = out.size();
  if (n > static_cast<size_t>(limit)) {
    out.resize(limit);
    out.push_back("... " + std::to_string(n - limit) + " more");
  }
  return join(out, "; ");
}

}  // namespace tandem
