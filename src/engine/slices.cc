#include "engine/slices.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "engine/shadow_compare.h"
#include "engine/shadow_samples.h"
#include "engine/state_store.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

std::string pad_right(const std::string& s, size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

// What the last check of a slice found: differing rows of its copy, or
// (without a copy) parameter sets its shadow-read pairs answered differently.
void record_check(Connection& conn, const Spec& spec, const std::string& slice,
                  long long differing) {
  Rows u = conn.exec(
      "UPDATE tandem.slices SET checked_at = now(), differing = $3 WHERE migration = $1 AND "
      "slice = $2",
      {spec.name, slice, std::to_string(differing)});
  if (u.affected != 1) {
    throw Error(ErrorKind::kFatal,
                "slice " + slice + " of " + spec.name + " went away while it was checked");
  }
}

// Without a copy check, the pairs' differences are what a check records.
void record_pairs(Connection& conn, const Spec& spec, const std::string& slice,
                  const std::vector<SlicePairResult>& pairs) {
  long long differing = 0;
  for (const auto& p : pairs) differing += p.differing;
  record_check(conn, spec, slice, differing);
}

}  // namespace

const SliceRecord* SlicesState::find(const std::string& name) const {
  for (const auto& s : slices) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string SlicesState::blocker() const {
  if (!defined) return "slices not complete yet: not even defined (its prepare phase defines them)";
  std::vector<std::string> waiting;
  for (const auto& s : slices) {
    if (s.stage != SliceStage::kComplete)
      waiting.push_back(s.name + " (" + to_string(s.stage) + ")");
  }
  if (waiting.empty()) return "";
  return "slices not complete yet: " + join(waiting, ", ") +
         "; cutover begins once every slice is complete (`tandemd slices FILE promote SLICE`)";
}

SlicesState read_slices(Connection& conn, const std::string& migration) {
  SlicesState out;
  if (conn.exec("SELECT to_regclass('tandem.slice_plans') IS NOT NULL").text(0, 0) != "t")
    return out;
  const char* iso = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";
  Rows p = conn.exec(std::string("SELECT by_column, new_keys, routes, to_char(since AT TIME ZONE "
                                 "'UTC', ") +
                         iso + "), coalesce(held, '') FROM tandem.slice_plans WHERE migration = $1",
                     {migration});
  if (p.empty()) return out;
  out.defined = true;
  out.by = p.text(0, 0);
  out.new_keys = p.text(0, 1);
  out.routes = p.text(0, 2);
  out.since = p.text(0, 3);
  out.held = p.text(0, 4);
  Rows r = conn.exec(
      std::string("SELECT slice, coalesce(predicate, ''), keys, stage, to_char(since AT TIME ZONE "
                  "'UTC', ") +
          iso + "), actor, coalesce(to_char(checked_at AT TIME ZONE 'UTC', " + iso +
          "), ''), differing FROM tandem.slices WHERE migration = $1 ORDER BY ordinal",
      {migration});
  for (size_t i = 0; i < r.size(); ++i) {
    SliceRecord s;
    s.name = r.text(i, 0);
    s.predicate = r.text(i, 1);
    s.keys = r.integer(i, 2);
    s.stage = slice_stage_from(r.text(i, 3)).value_or(SliceStage::kOld);
    s.since = r.text(i, 4);
    s.actor = r.text(i, 5);
    s.checked_at = r.text(i, 6);
    if (!r.is_null(i, 7)) s.differing = r.integer(i, 7);
    out.slices.push_back(std::move(s));
  }
  return out;
}

nlohmann::json slices_json(const SlicesState& s) {
  nlohmann::json j = {{"defined", s.defined}};
  if (!s.defined) return j;
  j["by"] = s.by;
  j["new_keys"] = s.new_keys;
  j["routes"] = s.routes;
  j["since"] = s.since;
  if (!s.held.empty()) j["held"] = s.held;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& x : s.slices) {
    nlohmann::json e = {{"name", x.name},
                        {"keys", x.keys},
                        {"stage", to_string(x.stage)},
                        {"side", routes_new(x.stage) && s.routes == "open" ? "new" : "old"},
                        {"since", x.since},
                        {"actor", x.actor}};
    if (s.routes == "cut_over") e["side"] = "new";
    if (!x.predicate.empty()) e["where"] = x.predicate;
    if (!x.checked_at.empty()) {
      e["checked_at"] = x.checked_at;
      e["differing"] = x.differing ? nlohmann::json(*x.differing) : nlohmann::json(nullptr);
    }
    list.push_back(std::move(e));
  }
  j["slices"] = std::move(list);
  return j;
}

