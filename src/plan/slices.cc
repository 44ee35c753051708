#include "plan/slices.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "plan/checks.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "tandem/error.h"
#include "util/duration.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

std::optional<Canary> parse_canary(SpecReader& r, const YAML::Node& n, const std::string& op) {
  const std::string w = op + ": slices: canary";
  if (!r.open_operation(n, w, schema_keys("canary"))) return std::nullopt;
  Canary c;
  if (auto q = r.scalar(n, "query", true, w)) c.query = *q;
  if (auto m = r.scalar(n, "max", false, w)) {
    char* end = nullptr;
    c.max = std::strtod(m->c_str(), &end);
    if (end == m->c_str() || *end != '\0' || !(c.max >= 0)) {
      r.error(n["max"], w +
                            ": max: expected a number of 0 or more (the highest healthy value "
                            "of the query), got \"" +
                            *m + "\"");
    }
  }
  if (auto e = r.scalar(n, "every", false, w)) {
    const auto d = parse_duration(*e);
    if (!d || d->count() < 100) {
      r.error(n["every"], w +
                              ": every: expected a duration of at least 100ms, such as 10s, got "
                              "\"" +
                              *e + "\"");
    } else {
      c.every = *d;
    }
  }
  if (c.query.empty()) return std::nullopt;
  return c;
}

}  // namespace

std::optional<Slices> parse_slices(SpecReader& r, const YAML::Node& n, const std::string& op) {
  const YAML::Node s = n["slices"];
  if (!s.IsDefined()) return std::nullopt;
  const std::string w = op + ": slices";
  if (!r.open_operation(s, w, schema_keys("slices"))) return std::nullopt;
  const size_t before = r.errors.size();
  Slices out;
  if (s["canary"].IsDefined()) out.canary = parse_canary(r, s["canary"], op);
  out.where = r.at(s);
  r.identifier(s, "by", true, out.by, w);
  if (auto nk = r.scalar(s, "new_keys", false, w)) {
    if (*nk == "new" || *nk == "old") {
      out.new_keys_new = *nk == "new";
    } else {
      r.error(s["new_keys"], w +
                                 ": new_keys: expected new or old (the side that serves keys "
                                 "created after the slices are defined), got \"" +
                                 *nk + "\"");
    }
  }
  const YAML::Node list = s["list"];
  if (!list.IsDefined() || list.IsNull()) {
    r.missing(s, "list", w);
  } else if (!list.IsSequence() || list.size() == 0) {
    r.error(list, w + ": list: expected a list of slices ({name, where}), in order");
  } else {
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      if (!r.open_operation(item, w + " item", schema_keys("slice"))) continue;
      Slice slice;
      r.identifier(item, "name", true, slice.name, w);
      if (!slice.name.empty() && !names.insert(slice.name).second) {
        r.error(item["name"], w + ": two slices are named \"" + slice.name + "\"");
      }
      slice.where = r.expression(item, "where");
      if (!slice.where && i + 1 < list.size()) {
        r.error(item, w + ": slice \"" + slice.name +
                          "\" has no \"where\", so it takes every key and the slices after it "
                          "none; only the last slice may leave it out");
      }
      out.list.push_back(std::move(slice));
    }
  }
  if (r.errors.size() != before) return std::nullopt;
  return out;
}

std::string slices_by_exists(const Slices& s) {
  return checks::column_exists(s.by, "the routing column (slices: by)");
}

std::string slices_rows_reach_back(const CopyTable& op) {
  std::vector<std::string> given = op.key;
  for (const auto& d : op.down) given.push_back(d.first);
  return "SELECT format('column %I of %s is NOT NULL without a default and down does not give "
         "it: a row created on the new side could not reach the old table (add the column to "
         "down)', a.attname, t.rel)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel\n"
         " WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef\n"
         "   AND a.attidentity = '' AND a.attgenerated = ''\n"
         "   AND a.attname <> ALL (ARRAY[" +
         quote_literals(given) + "]::name[])";
}

