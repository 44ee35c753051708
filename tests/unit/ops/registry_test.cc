// The operation table: one row per operation type, found by name and by type.
#include "ops/registry.h"

#include <gtest/gtest.h>

#include <variant>

#include "tandem/spec.h"

namespace tandem {
namespace {

TEST(OperationTable, HasOneRowPerOperationTypeInItsOrder) {
  const auto& kinds = operation_kinds();
  ASSERT_EQ(kinds.size(), std::variant_size_v<Operation::Alternatives>);
  ASSERT_EQ(operation_names().size(), kinds.size());
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(kinds[i].alternative, i) << kinds[i].name;
    EXPECT_EQ(operation_names()[i], kinds[i].name);
    const OperationKind* found = find_operation_kind(kinds[i].name);
    ASSERT_NE(found, nullptr) << kinds[i].name;
    EXPECT_EQ(found->alternative, i);
  }
  EXPECT_EQ(find_operation_kind("alter_colum_type"), nullptr);
}

// Every operation's row parses, plans and names its tables through its own
// functions: a spec naming each once plans steps for each, with their ids.
TEST(OperationTable, EveryRowParsesAndPlansItsOperation) {
  const std::string spec_text = R"(name: every_op
operations:
  - alter_column_type: {table: t1, column: a, type: bigint}
  - sql: {phase: prepare, up: "SELECT 1"}
  - create_index: {table: t2, name: t2_x, columns: [x]}
  - add_constraint: {table: t3, name: c, check: "x > 0"}
  - set_not_null: {table: t4, column: x}
  - drop_column: {table: t5, column: x}
  - add_column: {table: t6, column: x, type: int, backfill: "1"}
  - move_column: {table: t7, column: x, key: [id], to: t7_x}
  - copy_table: {table: t8, to: t8_v2, key: [id], up: {x: "y"}}
  - add_reference: {table: t9, column: pid, type: bigint, via: pname, references: p, referenced_column: id, lookup: name}
  - rename_column: {table: t10, column: x, to: y}
  - drop_index: {table: t11, name: t11_x}
  - rename_constraint: {table: t12, name: c, to: d}
  - create_table: {table: t13, columns: [id int]}
  - drop_table: {table: t14}
  - rename_table: {table: t15, to: t15_v2}
  - drop_constraint: {table: t16, name: c}
  - set_replica_identity: {table: t17, identity: full}
  - set_comment: {table: t18, comment: hello}
  - set_default: {table: t19, column: x, default: null}
  - alter_column: {table: t20, column: x, not_null: true}
  - add_primary_key: {table: t21, columns: [a, b]}
  - transform: {table: t22, key: [id], targets: [t22_x], apply: "SELECT 1", remove: "SELECT 1"}
)";
  auto parsed = parse_spec(spec_text, "every.yaml");
  ASSERT_TRUE(parsed.spec) << (parsed.errors.empty() ? "" : parsed.errors[0].to_string());
  const Spec& spec = *parsed.spec;
  ASSERT_EQ(spec.operations.size(), operation_kinds().size());
  for (size_t i = 0; i < spec.operations.size(); ++i) {
    EXPECT_EQ(spec.operations[i].op.index(), i);
    EXPECT_STREQ(operation_name(spec.operations[i]), operation_kinds()[i].name);
  }
  const Plan plan = make_plan(spec);
  for (size_t i = 1; i <= spec.operations.size(); ++i) {
    bool planned = false;
    for (const auto& step : plan.steps) {
      planned = planned || step.id.rfind(std::to_string(i) + ".", 0) == 0;
    }
    EXPECT_TRUE(planned) << "operation " << i << " planned no step";
  }
  const auto tables = tables_touched(spec);
  for (const char* t :
       {"public.t1",  "public.t2",   "public.t3",  "public.t4",    "public.t5",  "public.t6",
        "public.t7",  "public.t7_x", "public.t8",  "public.t8_v2", "public.t9",  "public.p",
        "public.t10", "public.t11",  "public.t12", "public.t13",   "public.t14", "public.t15",
        "public.t16", "public.t17",  "public.t18", "public.t20",   "public.t21"}) {
    EXPECT_TRUE(tables.count(t)) << t;
  }
}

}  // namespace
}  // namespace tandem