std::string slices_text(const std::string& migration, const nlohmann::json& j) {
  std::ostringstream o;
  if (!j.value("defined", false)) {
    o << "migration " << migration
      << ": no slices in the database (defined when its prepare phase runs)\n";
    return o.str();
  }
  const std::string r = j.value("routes", "");
  const char* routes = r == "closed" ? "closed: every key on the old side until shadow_read has "
                                       "verified the copy"
                       : r == "open" ? "open: each slice on the side of its stage"
                                     : "cut over: every key on the new side";
  o << "migration " << migration << ": routes by " << j.value("by", "") << ", " << routes
    << "; keys created since the slices were defined: " << j.value("new_keys", "") << " side\n";
  if (j.contains("held")) o << "HELD: " << j["held"].get<std::string>() << "\n";
  o << pad_right("SLICE", 14) << pad_right("STAGE", 10) << pad_right("SIDE", 6)
    << pad_right("KEYS", 10) << pad_right("SINCE", 26) << "LAST CHECK\n";
  for (const auto& x : j.value("slices", nlohmann::json::array())) {
    std::string check = "-";
    if (x.contains("checked_at")) {
      const long long differing = x["differing"].is_number() ? x["differing"].get<long long>() : -1;
      check = x["checked_at"].get<std::string>() +
              (differing == 0 ? " passed" : " " + with_commas(differing) + " differing");
    }
    o << pad_right(x.value("name", ""), 14) << pad_right(x.value("stage", ""), 10)
      << pad_right(x.value("side", ""), 6) << pad_right(with_commas(x.value("keys", 0LL)), 10)
      << pad_right(x.value("since", ""), 26) << check << "\n";
  }
  return o.str();
}

nlohmann::json slice_move_json(const SliceMoveResult& r, const std::string& action) {
  nlohmann::json j = {{"slice", r.slice}, {"action", action}, {"from", to_string(r.from)}};
  if (r.to) j["to"] = to_string(*r.to);
  if (!r.refused.empty()) j["refused"] = r.refused;
  if (r.check) {
    j["check"] = {
        {"rows", r.check->rows}, {"differing", r.check->differing}, {"sample", r.check->sample}};
  }
  if (!r.pairs.empty()) {
    nlohmann::json pairs = nlohmann::json::object();
    for (const auto& p : r.pairs) {
      pairs[p.pair] = {{"compared", p.compared}, {"differing", p.differing}};
      if (!p.first.empty()) pairs[p.pair]["first"] = p.first;
    }
    j["pairs"] = std::move(pairs);
  }
  return j;
}

std::string slice_move_text(const nlohmann::json& j) {
  std::ostringstream o;
  const std::string slice = j.value("slice", "");
  if (j.contains("check")) {
    const auto& c = j["check"];
    const std::string sample = c.value("sample", "");
    o << "slice " << slice << ": " << with_commas(c.value("rows", 0LL)) << " rows checked, "
      << with_commas(c.value("differing", 0LL)) << " differing"
      << (sample.empty() ? "" : " (keys " + sample + ")") << "\n";
  }
  const nlohmann::json pairs = j.value("pairs", nlohmann::json::object());
  for (const auto& [name, p] : pairs.items()) {
    o << "slice " << slice << ": shadow-read pair " << name << ", "
      << with_commas(p.value("compared", 0LL)) << " parameter sets of its keys compared, "
      << with_commas(p.value("differing", 0LL)) << " differing\n";
  }
  if (j.contains("to")) {
    const auto to = slice_stage_from(j["to"].get<std::string>());
    o << "slice " << slice << ": " << j.value("from", "") << " -> " << j["to"].get<std::string>()
      << " (served by the " << (to && routes_new(*to) ? "new" : "old") << " side)\n";
  } else if (j.contains("refused")) {
    o << "slice " << slice << " stays " << j.value("from", "") << ": "
      << j["refused"].get<std::string>() << "\n";
  }
  return o.str();
}

int slice_move_exit_code(const nlohmann::json& j) {
  if (j.contains("check") && j["check"].value("differing", 0LL) > 0) return 10;
  if (j.contains("refused") && j.contains("pairs")) {
    for (const auto& [name, p] : j["pairs"].items()) {
      if (p.value("differing", 0LL) > 0) return 10;
    }
  }
  return j.contains("refused") ? 1 : 0;
}

