#include "control/protocol.h"

#include <algorithm>

#include "spec/settings.h"
#include "spec/suggest.h"
#include "util/duration.h"
#include "util/text.h"

namespace tandem::control {

namespace {

struct CommandInfo {
  Command command;
  const char* name;
  std::vector<std::string> fields;  // accepted besides v, cmd and id
};

const std::vector<CommandInfo>& commands() {
  static const std::vector<CommandInfo> kCommands = {
      {Command::kList, "list", {"all"}},
      {Command::kStatus, "status", {"name"}},
      {Command::kSubmit, "submit", {"spec", "file"}},
      {Command::kPause, "pause", {"name"}},
      {Command::kResume, "resume", {"name"}},
      {Command::kApprove, "approve", {"name", "phase", "accept"}},
      {Command::kRollback, "rollback", {"name"}},
      {Command::kEvents, "events", {"name", "limit", "after"}},
      {Command::kThrottle, "throttle", {"name", "for", "off"}},
      {Command::kSet, "set", {"name", "settings"}},
      {Command::kAbort, "abort", {"name"}},
      {Command::kDiffs, "diffs", {"name", "pair", "limit"}},
      {Command::kSlices, "slices", {"name"}},
      {Command::kSlice, "slice", {"name", "slice", "action"}},
      {Command::kForget, "forget", {"name"}},
      {Command::kFleet, "fleet", {"action", "fleet", "wave", "target", "limit"}},
  };
  return kCommands;
}

// JSON text is UTF-8; a request that is not cannot be echoed safely.
std::string clip(const std::string& s) {
  std::string out = utf8_prefix(s, 80);
  return out.size() < s.size() ? out + "..." : out;
}

// A message that quotes what the client sent, kept to a sane length.
std::string clip_message(const std::string& s) {
  std::string out = utf8_prefix(s, 300);
  return out.size() < s.size() ? out + "..." : out;
}

}  // namespace

const char* to_string(Command c) {
  for (const auto& info : commands()) {
    if (info.command == c) return info.name;
  }
  return "?";
}

const std::vector<std::string>& command_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> out;
    for (const auto& info : commands()) out.push_back(info.name);
    return out;
  }();
  return kNames;
}

