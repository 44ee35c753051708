#include "daemon/submission_store.h"

#include "engine/state_store.h"

namespace tandem {

void PgSubmissionStore::prepare(Connection& c) { StateStore::ensure_schema(c); }

nlohmann::json PgSubmissionStore::events(Connection& c, const std::string& name, int limit,
                                         long long after) {
  if (StateStore::schema_version(c) == 0) return nlohmann::json::array();
  return StateStore(name).events_json(c, limit, after);
}

std::vector<SubmissionStore::Submission> PgSubmissionStore::all(Connection& c) {
  Rows r = c.exec(
      "SELECT name, spec_text, file, desired, approved::text FROM tandem.submissions"
      " ORDER BY submitted_at");
  std::vector<Submission> out;
  for (size_t i = 0; i < r.size(); ++i) {
    out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2),
                   parse_desired(r.text(i, 3)).value_or(Desired::kRun),
                   parse_phase_array(r.text(i, 4))});
  }
  return out;
}

std::optional<SubmissionStore::Wishes> PgSubmissionStore::wishes(Connection& c,
                                                                 const std::string& name) {
  Rows r = c.exec(
      "SELECT desired, approved::text, live::text FROM tandem.submissions WHERE name = $1", {name});
  if (r.empty()) return std::nullopt;
  return Wishes{parse_desired(r.text(0, 0)).value_or(Desired::kRun),
                parse_phase_array(r.text(0, 1)),
                nlohmann::json::parse(r.text(0, 2), nullptr, false)};
}

std::optional<std::string> PgSubmissionStore::spec_text(Connection& c, const std::string& name) {
  Rows r = c.exec("SELECT spec_text FROM tandem.submissions WHERE name = $1", {name});
  if (r.empty()) return std::nullopt;
  return r.text(0, 0);
}

void PgSubmissionStore::insert(Connection& c, const std::string& name, const std::string& spec_text,
                               const std::string& file, const std::string& actor) {
  Transaction tx(c);
  tx.exec(
      "INSERT INTO tandem.submissions (name, spec_text, file, submitted_by)"
      " VALUES ($1, $2, $3, $4)",
      {name, spec_text, file, actor});
  StateStore(name).event(c, "submitted", std::nullopt, "", actor, {{"file", file}});
  tx.commit();
}

void PgSubmissionStore::forget(Connection& c, const std::string& name, const std::string& actor) {
  Transaction tx(c);
  Rows r = tx.exec("DELETE FROM tandem.submissions WHERE name = $1 RETURNING file, submitted_by",
                   {name});
  if (r.size() != 1) throw Error(ErrorKind::kFatal, "no submission " + name + " to forget");
  StateStore(name).event(c, "forgotten", std::nullopt, "", actor,
                         {{"file", r.text(0, 0)}, {"submitted_by", r.text(0, 1)}});
  tx.commit();
}

void PgSubmissionStore::replace(Connection& c, const std::string& name,
                                const std::string& spec_text, const std::string& file,
                                const std::string& actor) {
  Transaction tx(c);
  Rows r = tx.exec(
      "UPDATE tandem.submissions SET spec_text = $2, file = $3, submitted_by = $4,"
      " submitted_at = now(), updated_at = now(), desired = 'run', approved = '{}',"
      " live = '{}' WHERE name = $1 RETURNING 1",
      {name, spec_text, file, actor});
  if (r.size() != 1) throw Error(ErrorKind::kFatal, "no submission " + name + " to replace");
  StateStore(name).event(c, "resubmitted", std::nullopt, "", actor, {{"file", file}});
  tx.commit();
}

void PgSubmissionStore::set_desired(Connection& c, const std::string& name, Desired desired,
                                    const std::string& event, const std::string& actor) {
  Transaction tx(c);
  tx.exec("UPDATE tandem.submissions SET desired = $2, updated_at = now() WHERE name = $1",
          {name, to_string(desired)});
  if (!event.empty()) StateStore(name).event(c, event, std::nullopt, "", actor);
  tx.commit();
}

void PgSubmissionStore::approve(Connection& c, const std::string& name, Phase phase,
                                const std::vector<std::string>& accept, const std::string& actor) {
  Transaction tx(c);
  tx.exec(
      "UPDATE tandem.submissions SET approved = array_append(approved, $2::int),"
      " updated_at = now() WHERE name = $1 AND NOT ($2::int = ANY (approved))",
      {name, std::to_string(static_cast<int>(phase))});
  nlohmann::json detail = nlohmann::json::object();
  if (!accept.empty()) {
    tx.exec(
        "UPDATE tandem.submissions SET live = jsonb_set(live, '{accepted}',"
        " coalesce(live->'accepted', '[]') || $2::jsonb), updated_at = now() WHERE name = $1",
        {name, nlohmann::json(accept).dump()});
    detail["accept_differences"] = accept;
  }
  StateStore(name).event(c, "approve_requested", phase, "", actor, detail);
  tx.commit();
}

void PgSubmissionStore::set_throttle(Connection& c, const std::string& name,
                                     const std::optional<nlohmann::json>& until,
                                     const nlohmann::json& detail, const std::string& actor) {
  Transaction tx(c);
  if (!until) {
    tx.exec(
        "UPDATE tandem.submissions SET live = live - 'throttle', updated_at = now()"
        " WHERE name = $1",
        {name});
    StateStore(name).event(c, "throttle_lifted", std::nullopt, "", actor);
  } else {
    const nlohmann::json t = {{"until", *until}};
    tx.exec(
        "UPDATE tandem.submissions SET live = jsonb_set(live, '{throttle}', $2::jsonb),"
        " updated_at = now() WHERE name = $1",
        {name, t.dump()});
    StateStore(name).event(c, "throttle_requested", std::nullopt, "", actor, detail);
  }
  tx.commit();
}

void PgSubmissionStore::merge_settings(Connection& c, const std::string& name,
                                       const nlohmann::json& changed, const std::string& actor) {
  Transaction tx(c);
  tx.exec(
      "UPDATE tandem.submissions SET live = jsonb_set(live, '{settings}',"
      " coalesce(live->'settings', '{}') || $2::jsonb), updated_at = now() WHERE name = $1",
      {name, changed.dump()});
  StateStore(name).event(c, "settings_changed", std::nullopt, "", actor, changed);
  tx.commit();
}

std::vector<std::pair<std::string, std::string>> PgSubmissionStore::ahead_of(
    Connection& c, const std::string& name) {
  Rows r = c.exec(
      "SELECT s.name, s.spec_text FROM tandem.submissions s"
      " LEFT JOIN tandem.migrations m ON m.name = s.name,"
      " (SELECT submitted_at, name FROM tandem.submissions WHERE name = $1) me"
      " WHERE (s.submitted_at, s.name) < (me.submitted_at, me.name)"
      " AND coalesce(m.state, 'pending') NOT IN ('completed', 'rolled_back')"
      " AND NOT (m.name IS NULL AND s.desired = 'rollback')"
      " UNION ALL"
      // Migrations run by `tandemd run`, which the daemon does not own.
      " SELECT m.name, m.spec_text FROM tandem.migrations m"
      " WHERE m.name <> $1 AND m.state NOT IN ('completed', 'rolled_back')"
      " AND NOT EXISTS (SELECT 1 FROM tandem.submissions s WHERE s.name = m.name)",
      {name});
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < r.size(); ++i) out.emplace_back(r.text(i, 0), r.text(i, 1));
  return out;
}

}  // namespace tandem