std::optional<SliceCheckResult> check_slice(Connection& conn, const Spec& spec,
                                            const std::string& slice) {
  const SlicedTables t = sliced_tables(spec);
  if (!t.copy) return std::nullopt;
  Rows r = conn.exec(slice_check_sql(t), {spec.name, slice});
  SliceCheckResult out;
  out.rows = r.integer(0, 0);
  out.differing = r.integer(0, 1);
  out.sample = r.text(0, 2);
  record_check(conn, spec, slice, out.differing);
  return out;
}

SliceMoveResult slice_action(Connection& conn, const Spec& spec, const std::string& slice,
                             const std::string& action, const std::string& actor,
                             const Settings& settings) {
  if (action != "check") {
    const auto move = slice_move_from(action);
    if (!move) throw Error(ErrorKind::kBadInput, "unknown slice action \"" + action + "\"");
    return move_slice(conn, spec, slice, *move, actor, settings);
  }
  SliceMoveResult out;
  out.slice = slice;
  const SlicesState s = read_slices(conn, spec.name);
  const SliceRecord* rec = s.find(slice);
  if (!rec) {
    out.refused = "migration " + spec.name + " has no slice \"" + slice + "\" in the database";
    return out;
  }
  out.from = rec->stage;
  out.check = check_slice(conn, spec, slice);
  out.pairs = compare_slice_pairs(conn, spec, slice);
  if (!out.check) record_pairs(conn, spec, slice, out.pairs);
  return out;
}

std::vector<SlicePairResult> compare_slice_pairs(Connection& conn, const Spec& spec,
                                                 const std::string& slice) {
  std::vector<SlicePairResult> out;
  if (!spec.sliced()) return out;
  const SlicedTables t = sliced_tables(spec);
  const std::string& source = t.source;
  const std::string& by = t.by;
  for (const auto& pair : spec.shadow_reads) {
    if (pair.table != source ||
        std::find(pair.columns.begin(), pair.columns.end(), by) == pair.columns.end())
      continue;
    std::vector<std::string> cols, not_null;
    for (size_t i = 0; i < pair.columns.size(); ++i) {
      cols.push_back("(_row." + quote_ident(pair.columns[i]) + ")::text AS _p" +
                     std::to_string(i + 1));
      not_null.push_back("_row." + quote_ident(pair.columns[i]) + " IS NOT NULL");
    }
    // Distinct parameter sets of the slice's rows, in an order fixed by
    // their values.
    Rows sets =
        conn.exec("SELECT * FROM (SELECT DISTINCT " + join(cols, ", ") + " FROM " + source +
                      " AS _row JOIN tandem.slice_members _m ON _m.migration = $1 AND _m.slice = $2"
                      " AND _m.key = (_row." +
                      quote_ident(by) + ")::text WHERE " + join(not_null, " AND ") +
                      ") _s ORDER BY md5(_s::text) LIMIT " + std::to_string(pair.sample),
                  {spec.name, slice});
    SlicePairResult r;
    r.pair = pair.name;
    r.allowed = pair.max_mismatches;
    const CompareRules rules = pair_rules(pair);
    for (size_t i = 0; i < sets.size(); ++i) {
      std::vector<std::string> params;
      for (size_t c = 0; c < cols.size(); ++c) params.push_back(sets.text(i, c));
      const std::string diff =
          compare_set(conn, pair, rules, params, [&](Transaction& tx) {
            tx.set_timeouts(spec.settings.lock_timeout, spec.settings.statement_timeout);
          }).diff;
      ++r.compared;
      if (!diff.empty() && r.differing++ == 0) r.first = "(" + join(params, ", ") + ")\n" + diff;
    }
    out.push_back(std::move(r));
  }
  return out;
}

