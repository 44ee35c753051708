// The executor's clock: what it reads the time from and sleeps on. The real
// one is the steady clock; unit tests pass a fake one (RunOptions::time)
// whose sleeps advance it at once, so that rules about waits, backoff and
// holds run in microseconds.
#pragma once

#include <chrono>

namespace tandem {

class TimeSource {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~TimeSource() = default;
  virtual Clock::time_point now() = 0;
  virtual void sleep_for(Clock::duration d) = 0;

  double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(now() - t0).count();
  }
};

// The steady clock and std::this_thread::sleep_for.
TimeSource& real_time();

}  // namespace tandem
