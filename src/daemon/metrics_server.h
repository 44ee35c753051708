// The metrics endpoint: a small HTTP/1.1 server (Boost.Beast) answering
// GET /metrics with the Prometheus text format and GET /healthz with "ok".
// One thread; each connection gets a read deadline, so a slow or silent
// client cannot hold it.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace tandem {

class MetricsServer {
 public:
  // `listen` is "HOST:PORT" ("127.0.0.1:9187", "[::1]:9187", ":9187" for
  // every address). `render` is called for each scrape.
  MetricsServer(std::string listen, std::function<std::string()> render);
  ~MetricsServer();
  // Binds and serves on a thread of its own. Throws std::runtime_error when
  // the address is malformed or cannot be bound.
  void start();
  void stop();
  // The port bound (useful with port 0).
  unsigned short port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT"; throws std::runtime_error naming what is wrong.
std::pair<std::string, unsigned short> parse_listen_address(const std::string& listen);

}  // namespace tandem
