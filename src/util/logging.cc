#include "util/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace tandem {

namespace {

// %W: the syslog priority the journal reads, "<3>" for error and so on.
class PriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    int priority = 6;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        priority = 7;
        break;
      case spdlog::level::info:
        priority = 6;
        break;
      case spdlog::level::warn:
        priority = 4;
        break;
      case spdlog::level::err:
        priority = 3;
        break;
      case spdlog::level::critical:
        priority = 2;
        break;
      default:
        break;
    }
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

void setup_logging(LogFormat format, const std::string& level) {
  auto logger = spdlog::get("tandemd");
  if (!logger) {
    logger = spdlog::stderr_color_mt("tandemd");
    spdlog::set_default_logger(logger);
  }
  spdlog::set_level(spdlog::level::from_str(level));
  // NO_COLOR (no-color.org): set to anything but empty, no colours.
  const char* no_color = std::getenv("NO_COLOR");
  const bool colour = !(no_color && *no_color);
  for (auto& sink : logger->sinks()) {
    if (auto* s = dynamic_cast<spdlog::sinks::stderr_color_sink_mt*>(sink.get()))
      s->set_color_mode(colour ? spdlog::color_mode::automatic : spdlog::color_mode::never);
  }
  logger->set_formatter(log_formatter(format, stderr_is_journal(), isatty(STDERR_FILENO)));
}

std::unique_ptr<spdlog::formatter> log_formatter(LogFormat format, bool journal, bool tty) {
  std::string pattern;
  if (format == LogFormat::kJson) {
    pattern = std::string(journal ? "%W" : "") +
              R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l",%K"msg":"%J"})";
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