CanaryReading read_canary(Connection& conn, const Canary& canary, const std::string& slice) {
  CanaryReading out;
  out.slice = slice;
  try {
    Transaction tx(conn);
    tx.exec("SET TRANSACTION READ ONLY");
    tx.set_timeouts(std::chrono::milliseconds(5000), std::chrono::milliseconds(5000));
    const bool per_slice = canary.query.find("$1") != std::string::npos;
    Rows r = per_slice ? tx.exec(canary.query, {slice}) : tx.exec(canary.query);
    if (r.empty() || r.columns.empty()) {
      out.error = "the canary query returned no value";
    } else {
      out.value = r.text(0, 0);
      if (r.is_null(0, 0)) {
        // No data (no requests yet): nothing says it is unhealthy.
      } else if (out.value == "t" || out.value == "f") {
        out.healthy = out.value == "t";
      } else {
        char* end = nullptr;
        const double v = std::strtod(out.value.c_str(), &end);
        if (end == out.value.c_str() || *end != '\0') {
          out.error =
              "the canary query returned \"" + out.value + "\", neither a boolean nor a number";
        } else {
          out.healthy = v <= canary.max;
        }
      }
    }
  } catch (const std::exception& e) {
    out.error = std::string("the canary query failed: ") + e.what();
  }
  if (!out.error.empty()) out.healthy = false;
  return out;
}

CanaryOutcome watch_canary(Connection& conn, const Spec& spec, const Settings& settings) {
  CanaryOutcome out;
  const Slices* sliced = spec.sliced();
  if (!sliced || !sliced->canary) return out;
  const SlicesState state = read_slices(conn, spec.name);
  if (state.routes != "open") return out;
  std::vector<std::string> why;
  for (const auto& s : state.slices) {
    if (s.stage != SliceStage::kLive) continue;
    CanaryReading r = read_canary(conn, *sliced->canary, s.name);
    if (!r.healthy) {
      why.push_back(s.name + " (" + (r.error.empty() ? "value " + r.value : r.error) + ")");
    }
    out.readings.push_back(std::move(r));
  }
  if (why.empty()) return out;
  // Held first, so that no one promotes a slice between the readings and
  // the demotions.
  const std::string reason = "the canary found " + join(why, ", ") + " unhealthy";
  conn.exec("UPDATE tandem.slice_plans SET held = $2 WHERE migration = $1", {spec.name, reason});
  for (const auto& r : out.readings) {
    if (r.healthy) continue;
    const SliceMoveResult m =
        move_slice(conn, spec, r.slice, SliceMove::kDemote, "canary", settings);
    if (m.to) out.rolled_back.push_back(r.slice);
  }
  StateStore(spec.name).event(conn, "canary_rollback", std::nullopt, "", "canary",
                              {{"slices", out.rolled_back}, {"reason", reason}});
  out.alert = "ALERT: migration " + spec.name + ": " + reason +
              "; back to shadow: " + join(out.rolled_back, ", ") +
              ". Their keys are served by the old side again, nothing written on the new side "
              "is lost; no slice goes live until `tandemd slices FILE resume`";
  spdlog::error("{}", out.alert);
  return out;
}

bool resume_slices(Connection& conn, const Spec& spec, const std::string& actor) {
  Transaction tx(conn);
  Rows r =
      tx.exec("UPDATE tandem.slice_plans SET held = NULL WHERE migration = $1 AND held IS NOT NULL",
              {spec.name});
  if (r.affected == 0) return false;
  StateStore(spec.name).event(conn, "slices_resumed", std::nullopt, "", actor);
  tx.commit();
  return true;
}

