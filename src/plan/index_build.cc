#include "plan/index_build.h"

#include "util/ident.h"

namespace tandem {

void make_index_build_idempotent(Step& step, const std::string& index) {
  step.transactional = false;
  step.state_check =
      "SELECT CASE WHEN indisvalid THEN 'done' ELSE 'repair' END FROM pg_index"
      " WHERE indexrelid = to_regclass(" +
      quote_literal(index) + ")";
  step.repair_sql = "DROP INDEX CONCURRENTLY IF EXISTS " + index;
}

}  // namespace tandem
