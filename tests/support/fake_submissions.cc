#include "support/fake_submissions.h"

#include <algorithm>
#include <stdexcept>

namespace tandem::testing {

std::optional<FakeSubmissionStore::Row> FakeSubmissionStore::row(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = rows_.find(name);
  if (it == rows_.end()) return std::nullopt;
  return it->second;
}

std::vector<FakeSubmissionStore::Event> FakeSubmissionStore::events_of(
    const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Event> out;
  for (const auto& e : events_) {
    if (e.migration == name) out.push_back(e);
  }
  return out;
}

void FakeSubmissionStore::add(const Submission& s) {
  std::lock_guard<std::mutex> l(mu_);
  order_.push_back(s.name);
  rows_[s.name] = Row{s, "test", nlohmann::json::object()};
}

int FakeSubmissionStore::prepared() const {
  std::lock_guard<std::mutex> l(mu_);
  return prepared_;
}

FakeSubmissionStore::Row& FakeSubmissionStore::at(const std::string& name) {
  auto it = rows_.find(name);
  // As an UPDATE of no row: nothing happens in the real store; a test that
  // gets here asked for something the daemon should not have done.
  if (it == rows_.end()) throw std::logic_error("no submission " + name);
  return it->second;
}

void FakeSubmissionStore::log(const std::string& name, const std::string& kind,
                              const std::string& actor, const nlohmann::json& detail) {
  events_.push_back({name, kind, actor, detail});
}

void FakeSubmissionStore::prepare(Connection&) {
  std::lock_guard<std::mutex> l(mu_);
  ++prepared_;
}

std::vector<SubmissionStore::Submission> FakeSubmissionStore::all(Connection&) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Submission> out;
  for (const auto& name : order_) out.push_back(rows_.at(name).submission);
  return out;
}

std::optional<SubmissionStore::Wishes> FakeSubmissionStore::wishes(Connection&,
                                                                   const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = rows_.find(name);
  if (it == rows_.end()) return std::nullopt;
  return Wishes{it->second.submission.desired, it->second.submission.approved, it->second.live};
}

std::optional<std::string> FakeSubmissionStore::spec_text(Connection&, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = rows_.find(name);
  if (it == rows_.end()) return std::nullopt;
  return it->second.submission.spec_text;
}

void FakeSubmissionStore::insert(Connection&, const std::string& name, const std::string& spec_text,
                                 const std::string& file, const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  if (rows_.count(name)) throw std::logic_error("submission " + name + " inserted twice");
  order_.push_back(name);
  rows_[name] = Row{{name, spec_text, file, Desired::kRun, {}}, actor, nlohmann::json::object()};
  log(name, "submitted", actor, {{"file", file}});
}

void FakeSubmissionStore::forget(Connection&, const std::string& name, const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  at(name);  // throws when there is none
  rows_.erase(name);
  order_.erase(std::find(order_.begin(), order_.end(), name));
  log(name, "forgotten", actor);
}

void FakeSubmissionStore::replace(Connection&, const std::string& name,
                                  const std::string& spec_text, const std::string& file,
                                  const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  Row& row = at(name);
  row = Row{{name, spec_text, file, Desired::kRun, {}}, actor, nlohmann::json::object()};
  log(name, "resubmitted", actor, {{"file", file}});
}

void FakeSubmissionStore::set_desired(Connection&, const std::string& name, Desired desired,
                                      const std::string& event, const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  at(name).submission.desired = desired;
  if (!event.empty()) log(name, event, actor);
}

void FakeSubmissionStore::approve(Connection&, const std::string& name, Phase phase,
                                  const std::vector<std::string>& accept,
                                  const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  at(name).submission.approved.insert(phase);
  for (const auto& a : accept) at(name).live["accepted"].push_back(a);
  log(name, "approve_requested", actor, {{"phase", phase_name(phase)}});
}

void FakeSubmissionStore::set_throttle(Connection&, const std::string& name,
                                       const std::optional<nlohmann::json>& until,
                                       const nlohmann::json& detail, const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  nlohmann::json& live = at(name).live;
  if (!until) {
    live.erase("throttle");
    log(name, "throttle_lifted", actor);
  } else {
    live["throttle"] = {{"until", *until}};
    log(name, "throttle_requested", actor, detail);
  }
}

void FakeSubmissionStore::merge_settings(Connection&, const std::string& name,
                                         const nlohmann::json& changed, const std::string& actor) {
  std::lock_guard<std::mutex> l(mu_);
  nlohmann::json& live = at(name).live;
  if (!live.contains("settings")) live["settings"] = nlohmann::json::object();
  live["settings"].update(changed);
  log(name, "settings_changed", actor, changed);
}

std::vector<std::pair<std::string, std::string>> FakeSubmissionStore::ahead_of(Connection&,
                                                                               const std::string&) {
  return {};  // one migration at a time in these tests: the table gate is tested on a server
}

nlohmann::json FakeSubmissionStore::events(Connection&, const std::string& name, int limit,
                                           long long after) {
  std::lock_guard<std::mutex> l(mu_);
  nlohmann::json out = nlohmann::json::array();
  long long id = 0;  // the position in the log, from 1
  for (const auto& e : events_) {
    ++id;
    if (e.migration == name && id > after) {
      out.push_back({{"id", id}, {"kind", e.kind}, {"actor", e.actor}});
    }
  }
  while (static_cast<int>(out.size()) > limit) {
    out.erase(after > 0 ? out.end() - 1 : out.begin());
  }
  return out;
}

}  // namespace tandem::testing
