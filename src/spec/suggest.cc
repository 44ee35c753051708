#include "spec/suggest.h"

#include "util/text.h"

namespace tandem {

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best = closest(word, candidates);
  if (best.empty()) return "; expected one of: " + join(candidates, ", ");
  return "; did you mean \"" + best + "\"?";
}

}  // namespace tandem
