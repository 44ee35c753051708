// create_index: CREATE [UNIQUE] INDEX CONCURRENTLY, which builds the index
// while reads and writes go on. Rollback drops it the same way. On a
// partitioned table, which CONCURRENTLY cannot build on, the index is made
// ON ONLY the table (and each partitioned partition), each leaf partition's
// is built CONCURRENTLY and attached (tandem.index_builds decides when it
// runs, from the catalog).
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_create_index(const Spec&, int index, const CreateIndex& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string name = qualified(op.schema, op.name);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that index " + name + " can be built on " + table, table,
      {checks::table_exists(table), checks::plain_or_partitioned_table("create_index"),
       checks::relation_absent(op.schema, op.name)}));

  std::string shape = "USING " + op.method + " (" + join(op.columns, ", ") + ")";
  if (!op.include.empty()) {
    std::vector<std::string> cols;
    for (const auto& c : op.include) cols.push_back(quote_ident(c));
    shape += " INCLUDE (" + join(cols, ", ") + ")";
  }
  if (!op.with.empty()) {
    std::vector<std::string> params;
    for (const auto& [key, value] : op.with)
      params.push_back(quote_ident(key) + " = " + quote_literal(value));
    shape += " WITH (" + join(params, ", ") + ")";
  }
  if (op.where) shape += " WHERE " + *op.where;
  const std::string rel = quote_literal(table) + "::regclass";
  out.push_back(
      StepBuilder(id + "create_index", op.phase,
                  std::string("build ") + (op.unique ? "unique " : "") + "index " + name +
                      " concurrently (on a partitioned table: ON ONLY the table, then each "
                      "partition's concurrently, attached to it)")
          .sql("SELECT * FROM tandem.index_builds(" + rel + ", " + quote_literal(op.name) + ", " +
               (op.unique ? "true" : "false") + ", " + quote_literal(shape) + ");\n")
          .rollback("SELECT * FROM tandem.index_drops(" + rel + ", " + quote_literal(op.name) +
                    ");\n")
          .generates()
          .lock({LockMode::kShareUpdateExclusive,
                 "(reads and writes go on; waits for older writers); on a partitioned table "
                 "briefly SHARE on it for ON ONLY, and ACCESS EXCLUSIVE on each partition's new "
                 "index to attach it"})
          .access("scans table twice"));
}

namespace {

// A name tandem quotes: one line of at most 63 bytes, without quotes.
bool plain_name(const std::string& s) {
  return !s.empty() && s.size() <= 63 && clean_text(s) &&
         s.find_first_of("\"\n\r") == std::string::npos;
}

}  // namespace

std::optional<CreateIndex> parse_create_index(SpecReader& r, const YAML::Node& n) {
  const std::string w = "create_index";
  if (!r.open_operation(n, w, schema_keys("create_index"))) return std::nullopt;
  CreateIndex c;
  r.table_ref(n, w, c.schema, c.table);
  r.identifier(n, "name", true, c.name, w);
  c.columns = r.string_list(n, "columns", w);
  if (n["include"].IsDefined()) {
    for (const auto& item : r.string_list(n, "include", w)) {
      if (plain_name(item)) {
        c.include.push_back(item);
      } else {
        r.error(n["include"], "include: expected column names, got \"" + item + "\"");
      }
    }
  }
  if (auto u = r.boolean(n, "unique")) c.unique = *u;
  r.method_name(n, c.method);
  if (n["with"].IsDefined()) {
    if (!n["with"].IsMap() || n["with"].size() == 0) {
      r.error(n["with"],
              "with: expected a mapping of storage parameters, such as {fillfactor: 70}");
    } else {
      for (auto it = n["with"].begin(); it != n["with"].end(); ++it) {
        const std::string key = it->first.IsScalar() ? it->first.Scalar() : "";
        const std::string value = it->second.IsScalar() ? it->second.Scalar() : "";
        if (!plain_name(key)) {
          r.error(it->first, "with: expected a storage parameter name, got \"" + key + "\"");
        } else if (value.empty() || !clean_text(value)) {
          r.error(it->second, "with: " + key + " needs a value");
        } else {
          c.with.emplace_back(key, value);
        }
      }
    }
  }
  c.where = r.expression(n, "where");
  if (n["phase"].IsDefined()) {
    if (auto p = r.phase(n["phase"], "phase")) c.phase = *p;
  }
  return c;
}

void needs_create_index(const CreateIndex& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_relation(op.schema, op.name);
  for (const auto& c : op.columns) n.reads(c, true);
  if (op.where) n.reads(*op.where, true);
}

}  // namespace tandem
