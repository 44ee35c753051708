// Step shapes that several operations build the same way.
#pragma once

#include <string>

#include "tandem/plan.h"

namespace tandem {

// CREATE TRIGGER ... BEFORE INSERT OR UPDATE ... FOR EACH ROW.
std::string create_row_trigger(const std::string& trigger, const std::string& table,
                               const std::string& function);

// A step that creates a BEFORE INSERT OR UPDATE row trigger, dropped on rollback.
Step row_trigger_step(const std::string& id, Phase phase, const std::string& description,
                      const std::string& trigger, const std::string& table,
                      const std::string& function);

// The backfill: keyset batches of `batch_size` rows, one transaction each.
Step backfill_step(const std::string& id, const std::string& description, BatchWork work,
                   int batch_size);

// The shadow read: every row, in key chunks; a row matching work.mismatch fails it.
Step verify_step(const std::string& id, const std::string& description, BatchWork work);

}  // namespace tandem
