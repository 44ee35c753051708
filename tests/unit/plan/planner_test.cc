#include <gtest/gtest.h>

#include "tandem/error.h"
#include "tandem/plan.h"

namespace tandem {
namespace {

Spec widen_spec() {
  auto r = parse_spec(R"(name: widen
operations:
  - alter_column_type:
      table: accounts
      column: balance
      type: bigint
  - sql:
      phase: prepare
      up: CREATE INDEX CONCURRENTLY accounts_x ON accounts (x)
      transaction: false
)",
                      "spec.yaml");
  EXPECT_TRUE(r.spec) << (r.errors.empty() ? "" : r.errors[0].to_string());
  return *r.spec;
}

TEST(Planner, ExpandsAlterColumnTypeIntoEveryPhaseInOrder) {
  Plan plan = make_plan(widen_spec());
  std::vector<std::string> ids;
  for (const auto& s : plan.steps) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{
                     "1.precheck", "1.add_shadow_column", "1.create_functions", "2.sql",
                     "1.create_forward_trigger", "1.backfill", "1.add_not_null_check",
                     "1.validate_not_null_check", "1.verify", "1.cutover", "1.drop_old_column",
                     "1.drop_functions"}));
  for (size_t i = 1; i < plan.steps.size(); ++i) {
    EXPECT_LE(static_cast<int>(plan.steps[i - 1].phase), static_cast<int>(plan.steps[i].phase));
  }
}

TEST(Planner, EveryStepBeforeCleanupHasARollbackAndCleanupHasNone) {
  Plan plan = make_plan(widen_spec());
  for (const auto& s : plan.steps) {
    if (s.id == "2.sql") continue;  // hand-written without a down
    if (s.phase == Phase::kCleanup) {
      EXPECT_FALSE(s.reversible) << s.id;
      EXPECT_FALSE(s.rollback_sql.has_value()) << s.id;
    } else {
      EXPECT_TRUE(s.reversible) << s.id;
      EXPECT_TRUE(s.rollback_sql.has_value()) << s.id;
    }
    EXPECT_FALSE(s.lock.empty()) << s.id;
  }
}

TEST(Planner, CutoverRollbackSwapsBackAndRestoresTheForwardTrigger) {
  Plan plan = make_plan(widen_spec());
  const Step* c = plan.find("1.cutover");
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->sql.find("'balance', '_tandem_new_balance', '_tandem_old_balance'"),
            std::string::npos);
  EXPECT_NE(c->rollback_sql->find("'balance', '_tandem_old_balance', '_tandem_new_balance'"),
            std::string::npos);
  EXPECT_NE(c->rollback_sql->find("_fwd BEFORE INSERT OR UPDATE"), std::string::npos);
  EXPECT_NE(c->sql.find("LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE"), std::string::npos);
}

TEST(Planner, HandWrittenSqlWithoutDownIsIrreversible) {
  Plan plan = make_plan(widen_spec());
  const Step* s = plan.find("2.sql");
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(s->reversible);
  EXPECT_FALSE(s->transactional);
  EXPECT_EQ(s->phase, Phase::kPrepare);
}

TEST(Planner, RefusesAColumnNameTooLongForTheShadowColumn) {
  Spec spec = widen_spec();
  std::get<AlterColumnType>(spec.operations[0].op).column = std::string(52, 'c');
  try {
    make_plan(spec);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_EQ(std::string(e.what()),
              "alter_column_type: column name \"" + std::string(52, 'c') +
                  "\" is longer than 51 bytes; the shadow column's name would not fit");
  }
}

TEST(Planner, QuotesIdentifiersThatNeedIt) {
  Spec spec = widen_spec();
  auto& a = std::get<AlterColumnType>(spec.operations[0].op);
  a.table = "Order";
  a.column = "user";
  Plan plan = make_plan(spec);
  EXPECT_NE(plan.find("1.add_shadow_column")
                ->sql.find("ALTER TABLE public.\"Order\" ADD COLUMN _tandem_new_user bigint"),
            std::string::npos);
  EXPECT_NE(plan.find("1.create_functions")->sql.find("(NEW.\"user\")"), std::string::npos);
}

TEST(Planner, JsonListsAllSixPhases) {
  auto j = make_plan(widen_spec()).to_json();
  ASSERT_EQ(j["phases"].size(), 6u);
  EXPECT_EQ(j["phases"][5]["phase"], "cleanup");
  EXPECT_EQ(j["phases"][5]["reversible"], false);
  EXPECT_TRUE(j["phases"][5]["steps"][0]["rollback"].is_null());
}

TEST(PhaseTable, NamesRoundTripAndOnlyCleanupIsIrreversible) {
  for (const auto& p : phase_table()) {
    EXPECT_EQ(parse_phase(p.name), p.phase);
    EXPECT_EQ(p.reversible, p.phase != Phase::kCleanup);
  }
  EXPECT_FALSE(parse_phase("nope").has_value());
}

}  // namespace
}  // namespace tandem
