// One function per built-in operation; each appends its steps (any phase, in
// run order within a phase) to `out`. `index` is the 1-based operation number
// that prefixes step ids.
#pragma once

#include <vector>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

void plan_alter_column_type(const Spec& spec, int index, const AlterColumnType& op,
                            std::vector<Step>& out);
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

// A CHECK or FOREIGN KEY `definition` added NOT VALID in `add` and validated in
// `validate`. For a foreign key, `referenced` names the referenced table, which
// the rollback (the DROP) locks first.
void plan_constraint_not_valid(const std::string& id, const std::string& table,
                               const std::string& constraint, const std::string& definition,
                               const std::string& add_lock, const std::string& validate_lock,
                               Phase add, Phase validate, std::vector<Step>& out,
                               const std::string& referenced = "");

void plan_sql(const Spec& spec, int index, const SqlOperation& op, std::vector<Step>& out);
void plan_create_index(const Spec& spec, int index, const CreateIndex& op, std::vector<Step>& out);
void plan_add_constraint(const Spec& spec, int index, const AddConstraint& op,
                         std::vector<Step>& out);
void plan_set_not_null(const Spec& spec, int index, const SetNotNull& op, std::vector<Step>& out);
void plan_add_column(const Spec& spec, int index, const AddColumn& op, std::vector<Step>& out);
void plan_drop_column(const Spec& spec, int index, const DropColumn& op, std::vector<Step>& out);
void plan_move_column(const Spec& spec, int index, const MoveColumn& op, std::vector<Step>& out);
void plan_copy_table(const Spec& spec, int index, const CopyTable& op, std::vector<Step>& out);
void plan_add_reference(const Spec& spec, int index, const AddReference& op,
                        std::vector<Step>& out);
void plan_rename_column(const Spec& spec, int index, const RenameColumn& op,
                        std::vector<Step>& out);

}  // namespace tandem
