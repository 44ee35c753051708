#include "daemon/server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tandem {

namespace asio = boost::asio;
using Local = asio::local::stream_protocol;

namespace {

// One client connection: reads request lines, writes one response line each.
// `open` counts the server's live sessions.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Local::socket socket, const ControlServerOptions& options, const ControlHandler& handler,
          std::atomic<int>& open, asio::thread_pool& pool)
      : socket_(std::move(socket)),
        idle_(socket_.get_executor()),
        buffer_(control::kMaxLine + 1),
        options_(options),
        handler_(handler),
        open_(open),
        pool_(pool) {
    ++open_;
  }
  ~Session() { --open_; }

  void start() {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      return;  // cannot tell who it is: drop the connection
    }
    uid_ = cred.uid;
    if (!options_.allowed_uids.empty() && !options_.allowed_uids.count(uid_) && uid_ != geteuid()) {
      reply(control::error_response(
                {"forbidden", "uid " + std::to_string(uid_) + " may not use this socket", {}}),
            false);
      return;
    }
    if (open_ > options_.max_connections) {
      reply(control::error_response({"busy",
                                     "the control socket has " +
                                         std::to_string(options_.max_connections) +
                                         " connections open already; try again later",
                                     {}}),
            false);
      return;
    }
    read();
  }

 private:
  void read() {
    auto self = shared_from_this();
    // A peer that sends nothing, or half a line, does not hold its
    // connection (and the buffer behind it) for ever.
    idle_.expires_after(options_.idle_timeout);
    idle_.async_wait([self](boost::system::error_code ec) {
      if (ec) return;  // cancelled: a line arrived, or the session ended
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_read_until(socket_, buffer_, '\n', [self](boost::system::error_code ec, size_t n) {
      self->idle_.cancel();
      if (ec == asio::error::not_found) {
        self->reply(control::error_response({"bad_request", "request line too long", {}}), false);
        return;
      }
      if (ec) return;
      std::string line(asio::buffers_begin(self->buffer_.data()),
                       asio::buffers_begin(self->buffer_.data()) + n - 1);
      self->buffer_.consume(n);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {
        self->read();
        return;
      }
      auto parsed = control::parse_request(line);
      if (!parsed.request) {
        self->reply(control::error_response(parsed.error), true);
      } else if (self->options_.answered_inline.count(parsed.request->command)) {
        self->reply(self->handler_(*parsed.request, self->uid_), true);
      } else {
        // Off this thread; the answer comes back to it. The session reads
        // its next line only after answering, so its requests stay in order.
        asio::post(self->pool_, [self, request = std::move(*parsed.request)] {
          std::string response = self->handler_(request, self->uid_);
          asio::post(self->socket_.get_executor(),
                     [self, response = std::move(response)] { self->reply(response, true); });
        });
      }
    });
  }

  void reply(const std::string& line, bool more) {
    auto self = shared_from_this();
    auto data = std::make_shared<std::string>(line);
    asio::async_write(socket_, asio::buffer(*data),
                      [self, data, more](boost::system::error_code ec, size_t) {
                        if (!ec && more) self->read();
                      });
  }

  Local::socket socket_;
  asio::steady_timer idle_;
  asio::streambuf buffer_;
  const ControlServerOptions& options_;
  const ControlHandler& handler_;
  std::atomic<int>& open_;
  asio::thread_pool& pool_;
  uid_t uid_ = 0;
};

// A user or group given by name or number; throws when there is no such one.
uid_t resolve_owner(const std::string& who) {
  char* end = nullptr;
  long id = std::strtol(who.c_str(), &end, 10);
  if (!who.empty() && *end == '\0' && id >= 0) return static_cast<uid_t>(id);
  if (passwd* pw = getpwnam(who.c_str())) return pw->pw_uid;
  throw std::runtime_error("control socket owner: no user \"" + who + "\"");
}

gid_t resolve_group(const std::string& which) {
  char* end = nullptr;
  long id = std::strtol(which.c_str(), &end, 10);
  if (!which.empty() && *end == '\0' && id >= 0) return static_cast<gid_t>(id);
  if (group* gr = getgrnam(which.c_str())) return gr->gr_gid;
  throw std::runtime_error("control socket group: no group \"" + which + "\"");
}

}  // namespace

