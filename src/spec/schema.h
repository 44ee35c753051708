// JSON Schemas (draft-07) of a migration spec and of tandemd.yaml, for
// editors (yaml-language-server, VS Code, JetBrains) and CI linters:
// `tandemd schema spec|config`. The keys each mapping of a spec accepts
// come from the same tables the parser checks them against
// (schema_keys), so the two cannot list different keys; what a schema
// cannot say (a column that must exist, a `$2` the params do not give) only
// the parser checks. docs/spec.md says which is which.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tandem {

nlohmann::json spec_schema();
nlohmann::json config_schema();

// The keys the mapping `what` accepts: an operation's name ("add_column"),
// "spec" (the top level), "shadow_reads" (a pair), "params", "slices",
// "slice", "canary", "max_latency_ratio". Throws std::logic_error for a
// name it does not know (a programming error).
const std::vector<std::string>& schema_keys(const std::string& what);

}  // namespace tandem
