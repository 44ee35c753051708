// Application writers for the integration tests: threads that each run a
// write in a transaction over and over until stopped, counting what
// committed and what failed. A write the application had to retry is a
// failure: the tests expect none.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "db/connection.h"
#include "support/pg_server.h"

namespace tandem::testing {

class Writers {
 public:
  // What one write adds to the writers' named counts once it commits.
  using Counts = std::map<std::string, long>;
  // Runs in a transaction the writers open and commit: client number, the
  // client's write number, the counts to add when it commits.
  using Write = std::function<void(Connection&, int client, long n, Counts& add)>;

  Writers(const PgServer& pg, const std::string& db, int clients, Write write);
  ~Writers();
  Writers(const Writers&) = delete;
  Writers& operator=(const Writers&) = delete;
  void stop();

  long committed() const { return committed_; }
  long failed() const { return failed_; }
  // The sum of what committed writes added under `name`.
  long count(const std::string& name) const;
  std::string last_error() const;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> committed_{0}, failed_{0};
  mutable std::mutex mu_;
  Counts counts_;
  std::string last_error_;
  std::vector<std::thread> threads_;
};

}  // namespace tandem::testing
