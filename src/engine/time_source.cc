#include "engine/time_source.h"

#include <thread>

namespace tandem {
namespace {

class RealTime : public TimeSource {
 public:
  Clock::time_point now() override { return Clock::now(); }
  void sleep_for(Clock::duration d) override { std::this_thread::sleep_for(d); }
};

}  // namespace

TimeSource& real_time() {
  static RealTime time;
  return time;
}

}  // namespace tandem
