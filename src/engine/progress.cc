#include "engine/progress.h"

#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util/duration.h"
#include "util/text.h"

namespace tandem {

void RateMeter::add(long long rows, double seconds) {
  if (seconds <= 0) return;
  double r = rows / seconds;
  rate_ = primed_ ? smoothing_ * r + (1 - smoothing_) * rate_ : r;
  primed_ = true;
}

std::optional<double> RateMeter::eta_seconds(long long remaining) const {
  if (!primed_ || rate_ <= 0) return std::nullopt;
  return remaining < 0 ? 0.0 : remaining / rate_;
}

std::string format_progress(const ProgressUpdate& u) {
  std::string out = "[" + std::string(phase_name(u.step->phase)) + "] " + u.step->id + "  " +
                    with_commas(u.rows_done);
  if (u.rows_total && *u.rows_total > 0) {
    char pct[32];
    double p = std::min(100.0, 100.0 * u.rows_done / *u.rows_total);
    std::snprintf(pct, sizeof pct, " (%.1f%%)", p);
    out += "/" + with_commas(*u.rows_total) + " rows" + pct;
  } else {
    out += " rows";
  }
  out += "  " + with_commas(std::llround(u.rows_per_second)) + " rows/s";
  if (u.ranges > 1) {
    out += "  " + std::to_string(u.ranges_finished) + "/" + std::to_string(u.ranges) +
           " ranges finished, " + std::to_string(u.workers) +
           (u.workers == 1 ? " worker" : " workers");
  }
  if (u.eta_seconds) {
    out += "  ETA " + format_duration(
                          std::chrono::milliseconds(static_cast<long long>(*u.eta_seconds * 1000)));
  }
  return out;
}

std::string fit_to_width(const std::string& line, int width) {
  if (width < 2) return "";
  int columns = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;  // a continuation byte
    if (++columns == width) {
      // The rest must fit in this last column, or it gives way to "…".
      size_t rest = i + 1;
      while (rest < line.size() && (static_cast<unsigned char>(line[rest]) & 0xC0) == 0x80) ++rest;
      if (rest >= line.size()) return line;
      return line.substr(0, i) + "\u2026";
    }
  }
  return line;
}

namespace {

// The terminal's width (stderr's), else COLUMNS, else 80.
int terminal_width() {
  struct winsize ws {};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

class TerminalProgress final : public ProgressSink {
 public:
  void phase_started(Phase phase) override {
    clear();
    std::fprintf(stderr, "phase %s\n", phase_name(phase));
  }
  void step_started(const Step& step) override {
    clear();
    std::fprintf(stderr, "  %s: %s\n", step.id.c_str(), step.description.c_str());
  }
  void progress(const ProgressUpdate& u) override {
    // Two columns of indent, and the last column left free (a line that
    // fills it wraps on some terminals).
    std::string line = fit_to_width(format_progress(u), terminal_width() - 3);
    std::fprintf(stderr, "\r\033[K  %s", line.c_str());
    std::fflush(stderr);
    dirty_ = true;
  }
  void step_finished(const Step& step, double seconds) override {
    clear();
    std::fprintf(stderr, "  %s done in %s\n", step.id.c_str(),
                 format_duration(std::chrono::milliseconds(std::llround(seconds * 1000))).c_str());
  }

 private:
  void clear() {
    if (dirty_) std::fprintf(stderr, "\r\033[K");
    dirty_ = false;
  }
  bool dirty_ = false;
};

class LogProgress final : public ProgressSink {
 public:
  explicit LogProgress(std::chrono::seconds interval) : interval_(interval) {}
  void phase_started(Phase phase) override { spdlog::info("phase {} started", phase_name(phase)); }
  void step_started(const Step& step) override {
    spdlog::info("step {} started: {}", step.id, step.description);
  }
  void progress(const ProgressUpdate& u) override {
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < interval_) return;
    last_ = now;
    spdlog::info("{}", format_progress(u));
  }
  void step_finished(const Step& step, double seconds) override {
    spdlog::info("step {} done in {:.2f}s", step.id, seconds);
  }

 private:
  std::chrono::seconds interval_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

std::unique_ptr<ProgressSink> make_terminal_progress() {
  return std::make_unique<TerminalProgress>();
}
std::unique_ptr<ProgressSink> make_log_progress(std::chrono::seconds interval) {
  return std::make_unique<LogProgress>(interval);
}

}  // namespace tandem
