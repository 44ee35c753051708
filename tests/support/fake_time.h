// A clock for unit tests: it stands still until something sleeps, and a
// sleep advances it at once by exactly that much.
#pragma once

#include <mutex>
#include <vector>

#include "engine/time_source.h"

namespace tandem::testing {

class FakeTime : public TimeSource {
 public:
  Clock::time_point now() override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void sleep_for(Clock::duration d) override {
    std::lock_guard<std::mutex> l(mu_);
    now_ += d;
    sleeps_.push_back(d);
  }
  std::vector<Clock::duration> sleeps() {
    std::lock_guard<std::mutex> l(mu_);
    return sleeps_;
  }

 private:
  std::mutex mu_;
  Clock::time_point now_{};
  std::vector<Clock::duration> sleeps_;
};

}  // namespace tandem::testing
