// The control socket: a unix stream socket speaking the line-delimited JSON
// protocol of control/protocol.h. Each peer's uid is read with SO_PEERCRED;
// a uid that is not allowed gets an error and nothing else.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "control/protocol.h"

namespace tandem {

struct ControlServerOptions {
  std::string path;
  // Connections open at once; one more is told so and closed. Each may hold
  // a request line of up to control::kMaxLine bytes while it arrives.
  int max_connections = 128;
  // A connection that sends no complete request line for this long is closed.
  std::chrono::milliseconds idle_timeout{60000};
  mode_t mode = 0660;
  std::set<uid_t> allowed_uids;  // empty: any peer that can open the socket
  std::string owner;             // user name or uid the socket is given to; "" keeps ours
  std::string group;             // group name or gid; "" keeps ours
  // Commands the handler answers from memory, never waiting on the database:
  // answered on the socket's own thread. Every other command runs on one of
  // `handler_threads` threads, so that a database that does not answer never
  // holds up socket I/O, other connections or these commands.
  std::set<control::Command> answered_inline = {control::Command::kList, control::Command::kStatus};
  int handler_threads = 4;
};

// Handles one request from a peer with `uid`; returns the response line.
using ControlHandler = std::function<std::string(const control::Request&, uid_t uid)>;

class ControlServer {
 public:
  ControlServer(ControlServerOptions options, ControlHandler handler);
  ~ControlServer();
  // Binds the socket (replacing a stale one) and serves on a thread of its own.
  // Throws std::runtime_error when the socket cannot be created.
  void start();
  void stop();
  // Takes effect for connections accepted from now on (SIGHUP reload).
  void set_allowed_uids(std::set<uid_t> uids);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
