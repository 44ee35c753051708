#include "db/call_deadline.h"

#include <libpq-fe.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

bool same_letter(char a, char b) {
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

// Where `word` (lower case) next occurs in `s` from `from`, in any case;
// npos when it does not.
size_t find_word(const std::string& s, const std::string& word, size_t from) {
  if (from >= s.size()) return std::string::npos;
  auto it = std::search(s.begin() + static_cast<std::ptrdiff_t>(from), s.end(), word.begin(),
                        word.end(), same_letter);
  return it == s.end() ? std::string::npos : static_cast<size_t>(it - s.begin());
}

// Whether `s` holds `word` (lower case) at `at`, in any case.
bool word_at(const std::string& s, size_t at, const std::string& word) {
  return at + word.size() <= s.size() &&
         std::equal(word.begin(), word.end(), s.begin() + static_cast<std::ptrdiff_t>(at),
                    same_letter);
}

// "250ms", "5s", "1min", "2h", "1d", "300" (milliseconds), after any quote.
std::optional<std::chrono::milliseconds> parse_value(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\'')) ++i;
  size_t digits = i;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == i || digits - i > 12) return std::nullopt;
  const long long n = std::stoll(s.substr(i, digits - i));
  size_t u = digits;
  while (u < s.size() && s[u] == ' ') ++u;
  size_t end = u;
  while (end < s.size() && std::isalpha(static_cast<unsigned char>(s[end]))) ++end;
  const std::string unit = s.substr(u, end - u);
  long long factor = 1;
  if (unit == "s") {
    factor = 1000;
  } else if (unit == "min") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else if (unit == "d") {
    factor = 86'400'000;
  } else if (!unit.empty() && unit != "ms") {
    return std::nullopt;
  }
  return std::chrono::milliseconds(n * factor);
}

struct Watched {
  int fd = -1;
  Clock::time_point start;
  std::chrono::milliseconds bound{0};
  std::string ping_conninfo;
  int misses = 0;
  Clock::time_point next_ping;
  std::string cut_reason;
};

std::string seconds_text(Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

// The watcher: one thread for the process, started with the first call.
class Watcher {
 public:
  static Watcher& instance() {
    // Never destroyed: its thread may outlive static destruction.
    static Watcher* w = new Watcher;
    return *w;
  }

  long long add(int fd, std::chrono::milliseconds bound, const std::string& ping_conninfo) {
    std::lock_guard<std::mutex> l(mu_);
    if (!started_) {
      started_ = true;
      std::thread([this] { loop(); }).detach();
    }
    const long long token = ++next_token_;
    Watched& w = calls_[token];
    w.fd = fd;
    w.start = Clock::now();
    w.bound = bound;
    w.ping_conninfo = ping_conninfo;
    w.next_ping = w.start + kPingAfter;
    return token;
  }

  void remove(long long token) {
    std::lock_guard<std::mutex> l(mu_);
    calls_.erase(token);
  }

  std::string cut_reason(long long token) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = calls_.find(token);
    return it == calls_.end() ? "" : it->second.cut_reason;
  }

 private:
  // Under mu_: the socket is still open, since its call has not returned.
  void cut(Watched& w, const std::string& reason) {
    if (!w.cut_reason.empty()) return;
    w.cut_reason = reason;
    ::shutdown(w.fd, SHUT_RDWR);
  }

  void loop() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      std::vector<std::pair<long long, std::string>> to_ping;
      {
        std::lock_guard<std::mutex> l(mu_);
        const auto now = Clock::now();
        for (auto& [token, w] : calls_) {
          if (!w.cut_reason.empty()) continue;
          const auto age = now - w.start;
          if (w.bound.count() > 0 && age > w.bound + kCallMargin) {
            cut(w, "no answer from the server for " + seconds_text(age) +
                       ", longer than the statement_timeout of " + std::to_string(w.bound.count()) +
                       " ms it runs under (is it frozen?)");
          } else if (now >= w.next_ping && !w.ping_conninfo.empty()) {
            to_ping.emplace_back(token, w.ping_conninfo);
          }
        }
      }
      // Outside the lock: a ping may take kPingTimeoutSeconds.
      std::map<std::string, bool> answered;
      for (const auto& [token, conninfo] : to_ping) {
        auto a = answered.find(conninfo);
        if (a == answered.end()) {
          const std::string ping =
              conninfo + " connect_timeout=" + std::to_string(kPingTimeoutSeconds);
          a = answered.emplace(conninfo, PQping(ping.c_str()) != PQPING_NO_RESPONSE).first;
        }
        std::lock_guard<std::mutex> l(mu_);
        auto it = calls_.find(token);
        if (it == calls_.end()) continue;
        Watched& w = it->second;
        w.next_ping = Clock::now() + kPingEvery;
        w.misses = a->second ? 0 : w.misses + 1;
        if (w.misses >= kPingMisses) {
          cut(w, "no answer from the server for " + seconds_text(Clock::now() - w.start) +
                     ", and it did not answer " + std::to_string(w.misses) +
                     " connection attempts in a row (is it frozen?)");
        }
      }
    }
  }

  std::mutex mu_;
  bool started_ = false;
  long long next_token_ = 0;
  std::map<long long, Watched> calls_;
};

}  // namespace

