// What an operator can change while a migration runs, shared between the
// thread that drives the Executor and the threads that carry out commands:
// the live settings (`tandemctl set`), a manual throttle (`tandemctl
// throttle`), and the session the executor works on (so `abort` can cancel
// the statement in flight). Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "tandem/spec.h"

namespace tandem {

class RunControl {
 public:
  using SystemClock = std::chrono::system_clock;

  explicit RunControl(const Settings& settings) : settings_(settings) {}

  Settings settings() const {
    std::lock_guard<std::mutex> l(mu_);
    return settings_;
  }
  void set_settings(const Settings& s) {
    std::lock_guard<std::mutex> l(mu_);
    settings_ = s;
  }

  // Throttles by hand until `until`, or until lifted when nullopt.
  void throttle(std::optional<SystemClock::time_point> until) {
    std::lock_guard<std::mutex> l(mu_);
    manual_ = true;
    manual_until_ = until;
  }
  void lift_throttle() {
    std::lock_guard<std::mutex> l(mu_);
    manual_ = false;
    manual_until_.reset();
  }
  bool manually_throttled(SystemClock::time_point now = SystemClock::now()) const {
    std::lock_guard<std::mutex> l(mu_);
    return manual_ && (!manual_until_ || now < *manual_until_);
  }
  // When the manual throttle ends by itself; nullopt when it does not (or is off).
  std::optional<SystemClock::time_point> throttle_until() const {
    std::lock_guard<std::mutex> l(mu_);
    return manual_ ? manual_until_ : std::nullopt;
  }

  // The backend pids of the executor's sessions: slot 0 is its own, 1 and up
  // its backfill workers'. Pid 0 clears a slot.
  void set_backend_pid(int slot, int pid) {
    std::lock_guard<std::mutex> l(mu_);
    if (pid == 0) {
      pids_.erase(slot);
    } else {
      pids_[slot] = pid;
    }
  }
  std::vector<int> backend_pids() const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<int> out;
    for (const auto& [slot, pid] : pids_) out.push_back(pid);
    return out;
  }

 private:
  mutable std::mutex mu_;
  Settings settings_;
  bool manual_ = false;
  std::optional<SystemClock::time_point> manual_until_;
  std::map<int, int> pids_;
};

// Chooses each backfill batch's size. With a target batch time, the size
// follows the measured rows per second toward the target: it grows at most
// 1.5x per batch, shrinks at most to half, and is cut to a quarter when a
// batch runs over four times the target (a lock wait, a burst of load).
// Without one, it is the configured batch size. Pure; not thread-safe.
class BatchSizer {
 public:
  static constexpr int kMinRows = 10;

  explicit BatchSizer(const Settings& s) : size_(s.batch_size) {}
  int size(const Settings& s) const;
  // After a batch of `rows` rows that took `seconds`.
  void observe(long long rows, double seconds, const Settings& s);

 private:
  int size_;
};

}  // namespace tandem
