// The ranges of one backfill or verify step that worker threads share: a
// queue in key order (a range given back, or one cut off another, goes
// first), the worker slots (busy, and how many are not retiring), how many
// idle workers want a running one to split its range, and the first error.
// Thread-safe; the step's thread staffs and waits, workers take and give.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

#include "engine/state_store.h"

namespace tandem {

class RangePool {
 public:
  // `slots`: worker slots already open (their sessions kept from earlier steps).
  RangePool(const std::vector<Partition*>& ranges, size_t slots);

  // Takes the next range; nullptr when none is left.
  Partition* next();
  // A range to do first: one a stopped worker did not finish, or one cut
  // off another's (kept here for the step's life).
  void put_first(Partition* range);
  void add_split(Partition piece);
  bool empty();

  // Starts workers while ranges wait and fewer than `allowed` work:
  // start(slot, range) for each, slot being a free one or a new one (the
  // next number). Returns how many slots are busy, retiring ones included.
  int staff(int allowed, const std::function<bool()>& may_start,
            const std::function<void(size_t slot, Partition* range)>& start);
  // Whether a worker should retire now because more work than `allowed`;
  // when so, it no longer counts as working.
  bool retire_if_over(int allowed);
  // A worker's thread is over.
  void ended(size_t slot, bool retired);
  // Waits until a worker ends or `timeout` passes; meanwhile, when no range
  // waits and new workers may start (`may_split`), asks running ones for as
  // many splits as workers could start. Returns false when nothing is left
  // to wait for: no worker busy (`running` 0) and no range to do, or `done`.
  bool wait(int running, bool done, bool may_split, int allowed, std::chrono::milliseconds timeout);
  // Takes one of the splits wanted, if any is left.
  bool claim_split();
  // A worker whose range was too short to split: another may split instead.
  void want_split() { ++splits_wanted_; }

  // The first error wins, but a real failure beats a sibling's stop.
  void record_error(std::exception_ptr error, bool is_stop);
  void rethrow_error();

 private:
  std::mutex mu_;  // guards queue_, split_off_, busy_, working_
  std::condition_variable worker_ended_;
  std::deque<Partition*> queue_;
  std::deque<Partition> split_off_;
  std::vector<bool> busy_;
  int working_ = 0;  // workers not retiring
  std::atomic<int> splits_wanted_{0};
  std::mutex error_mu_;
  std::exception_ptr error_;
  bool error_is_stop_ = false;
};

}  // namespace tandem
