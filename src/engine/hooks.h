// Hooks: what a team's own tooling is told of a migration (docs/hooks.md).
// Executables in a directory, named for the event they want
// (tandem-on-EVENT, or tandem-on-EVENT-anything), and/or a webhook URL that
// is POSTed the same JSON. Every event but before-cutover is delivered by a
// thread of its own, in order, so a slow hook never holds the migration
// back; before-cutover runs where the cutover would begin, and a hook that
// fails (exit status not 0, a timeout, an HTTP status not 2xx) holds the
// cutover until it passes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tandem {

struct HookSettings {
  std::string path;  // a directory of hook executables; "" : none
  std::string url;   // http://host[:port][/path]; "" : none
  // How long one executable or one POST may take; then it is killed (its
  // process group) or abandoned, and counts as failed.
  std::chrono::milliseconds timeout{10000};
  // A cutover held by a failing before-cutover hook: how soon tandemd serve
  // tries the hook again.
  std::chrono::milliseconds retry{30000};
  bool enabled() const { return !path.empty() || !url.empty(); }
};

// "off", or what the settings call and how: for --check-config.
std::string hooks_text(const HookSettings& s);

// The events, in the order a migration meets them.
const std::vector<std::string>& hook_events();

// "" when the settings can be used; else what is wrong with them (the path
// is not a directory, the URL is not http://...).
std::string check_hook_settings(const HookSettings& s);

struct HookEvent {
  std::string event;  // one of hook_events()
  std::string migration;
  std::string phase;     // "" : none
  std::string step;      // "" : none
  std::string error;     // failure, critical-pause and a held cutover: why
  std::string database;  // the connection string, password hidden
  std::string actor;     // who runs it
};

// The JSON a hook reads on stdin and a webhook receives (docs/hooks.md).
std::string hook_payload(const HookEvent& e);

// Runs every hook of the event now, each under the timeout: "" when every
// one succeeded (or there is none), else why not ("tandem-on-before-cutover
// exited with status 3: <its last line of output>"). Each hook's output is
// logged.
std::string deliver_hook(const HookSettings& s, const HookEvent& e);

class Hooks {
 public:
  explicit Hooks(HookSettings s);
  // Delivers what is queued (waiting up to one timeout per event, ten at
  // most), then drops the rest (logged).
  ~Hooks();
  Hooks(const Hooks&) = delete;
  Hooks& operator=(const Hooks&) = delete;

  const HookSettings& settings() const { return settings_; }
  // Queued for the delivery thread; never waits. An event that repeats the
  // migration's last one (the same event and phase: a daemon running the
  // migration again at the same gate) is not sent again.
  void notify(const HookEvent& e);
  // Runs the event's hooks now (before-cutover): "" when they all passed.
  std::string gate(const HookEvent& e);
  // Waits up to `max` for the queue to be delivered.
  void drain(std::chrono::milliseconds max);

 private:
  void loop();

  HookSettings settings_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<HookEvent> queue_;
  bool busy_ = false;  // delivering one taken from the queue
  bool stop_ = false;
  std::map<std::string, std::string> last_;  // migration -> "event/phase" last queued
  std::thread thread_;
};

}  // namespace tandem
