// How tandemd writes its log lines to stderr:
//  - on a terminal: short time, coloured level (no colour with NO_COLOR set);
//  - under systemd (stderr is the JOURNAL_STREAM): a syslog priority prefix
//    ("<6>") and no timestamp, since the journal adds its own;
//  - otherwise: ISO timestamp and level;
//  - with format json: one JSON object per line ({"ts","level","msg"}, and
//    "migration", "phase", "step" when the line has them), with the
//    priority prefix too under the journal.
// A line logged while a thread works on a migration (LogContextScope) names
// it: "migration NAME: " before the message in text, unless the message
// begins with that already.
#pragma once

#include <spdlog/formatter.h>

#include <memory>
#include <optional>
#include <string>

namespace tandem {

enum class LogFormat { kText, kJson };

std::optional<LogFormat> parse_log_format(const std::string& text);

// Whether stderr is the stream systemd's journal gave this process.
bool stderr_is_journal();

// What this thread is working on, for its log lines; empty fields are left
// out. Each thread has its own (a worker thread copies its parent's).
struct LogContext {
  std::string migration, phase, step;
};
LogContext& log_context();

// Sets this thread's context for its lifetime, then puts the old one back.
class LogContextScope {
 public:
  explicit LogContextScope(LogContext c) : saved_(log_context()) { log_context() = std::move(c); }
  ~LogContextScope() { log_context() = std::move(saved_); }
  LogContextScope(const LogContextScope&) = delete;
  LogContextScope& operator=(const LogContextScope&) = delete;

 private:
  LogContext saved_;
};

// Creates (or reconfigures) the default logger; safe to call again, e.g. on SIGHUP.
void setup_logging(LogFormat format, const std::string& level);

// The formatter of those lines: `journal` when stderr is the journal's
// stream, `tty` on a terminal. Exposed for tests.
// `bare`: the message alone (for the journal's native protocol, which has
// the priority and the time as fields of their own).
std::unique_ptr<spdlog::formatter> log_formatter(LogFormat format, bool journal, bool tty,
                                                 bool bare = false);

// The message escaped as the inside of a JSON string. Exposed for tests.
std::string json_escape(const std::string& text);

}  // namespace tandem