// Long, and left so: the request's common fields, then one short branch of
// checks per command, in the order docs/control-protocol.md lists them.
ParsedRequest parse_request(const std::string& line) {
  ParsedRequest out;
  auto fail = [&](const std::string& code, const std::string& message) {
    out.request.reset();
    out.error.code = code;
    out.error.message = message;
    return out;
  };
  if (line.size() > kMaxLine) {
    return fail("bad_request", "request is longer than " + std::to_string(kMaxLine) + " bytes");
  }
  if (invalid_utf8_at(line) != std::string::npos) {
    return fail("bad_json", "request is not valid UTF-8");
  }
  // Before it is parsed: a deep value is copied and destroyed recursively,
  // and 60,000 levels overflowed the daemon's stack (issue 16).
  if (flow_nesting_deeper_than(line, kMaxDepth)) {
    return fail("bad_request",
                "request nests more than " + std::to_string(kMaxDepth) + " levels deep");
  }
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) return fail("bad_json", "request is not one JSON object on one line");
  if (!j.is_object()) return fail("bad_request", "request must be a JSON object");
  if (j.contains("id")) out.error.id = j["id"];
  if (!j.contains("v")) return fail("missing_field", "missing \"v\", the protocol version");
  if (!j["v"].is_number_integer()) return fail("bad_field", "\"v\" must be an integer");
  if (j["v"].get<long long>() != kProtocolVersion) {
    return fail("unsupported_version", "protocol version " + j["v"].dump() +
                                           " is not supported; this tandemd speaks version " +
                                           std::to_string(kProtocolVersion));
  }
  if (!j.contains("cmd")) return fail("missing_field", "missing \"cmd\", the command");
  if (!j["cmd"].is_string()) return fail("bad_field", "\"cmd\" must be a string");
  const std::string cmd = j["cmd"].get<std::string>();
  auto info = std::find_if(commands().begin(), commands().end(),
                           [&](const CommandInfo& c) { return cmd == c.name; });
  if (info == commands().end()) {
    return fail("unknown_command",
                "unknown command \"" + clip(cmd) + "\"" + did_you_mean(cmd, command_names()));
  }
  Request r;
  r.command = info->command;
  r.id = out.error.id;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "v" || key == "cmd" || key == "id") continue;
    if (std::find(info->fields.begin(), info->fields.end(), key) == info->fields.end()) {
      return fail("bad_field", "command " + cmd + " does not take \"" + clip(key) + "\"" +
                                   did_you_mean(key, info->fields));
    }
  }
  auto text = [&](const char* key, bool required, std::string& dest) -> bool {
    if (!j.contains(key)) {
      if (required) fail("missing_field", "command " + cmd + " needs \"" + key + "\"");
      return !required;
    }
    if (!j[key].is_string() || j[key].get<std::string>().empty()) {
      fail("bad_field", std::string("\"") + key + "\" must be a non-empty string");
      return false;
    }
    dest = j[key].get<std::string>();
    return true;
  };
  const bool name_required = r.command != Command::kList && r.command != Command::kSubmit;
  if (std::find(info->fields.begin(), info->fields.end(), "name") != info->fields.end() &&
      !text("name", name_required, r.name)) {
    return out;
  }
  if (r.command == Command::kSubmit) {
    if (!text("spec", true, r.spec) || !text("file", false, r.file)) return out;
    if (r.file.empty()) r.file = "submitted.yaml";
  }
  if (r.command == Command::kApprove) {
    std::string p;
    if (!text("phase", true, p)) return out;
    auto phase = parse_phase(p);
    if (!phase) {
      return fail("bad_field",
                  "unknown phase \"" + clip(p) + "\"" + did_you_mean(p, phase_names()));
    }
    r.phase = *phase;
    if (j.contains("accept")) {
      const auto& a = j["accept"];
      bool ok = a.is_array() && !a.empty();
      for (const auto& x : ok ? a : nlohmann::json::array()) {
        ok = ok && x.is_string() && !x.get<std::string>().empty();
      }
      if (!ok) {
        return fail("bad_field",
                    "\"accept\" must be a list of shadow-read pair names such as [\"orders\"]");
      }
      r.accept = a.get<std::vector<std::string>>();
    }
  }
  if (r.command == Command::kDiffs && !text("pair", false, r.pair)) return out;
  if (r.command == Command::kSlice) {
    if (!text("slice", true, r.slice) || !text("action", true, r.action)) return out;
    const std::vector<std::string> actions = {"check", "promote", "demote", "rollback"};
    if (std::find(actions.begin(), actions.end(), r.action) == actions.end()) {
      return fail("bad_field", "unknown action \"" + clip(r.action) +
                                   "\"; expected check, promote, demote or rollback" +
                                   did_you_mean(r.action, actions));
    }
  }
  if (r.command == Command::kFleet) {
    if (!text("action", true, r.action)) return out;
    const std::vector<std::string> actions = {"list",  "status",  "pause",    "resume",
                                              "retry", "approve", "rollback", "events"};
    if (std::find(actions.begin(), actions.end(), r.action) == actions.end()) {
      return fail("bad_field", "unknown action \"" + clip(r.action) + "\"; expected " +
                                   join(actions, ", ") + did_you_mean(r.action, actions));
    }
    if (!text("fleet", r.action != "list", r.fleet) || !text("wave", false, r.wave) ||
        !text("target", false, r.target)) {
      return out;
    }
  }
  if ((r.command == Command::kEvents || r.command == Command::kDiffs ||
       r.command == Command::kFleet) &&
      j.contains("limit")) {
    if (!j["limit"].is_number_integer() || j["limit"].get<long long>() < 1 ||
        j["limit"].get<long long>() > 1000) {
      return fail("bad_field", "\"limit\" must be a whole number from 1 to 1000");
    }
    r.limit = static_cast<int>(j["limit"].get<long long>());
  }
  if (r.command == Command::kEvents && j.contains("after")) {
    if (!j["after"].is_number_integer() || j["after"].get<long long>() < 0) {
      return fail("bad_field", "\"after\" must be an event id (a whole number, 0 or more)");
    }
    r.after = j["after"].get<long long>();
  }
  if (r.command == Command::kList && j.contains("all")) {
    if (!j["all"].is_boolean()) return fail("bad_field", "\"all\" must be true or false");
    r.all = j["all"].get<bool>();
  }
  if (r.command == Command::kThrottle) {
    if (j.contains("off")) {
      if (!j["off"].is_boolean()) return fail("bad_field", "\"off\" must be true or false");
      r.off = j["off"].get<bool>();
    }
    if (j.contains("for")) {
      std::string given;
      if (!text("for", true, given)) return out;
      auto d = parse_duration(given);
      if (!d || d->count() <= 0) {
        return fail("bad_field",
                    "\"for\" must be a duration such as 90s or 10m, got \"" + clip(given) + "\"");
      }
      if (r.off) return fail("bad_field", "\"for\" and \"off\" do not go together");
      r.throttle_for = *d;
    }
  }
  if (r.command == Command::kSet) {
    if (!j.contains("settings")) return fail("missing_field", "command set needs \"settings\"");
    const auto& given = j["settings"];
    if (!given.is_object() || given.empty()) {
      return fail("bad_field", "\"settings\" must be an object such as {\"batch_size\": 2000}");
    }
    Settings probe;
    for (auto it = given.begin(); it != given.end(); ++it) {
      std::string value;
      if (it->is_string()) {
        value = it->get<std::string>();
      } else if (it->is_number_integer()) {
        value = std::to_string(it->get<long long>());
      } else {
        return fail("bad_field",
                    "setting \"" + clip(it.key()) + "\" must be a string or a whole number");
      }
      if (std::find(setting_keys().begin(), setting_keys().end(), it.key()) ==
          setting_keys().end()) {
        return fail("bad_field", "unknown setting \"" + clip(it.key()) + "\"" +
                                     did_you_mean(it.key(), setting_keys()));
      }
      std::string problem = set_setting(probe, it.key(), value);
      if (!problem.empty()) return fail("bad_field", clip_message(problem));
      r.settings[it.key()] = value;
    }
  }
  out.request = std::move(r);
  return out;
}

std::string ok_response(const nlohmann::json& id, const nlohmann::json& result) {
  nlohmann::json j = {{"v", kProtocolVersion}, {"ok", true}, {"result", result}};
  if (!id.is_null()) j["id"] = id;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string error_response(const ProtocolError& e) {
  nlohmann::json j = {{"v", kProtocolVersion},
                      {"ok", false},
                      {"error", {{"code", e.code}, {"message", e.message}}}};
  if (!e.id.is_null()) j["id"] = e.id;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string request_line(Command c, const nlohmann::json& fields) {
  nlohmann::json j = fields;
  j["v"] = kProtocolVersion;
  j["cmd"] = to_string(c);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace tandem::control