namespace {

std::string lock_key(const std::string& migration_literal, const std::string& slice_expr) {
  return "tandem.slice_lock_key(" + migration_literal + ", " + slice_expr + ")";
}

// "UPDATE ... ; IF NOT FOUND THEN RAISE" as a DO block: a change of the
// routes' state that finds them in another state is an error.
std::string change_routes(const std::string& migration, const std::string& from,
                          const std::string& to) {
  const std::string m = quote_literal(migration);
  return "DO " +
         dollar_quote("\nBEGIN\n  UPDATE tandem.slice_plans SET routes = " + quote_literal(to) +
                      ", since = now() WHERE migration = " + m +
                      " AND routes = " + quote_literal(from) +
                      ";\n  IF NOT FOUND THEN\n    RAISE EXCEPTION 'the routes of migration % are "
                      "not " +
                      from + "', " + m + ";\n  END IF;\nEND\n") +
         ";\n";
}

}  // namespace

std::string lock_all_routes_sql(const std::string& migration) {
  const std::string m = quote_literal(migration);
  return "SELECT pg_advisory_xact_lock(" + lock_key(m, "''") + ");\n" +
         "SELECT pg_advisory_xact_lock(" + lock_key(m, "s.slice") +
         ") FROM (SELECT slice FROM tandem.slices WHERE migration = " + m + " ORDER BY slice) s;\n";
}

Step define_slices_step(const Spec& spec, const std::string& source, const Slices& s,
                        const std::string& id) {
  const std::string m = quote_literal(spec.name);
  std::vector<std::string> names, rows;
  std::string which = "CASE";
  bool rest = false;
  for (size_t i = 0; i < s.list.size(); ++i) {
    const Slice& sl = s.list[i];
    names.push_back(sl.name);
    rows.push_back("(" + m + ", " + quote_literal(sl.name) + ", " + std::to_string(i + 1) + ", " +
                   (sl.where ? quote_literal(*sl.where) : "NULL") + ")");
    if (sl.where) {
      which += " WHEN (\n" + *sl.where + "\n) THEN " + std::to_string(i + 1);
    } else {
      which += " ELSE " + std::to_string(i + 1);
      rest = true;
    }
  }
  which += " END";
  const std::string by = "(_row." + quote_ident(s.by) + ")::text";
  std::string body =
      "\nDECLARE\n  unmatched bigint;\n  sample text;\nBEGIN\n"
      "  DELETE FROM tandem.slice_plans WHERE migration = " +
      m +
      ";\n"
      "  INSERT INTO tandem.slice_plans (migration, by_column, new_keys) VALUES (" +
      m + ", " + quote_literal(s.by) + ", " + quote_literal(s.new_keys_new ? "new" : "old") +
      ");\n"
      "  INSERT INTO tandem.slices (migration, slice, ordinal, predicate) VALUES\n    " +
      join(rows, ",\n    ") +
      ";\n"
      "  WITH s AS (\n    SELECT " +
      by + " AS k, min(" + which + ") AS o\n      FROM " + source + " AS _row\n     WHERE _row." +
      quote_ident(s.by) +
      " IS NOT NULL GROUP BY 1\n  ), members AS (\n"
      "    INSERT INTO tandem.slice_members (migration, key, slice)\n    SELECT " +
      m + ", k, (ARRAY[" + quote_literals(names) +
      "])[o] FROM s WHERE o IS NOT NULL\n  )\n"
      "  SELECT count(*), (SELECT string_agg(k, ', ') FROM (SELECT k FROM s WHERE o IS NULL\n"
      "    ORDER BY k LIMIT 5) x) INTO unmatched, sample FROM s WHERE o IS NULL;\n";
  if (!rest) {
    body +=
        "  IF unmatched > 0 THEN\n    RAISE EXCEPTION '% values of % in % (%) match no slice; "
        "add a last slice without \"where\" to take the rest', unmatched, " +
        quote_literal(s.by) + ", " + quote_literal(source) + ", sample;\n  END IF;\n";
  }
  body +=
      "  UPDATE tandem.slices sl SET keys = (SELECT count(*) FROM tandem.slice_members mb\n"
      "    WHERE mb.migration = sl.migration AND mb.slice = sl.slice) WHERE sl.migration = " +
      m + ";\nEND\n";
  return StepBuilder(id, Phase::kPrepare,
                     "define the slices of " + spec.name + ": each value of " + s.by + " in " +
                         source + " to the first slice it matches, for good")
      .sql("DO " + dollar_quote(body) + ";\n")
      .rollback("DELETE FROM tandem.slice_plans WHERE migration = " + m + ";\n")
      .lock(StepLock{LockMode::kAccessShare, "(reads the table once)"})
      .access("reads");
}

