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
void plan_sql(const Spec& spec, int index, const SqlOperation& op, std::vector<Step>& out);
void plan_create_index(const Spec& spec, int index, const CreateIndex& op, std::vector<Step>& out);
void plan_add_constraint(const Spec& spec, int index, const AddConstraint& op,
                         std::vector<Step>& out);
void plan_set_not_null(const Spec& spec, int index, const SetNotNull& op, std::vector<Step>& out);
void plan_drop_column(const Spec& spec, int index, const DropColumn& op, std::vector<Step>& out);

}  // namespace tandem
