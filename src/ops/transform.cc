// transform: rows of a source table reshaped into rows of other tables by SQL
// the spec gives (a document into normalized tables, one table split in
// several, several merged).
//
//   prepare     create the target tables (`create`); the functions: apply and
//               remove (the spec's SQL over `_row`, the source row), each
//               (remove, then apply) and the trigger's; a dry run of each on
//               up to 100 source rows, undone, which names the first row it
//               fails on
//   dual_write  trigger on the source: INSERT applies the new row, UPDATE
//               removes the old row's target rows and applies the new row's,
//               DELETE removes, in the writer's transaction
//   backfill    keyset batches over the source, each row locked (FOR UPDATE)
//               while it is transformed, so no writer's change slips between
//               the read and the write; the created targets analysed
//   shadow_read the spec's shadow_reads pairs compare old and new answers
//   cleanup     drop the trigger and the functions (the source stays: drop
//               it with an `sql` operation once nothing reads it)
//
// In slices (docs/slices.md; `reverse` required): prepare defines them; the
// reverse triggers come at the end of shadow_read with the routes' opening,
// cutover routes every key to the targets, cleanup forgets the slices first.
#include <cctype>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/slices.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

// The rows a dry run transforms before the trigger goes live.
constexpr int kDryRunRows = 100;

// A target named "name" (in the source's schema) or "schema.name".
std::pair<std::string, std::string> target_of(const Transform& op, const std::string& name) {
  const auto dot = name.find('.');
  if (dot == std::string::npos) return {op.schema, name};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

std::string qualified_target(const Transform& op, const std::string& name) {
  const auto [schema, table] = target_of(op, name);
  return qualified(schema, table);
}

// The spec's statements as a PL/pgSQL function of the source row.
std::string row_function(const std::string& function, const std::string& source,
                         const std::string& sql) {
  std::string body = sql;
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back()))) body.pop_back();
  if (body.empty() || body.back() != ';') body += ";";
  // Names in it resolve as they did for tandem's session when the function
  // was created, whatever search_path a writer's session has.
  return "CREATE FUNCTION " + function + "(_row " + source +
         ") RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS " +
         dollar_quote("\nBEGIN\n" + body + "\nEND\n") + ";\n";
}

// "(_row.k1, _row.k2)": the source's key, for ORDER BY.
std::string column_tuple_of(const Transform& op) {
  std::vector<std::string> parts;
  for (const auto& k : op.key) parts.push_back("_row." + quote_ident(k));
  return "(" + join(parts, ", ") + ")";
}

// A trigger's body that does `work` under the sync's guard: a write that the
// other direction makes (the guard is on then) is not sent back.
std::string guarded(const std::string& guard, const std::string& work) {
  const std::string g = quote_literal(guard);
  return "\nBEGIN\n  IF current_setting(" + g +
         ", true) = 'on' THEN RETURN NULL; END IF;\n  PERFORM set_config(" + g +
         ", 'on', true);\n" + work + "  PERFORM set_config(" + g +
         ", 'off', true);\n  RETURN NULL;\nEND\n";
}

// `first`(OLD) for an UPDATE or DELETE, then `second`(NEW) for an INSERT or
// UPDATE.
std::string old_then_new(const std::string& first, const std::string& second) {
  return "  IF TG_OP <> 'INSERT' THEN\n    PERFORM " + first +
         "(OLD);\n  END IF;\n  IF TG_OP <> 'DELETE' THEN\n    PERFORM " + second +
         "(NEW);\n  END IF;\n";
}

struct Reverse {
  std::string target;    // qualified
  std::string function;  // the spec's SQL over the target row
  std::string trigger_function, trigger;
};

struct Names {
  std::string source, apply, remove, each, sync, trigger, guard;
  std::vector<Reverse> reverse;
  std::string signature(const std::string& function) const { return function + "(" + source + ")"; }
  std::string drop_functions() const {
    std::string sql = "DROP FUNCTION IF EXISTS " + sync + "(), " + signature(each) + ", " +
                      signature(apply) + ", " + signature(remove);
    for (const auto& r : reverse)
      sql += ", " + r.trigger_function + "(), " + r.function + "(" + r.target + ")";
    return sql + ";\n";
  }
};

