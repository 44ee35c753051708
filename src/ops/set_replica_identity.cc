// set_replica_identity: ALTER TABLE ... REPLICA IDENTITY at cutover, a brief
// metadata change. The identity it replaces is kept (tandem.undo), so a
// rollback sets it back; cleanup forgets it. An index must be one logical
// replication can use: unique, valid, not partial, not deferrable, over
// plain NOT NULL columns.
//
// Logical replication identifies a partitioned table's rows by each
// partition's identity, and ALTER TABLE sets only the table named: so on a
// partitioned table every partition gets the identity too (USING INDEX: each
// its own index of the named one), and the rollback puts back each one's.
#include <cctype>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_set_replica_identity(const Spec&, int index, const SetReplicaIdentity& op,
                               std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  std::vector<std::string> prechecks = {checks::table_exists(table)};
  std::string identity = "USING INDEX " + quote_ident(op.index);
  if (op.identity != "index") {
    identity.clear();
    for (char c : op.identity) identity += static_cast<char>(std::toupper(c));
  }
  if (op.identity == "index") {
    const std::string idx = quote_literal(qualified(op.schema, op.index));
    prechecks.push_back("SELECT format('%s is not an index of %s', " + idx +
                        ", rel)\n  FROM t WHERE rel IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                        "pg_index WHERE indexrelid = to_regclass(" +
                        idx + ") AND indrelid = t.rel)");
    prechecks.push_back(
        "SELECT format('index %s cannot identify rows for logical replication: it must be "
        "unique, valid, immediate, not partial, without expressions, over NOT NULL columns', "
        "i.indexrelid::regclass)\n"
        "  FROM t JOIN pg_index i ON i.indexrelid = to_regclass(" +
        idx + ") AND i.indrelid = t.rel\n WHERE NOT (" + checks::usable_key_index("i") + ")");
  }
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can take REPLICA IDENTITY " + identity, table,
      prechecks));
  // The table and each of its partitions (a plain table has none).
  const std::string rel = quote_literal(table) + "::regclass";
  const std::string tree = "SELECT " + rel + " AS rel, 0 AS level\n" +
                           "     WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree(" + rel +
                           "))\n    UNION ALL SELECT relid, level FROM pg_partition_tree(" + rel +
                           ")";
  // Each relation with the clause it gets, in the order of the tree.
  std::string targets;
  if (op.identity == "index") {
    const std::string idx = quote_literal(qualified(op.schema, op.index)) + "::regclass";
    targets =
        "SELECT x.indrelid::regclass AS rel, format('USING INDEX %I', c.relname) AS clause\n"
        "      FROM (SELECT " +
        idx + " AS relid, 0 AS level WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree(" + idx +
        "))\n            UNION ALL SELECT relid, level FROM pg_partition_tree(" + idx +
        ")) p\n      JOIN pg_index x ON x.indexrelid = p.relid JOIN pg_class c ON c.oid = "
        "p.relid\n     ORDER BY p.level, x.indrelid::regclass::text";
  } else {
    targets = "SELECT rel, " + quote_literal(identity) + " AS clause FROM (" + tree +
              ") p ORDER BY level, rel::text";
  }
  const std::string change =
      "DO " +
      dollar_quote("\nDECLARE\n  r record;\nBEGIN\n  FOR r IN " + targets +
                   " LOOP\n    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', r.rel, "
                   "r.clause);\n  END LOOP;\nEND\n") +
      ";\n";
  plan_kept_change(id, table, "replica identity",
                   "(SELECT string_agg(tandem.replica_identity_statement(rel), '; ' ORDER BY "
                   "level, rel::text) FROM (" +
                       tree + ") p)",
                   change,
                   "set the replica identity of " + table + " (and of each partition) to " +
                       identity + " (the ones before are kept for a rollback)",
                   StepLock::metadata_only(), out);
}

std::optional<SetReplicaIdentity> parse_set_replica_identity(SpecReader& r, const YAML::Node& n) {
  const std::string w = "set_replica_identity";
  if (!r.open_operation(n, w, schema_keys("set_replica_identity"))) return std::nullopt;
  SetReplicaIdentity s;
  r.table_ref(n, w, s.schema, s.table);
  if (auto v = r.scalar(n, "identity", true, w)) {
    s.identity = *v;
    if (s.identity != "default" && s.identity != "full" && s.identity != "nothing" &&
        s.identity != "index") {
      r.error(n["identity"],
              "identity: expected default, full, nothing or index, got \"" + s.identity + "\"");
    }
  }
  if (s.identity == "index") {
    r.identifier(n, "index", true, s.index, w);
  } else if (n["index"].IsDefined()) {
    r.error(n["index"], "index: only identity: index names an index");
  }
  return s;
}

void needs_set_replica_identity(const SetReplicaIdentity& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.names.push_back("replica identity of " + n.table);
}

}  // namespace tandem
