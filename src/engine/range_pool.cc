#include "engine/range_pool.h"

#include <algorithm>

namespace tandem {

RangePool::RangePool(const std::vector<Partition*>& ranges, size_t slots)
    : queue_(ranges.begin(), ranges.end()), busy_(slots, false) {}

Partition* RangePool::next() {
  std::lock_guard<std::mutex> l(mu_);
  if (queue_.empty()) return nullptr;
  Partition* r = queue_.front();
  queue_.pop_front();
  return r;
}

void RangePool::put_first(Partition* range) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_front(range);
}

void RangePool::add_split(Partition piece) {
  std::lock_guard<std::mutex> l(mu_);
  split_off_.push_back(std::move(piece));
  queue_.push_front(&split_off_.back());
}

bool RangePool::empty() {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.empty();
}

int RangePool::staff(int allowed, const std::function<bool()>& may_start,
                     const std::function<void(size_t, Partition*)>& start) {
  std::lock_guard<std::mutex> l(mu_);
  while (may_start() && working_ < allowed && !queue_.empty()) {
    size_t i = 0;
    while (i < busy_.size() && busy_[i]) ++i;
    if (i == busy_.size()) busy_.push_back(false);
    busy_[i] = true;
    ++working_;
    Partition* range = queue_.front();
    queue_.pop_front();
    start(i, range);
  }
  return static_cast<int>(std::count(busy_.begin(), busy_.end(), true));
}

bool RangePool::retire_if_over(int allowed) {
  std::lock_guard<std::mutex> l(mu_);
  if (working_ <= allowed) return false;
  --working_;
  return true;
}

void RangePool::ended(size_t slot, bool retired) {
  std::lock_guard<std::mutex> l(mu_);
  if (!retired) --working_;
  busy_[slot] = false;
  worker_ended_.notify_all();
}

bool RangePool::wait(int running, bool done, bool may_split, int allowed,
                     std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  if (running == 0 && (queue_.empty() || done)) return false;
  splits_wanted_ = queue_.empty() && may_split ? std::max(0, allowed - working_) : 0;
  worker_ended_.wait_for(l, timeout);
  return true;
}

bool RangePool::claim_split() {
  for (int n = splits_wanted_.load(); n > 0;) {
    if (splits_wanted_.compare_exchange_weak(n, n - 1)) return true;
  }
  return false;
}

void RangePool::record_error(std::exception_ptr error, bool is_stop) {
  std::lock_guard<std::mutex> l(error_mu_);
  if (!error_ || (error_is_stop_ && !is_stop)) {
    error_ = std::move(error);
    error_is_stop_ = is_stop;
  }
}

void RangePool::rethrow_error() {
  std::lock_guard<std::mutex> l(error_mu_);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace tandem