Step functions_step(const std::string& id, const Transform& op, const Names& n) {
  std::string sql = row_function(n.apply, n.source, op.apply) +
                    row_function(n.remove, n.source, op.remove) + "CREATE FUNCTION " + n.each +
                    "(_row " + n.source + ") RETURNS void LANGUAGE plpgsql AS " +
                    dollar_quote("\nBEGIN\n  PERFORM " + n.remove + "(_row);\n  PERFORM " +
                                 n.apply + "(_row);\nEND\n") +
                    ";\nCREATE FUNCTION " + n.sync + "() RETURNS trigger LANGUAGE plpgsql AS " +
                    dollar_quote(guarded(n.guard, old_then_new(n.remove, n.apply))) + ";\n";
  for (size_t i = 0; i < n.reverse.size(); ++i) {
    const Reverse& r = n.reverse[i];
    sql += row_function(r.function, r.target, op.reverse[i].second) + "CREATE FUNCTION " +
           r.trigger_function + "() RETURNS trigger LANGUAGE plpgsql AS " +
           dollar_quote(guarded(n.guard, old_then_new(r.function, r.function))) + ";\n";
  }
  return StepBuilder(id + "create_functions", Phase::kPrepare,
                     "create the functions that apply and remove a row's transform, and the "
                     "triggers'")
      .sql(sql)
      .rollback(n.drop_functions())
      .lock(StepLock{LockMode::kNone, ""})
      .access("none");
}

// Each of up to kDryRunRows source rows transformed and the whole undone:
// the spec's SQL fails here, naming the row, rather than in the writers'
// transactions once the trigger is live.
Step dry_run_step(const std::string& id, const Transform& op, const Names& n) {
  std::vector<std::string> key;
  for (const auto& k : op.key) key.push_back(quote_ident(k));
  const std::string body =
      "\nDECLARE _r " + n.source +
      ";\n  _key text;\nBEGIN\n"
      "  BEGIN\n"
      "    FOR _r IN SELECT * FROM " +
      n.source + " AS _row ORDER BY " + column_tuple_of(op) + " LIMIT " +
      std::to_string(kDryRunRows) +
      " LOOP\n"
      "      _key := " +
      key_text(key, "_r.") + ";\n      PERFORM " + n.each +
      "(_r);\n"
      "    END LOOP;\n"
      "    RAISE SQLSTATE 'TDRY0';  -- undoes what it wrote\n"
      "  EXCEPTION\n"
      "    WHEN SQLSTATE 'TDRY0' THEN NULL;\n"
      "    WHEN OTHERS THEN\n"
      "      RAISE EXCEPTION 'transform of the row with key % of %: %', _key, " +
      quote_literal(n.source) +
      "::regclass, SQLERRM\n"
      "        USING ERRCODE = SQLSTATE;\n"
      "  END;\n"
      "END\n";
  return StepBuilder(id + "dry_run", Phase::kPrepare,
                     "transform up to " + std::to_string(kDryRunRows) + " rows of " + n.source +
                         " and undo it: the SQL works before writers depend on it")
      .sql("DO " + dollar_quote(body) + ";\n")
      .rollback("")
      .lock(StepLock{LockMode::kAccessShare, "(reads a few rows)"})
      .access("reads a few rows");
}

}  // namespace

