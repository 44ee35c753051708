#include "ops/registry.h"

#include <iterator>
#include <type_traits>
#include <variant>

#include "spec/reader.h"

namespace tandem {
namespace {

template <typename T, size_t I = 0>
constexpr size_t alternative_of() {
  static_assert(I < std::variant_size_v<Operation::Alternatives>,
                "not an alternative of Operation::Alternatives");
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Operation::Alternatives>>) {
    return I;
  } else {
    return alternative_of<T, I + 1>();
  }
}

// A row from an operation's three typed functions.
template <typename T, std::optional<T> (*Parse)(SpecReader&, const YAML::Node&),
          void (*NeedsOf)(const T&, Needs&),
          void (*Plan)(const Spec&, int, const T&, std::vector<Step>&)>
constexpr OperationKind row(const char* name) {
  return {
      name,
      alternative_of<T>(),
      [](SpecReader& reader, const YAML::Node& node, Operation& out) {
        // Kept only when the reader recorded no problem while parsing it.
        const size_t before = reader.errors.size();
        std::optional<T> parsed = Parse(reader, node);
        if (!parsed || reader.errors.size() != before) return false;
        out.op = std::move(*parsed);
        return true;
      },
      [](const Operation& operation, Needs& n) { NeedsOf(std::get<T>(operation.op), n); },
      [](const Spec& spec, int index, const Operation& operation, std::vector<Step>& out) {
        Plan(spec, index, std::get<T>(operation.op), out);
      },
  };
}

#define TANDEM_ROW(T, name, spelled) row<T, parse_##name, needs_##name, plan_##name>(spelled)

constexpr OperationKind kOperations[] = {
    TANDEM_ROW(AlterColumnType, alter_column_type, "alter_column_type"),
    TANDEM_ROW(SqlOperation, sql_operation, "sql"),
    TANDEM_ROW(CreateIndex, create_index, "create_index"),
    TANDEM_ROW(AddConstraint, add_constraint, "add_constraint"),
    TANDEM_ROW(SetNotNull, set_not_null, "set_not_null"),
    TANDEM_ROW(DropColumn, drop_column, "drop_column"),
    TANDEM_ROW(AddColumn, add_column, "add_column"),
    TANDEM_ROW(MoveColumn, move_column, "move_column"),
    TANDEM_ROW(CopyTable, copy_table, "copy_table"),
    TANDEM_ROW(AddReference, add_reference, "add_reference"),
    TANDEM_ROW(RenameColumn, rename_column, "rename_column"),
    TANDEM_ROW(DropIndex, drop_index, "drop_index"),
    TANDEM_ROW(RenameConstraint, rename_constraint, "rename_constraint"),
    TANDEM_ROW(CreateTable, create_table, "create_table"),
    TANDEM_ROW(DropTable, drop_table, "drop_table"),
    TANDEM_ROW(RenameTable, rename_table, "rename_table"),
    TANDEM_ROW(DropConstraint, drop_constraint, "drop_constraint"),
    TANDEM_ROW(SetReplicaIdentity, set_replica_identity, "set_replica_identity"),
    TANDEM_ROW(SetComment, set_comment, "set_comment"),
    TANDEM_ROW(SetDefault, set_default, "set_default"),
    TANDEM_ROW(AlterColumn, alter_column, "alter_column"),
    TANDEM_ROW(AddPrimaryKey, add_primary_key, "add_primary_key"),
    TANDEM_ROW(Transform, transform, "transform"),
};

#undef TANDEM_ROW

constexpr bool rows_in_place() {
  for (size_t i = 0; i < std::size(kOperations); ++i) {
    if (kOperations[i].alternative != i) return false;
  }
  return true;
}

static_assert(std::size(kOperations) == std::variant_size_v<Operation::Alternatives>,
              "every alternative of Operation::Alternatives needs a row in kOperations");
static_assert(rows_in_place(), "kOperations' rows must follow Operation::Alternatives' order");

}  // namespace

const std::vector<OperationKind>& operation_kinds() {
  static const std::vector<OperationKind> kAll(std::begin(kOperations), std::end(kOperations));
  return kAll;
}

const OperationKind& kind_of(const Operation& operation) {
  return kOperations[operation.op.index()];
}

const OperationKind* find_operation_kind(const std::string& name) {
  for (const auto& kind : kOperations) {
    if (name == kind.name) return &kind;
  }
  return nullptr;
}

const std::vector<std::string>& operation_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& kind : kOperations) names.emplace_back(kind.name);
    return names;
  }();
  return kNames;
}

const char* operation_name(const Operation& operation) { return kind_of(operation).name; }

}  // namespace tandem
