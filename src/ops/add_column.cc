// add_column: a new column that every row has a value in before anyone relies
// on it.
//
//   prepare     ADD COLUMN (nullable, no default: metadata only); the fill function
//   dual_write  trigger: a write that leaves the column NULL gets the backfill
//               expression, evaluated over the row, in the writer's own transaction;
//               an update of a row whose value is derived follows the new row
//   backfill    keyset batches: UPDATE ... SET c = expr WHERE c IS NULL; then the
//               unique index (concurrently) and the NOT NULL check, when asked for
//   shadow_read every row whose expression is not NULL has a value
//   cutover     SET NOT NULL (no scan), SET DEFAULT, when asked for
//   cleanup     drop the fill trigger and function
//
// A volatile expression (gen_random_uuid()) is evaluated once per row: the
// backfill only touches rows that are still NULL, and so does the trigger.
//
// Without `backfill`, a `default` that is not volatile is what PostgreSQL
// stores once and shows in every existing row: ADD COLUMN ... DEFAULT ...
// [NOT NULL] in prepare is then metadata only (no rewrite, no scan, no
// trigger, no backfill). Precheck refuses a default that calls a volatile
// function, with which the same statement would rewrite the table under
// ACCESS EXCLUSIVE.
#include <cctype>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

// The names an expression calls as functions (an identifier followed by
// '('), outside string literals and quoted identifiers, lowercased. More
// than it calls at most (a type modifier such as numeric(10, 2) is listed
// too), which only makes the volatility check below stricter.
std::vector<std::string> called_names(const std::string& expr) {
  std::vector<std::string> out;
  std::string word;
  char quote = 0;
  for (size_t i = 0; i < expr.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(expr[i]);
    if (quote) {
      if (c == static_cast<unsigned char>(quote)) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = static_cast<char>(c);
      word.clear();
    } else if (std::isalnum(c) || c == '_' || c == '$' || c >= 0x80) {
      word += static_cast<char>(std::tolower(c));
    } else {
      if (c == '(' && !word.empty() && !std::isdigit(static_cast<unsigned char>(word[0]))) {
        out.push_back(word);
      }
      if (!std::isspace(c)) word.clear();
    }
  }
  return out;
}

// Refuses a default that calls a function some volatile function shares
// its name with.
std::string default_not_volatile(const std::string& expr) {
  const std::vector<std::string> names = called_names(expr);
  if (names.empty()) return "";
  return "SELECT format('default %s calls %s, which is volatile: ADD COLUMN would rewrite the "
         "table under ACCESS EXCLUSIVE. Give backfill: the same expression, to fill existing rows "
         "in batches instead', " +
         quote_literal(expr) +
         ", string_agg(DISTINCT proname, ', '))\n"
         "  FROM pg_proc WHERE provolatile = 'v' AND proname IN (" +
         quote_literals(names) + ")\nHAVING count(*) > 0";
}

// The column added with its default in one statement: metadata only.
void plan_add_constant_column(const std::string& id, const AddColumn& op, std::vector<Step>& out) {
  const std::string table = qualified(op.schema, op.table);
  const std::string col = quote_ident(op.column);
  // ADD COLUMN ... DEFAULT on a partitioned table reaches every partition,
  // metadata only in each.
  std::vector<std::string> checks = {
      checks::table_exists(table), checks::plain_or_partitioned_table("add_column"),
      checks::type_exists(op.type), checks::columns_absent({op.column})};
  const std::string volatile_check = default_not_volatile(*op.default_value);
  if (!volatile_check.empty()) checks.push_back(volatile_check);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can gain column " + col, table, checks));
  const std::string definition =
      op.type + (op.not_null ? " NOT NULL" : "") + " DEFAULT " + *op.default_value;
  out.push_back(StepBuilder(id + "add_column", Phase::kPrepare,
                            "add column " + col + " " + definition +
                                " (metadata only: existing rows show the default)")
                    .sql("ALTER TABLE " + table + " ADD COLUMN " + col + " " + definition + ";\n")
                    .rollback("ALTER TABLE " + table + " DROP COLUMN IF EXISTS " + col + ";\n")
                    .lock(StepLock::metadata_only())
                    .access("none"));
}

}  // namespace

