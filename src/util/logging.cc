#include "util/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem {

namespace {

// The syslog priority of a level: 3 for error and so on.
int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    case spdlog::level::critical:
      return 2;
    default:
      return 6;
  }
}

// Lines sent to the journal through its native protocol (sd_journal_sendv):
// MESSAGE and PRIORITY, and the thread's MIGRATION, PHASE and STEP when it
// works on one, so `journalctl -u tandemd MIGRATION=users_uuid_rekey` finds
// one migration's lines.
class JournalSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t text;
    formatter_->format(msg, text);
    std::string message(text.data(), text.size());
    while (!message.empty() && message.back() == '\n') message.pop_back();
    const LogContext& c = log_context();
    std::vector<std::string> fields = {"MESSAGE=" + message,
                                       "PRIORITY=" + std::to_string(syslog_priority(msg.level)),
                                       "SYSLOG_IDENTIFIER=tandemd"};
    if (!c.migration.empty()) fields.push_back("MIGRATION=" + c.migration);
    if (!c.phase.empty()) fields.push_back("PHASE=" + c.phase);
    if (!c.step.empty()) fields.push_back("STEP=" + c.step);
    std::vector<iovec> vec;
    for (auto& f : fields) vec.push_back({f.data(), f.size()});
    sd_journal_sendv(vec.data(), static_cast<int>(vec.size()));
  }
  void flush_() override {}
};

// %W: the syslog priority the journal reads, "<3>" for error and so on.
class PriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const int priority = syslog_priority(msg.level);
    const char text[] = {'<', static_cast<char>('0' + priority), '>'};
    dest.append(text, text + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

// %J: the message as the inside of a JSON string.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string escaped = json_escape(std::string(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// %Q: "migration NAME: " when the thread works on a migration and the
// message does not name it first already.
class MigrationPrefixFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string& m = log_context().migration;
    if (m.empty()) return;
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    const std::string named = "migration " + m;
    if (payload.substr(0, named.size()) == named || payload.substr(0, m.size() + 1) == m + ":")
      return;
    const std::string prefix = named + ": ";
    dest.append(prefix.data(), prefix.data() + prefix.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<MigrationPrefixFlag>();
  }
};

// %K: the context's fields as JSON members, each followed by a comma.
class ContextFieldsFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const LogContext& c = log_context();
    std::string out;
    for (const auto& [key, value] :
         {std::pair<const char*, const std::string*>{"migration", &c.migration},
          {"phase", &c.phase},
          {"step", &c.step}}) {
      if (!value->empty()) out += std::string("\"") + key + "\":\"" + json_escape(*value) + "\",";
    }
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ContextFieldsFlag>();
  }
};

}  // namespace

LogContext& log_context() {
  thread_local LogContext context;
  return context;
}

std::optional<LogFormat> parse_log_format(const std::string& text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return std::nullopt;
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

std::string json_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

bool journal_socket_present() { return access("/run/systemd/journal/socket", W_OK) == 0; }

void setup_logging(LogFormat format, const std::string& level) {
  auto logger = spdlog::get("tandemd");
  if (!logger) {
    // Under systemd (stderr is the journal's stream) and with the journal's
    // socket there: its native protocol, with fields. Decided once: the
    // sinks of a logger others log to are not changed later.
    if (stderr_is_journal() && journal_socket_present()) {
      logger = std::make_shared<spdlog::logger>("tandemd", std::make_shared<JournalSink>());
      spdlog::register_logger(logger);
    } else {
      logger = spdlog::stderr_color_mt("tandemd");
    }
    spdlog::set_default_logger(logger);
  }
  // Lines go to the journal's socket: its fields carry priority and time.
  const bool native =
      !logger->sinks().empty() && dynamic_cast<JournalSink*>(logger->sinks()[0].get());
  spdlog::set_level(spdlog::level::from_str(level));
  // NO_COLOR (no-color.org): set to anything but empty, no colours.
  const char* no_color = std::getenv("NO_COLOR");
  const bool colour = !(no_color && *no_color);
  for (auto& sink : logger->sinks()) {
    if (auto* s = dynamic_cast<spdlog::sinks::stderr_color_sink_mt*>(sink.get()))
      s->set_color_mode(colour ? spdlog::color_mode::automatic : spdlog::color_mode::never);
  }
  logger->set_formatter(native ? log_formatter(format, false, false, true)
                               : log_formatter(format, stderr_is_journal(), isatty(STDERR_FILENO)));
}

std::unique_ptr<spdlog::formatter> log_formatter(LogFormat format, bool journal, bool tty,
                                                 bool bare) {
  std::string pattern;
  if (format == LogFormat::kJson) {
    pattern = std::string(journal ? "%W" : "") +
              R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l",%K"msg":"%J"})";
  } else if (bare) {
    pattern = "%Q%v";
  } else if (journal) {
    pattern = "%W%Q%v";
  } else if (tty) {
    pattern = "%H:%M:%S.%e %^%l%$ %Q%v";
  } else {
    pattern = "%Y-%m-%dT%H:%M:%S.%e %l %Q%v";
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PriorityFlag>('W')
      .add_flag<JsonMessageFlag>('J')
      .add_flag<MigrationPrefixFlag>('Q')
      .add_flag<ContextFieldsFlag>('K')
      .set_pattern(pattern);
  return formatter;
}

}  // namespace tandem