Step open_routes_step(const Spec& spec, const std::string& id,
                      const std::vector<BackTrigger>& back) {
  // The routing locks first (transactions that routed finish, new ones
  // wait), then the tables': a writer that routed may write a target
  // through the forward trigger, so the other order could deadlock with it.
  std::string create, drop;
  std::vector<std::string> tables;
  for (const auto& b : back) {
    create += create_row_trigger(b.trigger, b.table, b.function, kAfterEveryChange);
    drop += "DROP TRIGGER IF EXISTS " + b.trigger + " ON " + b.table + ";\n";
    tables.push_back(b.table);
  }
  return StepBuilder(id, Phase::kShadowRead,
                     "open the routes of " + spec.name + ": writes of " + join(tables, ", ") +
                         " reach the old side, and each slice is served by the side its stage "
                         "names")
      .sql(lock_all_routes_sql(spec.name) + create + change_routes(spec.name, "closed", "open"))
      .rollback(lock_all_routes_sql(spec.name) + drop + change_routes(spec.name, "open", "closed"))
      .lock(StepLock{LockMode::kShareRowExclusive, "(brief: blocks writes while waiting)"})
      .access("none");
}

Step cut_routes_step(const Spec& spec, const std::string& id) {
  return StepBuilder(id, Phase::kCutover, "route every key of " + spec.name + " to the new side")
      .sql(lock_all_routes_sql(spec.name) + change_routes(spec.name, "open", "cut_over"))
      .rollback(lock_all_routes_sql(spec.name) + change_routes(spec.name, "cut_over", "open"))
      .lock(StepLock{LockMode::kNone, "(the routing locks, brief)"})
      .access("none");
}

Step remove_routes_step(const Spec& spec, const std::string& id) {
  const std::string m = quote_literal(spec.name);
  return StepBuilder(
             id, Phase::kCleanup,
             "forget the slices of " + spec.name + " (tandem.route keeps answering new for it)")
      .sql(lock_all_routes_sql(spec.name) + "DELETE FROM tandem.slices WHERE migration = " + m +
           ";\n")
      .lock(StepLock{LockMode::kNone, "(the routing locks, brief)"})
      .access("none");
}

namespace {

// The routing key of a target row whose key columns are the source's: the
// column itself when it is one of them, else the source row's (its row
// with the same key).
std::string by_through_key(const std::string& source, const std::vector<std::string>& key,
                           const std::string& by) {
  if (std::find(key.begin(), key.end(), by) != key.end()) return "_row." + quote_ident(by);
  return "(SELECT _s." + quote_ident(by) + " FROM " + source + " AS _s WHERE " +
         column_tuple(key, "_s.") + " = " + column_tuple(key, "_row.") + ")";
}

}  // namespace

SlicedTables sliced_tables(const Spec& spec) {
  const Operation* o = spec.sliced_operation();
  if (!o) throw Error(ErrorKind::kBadInput, "migration " + spec.name + " has no slices");
  SlicedTables t;
  t.by = spec.sliced()->by;
  if (const auto* c = std::get_if<CopyTable>(&o->op)) {
    t.source = qualified(c->schema, c->table);
    t.copy = Mirror{t.source, qualified(c->to_schema, c->to_table), c->key, c->up, true, ""};
    // A column that is not a key column: what down makes of the target row.
    t.by_of_target = "_row." + quote_ident(t.by);
    for (const auto& [column, expr] : c->down) {
      if (column == t.by) t.by_of_target = "(" + expr + ")";
    }
  } else if (const auto* m = std::get_if<MoveColumn>(&o->op)) {
    t.source = qualified(m->schema, m->table);
    t.copy = Mirror{t.source, qualified(m->to_schema, m->to_table),
                    m->key,   {{m->to_column, "_row." + quote_ident(m->column)}},
                    true,     ""};
    t.by_of_target = by_through_key(t.source, m->key, t.by);
  } else if (const auto* x = std::get_if<Transform>(&o->op)) {
    t.source = qualified(x->schema, x->table);
  }
  return t;
}

