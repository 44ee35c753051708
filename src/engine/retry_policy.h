// What to do about an error in a step's work, knowing only its class and
// the attempt it ended (as libpqxx's transactor does): pass it on, stop,
// re-read what the state store holds, fail the migration, or try again
// after a backoff. The executor's with_retries does what it says.
#pragma once

#include <chrono>
#include <random>

#include "tandem/error.h"
#include "tandem/spec.h"

namespace tandem {

class RetryPolicy {
 public:
  enum class Verdict {
    kPassOn,  // not the retry loop's to handle: how a run ends, or bad input
    kStop,    // a stop was requested: the work was most likely cancelled by it
    kReread,  // the commit's outcome is unknown: re-read the state store first
    kFail,    // will not succeed, or the budget is spent: park the migration as failed
    kRetry,   // back off, then try again
  };
  struct Attempt {
    int number = 1;   // of this try, within the current outage
    int outages = 0;  // sessions lost and replaced so far
    bool stop_requested = false;
    bool ever_connected = false;  // whether any session has reached the server
  };

  static Verdict judge(const Error& e, const Attempt& a, const Settings& st);
  // The pause before attempt `number` + 1: exponential from retry_backoff,
  // capped at retry_backoff_max, with "equal jitter" (half fixed, half
  // random), so that retries spread out without ever collapsing to zero.
  static std::chrono::milliseconds backoff(int number, const Settings& st, std::mt19937_64& rng);
};

}  // namespace tandem
