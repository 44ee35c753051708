// What tandemd's foreground commands share: the stop flag their signal
// handlers set, who is acting, loading a spec and its plan, and how an
// error that escaped a command becomes its exit code.
#pragma once

#include <atomic>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

// Set by SIGINT or SIGTERM once install_stop_handlers() ran: stop at the
// next safe point. A second signal ends the process at once.
extern std::atomic<bool> g_stop;
void install_stop_handlers();
// "tandemd COMMAND by user@host (uid 1000, pid 42)", for event logs.
std::string actor(const std::string& command = "run");
// "file:line:column: warning: message"
std::string warning_text(const SpecError& w);
// Loads and plans a spec; prints located errors and returns false on
// failure. With `warnings`, what the lint of sql steps found is printed
// too and kept there.
bool load(const std::string& file, std::optional<Spec>& spec, std::optional<Plan>& plan,
          std::vector<SpecError>* warnings = nullptr);
// Maps an error that escaped a command to an exit code, after saying it.
int report(const std::exception& ex);

}  // namespace tandem
