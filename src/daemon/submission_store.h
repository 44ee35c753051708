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
    // {"settings": {...}, "throttle": {"until": ms | null}, "accepted": [pair, ...]}
    nlohmann::json live;
  };

  virtual ~SubmissionStore() = default;
  // Creates or upgrades the store. Throws Error(kFatal) when it is newer
  // than this binary understands.
  virtual void prepare(Connection& c) = 0;
  // Every submission, in the order they were submitted.
  virtual std::vector<Submission> all(Connection& c) = 0;
  virtual std::optional<Wishes> wishes(Connection& c, const std::string& name) = 0;
  virtual std::optional<std::string> spec_text(Connection& c, const std::string& name) = 0;
  // Records a new submission (the caller checked that the name is free).
  virtual void insert(Connection& c, const std::string& name, const std::string& spec_text,
                      const std::string& file, const std::string& actor) = 0;
  // run, pause or rollback; `event` ("" for none) logged with it.
  virtual void set_desired(Connection& c, const std::string& name, Desired desired,
                           const std::string& event, const std::string& actor) = 0;
  // An approval of `phase`, with the shadow-read pairs whose failed gate
  // the operator accepts (kept in live "accepted").
  virtual void approve(Connection& c, const std::string& name, Phase phase,
                       const std::vector<std::string>& accept, const std::string& actor) = 0;
  // A manual throttle (`until`: epoch ms, or null for no end), or none.
  virtual void set_throttle(Connection& c, const std::string& name,
                            const std::optional<nlohmann::json>& until,
                            const nlohmann::json& detail, const std::string& actor) = 0;
  // Merges `changed` (setting → text) into the live settings.
  virtual void merge_settings(Connection& c, const std::string& name, const nlohmann::json& changed,
                              const std::string& actor) = 0;
  // (name, spec text) of migrations not finished that must go before
  // `name`: earlier submissions, and migrations run by `tandemd run`.
  virtual std::vector<std::pair<std::string, std::string>> ahead_of(Connection& c,
                                                                    const std::string& name) = 0;
  // Removes the submission (the migration's own state and its events stay),
  // logging "forgotten"; throws when there is none.
  virtual void forget(Connection& c, const std::string& name, const std::string& actor) = 0;
  // A rolled-back submission submitted again: the new spec, to run, without
  // approvals or live settings; logs "resubmitted". Throws when there is none.
  virtual void replace(Connection& c, const std::string& name, const std::string& spec_text,
                       const std::string& file, const std::string& actor) = 0;
  // The newest `limit` events of migration `name`, oldest first, as the
  // control protocol sends them; with `after`, the first `limit` whose id is
  // greater. Empty where tandem has never run.
  virtual nlohmann::json events(Connection& c, const std::string& name, int limit,
                                long long after) = 0;
};

// The submissions in table tandem.submissions of the daemon's database.
class PgSubmissionStore : public SubmissionStore {
 public:
  void prepare(Connection& c) override;
  std::vector<Submission> all(Connection& c) override;
  std::optional<Wishes> wishes(Connection& c, const std::string& name) override;
  std::optional<std::string> spec_text(Connection& c, const std::string& name) override;
  void insert(Connection& c, const std::string& name, const std::string& spec_text,
              const std::string& file, const std::string& actor) override;
  void set_desired(Connection& c, const std::string& name, Desired desired,
                   const std::string& event, const std::string& actor) override;
  void approve(Connection& c, const std::string& name, Phase phase,
               const std::vector<std::string>& accept, const std::string& actor) override;
  void set_throttle(Connection& c, const std::string& name,
                    const std::optional<nlohmann::json>& until, const nlohmann::json& detail,
                    const std::string& actor) override;
  void merge_settings(Connection& c, const std::string& name, const nlohmann::json& changed,
                      const std::string& actor) override;
  std::vector<std::pair<std::string, std::string>> ahead_of(Connection& c,
                                                            const std::string& name) override;
  nlohmann::json events(Connection& c, const std::string& name, int limit,
                        long long after) override;
  void forget(Connection& c, const std::string& name, const std::string& actor) override;
  void replace(Connection& c, const std::string& name, const std::string& spec_text,
               const std::string& file, const std::string& actor) override;
};

}  // namespace tandem
