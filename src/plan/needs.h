// What an operation creates and what it relies on: the planner orders
// operations by it and refuses two that change the same column in ways that
// cannot both hold; the daemon's table gate and the autovacuum guard take
// the tables from it. Each operation fills it (src/ops/).
#pragma once

#include <set>
#include <string>
#include <vector>

namespace tandem {

struct Spec;

struct Needs {
  std::vector<std::string> produces;  // tables ("schema.table") and columns ("schema.table.column")
  std::vector<std::string> needs;     // the same, that it relies on
  std::set<std::string> attaches;     // columns of its table it puts something on
  std::set<std::string> replaces;     // columns of its table it swaps, renames, moves or drops
  // What it creates under a name that two operations of a spec may not
  // share, as a phrase for the error: "column public.users.email", "NOT
  // NULL on public.users.email", "constraint c on public.users", "index,
  // table or view public.users_email" (one namespace per schema).
  std::vector<std::string> names;
  std::string table;  // "schema.table", or "" for sql
  // It renames or drops its table at cutover, under which name no other
  // operation of the spec could find the table afterwards.
  bool moves_table = false;

  // The operation works on schema.table, which it needs.
  void on_table(const std::string& schema, const std::string& name);
  // "schema.table.column" of its own table.
  std::string column(const std::string& name) const { return table + "." + name; }
  void needs_column(const std::string& name) { needs.push_back(column(name)); }
  // A column of its table that it adds.
  void adds_column(const std::string& name);
  // A column name of its table that it takes (a rename's new name), without
  // producing a column that other operations wait for.
  void takes_column_name(const std::string& name) { names.push_back("column " + column(name)); }
  // NOT NULL that it puts on a column of its table.
  void sets_not_null(const std::string& name) { names.push_back("NOT NULL on " + column(name)); }
  void adds_constraint(const std::string& name) {
    names.push_back("constraint " + name + " on " + table);
  }
  // An index, table or view schema.name.
  void adds_relation(const std::string& schema, const std::string& name) {
    names.push_back("index, table or view " + schema + "." + name);
  }
  // A table schema.name that it creates, which other operations may need.
  void adds_table(const std::string& schema, const std::string& name) {
    produces.push_back(schema + "." + name);
    adds_relation(schema, name);
  }
  // An expression over its table's columns: the operation comes after one
  // that adds a column it names. `attached`: what the expression defines (a
  // check, an index) sits on those columns too.
  void reads(const std::string& expr, bool attached = false);
};

// Whether an operation of `spec` produces `thing` ("schema.table" or
// "schema.table.column"): a precheck that it exists would refuse the spec
// before that operation ran (every precheck runs before anything starts).
bool spec_adds(const Spec& spec, const std::string& thing);

// The column names an SQL expression may refer to: its words outside string
// literals, folded to lower case as PostgreSQL folds unquoted names, and its
// quoted names as written. Keywords and function names come along; they
// name no column, so they match nothing an operation produces.
std::set<std::string> names_in(const std::string& expr);

}  // namespace tandem
