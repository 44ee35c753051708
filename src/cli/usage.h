// What tandemd and tandemctl say about a command line CLI11 refused: an
// unknown subcommand or option is named, with the closest known one
// ("did you mean"); anything else as CLI11 puts it.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "spec/suggest.h"

namespace tandem {

// The first word of argv that is not an option of `app` nor an option's
// value: what was meant as the subcommand.
inline std::string first_word(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("-", 0) != 0) return a;
    if (a.find('=') != std::string::npos) continue;
    const CLI::Option* o = app.get_option_no_throw(a);
    if (o && o->get_items_expected_min() > 0) ++i;  // its value
  }
  return "";
}

// Reports the error on stderr and returns CLI11's exit code (0 for --help);
// `prog` is the program's name as the messages give it.
inline int usage_error(CLI::App& app, const CLI::ParseError& e, int argc, char** argv,
                       const std::string& prog) {
  std::vector<std::string> commands;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
    commands.push_back(s->get_name());
  const std::string word = first_word(app, argc, argv);
  const bool known = std::find(commands.begin(), commands.end(), word) != commands.end();
  if (!word.empty() && !known && dynamic_cast<const CLI::RequiredError*>(&e)) {
    std::cerr << prog << ": unknown command \"" << word << "\"" << did_you_mean(word, commands)
              << " (`" << prog << " --help` lists the commands)\n";
    return e.get_exit_code();
  }
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // The options of the subcommand that was given (else the program's).
    const CLI::App* in = &app;
    std::string where = prog;
    for (const CLI::App* s : app.get_subcommands()) {
      in = s;
      where = prog + " " + s->get_name();
    }
    std::vector<std::string> options;
    for (const CLI::App* a : {static_cast<const CLI::App*>(&app), in}) {
      for (const CLI::Option* o : a->get_options()) {
        for (const auto& n : o->get_lnames()) options.push_back("--" + n);
      }
    }
    const std::string what = e.what();
    const auto colon = what.find(": ");
    std::string extras = colon == std::string::npos ? "" : what.substr(colon + 2);
    bool said = false;
    for (size_t start = 0; start < extras.size();) {
      size_t end = extras.find(' ', start);
      if (end == std::string::npos) end = extras.size();
      std::string arg = extras.substr(start, end - start);
      arg = arg.substr(0, arg.find('='));
      if (arg.rfind("--", 0) == 0) {
        std::cerr << where << ": unknown option \"" << arg << "\"" << did_you_mean(arg, options)
                  << " (`" << where << " --help` lists the options)\n";
        said = true;
      }
      start = end + 1;
    }
    if (said) return e.get_exit_code();
  }
  return app.exit(e);
}

}  // namespace tandem
