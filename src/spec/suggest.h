#pragma once

#include <string>
#include <vector>

namespace tandem {

// " ; did you mean \"x\"?" when a candidate is close to `word`, else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace tandem
