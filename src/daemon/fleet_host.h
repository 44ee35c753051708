// The fleets `tandemd serve` runs (config `fleets:`, docs/fleet.md): one
// FleetRunner thread per fleet file, sharing each fleet's targets with
// every other runner of it (other daemons, `tandemd fleet run`) through the
// fleet's control database, and the `fleet` control command.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "control/protocol.h"

namespace tandem {

class Connection;

class FleetHost {
 public:
  struct Options {
    std::vector<std::string> files;  // fleet files, checked by the config loader
    // The daemon's database: the control database of a fleet whose file
    // names none.
    std::string dsn;
    std::chrono::milliseconds poll{500};
    std::function<std::unique_ptr<Connection>(const std::string& dsn, const std::string& app)>
        connect;
  };

  explicit FleetHost(Options options);
  ~FleetHost();
  FleetHost(const FleetHost&) = delete;
  FleetHost& operator=(const FleetHost&) = delete;

  // Loads every fleet file and starts its runner. Throws when one does not
  // load (the config loader checked them; a file changed since).
  void start();
  // Stops every runner at its next safe point and waits for it.
  void stop();
  // The `fleet` command; throws CommandError (unknown_fleet, conflict).
  nlohmann::json handle(const control::Request& r, const std::string& actor);
  // Prometheus lines for every fleet's targets (docs/daemon.md).
  std::string metrics();
  bool empty() const { return fleets_.empty(); }

 private:
  struct Fleet;
  Fleet& find(const std::string& name);
  void run(Fleet& f);

  Options options_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Fleet>> fleets_;
};

}  // namespace tandem
