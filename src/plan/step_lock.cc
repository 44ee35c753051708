// LockMode and StepLock (include/tandem/plan.h).
#include <string>

#include "tandem/plan.h"

namespace tandem {

const char* to_string(LockMode mode) {
  switch (mode) {
    case LockMode::kNone:
      return "none";
    case LockMode::kAccessShare:
      return "ACCESS SHARE";
    case LockMode::kRowShare:
      return "ROW SHARE";
    case LockMode::kRowExclusive:
      return "ROW EXCLUSIVE";
    case LockMode::kShareUpdateExclusive:
      return "SHARE UPDATE EXCLUSIVE";
    case LockMode::kShare:
      return "SHARE";
    case LockMode::kShareRowExclusive:
      return "SHARE ROW EXCLUSIVE";
    case LockMode::kExclusive:
      return "EXCLUSIVE";
    case LockMode::kAccessExclusive:
      return "ACCESS EXCLUSIVE";
    case LockMode::kAsWritten:
      return "as written";
  }
  return "?";
}

std::string StepLock::to_string() const {
  std::string out = tandem::to_string(mode);
  if (note.empty()) return out;
  if (mode == LockMode::kAsWritten) return note;  // the spec's own words
  return out + (note[0] == ';' ? "" : " ") + note;
}

bool StepLock::conflicts_with_vacuum() const {
  switch (mode) {
    case LockMode::kNone:
    case LockMode::kAccessShare:
    case LockMode::kRowShare:
    case LockMode::kRowExclusive:
      return false;
    default:
      return true;
  }
}

StepLock StepLock::from_words(const std::string& words) {
  // Longest first, so that "SHARE ROW EXCLUSIVE" is not read as "SHARE".
  static const LockMode kByLength[] = {LockMode::kShareUpdateExclusive,
                                       LockMode::kShareRowExclusive,
                                       LockMode::kAccessExclusive,
                                       LockMode::kRowExclusive,
                                       LockMode::kAccessShare,
                                       LockMode::kExclusive,
                                       LockMode::kRowShare,
                                       LockMode::kShare,
                                       LockMode::kNone};
  for (LockMode mode : kByLength) {
    const std::string spelled = tandem::to_string(mode);
    if (words.rfind(spelled, 0) != 0) continue;
    const size_t rest = words.find_first_not_of(' ', spelled.size());
    if (rest == spelled.size() && words[rest] != ';') continue;  // "SHAREX": another word
    return {mode, rest == std::string::npos ? "" : words.substr(rest)};
  }
  return {LockMode::kAsWritten, words};
}

}  // namespace tandem