struct ControlServer::Impl {
  ControlServerOptions options;
  ControlHandler handler;
  asio::io_context io;
  std::unique_ptr<Local::acceptor> acceptor;
  std::thread thread;

  std::atomic<int> open{0};  // live sessions (a session may end on a handler thread)
  std::unique_ptr<asio::steady_timer> pause;
  std::unique_ptr<asio::thread_pool> pool;  // runs the handler for commands not answered inline

  void accept() {
    acceptor->async_accept([this](boost::system::error_code ec, Local::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of file descriptors (EMFILE, ENFILE) or the like: accepting
        // again at once would fail again at once and spin a core. Wait a
        // moment for connections to close.
        pause->expires_after(std::chrono::milliseconds(200));
        pause->async_wait([this](boost::system::error_code e) {
          if (!e) accept();
        });
        return;
      }
      std::make_shared<Session>(std::move(socket), options, handler, open, *pool)->start();
      accept();
    });
  }
};

ControlServer::ControlServer(ControlServerOptions options, ControlHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() {
  const auto& o = impl_->options;
  const std::string& path = o.path;
  const uid_t uid = o.owner.empty() ? static_cast<uid_t>(-1) : resolve_owner(o.owner);
  const gid_t gid = o.group.empty() ? static_cast<gid_t>(-1) : resolve_group(o.group);
  // Bound under a sibling name, given its mode, owner and group, then moved
  // into place: a client that finds the socket finds it ready for it.
  std::string staged = path + ".new";
  if (staged.size() >= sizeof(sockaddr_un::sun_path)) staged = path;  // no room for a suffix
  ::unlink(staged.c_str());
  // Created with no permissions for others from the first moment, then
  // opened up to exactly the configured mode.
  mode_t old = ::umask(0777 & ~o.mode);
  try {
    impl_->acceptor = std::make_unique<Local::acceptor>(impl_->io, Local::endpoint(staged));
  } catch (const std::exception& e) {
    ::umask(old);
    throw std::runtime_error("cannot listen on " + staged + ": " + e.what());
  }
  ::umask(old);
  auto fail = [&](const std::string& what) {
    const std::string why = std::strerror(errno);
    impl_->acceptor.reset();
    ::unlink(staged.c_str());
    throw std::runtime_error(what + ": " + why);
  };
  if (::chmod(staged.c_str(), o.mode) != 0) fail("cannot set the mode of " + staged);
  if ((!o.owner.empty() || !o.group.empty()) && ::chown(staged.c_str(), uid, gid) != 0) {
    fail("cannot give " + staged + " to " + o.owner + ":" + o.group);
  }
  // Replaces a socket left by a previous run.
  if (staged != path && ::rename(staged.c_str(), path.c_str()) != 0) {
    fail("cannot move " + staged + " to " + path);
  }
  impl_->pause = std::make_unique<asio::steady_timer>(impl_->io);
  impl_->pool = std::make_unique<asio::thread_pool>(std::max(1, o.handler_threads));
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

void ControlServer::set_allowed_uids(std::set<uid_t> uids) {
  // Sessions read the options on the server's thread; so is the change made.
  asio::post(impl_->io, [this, uids = std::move(uids)] { impl_->options.allowed_uids = uids; });
}

void ControlServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    boost::system::error_code ec;
    impl_->acceptor->close(ec);
  });
  impl_->io.stop();
  impl_->thread.join();
  // A handler still waiting on the database is waited for: serve's deadline
  // ends the process if it never answers.
  impl_->pool->join();
  ::unlink(impl_->options.path.c_str());
}

}  // namespace tandem
