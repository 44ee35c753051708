// The spec's `shadow_reads:` list (see docs/spec.md, "Shadow reads").
#pragma once

#include <yaml-cpp/yaml.h>

#include "spec/reader.h"
#include "tandem/spec.h"

namespace tandem {

// Reads the list into spec.shadow_reads, each problem recorded at its place.
void parse_shadow_reads(SpecReader& r, const YAML::Node& n, Spec& spec);

}  // namespace tandem
