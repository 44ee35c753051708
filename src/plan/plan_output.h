// A plan as JSON (`tandemd plan --json`, docs/cli.md) and as the text
// `tandemd plan` prints.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tandem/plan.h"

namespace tandem {

nlohmann::json plan_to_json(const Plan& plan);
std::string plan_to_text(const Plan& plan);

}  // namespace tandem
