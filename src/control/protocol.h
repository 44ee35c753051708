// The control protocol spoken on tandemd's unix socket: one JSON object per
// line each way, versioned. See docs/control-protocol.md. Pure: no I/O.
#pragma once

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tandem/phase.h"

namespace tandem::control {

inline constexpr int kProtocolVersion = 1;
// The longest request line accepted, in bytes (a submitted spec, of up to
// 1 MiB, travels inside, escaped).
inline constexpr size_t kMaxLine = 2 << 20;
// The deepest nesting of arrays and objects a request may have.
inline constexpr int kMaxDepth = 32;

enum class Command {
  kList,
  kStatus,
  kSubmit,
  kPause,
  kResume,
  kApprove,
  kRollback,
  kEvents,
  kThrottle,
  kSet,
  kAbort,
  kDiffs,
  kSlices,
  kSlice,
  kForget,
  kFleet,
};

const char* to_string(Command c);
const std::vector<std::string>& command_names();

struct Request {
  int version = kProtocolVersion;
  Command command = Command::kList;
  nlohmann::json id;              // echoed in the response when given
  std::string name;               // the migration (every command but list and submit)
  std::string spec;               // submit: the spec's text
  std::string file;               // submit: where it came from, for error messages
  Phase phase = Phase::kPrepare;  // approve
  // approve: shadow-read pairs whose failed gate the operator accepts.
  std::vector<std::string> accept;
  int limit = 20;       // events: how many, newest last; diffs: how many
  long long after = 0;  // events: only those with a greater id, oldest first (following)
  std::string pair;     // diffs: one shadow-read pair ("" every pair)
  // slice: the slice and what to do with it (check, promote, demote, rollback).
  std::string slice, action;
  // throttle: for how long (nullopt: until lifted); `off` lifts it.
  std::optional<std::chrono::milliseconds> throttle_for;
  bool off = false;
  bool all = false;  // list: finished migrations too
  // fleet: the fleet, a wave, a target (each "" when not given); what to do
  // is `action` (list, status, pause, resume, retry, approve, rollback, events).
  std::string fleet, wave, target;
  // set: setting name -> value as text ("2000", "250ms"), checked against the
  // same table as a spec's settings.
  std::map<std::string, std::string> settings;
};

// A request that could not be understood. `code` is stable for scripts:
// bad_json, bad_request, unsupported_version, unknown_command, missing_field,
// bad_field.
struct ProtocolError {
  std::string code;
  std::string message;
  nlohmann::json id;
};

struct ParsedRequest {
  std::optional<Request> request;
  ProtocolError error;  // set when request is empty
};

// Parses one request line (without its newline). Never throws.
ParsedRequest parse_request(const std::string& line);

// Response lines, newline-terminated:
//   {"v":1,"ok":true,"id":...,"result":{...}}
//   {"v":1,"ok":false,"id":...,"error":{"code":"...","message":"..."}}
std::string ok_response(const nlohmann::json& id, const nlohmann::json& result);
std::string error_response(const ProtocolError& e);

// Builds a request line, for tandemctl.
std::string request_line(Command c, const nlohmann::json& fields = nlohmann::json::object());

}  // namespace tandem::control
