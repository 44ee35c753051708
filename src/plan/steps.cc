#include "plan/steps.h"

#include "plan/index_build.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

HelperNames::HelperNames(const Spec& spec, const std::string& schema, const std::string& table,
                         const std::string& column)
    : tag_(hex(fnv1a(spec.name + "|" + schema + "." + table + "." + column), 6)),
      base_(utf8_prefix(table + "__" + column, 40) + "_" + tag_),
      column_(utf8_prefix(column, 40)) {}

std::string HelperNames::function(const std::string& suffix) const {
  return "tandem." + quote_ident(base_ + "_" + suffix);
}

std::string HelperNames::trigger(const std::string& suffix) const {
  return quote_ident("zz_tandem_" + column_ + "_" + tag_ + "_" + suffix);
}

std::string HelperNames::plain(const std::string& prefix) const {
  return prefix + column_ + "_" + tag_;
}

std::string create_row_trigger(const std::string& trigger, const std::string& table,
                               const std::string& function, const char* timing) {
  return "CREATE TRIGGER " + trigger + " " + timing + " ON " + table +
         "\n  FOR EACH ROW EXECUTE FUNCTION " + function + "();\n";
}

std::string create_column_sync_trigger(const std::string& trigger, const std::string& table,
                                       const std::string& function, const std::string& column) {
  // tgtype bits: 1 row, 2 before, 16 update.
  return "DO " +
         dollar_quote(
             "\nBEGIN\n"
             "  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = " +
             quote_literal(table) +
             "::regclass\n"
             "               AND NOT tgisinternal AND tgtype & 19 = 19"
             " AND tgname NOT LIKE 'zz\\_tandem\\_%') THEN\n    " +
             create_row_trigger(trigger, table, function) + "  ELSE\n    " +
             create_row_trigger(trigger, table, function,
                                (std::string(kBeforeWrite) + " OF " + column).c_str()) +
             "  END IF;\nEND\n") +
         ";\n";
}

Step row_trigger_step(const std::string& id, Phase phase, const std::string& description,
                      const std::string& trigger, const std::string& table,
                      const std::string& function, const char* timing) {
  return StepBuilder(id, phase, description)
      .sql(create_row_trigger(trigger, table, function, timing))
      .rollback("DROP TRIGGER IF EXISTS " + trigger + " ON " + table + ";\n")
      .lock(StepLock{LockMode::kShareRowExclusive, "(brief: blocks writes while waiting)"})
      .access("none");
}

