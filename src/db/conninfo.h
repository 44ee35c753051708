// libpq connection strings, read by libpq's own parser.
#pragma once

#include <string>

namespace tandem {

// `dsn` (key=value pairs or a postgresql:// URI) as libpq reads it, in
// key=value form, with the password, wherever and however it was written
// (`password = 's3 cr\'et'`, a URI's user:secret@), shown as ***. A string
// libpq cannot parse is not echoed at all: the result says so instead.
std::string redacted_conninfo(const std::string& dsn);

// `dsn` in key=value form with tandem's defaults for what it leaves unset:
// TCP keepalives after 10 s idle (3 probes 3 s apart), tcp_user_timeout 30 s
// and connect_timeout 10 s, so that a server that vanished (a frozen or
// unplugged primary) surfaces as a lost connection within a minute instead
// of libpq's two hours. Whatever the DSN sets wins; what it leaves to
// environment variables (PGHOST...) libpq still reads from them. A DSN
// libpq cannot parse is returned as it is, for libpq to report.
std::string with_connection_defaults(const std::string& dsn);

// "host=... port=..." reaching the server at `host` (a name, an address or a
// socket directory) and `port`, each quoted as a connection string needs;
// an empty port is left out.
std::string server_conninfo(const std::string& host, const std::string& port);

}  // namespace tandem
