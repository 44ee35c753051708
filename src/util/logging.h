// How tandemd writes its log lines to stderr:
//  - on a terminal: short time, coloured level;
//  - under systemd (stderr is the JOURNAL_STREAM): a syslog priority prefix
//    ("<6>") and no timestamp, since the journal adds its own;
//  - otherwise: ISO timestamp and level;
//  - with format json: one JSON object per line ({"ts","level","msg"}), with
//    the priority prefix too under the journal.
#pragma once

#include <optional>
#include <string>

namespace tandem {

enum class LogFormat { kText, kJson };

std::optional<LogFormat> parse_log_format(const std::string& text);

// Whether stderr is the stream systemd's journal gave this process.
bool stderr_is_journal();

// Creates (or reconfigures) the default logger; safe to call again, e.g. on SIGHUP.
void setup_logging(LogFormat format, const std::string& level);

// The message escaped as the inside of a JSON string. Exposed for tests.
std::string json_escape(const std::string& text);

}  // namespace tandem
