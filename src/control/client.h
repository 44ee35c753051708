// The client side of the control socket: one request line out, one response
// line back. Used by tandemctl (and tests).
#pragma once

#include <string>

namespace tandem::control {

// Connects to the unix socket at `path`, sends `line` (newline-terminated),
// and returns the first response line, newline included. A daemon that
// refuses the peer answers before reading, so whatever answer there is gets
// read even when sending fails part way. Throws std::runtime_error when the
// socket cannot be reached or closes without answering.
std::string exchange(const std::string& path, const std::string& line);

}  // namespace tandem::control
