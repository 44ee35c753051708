#include "engine/hooks.h"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "tandem_version.h"
#include "util/duration.h"
#include "util/json.h"
#include "util/logging.h"

extern char** environ;

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

struct Url {
  std::string host, port = "80", path = "/";
};

// http://host[:port][/path]; "" in host when `url` is not of that form.
Url parse_url(const std::string& url) {
  Url u;
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) return u;
  std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  if (slash != std::string::npos) {
    u.path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  if (!rest.empty() && rest[0] == '[') {  // [::1]:8080
    const auto close = rest.find(']');
    if (close == std::string::npos) return u;
    u.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Url{};
      u.port = rest.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    u.host = rest.substr(0, colon);
    if (colon != std::string::npos) u.port = rest.substr(colon + 1);
  }
  if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos ||
      u.path.find_first_of(" \r\n") != std::string::npos ||
      u.host.find_first_of(" \r\n/@") != std::string::npos) {
    return Url{};
  }
  return u;
}

// The executables of `event` in `dir`, by name.
std::vector<std::string> executables(const std::string& dir, const std::string& event) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) {
    spdlog::warn("hooks: cannot read {}: {}", dir, std::strerror(errno));
    return out;
  }
  const std::string name = "tandem-on-" + event;
  while (dirent* e = readdir(d)) {
    const std::string f = e->d_name;
    if (f != name && f.compare(0, name.size() + 1, name + "-") != 0 &&
        f.compare(0, name.size() + 1, name + ".") != 0) {
      continue;
    }
    const std::string full = dir + "/" + f;
    struct stat st {};
    if (stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (access(full.c_str(), X_OK) != 0) {
      spdlog::warn("hooks: {} is not executable; skipped", full);
      continue;
    }
    out.push_back(full);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// The last line of `text` that is not blank, cut to 300 bytes.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  auto begin = text.rfind('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  std::string line = text.substr(begin, end - begin + 1);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

// Runs one executable with the event in its environment and the payload on
// stdin; "" when it exited 0.
std::string run_executable(const std::string& file, const HookEvent& e, const std::string& payload,
                           std::chrono::milliseconds timeout) {
  const std::string name = file.substr(file.rfind('/') + 1);
  int in[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    return name + ": cannot make its stdin: " + std::strerror(errno);
  }
  char out_name[] = "/tmp/tandem-hook-XXXXXX";
  const int out = mkostemp(out_name, O_CLOEXEC);
  if (out < 0) {
    close(in[0]);
    close(in[1]);
    return name + ": cannot make a file for its output: " + std::strerror(errno);
  }
  unlink(out_name);

  // The daemon's environment, with the event's variables in place of any
  // of the same name.
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"TANDEM_HOOK", e.event}, {"TANDEM_MIGRATION", e.migration}, {"TANDEM_PHASE", e.phase},
      {"TANDEM_STEP", e.step},  {"TANDEM_ERROR", e.error},         {"TANDEM_DATABASE", e.database},
      {"TANDEM_ACTOR", e.actor}};
  std::vector<std::string> env;
  for (char** p = environ; *p; ++p) {
    const std::string entry = *p;
    const std::string key = entry.substr(0, entry.find('='));
    if (std::none_of(vars.begin(), vars.end(), [&](const auto& v) { return v.first == key; })) {
      env.push_back(entry);
    }
  }
  for (const auto& [k, v] : vars) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = file;
  char* argv[] = {arg0.data(), nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[1], 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, out, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group, killed whole on a timeout
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, file.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[1]);
  if (rc != 0) {
    close(in[0]);
    close(out);
    return name + ": cannot run it: " + std::strerror(rc);
  }
  // The payload fits the socket's buffer; a hook that does not read it
  // still ends, and one that exits early makes the send fail, not signal.
  (void)send(in[0], payload.data(), payload.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(in[0], SHUT_WR);

  const auto deadline = Clock::now() + timeout;
  int status = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (Clock::now() >= deadline) {
      timed_out = true;
      kill(-pid, SIGTERM);
      const auto hard = Clock::now() + std::chrono::seconds(2);
      while (waitpid(pid, &status, WNOHANG) == 0 && Clock::now() < hard) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  close(in[0]);
  std::string output;
  char buf[4096];
  lseek(out, 0, SEEK_SET);
  for (ssize_t n; output.size() < 16384 && (n = read(out, buf, sizeof buf)) > 0;) {
    output.append(buf, static_cast<size_t>(n));
  }
  close(out);
  std::string outcome;
  if (timed_out) {
    outcome = name + " timed out after " + format_duration_exact(timeout);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    outcome = name + " exited with status " + std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    outcome = name + " was killed by signal " + std::to_string(WTERMSIG(status));
  }
  const std::string line = last_line(output);
  if (outcome.empty()) {
    spdlog::info("hook {}: done{}", name, line.empty() ? "" : ": " + line);
    return "";
  }
  if (!line.empty()) outcome += ": " + line;
  spdlog::warn("hook {}", outcome);
  return outcome;
}

// Waits for `fd` to be ready for `events` until `deadline`; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// POSTs the payload; "" on a 2xx answer.
std::string post(const std::string& url, const std::string& payload,
                 std::chrono::milliseconds timeout) {
  const Url u = parse_url(url);
  const std::string what = "POST " + url;
  if (u.host.empty()) return what + ": not an http:// URL";
  const auto deadline = Clock::now() + timeout;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &found); rc != 0) {
    return what + ": " + gai_strerror(rc);
  }
  std::string problem = "cannot connect";
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      problem = std::strerror(errno);
      close(fd);
      fd = -1;
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (!wait_fd(fd, POLLOUT, deadline)) {
      problem = "timed out connecting after " + format_duration_exact(timeout);
    } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      problem = std::strerror(err ? err : errno);
    } else {
      break;
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  if (fd < 0) return what + ": " + problem;
  const std::string request = "POST " + u.path + " HTTP/1.1\r\nHost: " + u.host +
                              "\r\nUser-Agent: tandem/" TANDEM_VERSION
                              "\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(payload.size()) + "\r\nConnection: close\r\n\r\n" +
                              payload;
  size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_fd(fd, POLLOUT, deadline)) {
      close(fd);
      return what + ": timed out after " + format_duration_exact(timeout);
    }
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      const std::string err = std::strerror(errno);
      close(fd);
      return what + ": " + err;
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string answer;
  char buf[1024];
  while (answer.find("\r\n") == std::string::npos && answer.size() < 8192) {
    if (!wait_fd(fd, POLLIN, deadline)) {
      close(fd);
      return what + ": no answer within " + format_duration_exact(timeout);
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      break;
    }
    answer.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  // "HTTP/1.1 204 No Content"
  const std::string line = answer.substr(0, answer.find("\r\n"));
  const auto sp = line.find(' ');
  const std::string code = sp == std::string::npos ? "" : line.substr(sp + 1, 3);
  if (line.compare(0, 5, "HTTP/") != 0 || code.size() != 3) {
    return what + ": not an HTTP answer";
  }
  if (code[0] != '2') return what + ": " + line.substr(sp + 1);
  return "";
}

}  // namespace

