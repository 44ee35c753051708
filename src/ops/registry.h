// The operation table: one row per operation a spec can name, in the order
// of Operation::Alternatives. The spec parser finds an operation's parse by
// its name here, the planner its needs and plan by the operation's type.
//
// Adding an operation: its struct in include/tandem/spec.h (an alternative
// of Operation::Alternatives), its file src/ops/<name>.cc with parse_, needs_
// and plan_ (declared in operations.h), and its row in registry.cc. The
// table does not compile while a type has no row or a row is out of place.
#pragma once

#include <string>
#include <vector>

#include "ops/operations.h"

namespace tandem {

struct OperationKind {
  const char* name;    // as a spec writes it: "add_column"
  size_t alternative;  // its index in Operation::Alternatives
  // Reads the operation's mapping into `out.op`; false when the reader
  // recorded a problem meanwhile (what a parse_<name> returns then is dropped).
  bool (*parse)(SpecReader& reader, const YAML::Node& node, Operation& out);
  void (*needs)(const Operation& operation, Needs& n);
  void (*plan)(const Spec& spec, int index, const Operation& operation, std::vector<Step>& out);
};

// Every operation, in the order of Operation::Alternatives.
const std::vector<OperationKind>& operation_kinds();
// The row of an operation's type.
const OperationKind& kind_of(const Operation& operation);
// The row named `name`, or nullptr.
const OperationKind* find_operation_kind(const std::string& name);

}  // namespace tandem