std::string slice_check_sql(const SlicedTables& t) {
  const Mirror& forward = *t.copy;
  std::vector<std::string> quoted_key;
  for (const auto& k : forward.key) quoted_key.push_back(quote_ident(k));
  const std::string member =
      " JOIN tandem.slice_members _m ON _m.migration = $1 AND _m.slice = $2 AND _m.key = ";
  return "WITH src AS (\n  SELECT " + key_text(quoted_key, "_row.") + " AS k, " +
         mirror_mismatch(forward) + " AS bad\n    FROM " + t.source + " AS _row" + member +
         "(_row." + quote_ident(t.by) + ")::text\n), orphans AS (\n  SELECT " +
         key_text(quoted_key, "_row.") + " AS k\n    FROM " + forward.to + " AS _row" + member +
         "(" + t.by_of_target + ")::text\n   WHERE " + orphan_mismatch(forward) +
         "\n), bad AS (\n  SELECT k FROM src WHERE bad UNION ALL SELECT k FROM orphans\n)\n"
         "SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM bad),\n"
         "       (SELECT coalesce(string_agg(k, ' '), '') FROM (SELECT k FROM bad ORDER BY k "
         "LIMIT 5) b)";
}

const char* to_string(SliceStage s) {
  switch (s) {
    case SliceStage::kOld:
      return "old";
    case SliceStage::kShadow:
      return "shadow";
    case SliceStage::kLive:
      return "live";
    case SliceStage::kComplete:
      return "complete";
  }
  return "?";
}

std::optional<SliceStage> slice_stage_from(const std::string& s) {
  for (SliceStage st :
       {SliceStage::kOld, SliceStage::kShadow, SliceStage::kLive, SliceStage::kComplete}) {
    if (s == to_string(st)) return st;
  }
  return std::nullopt;
}

bool routes_new(SliceStage s) { return s == SliceStage::kLive || s == SliceStage::kComplete; }

const char* to_string(SliceMove m) {
  switch (m) {
    case SliceMove::kPromote:
      return "promote";
    case SliceMove::kDemote:
      return "demote";
    case SliceMove::kRollback:
      return "rollback";
  }
  return "?";
}

std::optional<SliceMove> slice_move_from(const std::string& s) {
  for (SliceMove m : {SliceMove::kPromote, SliceMove::kDemote, SliceMove::kRollback}) {
    if (s == to_string(m)) return m;
  }
  return std::nullopt;
}

SliceStep next_slice_stage(SliceStage from, SliceMove move) {
  SliceStep out;
  switch (move) {
    case SliceMove::kPromote:
      if (from == SliceStage::kComplete) {
        out.refused = "the slice is complete already; the migration's cutover takes it from there";
      } else {
        out.to = static_cast<SliceStage>(static_cast<int>(from) + 1);
        // Into shadow and into live: the copy of the slice's rows is checked
        // first (live is where the new side starts to serve them).
        out.copy_check = from != SliceStage::kLive;
      }
      break;
    case SliceMove::kDemote:
      if (from == SliceStage::kOld) {
        out.refused = "the slice is on the old side already (stage old)";
      } else {
        out.to = static_cast<SliceStage>(static_cast<int>(from) - 1);
      }
      break;
    case SliceMove::kRollback:
      if (from == SliceStage::kOld) {
        out.refused = "the slice is on the old side already (stage old)";
      } else {
        out.to = SliceStage::kOld;
      }
      break;
  }
  return out;
}

}  // namespace tandem