void plan_add_column(const Spec& spec, int index, const AddColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  if (op.backfill.empty()) {
    plan_add_constant_column(id, op, out);
    return;
  }
  const std::string table = qualified(op.schema, op.table);
  const std::string col = quote_ident(op.column);
  const HelperNames h(spec, op.schema, op.table, op.column);
  const std::string fn = h.function("fill");
  const std::string trigger = h.trigger("fill");

  std::vector<std::string> prechecks = {
      checks::table_exists(table),         checks::plain_or_partitioned_table("add_column"),
      checks::type_exists(op.type),        checks::has_walkable_key(),
      checks::columns_absent({op.column}), checks::no_invalid_indexes()};
  if (op.unique) prechecks.push_back(checks::not_partitioned(checks::kPartitionedUnique));
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can gain column " + col, table, prechecks));

  out.push_back(add_nullable_column_step(id + "add_column", table, col, op.type));

  // The expression is written over the row's columns; the subquery over NEW.*
  // lets it be evaluated as written, without rewriting it. An update that
  // leaves the column as it was, in a row whose value the expression gave
  // (a derived column, such as upper(name)), gets it again from the new
  // row: the value follows the columns it is derived from while old writers
  // change them. A volatile expression (gen_random_uuid()) never gives the
  // stored value again, so those rows keep theirs; so does a row whose value
  // the application wrote itself.
  const auto over = [&](const std::string& row) {
    return "(SELECT " + op.backfill + " FROM (SELECT " + row + ".*) AS _row)";
  };
  const std::string fill_body = "BEGIN\n  IF NEW." + col + " IS NULL THEN\n    NEW." + col +
                                " := " + over("NEW") +
                                ";\n"
                                "  ELSIF TG_OP = 'UPDATE' AND NEW." +
                                col + " IS NOT DISTINCT FROM OLD." + col + "\n        AND OLD." +
                                col + " IS NOT DISTINCT FROM " + over("OLD") + " THEN\n    NEW." +
                                col + " := " + over("NEW") + ";\n  END IF;\n  RETURN NEW;\nEND\n";
  out.push_back(trigger_function_step(id + "create_fill_function",
                                      "create the function that fills " + col + " for new writes",
                                      fn, fill_body));

  out.push_back(row_trigger_step(id + "create_fill_trigger", Phase::kDualWrite,
                                 "writes that leave " + col + " NULL get " + op.backfill, trigger,
                                 table, fn));
  out.push_back(
      backfill_step(id + "backfill", "fill " + col + " for existing rows in primary-key batches",
                    BatchWork{table, col + " = (" + op.backfill + ")", "", col + " IS NULL", ""},
                    spec.settings.batch_size));

  if (op.unique) {
    plan_unique_via_index(id, op.schema, op.table, op.table + "_" + op.column + "_key", {op.column},
                          Phase::kBackfill, Phase::kBackfill, out);
  }
  if (op.not_null) {
    // After the backfill: every row has a value, and the trigger fills new ones.
    plan_not_null_via_check(spec, id, op.schema, op.table, op.column, Phase::kBackfill,
                            Phase::kBackfill, out);
  }

  out.push_back(verify_step(
      id + "verify", "every row has " + col + " filled",
      BatchWork{table, "", col + " IS NULL AND (" + op.backfill + ") IS NOT NULL", "", ""}));

  if (op.default_value) {
    out.push_back(
        StepBuilder(id + "set_default", Phase::kCutover,
                    "new rows get DEFAULT " + *op.default_value)
            .sql("ALTER TABLE " + table + " ALTER COLUMN " + col + " SET DEFAULT " +
                 *op.default_value + ";\n")
            .rollback("ALTER TABLE " + table + " ALTER COLUMN " + col + " DROP DEFAULT;\n")
            .lock(StepLock::metadata_only())
            .access("none"));
  }

  out.push_back(drop_helpers_step(
      id + "drop_fill_trigger",
      "drop the fill trigger and function; the application writes " + col + " now",
      {trigger + " ON " + table}, {fn}));
}

std::optional<AddColumn> parse_add_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_column";
  if (!r.open_operation(n, w, schema_keys("add_column"))) return std::nullopt;
  AddColumn a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (auto t = r.type_name(n, true, w)) a.type = *t;
  a.default_value = r.expression(n, "default");
  if (auto e = r.expression(n, "backfill")) a.backfill = *e;
  // What the plan is chosen by is what was read, not which keys are present:
  // `backfill: null` or `backfill: ""` gives no expression.
  if (a.backfill.empty() && !a.default_value) {
    if (n["backfill"].IsDefined()) {
      r.error(n["backfill"], "backfill: expected an expression (or give default: instead)");
    } else {
      r.missing(n, "backfill", w);
    }
  }
  if (auto u = r.boolean(n, "unique")) a.unique = *u;
  if (auto nn = r.boolean(n, "not_null")) a.not_null = *nn;
  if (a.unique && a.backfill.empty() && a.default_value) {
    r.error(n["unique"],
            "add_column: unique with only a default would give every existing row the same "
            "value; give backfill: an expression that differs per row");
  }
  return a;
}

void needs_add_column(const AddColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_column(op.column);
  if (op.not_null) n.sets_not_null(op.column);
  if (!op.backfill.empty()) n.reads(op.backfill);
  if (op.default_value) n.reads(*op.default_value);
  if (op.unique || op.not_null) n.attaches.insert(op.column);
}

}  // namespace tandem
