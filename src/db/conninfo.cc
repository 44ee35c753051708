#include "db/conninfo.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "util/text.h"

namespace tandem {
namespace {

// A value as a connection string writes it: bare when it can be, else in
// single quotes with \ and ' escaped.
std::string conninfo_value(const std::string& v) {
  bool bare = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '\'' || c == '\\' || c == '\t' || c == '\n' || c == '=') bare = false;
  }
  if (bare) return v;
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

using Options = std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)>;

// The options libpq reads from `dsn`; null when it cannot. libpq's message
// is dropped: it quotes the text it stopped at, which may be the password.
Options parse(const std::string& dsn) {
  char* error = nullptr;
  Options options(PQconninfoParse(dsn.c_str(), &error), PQconninfoFree);
  PQfreemem(error);
  return options;
}

}  // namespace

std::string with_connection_defaults(const std::string& dsn) {
  static const char* const kDefaults[][2] = {
      {"keepalives", "1"},       {"keepalives_idle", "10"},     {"keepalives_interval", "3"},
      {"keepalives_count", "3"}, {"tcp_user_timeout", "30000"}, {"connect_timeout", "10"}};
  Options options = parse(dsn);
  if (!options) return dsn;
  // Environment variables are applied by libpq after the string: a default
  // written here would hide, say, PGCONNECT_TIMEOUT.
  Options env(PQconndefaults(), PQconninfoFree);
  std::string out;
  auto add = [&](const std::string& key, const std::string& value) {
    out += (out.empty() ? "" : " ") + key + "=" + conninfo_value(value);
  };
  for (PQconninfoOption* o = options.get(); o->keyword; ++o) {
    if (o->val) add(o->keyword, o->val);
  }
  for (const auto& [key, value] : kDefaults) {
    bool given = false;
    for (PQconninfoOption* o = options.get(); o->keyword; ++o) {
      if (key == std::string(o->keyword)) given = o->val != nullptr;
    }
    for (PQconninfoOption* o = env.get(); o && o->keyword; ++o) {
      if (key == std::string(o->keyword) && o->envvar && std::getenv(o->envvar)) given = true;
    }
    if (!given) add(key, value);
  }
  return out;
}

std::string server_conninfo(const std::string& host, const std::string& port) {
  return "host=" + conninfo_value(host) + (port.empty() ? "" : " port=" + conninfo_value(port));
}

std::string redacted_conninfo(const std::string& dsn) {
  Options options = parse(dsn);
  if (!options) return "(a connection string libpq cannot read)";
  std::vector<std::string> parts;
  for (PQconninfoOption* o = options.get(); o->keyword; ++o) {
    if (!o->val) continue;
    const std::string key = o->keyword;
    const bool secret = key == "password" || (o->dispchar && o->dispchar[0] == '*');
    parts.push_back(key + "=" + (secret ? "***" : conninfo_value(o->val)));
  }
  return join(parts, " ");
}

}  // namespace tandem
