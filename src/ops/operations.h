// The built-in operations. Each operation's file (src/ops/<name>.cc) owns
// three functions, and one row of the operation table (registry.cc) names
// them:
//   parse_<name>  reads the operation's mapping in a spec, reporting every
//                 problem through the reader (a value returned with a
//                 problem reported is dropped by the table's row)
//   needs_<name>  what it creates and relies on (plan/needs.h)
//   plan_<name>   appends its steps (any phase, in run order within a
//                 phase) to `out`; `index` is the 1-based operation number
//                 that prefixes step ids
#pragma once

#include <optional>
#include <vector>

#include "plan/needs.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace YAML {
class Node;
}

namespace tandem {

class SpecReader;

#define TANDEM_OPERATION(T, name)                                    \
  std::optional<T> parse_##name(SpecReader& r, const YAML::Node& n); \
  void needs_##name(const T& op, Needs& n);                          \
  void plan_##name(const Spec& spec, int index, const T& op, std::vector<Step>& out);

TANDEM_OPERATION(AlterColumnType, alter_column_type)
TANDEM_OPERATION(SqlOperation, sql_operation)
TANDEM_OPERATION(CreateIndex, create_index)
TANDEM_OPERATION(AddConstraint, add_constraint)
TANDEM_OPERATION(SetNotNull, set_not_null)
TANDEM_OPERATION(DropColumn, drop_column)
TANDEM_OPERATION(AddColumn, add_column)
TANDEM_OPERATION(MoveColumn, move_column)
TANDEM_OPERATION(CopyTable, copy_table)
TANDEM_OPERATION(AddReference, add_reference)
TANDEM_OPERATION(RenameColumn, rename_column)
TANDEM_OPERATION(DropIndex, drop_index)
TANDEM_OPERATION(RenameConstraint, rename_constraint)
TANDEM_OPERATION(CreateTable, create_table)
TANDEM_OPERATION(DropTable, drop_table)
TANDEM_OPERATION(RenameTable, rename_table)
TANDEM_OPERATION(DropConstraint, drop_constraint)
TANDEM_OPERATION(SetReplicaIdentity, set_replica_identity)
TANDEM_OPERATION(SetComment, set_comment)
TANDEM_OPERATION(SetDefault, set_default)
TANDEM_OPERATION(AlterColumn, alter_column)
TANDEM_OPERATION(AddPrimaryKey, add_primary_key)
TANDEM_OPERATION(Transform, transform)

#undef TANDEM_OPERATION

// Building blocks that several operations share.

// A unique index over `columns` (names, quoted here) built concurrently in `build`,
// attached as constraint `name` in `attach`.
void plan_unique_via_index(const std::string& id, const std::string& schema,
                           const std::string& table, const std::string& name,
                           const std::vector<std::string>& columns, Phase build, Phase attach,
                           std::vector<Step>& out);
// NOT NULL without a scan under ACCESS EXCLUSIVE: CHECK NOT VALID in `add`, VALIDATE in
// `validate`, SET NOT NULL and drop the check at cutover.
void plan_not_null_via_check(const Spec& spec, const std::string& id, const std::string& schema,
                             const std::string& table, const std::string& column, Phase add,
                             Phase validate, std::vector<Step>& out);

// At cutover, the default of `column` (quoted here) set to `value`, or dropped;
// the one before kept for a rollback, forgotten at cleanup. Steps
// <id>change and <id>forget.
void plan_default_change(const std::string& id, const std::string& table, const std::string& column,
                         const std::optional<std::string>& value, std::vector<Step>& out);
// At cutover, the comment on `column` (or on the table when absent) set to
// `comment`, or removed; kept and forgotten the same way.
void plan_comment_change(const std::string& id, const std::string& table,
                         const std::optional<std::string>& column,
                         const std::optional<std::string>& comment, std::vector<Step>& out);

// A CHECK or FOREIGN KEY `definition` added NOT VALID in `add` and validated in
// `validate`. For a foreign key, `referenced` names the referenced table, which
// the rollback (the DROP) locks first.
void plan_constraint_not_valid(const std::string& id, const std::string& table,
                               const std::string& constraint, const std::string& definition,
                               const StepLock& add_lock, const StepLock& validate_lock, Phase add,
                               Phase validate, std::vector<Step>& out,
                               const std::string& referenced = "");

}  // namespace tandem