void plan_transform(const Spec& spec, int index, const Transform& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const HelperNames h(spec, op.schema, op.table, "transform");
  Names n{qualified(op.schema, op.table),
          h.function("apply"),
          h.function("remove"),
          h.function("each"),
          h.function("sync"),
          h.trigger("sync"),
          "tandem.sync_" + h.tag(),
          {}};
  for (size_t i = 0; i < op.reverse.size(); ++i) {
    const std::string k = "back" + std::to_string(i + 1);
    n.reverse.push_back({qualified_target(op, op.reverse[i].first), h.function(k),
                         h.function(k + "_trigger"), h.trigger(k)});
  }

  std::vector<std::string> prechecks = {
      checks::table_exists(n.source), checks::plain_or_partitioned_table("transform"),
      checks::key_is_unique(op.key), checks::no_invalid_indexes()};
  for (const auto& [name, columns] : op.create)
    prechecks.push_back(checks::relation_absent(op.schema, name));
  for (const auto& t : op.targets)
    prechecks.push_back(checks::referenced_table_exists(qualified_target(op, t)));
  if (op.slices) prechecks.push_back(slices_by_exists(*op.slices));
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + n.source + " can be transformed", n.source, prechecks));

  if (!op.create.empty()) {
    std::string sql, rollback;
    std::vector<std::string> names;
    for (const auto& [name, columns] : op.create) {
      const std::string t = qualified(op.schema, name);
      sql += "CREATE TABLE " + t + " (\n  " + columns + "\n);\n";
      rollback = "DROP TABLE IF EXISTS " + t + ";\n" + rollback;
      names.push_back(t);
    }
    out.push_back(StepBuilder(id + "create_targets", Phase::kPrepare, "create " + join(names, ", "))
                      .sql(sql)
                      .rollback(rollback)
                      .lock(StepLock{LockMode::kNone, "(new tables)"})
                      .access("none"));
  }
  out.push_back(functions_step(id, op, n));
  out.push_back(dry_run_step(id, op, n));
  if (op.slices)
    out.push_back(define_slices_step(spec, n.source, *op.slices, id + "define_slices"));
  out.push_back(row_trigger_step(
      id + "create_sync_trigger", Phase::kDualWrite,
      "INSERT, UPDATE and DELETE on " + n.source + " are transformed in the writer's transaction",
      n.trigger, n.source, n.sync, kAfterEveryChange));
  // The row is locked in the subquery, before the transform reads it: a
  // writer that comes later waits for the batch, then its trigger transforms
  // its own, newer row.
  out.push_back(backfill_step(
      id + "backfill", "transform existing rows of " + n.source + ", in key batches",
      BatchWork{n.source, "", "", "",
                "SELECT " + n.each + "(_locked._row) FROM (SELECT _row FROM " + n.source +
                    " AS _row WHERE " + kBatchRange + " FOR UPDATE OF _row) AS _locked"},
      spec.settings.batch_size));
  for (const auto& [name, columns] : op.create)
    out.push_back(analyze_step(id + "analyze_" + name, qualified(op.schema, name)));

  // After cutover the targets are the truth: their writes reach the source
  // through `reverse` until cleanup. In slices, from the routes' opening.
  if (op.slices) {
    std::vector<BackTrigger> back;
    for (const auto& r : n.reverse) back.push_back({r.trigger, r.target, r.trigger_function});
    out.push_back(open_routes_step(spec, id + "open_routes", back));
    out.push_back(cut_routes_step(spec, id + "cut_routes"));
  }
  for (size_t i = 0; i < n.reverse.size() && !op.slices; ++i) {
    const Reverse& r = n.reverse[i];
    out.push_back(row_trigger_step(id + "create_back_trigger_" + std::to_string(i + 1),
                                   Phase::kCutover,
                                   "INSERT, UPDATE and DELETE on " + r.target + " reach " +
                                       n.source + " through reverse, until cleanup",
                                   r.trigger, r.target, r.trigger_function, kAfterEveryChange));
  }

  if (op.slices) out.push_back(remove_routes_step(spec, id + "remove_routes"));
  for (size_t i = 0; i < n.reverse.size(); ++i) {
    const Reverse& r = n.reverse[i];
    out.push_back(drop_back_sync_step(id + "drop_back_sync_" + std::to_string(i + 1), r.trigger,
                                      r.target, n.source));
  }
  out.push_back(StepBuilder(id + "drop_sync", Phase::kCleanup,
                            "drop the transform's trigger and functions; the targets and " +
                                n.source + " no longer follow each other")
                    .sql("DROP TRIGGER IF EXISTS " + n.trigger + " ON " + n.source + ";\n" +
                         n.drop_functions())
                    .reversible(false)
                    .lock(StepLock::metadata_only())
                    .access("none"));
}

std::optional<Transform> parse_transform(SpecReader& r, const YAML::Node& n) {
  const std::string w = "transform";
  if (!r.open_operation(n, w, schema_keys("transform"))) return std::nullopt;
  Transform t;
  r.table_ref(n, w, t.schema, t.table);
  t.key = r.string_list(n, "key", w);
  const size_t before = r.errors.size();
  if (n["create"].IsDefined())
    t.create = r.column_map(n, "create", w, "table", "column definitions");
  if (n["targets"].IsDefined()) t.targets = r.string_list(n, "targets", w);
  if (t.create.empty() && t.targets.empty() && r.errors.size() == before) {
    r.error(n, "transform: name the tables it writes, in \"create\" (new tables) or \"targets\"");
  }
  t.apply = r.scalar(n, "apply", true, w).value_or("");
  t.remove = r.scalar(n, "remove", true, w).value_or("");
  const YAML::Node reverse = n["reverse"];
  if (reverse.IsDefined() && !reverse.IsMap()) {
    r.error(reverse,
            "reverse: expected a mapping of target tables to SQL, got " + kind_name(reverse));
  } else if (reverse.IsDefined()) {
    for (auto it = reverse.begin(); it != reverse.end(); ++it) {
      const std::string table = it->first.Scalar();
      bool known = false;
      for (const auto& [name, columns] : t.create) known = known || name == table;
      for (const auto& name : t.targets) known = known || name == table;
      if (!known) {
        r.error(it->first, "reverse: \"" + printable(table) +
                               "\" is not one of the tables in create or targets");
        continue;
      }
      if (auto sql = r.scalar(reverse, table, true, w + ".reverse"))
        t.reverse.emplace_back(table, *sql);
    }
  }
  if (r.errors.size() == before) {
    t.slices = parse_slices(r, n, w);
    if (t.slices && t.reverse.size() != t.create.size() + t.targets.size()) {
      r.error(n["slices"],
              "transform: slices need \"reverse\" for every table it writes: once a slice is "
              "live, its writes land on those tables and reach " +
                  t.table + " through reverse, so that the slice can go back");
    }
  }
  return t;
}

void needs_transform(const Transform& op, Needs& n) {
  n.on_table(op.schema, op.table);
  for (const auto& [name, columns] : op.create) n.adds_table(op.schema, name);
  for (const auto& t : op.targets) {
    const auto [schema, table] = target_of(op, t);
    n.needs.push_back(schema + "." + table);
  }
}

}  // namespace tandem