namespace {

// Every assignment of statement_timeout in `sql`, in order: (LOCAL?, value).
std::vector<std::pair<bool, std::chrono::milliseconds>> assignments(const std::string& s) {
  static const std::string kName = "statement_timeout";
  std::vector<std::pair<bool, std::chrono::milliseconds>> out;
  for (size_t at = find_word(s, kName, 0); at != std::string::npos;
       at = find_word(s, kName, at + 1)) {
    size_t i = at + kName.size();
    while (i < s.size() && s[i] == ' ') ++i;
    if (i < s.size() && s[i] == '=') {
      ++i;
    } else if (word_at(s, i, "to ") || word_at(s, i, "to'")) {
      i += 2;
    } else {
      continue;
    }
    auto v = parse_value(s, i);
    if (!v) continue;
    // "SET LOCAL statement_timeout": LOCAL just before the name.
    size_t b = at;
    while (b > 0 && s[b - 1] == ' ') --b;
    out.emplace_back(b >= 5 && word_at(s, b - 5, "local"), *v);
  }
  return out;
}

bool longer(std::chrono::milliseconds a, std::chrono::milliseconds b) {
  if (b.count() == 0) return false;
  return a.count() == 0 || a > b;
}

}  // namespace

std::chrono::milliseconds StatementTimeout::bound_for(const std::string& sql) const {
  std::chrono::milliseconds bound = in_effect();
  for (const auto& a : assignments(sql)) {
    if (longer(a.second, bound)) bound = a.second;
  }
  return bound;
}

void StatementTimeout::ran(const std::string& sql) {
  for (const auto& a : assignments(sql)) {
    if (a.first) {
      local_ = a.second;
    } else {
      session_ = a.second;
    }
  }
  const size_t first = sql.find_first_not_of(" \t\n");
  if (first == std::string::npos) return;
  const size_t length = sql.find_last_not_of(" \t\n;") + 1 - first;
  for (const std::string word : {"commit", "rollback", "end", "abort"}) {
    if (length == word.size() && word_at(sql, first, word)) local_.reset();
  }
}

WatchedCall::WatchedCall(int fd, std::chrono::milliseconds bound, const std::string& ping_conninfo)
    : token_(Watcher::instance().add(fd, bound, ping_conninfo)) {}

WatchedCall::~WatchedCall() { Watcher::instance().remove(token_); }

std::string WatchedCall::cut_reason() const { return Watcher::instance().cut_reason(token_); }

}  // namespace tandem
