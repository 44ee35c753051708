// A plan as JSON (`tandemd plan --json`, docs/cli.md) and as the text
// `tandemd plan` prints.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tandem/plan.h"

namespace tandem {

nlohmann::json plan_to_json(const Plan& plan);
std::string plan_to_text(const Plan& plan);
// For a pull request's comment (`tandemd plan --format markdown`): the steps
// as a table (phase, lock, what it does to the table, its rollback), the
// irreversible ones flagged and named first, each step's SQL folded away.
std::string plan_to_markdown(const Plan& plan);
// A table cell's text: pipes escaped, lines joined.
std::string markdown_cell(const std::string& text);

}  // namespace tandem
