// The names of ErrorKind (include/tandem/error.h).
#include "tandem/error.h"

namespace tandem {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kRetryable:
      return "retryable";
    case ErrorKind::kInDoubt:
      return "in doubt";
    case ErrorKind::kFatal:
      return "fatal";
    case ErrorKind::kBadInput:
      return "bad input";
  }
  return "?";
}

}  // namespace tandem
