#include "engine/run_control.h"

#include <algorithm>
#include <cmath>

namespace tandem {

int BatchSizer::size(const Settings& s) const {
  if (s.target_batch_time.count() == 0) return s.batch_size;
  return std::clamp(size_, kMinRows, std::max(kMinRows, s.max_batch_size));
}

void BatchSizer::observe(long long rows, double seconds, const Settings& s) {
  if (s.target_batch_time.count() == 0) {
    size_ = s.batch_size;
    return;
  }
  const double target = s.target_batch_time.count() / 1000.0;
  const int current = size(s);
  double next;
  if (seconds > 4 * target) {
    next = current / 4.0;
  } else if (rows < current || seconds <= 0) {
    // A short last batch, or one too quick to time, says nothing about the rate.
    next = current;
  } else {
    next = current * std::clamp(target / seconds, 0.5, 1.5);
  }
  size_ = std::clamp(static_cast<int>(std::lround(next)), kMinRows,
                     std::max(kMinRows, s.max_batch_size));
}

}  // namespace tandem
