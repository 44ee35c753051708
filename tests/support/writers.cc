#include "support/writers.h"

namespace tandem::testing {

Writers::Writers(const PgServer& pg, const std::string& db, int clients, Write write) {
  for (int client = 0; client < clients; ++client) {
    threads_.emplace_back([this, &pg, db, client, write] {
      auto c = pg.connect(db);
      for (long n = 0; !stop_; ++n) {
        Counts add;
        try {
          c->exec("BEGIN");
          write(*c, client, n, add);
          c->commit();
          ++committed_;
          std::lock_guard<std::mutex> lock(mu_);
          for (const auto& [name, v] : add) counts_[name] += v;
        } catch (const std::exception& e) {
          ++failed_;
          {
            std::lock_guard<std::mutex> lock(mu_);
            last_error_ = e.what();
          }
          try {
            if (c->is_open()) {
              c->exec("ROLLBACK");
            } else {
              c = pg.connect(db);
            }
          } catch (const std::exception&) {
            c = pg.connect(db);
          }
        }
      }
    });
  }
}

Writers::~Writers() { stop(); }

void Writers::stop() {
  stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

long Writers::count(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(name);
  return it == counts_.end() ? 0 : it->second;
}

std::string Writers::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

}  // namespace tandem::testing
