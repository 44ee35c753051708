#include "daemon/metrics_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <stdexcept>
#include <thread>

namespace tandem {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Tcp = asio::ip::tcp;

std::pair<std::string, unsigned short> parse_listen_address(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    throw std::runtime_error("metrics address \"" + listen +
                             "\": expected HOST:PORT such as 127.0.0.1:9188");
  }
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  char* end = nullptr;
  long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end || port < 0 || port > 65535) {
    throw std::runtime_error("metrics address \"" + listen + "\": port must be 0 to 65535");
  }
  if (host.empty()) host = "0.0.0.0";
  return {host, static_cast<unsigned short>(port)};
}

namespace {

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Tcp::socket socket, const std::function<std::string()>& render)
      : stream_(std::move(socket)), render_(render) {}

  void read() {
    request_ = {};
    stream_.expires_after(std::chrono::seconds(10));
    auto self = shared_from_this();
    http::async_read(stream_, buffer_, request_, [self](beast::error_code ec, size_t) {
      if (ec) return;  // closed, timed out or malformed: drop it
      self->respond();
    });
  }

 private:
  void respond() {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(request_.version());
    res->set(http::field::server, "tandemd");
    res->keep_alive(request_.keep_alive());
    const std::string target(request_.target());
    const std::string path = target.substr(0, target.find('?'));
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain");
      res->body() = "only GET\n";
    } else if (path == "/metrics") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res->body() = render_();
    } else if (path == "/healthz") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain");
      res->body() = "ok\n";
    } else {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "text/plain");
      res->body() = "not found; metrics are at /metrics\n";
    }
    res->prepare_payload();
    if (request_.method() == http::verb::head) res->body().clear();
    auto self = shared_from_this();
    http::async_write(stream_, *res, [self, res](beast::error_code ec, size_t) {
      if (ec || !res->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(Tcp::socket::shutdown_send, ignored);
        return;
      }
      self->read();
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  const std::function<std::string()>& render_;
};

}  // namespace

struct MetricsServer::Impl {
  std::string listen;
  std::function<std::string()> render;
  asio::io_context io;
  std::unique_ptr<Tcp::acceptor> acceptor;
  std::thread thread;

  void accept() {
    acceptor->async_accept([this](beast::error_code ec, Tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) std::make_shared<HttpSession>(std::move(socket), render)->read();
      accept();
    });
  }
};

MetricsServer::MetricsServer(std::string listen, std::function<std::string()> render)
    : impl_(std::make_unique<Impl>()) {
  impl_->listen = std::move(listen);
  impl_->render = std::move(render);
}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::start() {
  auto [host, port] = parse_listen_address(impl_->listen);
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    throw std::runtime_error("metrics address \"" + impl_->listen + "\": \"" + host +
                             "\" is not an IP address");
  }
  try {
    impl_->acceptor = std::make_unique<Tcp::acceptor>(impl_->io, Tcp::endpoint(address, port));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen for metrics on " + impl_->listen + ": " + e.what());
  }
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

unsigned short MetricsServer::port() const {
  return impl_->acceptor ? impl_->acceptor->local_endpoint().port() : 0;
}

void MetricsServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    beast::error_code ec;
    impl_->acceptor->close(ec);
  });
  impl_->io.stop();
  impl_->thread.join();
}

}  // namespace tandem
