// Helpers shared by the integration and end-to-end tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "engine/executor.h"
#include "support/pg_server.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem::testing {

// Parses spec text or fails the test.
Spec spec_from(const std::string& text);

// Plans `spec` and runs it against `dsn` through `until` (every phase, with
// every approval, when `until` is not given), reporting to `progress` if
// given. Returns the outcome.
RunOutcome run_until(const Spec& spec, const std::string& dsn,
                     std::optional<Phase> until = std::nullopt, ProgressSink* progress = nullptr);

// The pgbench example's spec with test-sized settings.
// `extra_settings`: more lines for the settings block, each "  key: value\n".
std::string abalance_spec(int batch_size = 2000, const std::string& extra_settings = "");

// Every tandem leftover on `table`: triggers, shadow columns, functions in the
// tandem schema, check constraints. Empty when the table is clean.
std::string leftovers(const PgServer& pg, const std::string& db, const std::string& table);

// format_type of a column.
std::string column_type(const PgServer& pg, const std::string& db, const std::string& table,
                        const std::string& column);

// Runs `sql` on `conn` every `every` for `how_long`, as an application's
// reader would; returns the longest it took, in seconds.
double worst_query_seconds(Connection& conn, const std::string& sql,
                           std::chrono::milliseconds how_long, std::chrono::milliseconds every);

// The tandemd binary with `args`, as a shell command.
std::string tandemd(const std::string& args);
// Starts a shell command in the background, its output (stdout and stderr)
// appended to `output` (discarded by default).
pid_t spawn(const std::string& command, const std::string& output = "/dev/null");
// The whole content of a file; fails the test when it cannot be read.
std::string read_file(const std::string& path);
// `systemd-analyze verify` of a unit file's text, its ExecStart's
// /usr/bin/tandemd pointed at `binary` (verify wants the binary to exist).
CommandResult verify_unit(std::string unit, const std::string& binary);

// Writes text to a new temporary file and returns its path.
std::string write_temp_file(const std::string& text, const std::string& suffix = ".yaml");

}  // namespace tandem::testing
