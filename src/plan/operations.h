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

}  // namespace tandem
