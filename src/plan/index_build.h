#pragma once

#include <string>

#include "tandem/plan.h"

namespace tandem {

// Makes a non-transactional CREATE INDEX CONCURRENTLY step idempotent: before
// each attempt a valid index of that name means the work is done, and an
// INVALID one (left by a failed build) is dropped before building again.
// `index` is the index's name as SQL, qualified when it needs to be.
void make_index_build_idempotent(Step& step, const std::string& index);

}  // namespace tandem