namespace {

// A comparison of `pair` as step `id` of `phase`; `when` starts its
// description.
Step pair_step(const Spec& spec, const ShadowReadPair& pair, const std::string& id, Phase phase,
               const std::string& when) {
  std::string draw;
  if (pair.query.empty()) {
    std::vector<std::string> values, present;
    for (const auto& c : pair.columns) {
      values.push_back("_row." + quote_ident(c) + "::text");
      present.push_back("_row." + quote_ident(c) + " IS NOT NULL");
    }
    const std::string rel = quote_literal(pair.table) + "::regclass";
    const std::string n = std::to_string(pair.sample);
    // Twice the sample's share of the rows the catalog estimates (every
    // leaf of a partitioned table), then a shuffle that the seed fixes. A
    // round ($3) moves the seed on.
    const std::string seed = "(" + std::to_string(pair.seed) + " + $3::int)";
    draw = "SELECT ARRAY[" + join(values, ", ") + "] FROM " + pair.table +
           " AS _row\n    TABLESAMPLE BERNOULLI (least(100, 200.0 * " + n +
           " / greatest(1, (SELECT sum(greatest(c.reltuples, 0)) FROM pg_class c\n"
           "      WHERE c.oid IN (SELECT " +
           rel + " UNION ALL SELECT relid FROM pg_partition_tree(" + rel +
           "))))))\n    REPEATABLE (" + seed + ")\n   WHERE " + join(present, " AND ") +
           "\n   ORDER BY md5(ARRAY[" + join(values, ", ") + "]::text || " + seed +
           "::text) LIMIT " + n;
  } else {
    // Round 0 takes the query's first rows; a later round ($3) as many in
    // an order that the round fixes.
    const std::string values = "SELECT ARRAY(SELECT value FROM json_each_text(row_to_json(_q)))";
    const std::string n = std::to_string(pair.sample);
    draw = "(" + values + " FROM (" + pair.query + ") AS _q WHERE $3::int = 0 LIMIT " + n +
           ")\n  UNION ALL\n  (" + values + " FROM (" + pair.query +
           ") AS _q WHERE $3::int > 0\n   ORDER BY md5(row_to_json(_q)::text || $3::int) LIMIT " +
           n + ")";
  }
  auto commented = [](const std::string& what, const std::string& sql) {
    std::string out = "-- " + what + ":\n";
    size_t start = 0;
    while (start <= sql.size()) {
      const size_t end = sql.find_first_of("\r\n", start);  // PostgreSQL ends a comment at either
      out += "--   " +
             sql.substr(start, end == std::string::npos ? std::string::npos : end - start) + "\n";
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return out;
  };
  std::string gate = "more than " + std::to_string(pair.max_mismatches) + " difference" +
                     (pair.max_mismatches == 1 ? "" : "s");
  if (pair.min_samples > 0)
    gate += " or fewer than " + std::to_string(pair.min_samples) + " samples";
  return StepBuilder(id, phase,
                     when + "answer " + pair.name + " with the old and the new query on up to " +
                         std::to_string(pair.sample) +
                         " sampled parameter sets, both on one snapshot per set, compared " +
                         pair.compare + "; " + gate + " fail it")
      .kind(StepKind::kShadowRead)
      .sql(
          "INSERT INTO tandem.shadow_samples (migration, step_id, round, ordinal, params)\n"
          "SELECT $1, $2, $3::int, row_number() OVER (), p FROM (\n  " +
          draw + ") AS _s(p)\n WHERE array_position(p, NULL) IS NULL;\n" +
          (pair.write.empty() ? ""
                              : commented("write (before both reads, rolled back)", pair.write)) +
          commented("old", pair.old_query) + commented("new", pair.new_query))
      .rollback("DELETE FROM tandem.shadow_samples WHERE migration = " + quote_literal(spec.name) +
                " AND step_id = " + quote_literal(id) + ";\n" +
                (phase == Phase::kShadowRead
                     ? "DELETE FROM tandem.shadow_rounds WHERE migration = " +
                           quote_literal(spec.name) + ";\n"
                     : ""))
      .lock(pair.write.empty()
                ? StepLock{LockMode::kAccessShare, "(reads only, in READ ONLY transactions)"}
                : StepLock{LockMode::kRowExclusive,
                           "(a write probe's row locks, for one short transaction each, always "
                           "rolled back)"})
      .access("reads")
      .reads(pair);
}

}  // namespace

Step shadow_read_step(const Spec& spec, const ShadowReadPair& pair) {
  return pair_step(spec, pair, std::string(kReadsPrefix) + pair.name, Phase::kShadowRead, "");
}

Step shadow_read_after_cutover_step(const Spec& spec, const ShadowReadPair& pair) {
  ShadowReadPair after = pair;
  after.write = pair.write_after_cutover;
  after.write_after_cutover.clear();
  return pair_step(spec, after, std::string(kReadsPrefix) + pair.name + ".after_cutover",
                   Phase::kCutover, "after cutover, through the new path: ");
}

Step trigger_function_step(const std::string& id, const std::string& description,
                           const std::string& function, const std::string& body) {
  return StepBuilder(id, Phase::kPrepare, description)
      .sql("CREATE FUNCTION " + function + "() RETURNS trigger LANGUAGE plpgsql AS " +
           dollar_quote("\n" + body) + ";\n")
      .rollback("DROP FUNCTION IF EXISTS " + function + "();\n")
      .lock(StepLock{LockMode::kNone, ""})
      .access("none");
}

Step drop_helpers_step(const std::string& id, const std::string& description,
                       const std::vector<std::string>& triggers_on,
                       const std::vector<std::string>& functions,
                       const std::vector<std::string>& tables) {
  Step s;
  s.id = id;
  s.phase = Phase::kCleanup;
  s.description = description;
  for (const auto& t : triggers_on) s.sql += "DROP TRIGGER IF EXISTS " + t + ";\n";
  for (const auto& f : functions) s.sql += "DROP FUNCTION IF EXISTS " + f + "();\n";
  for (const auto& t : tables) s.locks.push_back({t, "SHARE ROW EXCLUSIVE"});
  s.reversible = false;
  s.lock = StepLock::metadata_only();
  s.table_access = "none";
  return s;
}

Step drop_back_sync_step(const std::string& id, const std::string& trigger,
                         const std::string& table, const std::string& to) {
  return drop_helpers_step(id,
                           "drop the trigger that carries writes of " + table + " back to " + to +
                               " (a transaction of its own: one table's lock at a time, whatever "
                               "order writers take the tables in)",
                           {trigger + " ON " + table}, {}, {});
}

Step add_nullable_column_step(const std::string& id, const std::string& table,
                              const std::string& column, const std::string& type,
                              const std::string& description) {
  return StepBuilder(id, Phase::kPrepare,
                     description.empty()
                         ? "add column " + column + " " + type + " (nullable, no default)"
                         : description)
      .sql("ALTER TABLE " + table + " ADD COLUMN " + column + " " + type + ";\n")
      .rollback("ALTER TABLE " + table + " DROP COLUMN IF EXISTS " + column + ";\n")
      .lock(StepLock::metadata_only())
      .access("none");
}

Step drop_column_step(const std::string& id, const std::string& description,
                      const std::string& table, const std::string& column) {
  return StepBuilder(id, Phase::kCleanup, description)
      .sql("ALTER TABLE " + table + " DROP COLUMN IF EXISTS " + column + ";\n")
      .reversible(false)
      .lock(StepLock::metadata_only())
      .access("none (space is reclaimed by later updates and VACUUM)");
}

Step concurrent_index_step(const std::string& id, Phase phase, const std::string& schema,
                           const std::string& name, const std::string& table,
                           const std::string& definition, bool unique) {
  const std::string index = qualified(schema, name);
  Step s;
  s.id = id;
  s.phase = phase;
  s.description =
      std::string("build ") + (unique ? "unique " : "") + "index " + index + " concurrently";
  s.sql = std::string("CREATE ") + (unique ? "UNIQUE " : "") + "INDEX CONCURRENTLY " +
          quote_ident(name) + " ON " + table + " " + definition + ";\n";
  s.rollback_sql = "DROP INDEX CONCURRENTLY IF EXISTS " + index + ";\n";
  s.lock = {LockMode::kShareUpdateExclusive, "(reads and writes go on; waits for older writers)"};
  s.table_access = "scans table twice";
  make_index_build_idempotent(s, index);
  return s;
}

Step backfill_step(const std::string& id, const std::string& description, BatchWork work,
                   int batch_size) {
  Step s;
  s.id = id;
  s.phase = Phase::kBackfill;
  s.kind = StepKind::kBackfill;
  s.description = description;
  const std::string range =
      "<key> in the next " + std::to_string(batch_size) + " keys after the checkpoint";
  if (work.statement.empty()) {
    s.sql = "UPDATE " + work.table + " AS _row SET " + work.set_clause + "\n WHERE " +
            (work.filter.empty() ? "" : work.filter + " AND ") + range;
  } else {
    s.sql =
        fill_template(work.statement,
                      {{kBatchRange, (work.filter.empty() ? "" : work.filter + " AND ") + range}});
  }
  s.sql += "  -- one transaction per batch\n";
  s.batch = std::move(work);
  s.rollback_sql = "";
  s.lock = {LockMode::kRowExclusive, "; row locks on one batch at a time"};
  s.table_access = "updates every row";
  return s;
}

Step irreversible_batch_step(const std::string& id, const std::string& description, BatchWork work,
                             int batch_size, const std::string& access) {
  Step s = backfill_step(id, description, std::move(work), batch_size);
  s.reversible = false;
  s.rollback_sql.reset();
  s.table_access = access;
  return s;
}

Step analyze_step(const std::string& id, const std::string& table) {
  return StepBuilder(id, Phase::kBackfill,
                     "gather the planner's statistics of " + table + ", which the backfill filled")
      .sql("ANALYZE (SKIP_LOCKED) " + table + ";\n")
      .rollback("")
      .lock(StepLock{LockMode::kShareUpdateExclusive, "(skipped if not free at once)"})
      .access("reads a sample of rows");
}

Step verify_step(const std::string& id, const std::string& description, BatchWork work) {
  std::string sql = "SELECT <key> FROM " + work.table + " AS _row WHERE " + work.mismatch +
                    "  -- in key chunks\n";
  if (!work.compare.empty()) {
    sql += "-- walked by (" + join(work.compare_key, ", ") + "), a chunk is checked as a whole:\n" +
           fill_template(work.compare, {{kBatchRange, "<key> in the chunk"}}) + "\n";
  }
  return StepBuilder(id, Phase::kShadowRead, description)
      .kind(StepKind::kVerify)
      .sql(sql)
      .batch(std::move(work))
      .rollback("")
      .lock(StepLock{LockMode::kAccessShare, ""})
      .access("scans table");
}

Step rename_step(const std::string& id, const std::string& table, const std::string& what,
                 const std::string& from, const std::string& to) {
  const std::string rename = "ALTER TABLE " + table + " RENAME " + what + " ";
  return StepBuilder(
             id, Phase::kCutover,
             std::string(what == "COLUMN" ? "rename " : "rename constraint ") + from + " to " + to)
      .sql(rename + from + " TO " + to + ";\n")
      .rollback(rename + to + " TO " + from + ";\n")
      .lock(StepLock::metadata_only())
      .access("none");
}

Step forget_step(const std::string& id, const std::string& description, const std::string& sql) {
  return StepBuilder(id, Phase::kCleanup, description)
      .sql(sql)
      .reversible(false)
      .lock(StepLock{LockMode::kNone, "(a row of tandem's own)"})
      .access("none");
}

std::string swap_locks_query(const std::string& regclass, const std::vector<std::string>& columns) {
  auto uses = [&](const char* key) -> std::string {
    return "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = " + regclass +
           " AND a.attname IN (" + quote_literals(columns) +
           ") AND NOT a.attisdropped\n"
           "                    AND a.attnum = ANY (c." +
           key + "))";
  };
  return "SELECT format('%I.%I', n.nspname, r.relname), 'ACCESS EXCLUSIVE' FROM (\n"
         "  SELECT c.confrelid AS rel, 0 AS o FROM pg_constraint c\n"
         "   WHERE c.conrelid = " +
         regclass + " AND c.contype = 'f' AND c.confrelid <> " + regclass + "\n     AND " +
         uses("conkey") + "\n  UNION ALL SELECT " + regclass +
         "::oid, 1\n"
         "  UNION ALL SELECT c.conrelid, 2 FROM pg_constraint c\n"
         "   WHERE c.confrelid = " +
         regclass + " AND c.conrelid <> " + regclass + "\n     AND " + uses("confkey") +
         ") x\n"
         "  JOIN pg_class r ON r.oid = x.rel JOIN pg_namespace n ON n.oid = r.relnamespace\n"
         " GROUP BY 1 ORDER BY min(x.o), 1";
}

Step validate_pending_step(const std::string& id, const std::string& regclass) {
  return StepBuilder(id, Phase::kCutover,
                     "validate the foreign keys and checks the swap added again NOT VALID, each in "
                     "its own transaction")
      .sql("SELECT * FROM tandem.pending_validations(" + regclass + ");\n")
      .rollback("")
      .generates()
      .lock({LockMode::kShareUpdateExclusive,
             "on each constraint's table, ROW SHARE on the table it references (reads and "
             "writes go on)"})
      .access("scans each table whose constraint it validates");
}

void plan_kept_change(const std::string& id, const std::string& table, const std::string& item,
                      const std::string& restore, const std::string& change,
                      const std::string& description, const StepLock& lock,
                      std::vector<Step>& out) {
  const std::string key = quote_literal(table) + "::regclass, " + quote_literal(item);
  out.push_back(
      StepBuilder(id + "change", Phase::kCutover, description)
          .sql("INSERT INTO tandem.undo VALUES (" + key + ", " + restore + ");\n" + change)
          .rollback("SELECT tandem.undo_change(" + key + ");\n")
          .lock(lock)
          .access("none"));
  out.push_back(forget_step(id + "forget",
                            "forget how to undo the " + item + " (kept for a rollback)",
                            "DELETE FROM tandem.undo WHERE relid = " + quote_literal(table) +
                                "::regclass AND item = " + quote_literal(item) + ";\n"));
}

}  // namespace tandem
