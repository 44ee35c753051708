#include "plan/steps.h"

namespace tandem {

std::string create_row_trigger(const std::string& trigger, const std::string& table,
                               const std::string& function) {
  return "CREATE TRIGGER " + trigger + " BEFORE INSERT OR UPDATE ON " + table +
         "\n  FOR EACH ROW EXECUTE FUNCTION " + function + "();\n";
}

Step row_trigger_step(const std::string& id, Phase phase, const std::string& description,
                      const std::string& trigger, const std::string& table,
                      const std::string& function) {
  Step s;
  s.id = id;
  s.phase = phase;
  s.description = description;
  s.sql = create_row_trigger(trigger, table, function);
  s.rollback_sql = "DROP TRIGGER IF EXISTS " + trigger + " ON " + table + ";\n";
  s.lock = "SHARE ROW EXCLUSIVE (brief: blocks writes while waiting)";
  s.table_access = "none";
  return s;
}

Step backfill_step(const std::string& id, const std::string& description, BatchWork work,
                   int batch_size) {
  Step s;
  s.id = id;
  s.phase = Phase::kBackfill;
  s.kind = StepKind::kBackfill;
  s.description = description;
  s.sql = "UPDATE " + work.table + " SET " + work.set_clause + "\n WHERE " +
          (work.filter.empty() ? "" : work.filter + " AND ") + "<primary key> in the next " +
          std::to_string(batch_size) + " keys after the checkpoint  -- one transaction per batch\n";
  s.batch = std::move(work);
  s.rollback_sql = "";
  s.lock = "ROW EXCLUSIVE; row locks on one batch at a time";
  s.table_access = "updates every row";
  return s;
}

Step verify_step(const std::string& id, const std::string& description, BatchWork work) {
  Step s;
  s.id = id;
  s.phase = Phase::kShadowRead;
  s.kind = StepKind::kVerify;
  s.description = description;
  s.sql = "SELECT <primary key> FROM " + work.table + " WHERE " + work.mismatch +
          "  -- in primary-key chunks\n";
  s.batch = std::move(work);
  s.rollback_sql = "";
  s.lock = "ACCESS SHARE";
  s.table_access = "scans table";
  return s;
}

}  // namespace tandem