SliceMoveResult move_slice(Connection& conn, const Spec& spec, const std::string& slice,
                           SliceMove move, const std::string& actor, const Settings& settings) {
  SliceMoveResult out;
  out.slice = slice;
  if (!spec.sliced()) {
    out.refused = "migration " + spec.name + " is not done in slices (no `slices:` in its spec)";
    return out;
  }
  const SlicesState state = read_slices(conn, spec.name);
  if (!state.defined) {
    out.refused = "migration " + spec.name +
                  " has no slices in this database yet: its prepare phase defines them "
                  "(`tandemd run`)";
    return out;
  }
  const SliceRecord* rec = state.find(slice);
  if (!rec) {
    std::vector<std::string> names;
    for (const auto& s : state.slices) names.push_back(s.name);
    out.refused = "migration " + spec.name + " has no slice \"" + slice +
                  "\" (its slices: " + join(names, ", ") + ")";
    return out;
  }
  out.from = rec->stage;
  if (state.routes == "closed") {
    out.refused = "the routes of " + spec.name +
                  " open at the end of its shadow_read phase, once the whole copy is verified; "
                  "until then every slice stays on the old side (`tandemd run` takes it there)";
    return out;
  }
  if (state.routes == "cut_over") {
    out.refused = spec.name +
                  " has cut over: every key is on the new side; roll the migration back past "
                  "cutover to move slices again";
    return out;
  }
  const SliceStep next = next_slice_stage(rec->stage, move);
  if (!next.to) {
    out.refused = next.refused;
    return out;
  }
  if (*next.to == SliceStage::kLive && !state.held.empty()) {
    out.refused = "no slice goes live while the slices are held: " + state.held +
                  "; `tandemd slices FILE resume` once the cause is understood";
    return out;
  }
  const auto& canary = spec.sliced()->canary;
  if (*next.to == SliceStage::kComplete && canary) {
    const CanaryReading c = read_canary(conn, *canary, slice);
    if (!c.healthy) {
      out.refused = "the canary finds slice " + slice + " unhealthy (" +
                    (c.error.empty() ? "value " + c.value : c.error) + "); it stays live";
      return out;
    }
  }
  if (*next.to == SliceStage::kLive && !spec.shadow_reads.empty()) {
    // The shadow reads of the migration: the last round at the cutover gate
    // (against live traffic) must have passed.
    const RoundReport last = read_last_round(conn, spec.name, spec.shadow_reads, nullptr);
    if (last.round > 0 && !last.passed()) {
      out.refused = "the last shadow-read round (" + std::to_string(last.round) +
                    ") failed a pair's gate (`tandemd diffs`); a slice goes live once a round "
                    "passes";
      return out;
    }
  }
  if (next.copy_check) {
    out.check = check_slice(conn, spec, slice);
    if (out.check && out.check->differing > 0) {
      out.refused = with_commas(out.check->differing) + " rows of slice " + slice +
                    " differ between the old and the new table (keys " + out.check->sample +
                    "); it stays " + to_string(rec->stage);
      return out;
    }
    // The shadow reads, on the slice's own keys.
    out.pairs = compare_slice_pairs(conn, spec, slice);
    if (!out.check) record_pairs(conn, spec, slice, out.pairs);
    for (const auto& p : out.pairs) {
      if (p.differing > p.allowed) {
        out.refused = "shadow-read pair " + p.pair + " answered " + with_commas(p.differing) +
                      " of " + with_commas(p.compared) + " parameter sets of slice " + slice +
                      " differently (at most " + std::to_string(p.allowed) +
                      "); first: " + p.first + "\nit stays " + to_string(rec->stage);
        return out;
      }
    }
  }
  // The change of stage: its routing lock (transactions that routed a key of
  // the slice finish first, new ones wait for the change), the row changed
  // only if it is still in the stage read above, the event with it.
  StateStore store(spec.name);
  auto backoff = settings.retry_backoff;
  for (int attempt = 1;; ++attempt) {
    try {
      Transaction tx(conn);
      tx.set_timeouts(settings.lock_timeout, settings.statement_timeout);
      tx.exec("SELECT pg_advisory_xact_lock(tandem.slice_lock_key($1, $2))", {spec.name, slice});
      Rows u = tx.exec(
          "UPDATE tandem.slices s SET stage = $3, since = now(), actor = $4 "
          " WHERE s.migration = $1 AND s.slice = $2 AND s.stage = $5 AND EXISTS (SELECT 1 FROM "
          "tandem.slice_plans p WHERE p.migration = $1 AND p.routes = 'open')",
          {spec.name, slice, to_string(*next.to), actor, to_string(rec->stage)});
      if (u.affected != 1) {
        throw Error(ErrorKind::kFatal, "slice " + slice + " of " + spec.name +
                                           " changed while it was being moved; read "
                                           "`tandemd slices` and try again");
      }
      store.event(conn, "slice_moved", std::nullopt, "", actor,
                  {{"slice", slice},
                   {"move", to_string(move)},
                   {"from", to_string(rec->stage)},
                   {"to", to_string(*next.to)}});
      tx.commit();
      break;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kRetryable || attempt >= settings.retry_budget) throw;
      spdlog::warn("slice {} of {}: {}; attempt {}/{}, retrying in {}ms", slice, spec.name,
                   e.what(), attempt, settings.retry_budget, backoff.count());
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, settings.retry_backoff_max);
    }
  }
  out.to = next.to;
  spdlog::info("migration {}: slice {} moved by {} ({}): {} -> {}", spec.name, slice, actor,
               to_string(move), to_string(rec->stage), to_string(*next.to));
  return out;
}

}  // namespace tandem
