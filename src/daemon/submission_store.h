// The daemon's submissions, in tandem.submissions: each spec submitted to
// it and what the operator wants of it (run, pause or roll back; approvals;
// live settings and a manual throttle). Every SQL statement on that table is
// here. A method that changes a row logs its event in the state store's
// event log in the same transaction.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "daemon/worker_state.h"
#include "db/connection.h"
#include "tandem/phase.h"

namespace tandem {

class SubmissionStore {
 public:
  struct Submission {
    std::string name, spec_text, file;
    Desired desired = Desired::kRun;
    std::set<Phase> approved;
  };
  // What the operator wants of one submission now.
  struct Wishes {
    Desired desired = Desired::kRun;
    std::set<Phase> approved;
    nlohmann::json live;  // {"settings": {...}, "throttle": {"until": ms | null}}
  };

  // Every submission, in the order they were submitted.
  static std::vector<Submission> all(Connection& c);
  static std::optional<Wishes> wishes(Connection& c, const std::string& name);
  static std::optional<std::string> spec_text(Connection& c, const std::string& name);
  // Records a new submission (the caller checked that the name is free).
  static void insert(Connection& c, const std::string& name, const std::string& spec_text,
                     const std::string& file, const std::string& actor);
  // run, pause or rollback; `event` ("" for none) logged with it.
  static void set_desired(Connection& c, const std::string& name, Desired desired,
                          const std::string& event, const std::string& actor);
  static void approve(Connection& c, const std::string& name, Phase phase,
                      const std::string& actor);
  // A manual throttle (`until`: epoch ms, or null for no end), or none.
  static void set_throttle(Connection& c, const std::string& name,
                           const std::optional<nlohmann::json>& until, const nlohmann::json& detail,
                           const std::string& actor);
  // Merges `changed` (setting → text) into the live settings.
  static void merge_settings(Connection& c, const std::string& name, const nlohmann::json& changed,
                             const std::string& actor);
  // (name, spec text) of migrations not finished that must go before
  // `name`: earlier submissions, and migrations run by `tandemd run`.
  static std::vector<std::pair<std::string, std::string>> ahead_of(Connection& c,
                                                                   const std::string& name);
};

}  // namespace tandem
