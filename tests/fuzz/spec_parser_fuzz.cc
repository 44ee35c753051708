// libFuzzer target: the spec parser must never crash, hang or throw, and must
// either return a spec or at least one located error — never both, never neither.
// A spec it accepts must also plan, or be refused with tandem's own error.
// The same text goes through the fleet file parser (docs/fleet.md) under the
// same rules; a fleet it accepts has each target in exactly one wave.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fleet/fleet_spec.h"
#include "plan/plan_output.h"
#include "tandem/error.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto result = tandem::parse_spec(text, "fuzz.yaml");
  if (result.spec.has_value() == !result.errors.empty()) std::abort();
  for (const auto& e : result.errors) {
    if (e.where.line < 1 || e.where.column < 1 || e.message.empty()) std::abort();
  }
  auto fleet = tandem::parse_fleet(text, "fuzz.yaml");
  if (fleet.fleet.has_value() == !fleet.errors.empty()) std::abort();
  for (const auto& e : fleet.errors) {
    if (e.where.line < 1 || e.where.column < 1 || e.message.empty()) std::abort();
  }
  if (fleet.fleet && !fleet.fleet->targets.empty()) {  // none: from a query, at run time
    std::vector<tandem::SpecError> errors;
    const auto waves = tandem::assign_waves(*fleet.fleet, fleet.fleet->targets, errors);
    if (!errors.empty() || waves.size() != fleet.fleet->targets.size()) std::abort();
  }
  if (result.spec) {
    try {
      auto plan = tandem::make_plan(*result.spec);
      (void)plan_to_json(plan).dump();
      (void)plan_to_text(plan);
      (void)plan_to_markdown(plan);
    } catch (const tandem::Error& e) {
      if (e.kind() != tandem::ErrorKind::kBadInput) std::abort();
    }
  }
  return 0;
}
