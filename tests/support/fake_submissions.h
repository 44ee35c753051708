// The daemon's submissions kept in memory, for unit tests of its commands
// (tests/unit/daemon/manager_test.cc). Thread-safe: the daemon's command
// handlers, poller and workers all use it.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/submission_store.h"

namespace tandem::testing {

class FakeSubmissionStore : public SubmissionStore {
 public:
  struct Row {
    Submission submission;
    std::string submitted_by;
    nlohmann::json live = nlohmann::json::object();
  };
  struct Event {
    std::string migration, kind, actor;
    nlohmann::json detail;
  };

  // Copies, taken under the lock.
  std::optional<Row> row(const std::string& name) const;
  std::vector<Event> events_of(const std::string& name) const;
  // Adds a submission as if another daemon (or an earlier run) had.
  void add(const Submission& s);
  int prepared() const;

  void prepare(Connection&) override;
  std::vector<Submission> all(Connection&) override;
  std::optional<Wishes> wishes(Connection&, const std::string& name) override;
  std::optional<std::string> spec_text(Connection&, const std::string& name) override;
  void insert(Connection&, const std::string& name, const std::string& spec_text,
              const std::string& file, const std::string& actor) override;
  void set_desired(Connection&, const std::string& name, Desired desired, const std::string& event,
                   const std::string& actor) override;
  void approve(Connection&, const std::string& name, Phase phase,
               const std::vector<std::string>& accept, const std::string& actor) override;
  void set_throttle(Connection&, const std::string& name,
                    const std::optional<nlohmann::json>& until, const nlohmann::json& detail,
                    const std::string& actor) override;
  void merge_settings(Connection&, const std::string& name, const nlohmann::json& changed,
                      const std::string& actor) override;
  std::vector<std::pair<std::string, std::string>> ahead_of(Connection&,
                                                            const std::string& name) override;
  nlohmann::json events(Connection&, const std::string& name, int limit, long long after) override;
  void forget(Connection&, const std::string& name, const std::string& actor) override;
  void replace(Connection&, const std::string& name, const std::string& spec_text,
               const std::string& file, const std::string& actor) override;

 private:
  Row& at(const std::string& name);
  void log(const std::string& name, const std::string& kind, const std::string& actor,
           const nlohmann::json& detail = nlohmann::json::object());

  mutable std::mutex mu_;
  std::vector<std::string> order_;  // names, as submitted
  std::map<std::string, Row> rows_;
  std::vector<Event> events_;
  int prepared_ = 0;
};

}  // namespace tandem::testing
