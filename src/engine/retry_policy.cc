#include "engine/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace tandem {

RetryPolicy::Verdict RetryPolicy::judge(const Error& e, const Attempt& a, const Settings& st) {
  if (e.failure() != Failure::kNone || e.kind() == ErrorKind::kBadInput) return Verdict::kPassOn;
  if (a.stop_requested) return Verdict::kStop;
  // A server never reached is the operator's to fix (a wrong DSN, a server
  // down at start), not a failover to ride out.
  if (!a.ever_connected && e.sqlstate() == "08001") return Verdict::kPassOn;
  if (e.kind() == ErrorKind::kInDoubt) return Verdict::kReread;
  const int budget = st.retry_budget;
  if (!e.retryable() || a.number >= budget || a.outages >= budget) return Verdict::kFail;
  return Verdict::kRetry;
}

std::chrono::milliseconds RetryPolicy::backoff(int number, const Settings& st,
                                               std::mt19937_64& rng) {
  const double base = static_cast<double>(st.retry_backoff.count());
  const double cap = static_cast<double>(st.retry_backoff_max.count());
  const double d = std::min(cap, base * std::pow(2.0, std::min(number - 1, 30)));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<long long>(d * jitter(rng)));
}

}  // namespace tandem