const std::vector<std::string>& hook_events() {
  static const std::vector<std::string> events = {
      "start",          "phase-change", "waiting-approval", "before-cutover",
      "critical-pause", "success",      "failure",          "rolled-back"};
  return events;
}

std::string check_hook_settings(const HookSettings& s) {
  if (!s.path.empty()) {
    struct stat st {};
    if (stat(s.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return "hooks path " + s.path + " is not a directory";
    }
  }
  if (!s.url.empty() && parse_url(s.url).host.empty()) {
    return "hooks url " + s.url +
           ": expected http://host[:port][/path] (for https, call it from a hook executable, "
           "e.g. with curl)";
  }
  if (s.timeout.count() <= 0) return "hooks timeout must be more than 0";
  return "";
}

std::string hooks_text(const HookSettings& s) {
  if (!s.enabled()) return "off";
  std::string out;
  if (!s.path.empty()) out += "executables in " + s.path + ", ";
  if (!s.url.empty()) out += "POST to " + s.url + ", ";
  return out + "timeout " + format_duration_exact(s.timeout) +
         ", a held cutover tried again every " + format_duration_exact(s.retry);
}

std::string hook_payload(const HookEvent& e) {
  nlohmann::json j = {{"version", 1},
                      {"hook", e.event},
                      {"migration", e.migration},
                      {"phase", text_or_null(e.phase)},
                      {"step", text_or_null(e.step)},
                      {"error", text_or_null(e.error)},
                      {"database", e.database},
                      {"actor", e.actor},
                      {"time", rfc3339(std::chrono::system_clock::now())},
                      {"tandem_version", TANDEM_VERSION}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string deliver_hook(const HookSettings& s, const HookEvent& e) {
  const std::string payload = hook_payload(e);
  std::vector<std::string> failed;
  if (!s.path.empty()) {
    for (const auto& file : executables(s.path, e.event)) {
      std::string r = run_executable(file, e, payload, s.timeout);
      if (!r.empty()) failed.push_back(std::move(r));
    }
  }
  if (!s.url.empty()) {
    std::string r = post(s.url, payload, s.timeout);
    if (!r.empty()) {
      spdlog::warn("hook {}: {}", e.event, r);
      failed.push_back(std::move(r));
    }
  }
  std::string out;
  for (const auto& f : failed) out += (out.empty() ? "" : "; ") + f;
  return out;
}

Hooks::Hooks(HookSettings s) : settings_(std::move(s)) {
  thread_ = std::thread([this] { loop(); });
}

Hooks::~Hooks() {
  size_t queued;
  {
    std::lock_guard<std::mutex> l(mu_);
    queued = queue_.size();
  }
  // Each delivery ends within a timeout per hook; a run's last events (its
  // success or failure) are delivered before the command exits.
  drain(settings_.timeout * static_cast<int>(std::min<size_t>(queued + 1, 10)));
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (!queue_.empty()) {
      spdlog::warn("hooks: {} event(s) not delivered at exit", queue_.size());
      queue_.clear();
    }
  }
  cv_.notify_all();
  thread_.join();
}

void Hooks::notify(const HookEvent& e) {
  {
    std::lock_guard<std::mutex> l(mu_);
    std::string& last = last_[e.migration];
    const std::string key = e.event + "/" + e.phase;
    if (last == key) return;
    last = key;
    if (queue_.size() >= 1000) {
      spdlog::warn("hooks: more than 1000 events wait; the oldest ({} of {}) is dropped",
                   queue_.front().event, queue_.front().migration);
      queue_.pop_front();
    }
    queue_.push_back(e);
  }
  cv_.notify_all();
}

std::string Hooks::gate(const HookEvent& e) {
  {
    std::lock_guard<std::mutex> l(mu_);
    last_[e.migration] = e.event + "/" + e.phase;
  }
  return deliver_hook(settings_, e);
}

void Hooks::drain(std::chrono::milliseconds max) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, max, [&] { return queue_.empty() && !busy_; });
}

void Hooks::loop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    HookEvent e = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    l.unlock();
    {
      LogContextScope log({e.migration, e.phase, e.step});
      deliver_hook(settings_, e);
    }
    l.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace tandem
