// The stage ladder of a slice and the steps a copy_table in slices plans.
#include "plan/slices.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {
namespace {

struct LadderCase {
  SliceStage from;
  SliceMove move;
  std::optional<SliceStage> to;
  bool copy_check;
};

TEST(SliceLadder, EachMoveGoesOneStepAndChecksTheCopyOnTheWayToLive) {
  const std::vector<LadderCase> cases = {
      {SliceStage::kOld, SliceMove::kPromote, SliceStage::kShadow, true},
      {SliceStage::kShadow, SliceMove::kPromote, SliceStage::kLive, true},
      {SliceStage::kLive, SliceMove::kPromote, SliceStage::kComplete, false},
      {SliceStage::kComplete, SliceMove::kPromote, std::nullopt, false},
      {SliceStage::kOld, SliceMove::kDemote, std::nullopt, false},
      {SliceStage::kShadow, SliceMove::kDemote, SliceStage::kOld, false},
      {SliceStage::kLive, SliceMove::kDemote, SliceStage::kShadow, false},
      {SliceStage::kComplete, SliceMove::kDemote, SliceStage::kLive, false},
      {SliceStage::kOld, SliceMove::kRollback, std::nullopt, false},
      {SliceStage::kShadow, SliceMove::kRollback, SliceStage::kOld, false},
      {SliceStage::kLive, SliceMove::kRollback, SliceStage::kOld, false},
      {SliceStage::kComplete, SliceMove::kRollback, SliceStage::kOld, false},
  };
  for (const auto& c : cases) {
    const SliceStep s = next_slice_stage(c.from, c.move);
    const std::string what = std::string(to_string(c.move)) + " from " + to_string(c.from);
    EXPECT_EQ(s.to, c.to) << what;
    EXPECT_EQ(s.copy_check, c.copy_check) << what;
    EXPECT_EQ(s.refused.empty(), c.to.has_value()) << what;
  }
  EXPECT_NE(next_slice_stage(SliceStage::kComplete, SliceMove::kPromote).refused.find("complete"),
            std::string::npos);
}

TEST(SliceLadder, OnlyLiveAndCompleteRouteToTheNewSide) {
  EXPECT_FALSE(routes_new(SliceStage::kOld));
  EXPECT_FALSE(routes_new(SliceStage::kShadow));
  EXPECT_TRUE(routes_new(SliceStage::kLive));
  EXPECT_TRUE(routes_new(SliceStage::kComplete));
  for (const char* name : {"old", "shadow", "live", "complete"})
    EXPECT_EQ(to_string(*slice_stage_from(name)), std::string(name));
  EXPECT_FALSE(slice_stage_from("ramp"));
}

const char* kSliced = R"Y(name: contacts_slices
operations:
  - copy_table:
      table: contacts
      to: app_contacts
      key: [id]
      up: {customer_id: customer_id, email_address: email}
      down: {customer_id: customer_id, email: email_address}
      slices:
        by: customer_id
        new_keys: old
        canary: {query: "SELECT rate FROM health WHERE slice = $1", max: 0.5, every: 2s}
        list:
          - {name: pilot, where: "customer_id IN (1, 2)"}
          - {name: rest}
)Y";

TEST(SlicePlan, RoutesOpenAfterTheChecksAndTheBackTriggerComesWithThem) {
  auto r = parse_spec(kSliced, "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  const Slices& s = *r.spec->sliced();
  EXPECT_EQ(s.by, "customer_id");
  EXPECT_FALSE(s.new_keys_new);
  ASSERT_EQ(s.list.size(), 2u);
  EXPECT_EQ(*s.list[0].where, "customer_id IN (1, 2)");
  EXPECT_FALSE(s.list[1].where);
  ASSERT_TRUE(s.canary);
  EXPECT_EQ(s.canary->max, 0.5);
  EXPECT_EQ(s.canary->every.count(), 2000);

  const Plan plan = make_plan(*r.spec);
  std::vector<std::string> ids;
  for (const auto& st : plan.steps) ids.push_back(st.id);
  auto at = [&](const std::string& id) {
    return std::find(ids.begin(), ids.end(), id) - ids.begin();
  };
  // Defined in prepare, opened after both verify steps, cut at cutover,
  // forgotten at cleanup before the sync goes; no separate back trigger.
  ASSERT_NE(plan.find("1.define_slices"), nullptr);
  EXPECT_EQ(plan.find("1.define_slices")->phase, Phase::kPrepare);
  EXPECT_EQ(plan.find("1.open_routes")->phase, Phase::kShadowRead);
  EXPECT_GT(at("1.open_routes"), at("1.verify_no_extra_rows"));
  EXPECT_EQ(plan.find("1.cut_routes")->phase, Phase::kCutover);
  EXPECT_EQ(plan.find("1.remove_routes")->phase, Phase::kCleanup);
  EXPECT_LT(at("1.remove_routes"), at("1.drop_sync"));
  EXPECT_EQ(plan.find("1.create_back_trigger"), nullptr);
  // The routing locks before the table's trigger lock, and the rollback of
  // the opening drops the trigger and closes the routes.
  const Step& open = *plan.find("1.open_routes");
  EXPECT_LT(open.sql.find("pg_advisory_xact_lock"), open.sql.find("CREATE TRIGGER"));
  EXPECT_NE(open.rollback_sql->find("DROP TRIGGER IF EXISTS"), std::string::npos);
  EXPECT_NE(open.rollback_sql->find("'closed'"), std::string::npos);
  // Membership: first matching slice, the rest without a predicate.
  const Step& define = *plan.find("1.define_slices");
  EXPECT_NE(define.sql.find("WHEN (\ncustomer_id IN (1, 2)\n) THEN 1 ELSE 2 END"),
            std::string::npos)
      << define.sql;
  EXPECT_EQ(define.sql.find("match no slice"), std::string::npos);
  EXPECT_EQ(*define.rollback_sql,
            "DELETE FROM tandem.slice_plans WHERE migration = 'contacts_slices';\n");
}

TEST(SlicePlan, ANameThatEndsAQuoteStaysInsideIt) {
  std::string text = kSliced;
  const std::string from = "{name: pilot, where: \"customer_id IN (1, 2)\"}";
  text.replace(text.find(from), from.size(),
               "{name: \"pi$tandem$lot\", where: \"customer_id::text <> '$tandem$'\"}");
  auto r = parse_spec(text, "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  const Plan plan = make_plan(*r.spec);
  const std::string& sql = plan.find("1.define_slices")->sql;
  // The DO block's quote is not one the body contains.
  EXPECT_EQ(sql.find("DO $tandem$"), std::string::npos) << sql;
}

// The position of each step id in the plan.
std::vector<std::string> step_ids(const Plan& plan) {
  std::vector<std::string> ids;
  for (const auto& st : plan.steps) ids.push_back(st.id);
  return ids;
}

long position(const std::vector<std::string>& ids, const std::string& id) {
  const auto it = std::find(ids.begin(), ids.end(), id);
  EXPECT_NE(it, ids.end()) << id;
  return it - ids.begin();
}

TEST(SlicePlan, AMoveColumnInSlicesOpensItsBackTriggerWithTheRoutes) {
  auto r = parse_spec(R"Y(name: pii_slices
operations:
  - move_column:
      table: users
      column: full_name
      key: [id]
      to: users_pii
      slices:
        by: region
        list: [{name: eu, where: "region = 'eu'"}, {name: rest}]
)Y",
                      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  ASSERT_NE(r.spec->sliced(), nullptr);
  EXPECT_EQ(r.spec->sliced()->by, "region");
  const Plan plan = make_plan(*r.spec);
  const auto ids = step_ids(plan);
  EXPECT_EQ(plan.find("1.define_slices")->phase, Phase::kPrepare);
  EXPECT_LT(position(ids, "1.define_slices"), position(ids, "1.create_sync_trigger"));
  EXPECT_EQ(plan.find("1.open_routes")->phase, Phase::kShadowRead);
  EXPECT_GT(position(ids, "1.open_routes"), position(ids, "1.verify"));
  EXPECT_EQ(plan.find("1.cut_routes")->phase, Phase::kCutover);
  EXPECT_EQ(plan.find("1.create_back_trigger"), nullptr);
  EXPECT_LT(position(ids, "1.remove_routes"), position(ids, "1.drop_sync"));
  const Step& open = *plan.find("1.open_routes");
  EXPECT_NE(open.sql.find("CREATE TRIGGER"), std::string::npos);
  EXPECT_NE(open.sql.find("ON public.users_pii"), std::string::npos) << open.sql;
  // The routing column must be a column of users (checked before anything).
  EXPECT_NE(plan.find("1.precheck")->sql.find("slices: by"), std::string::npos);

  // A slice's check: users rows of the slice against users_pii, and rows of
  // users_pii told their slice through users (region is not a key column).
  const SlicedTables t = sliced_tables(*r.spec);
  EXPECT_EQ(t.source, "public.users");
  ASSERT_TRUE(t.copy);
  EXPECT_EQ(t.copy->to, "public.users_pii");
  EXPECT_NE(t.by_of_target.find("FROM public.users AS _s"), std::string::npos) << t.by_of_target;
  const std::string check = slice_check_sql(t);
  EXPECT_NE(check.find("FROM public.users_pii AS _row"), std::string::npos) << check;
}

TEST(SlicePlan, ATransformInSlicesOpensEveryReverseTriggerWithTheRoutesAndHasNoCopyToCheck) {
  auto r = parse_spec(R"Y(name: docs_slices
operations:
  - transform:
      table: docs
      key: [id]
      create: {parts: "doc_id int PRIMARY KEY, owner int, body text", tags: "doc_id int, tag text"}
      apply: "INSERT INTO parts VALUES (_row.id, _row.owner, _row.body);"
      remove: "DELETE FROM parts WHERE doc_id = _row.id; DELETE FROM tags WHERE doc_id = _row.id;"
      reverse:
        parts: "UPDATE docs SET body = _row.body WHERE id = _row.doc_id;"
        tags: "UPDATE docs SET body = body WHERE id = _row.doc_id;"
      slices:
        by: owner
        list: [{name: first, where: "owner < 10"}, {name: rest}]
shadow_reads:
  - name: doc_by_owner
    old: "SELECT body FROM docs WHERE owner = $1 ORDER BY id"
    new: "SELECT body FROM parts WHERE owner = $1 ORDER BY doc_id"
    params: {table: docs, columns: [owner]}
)Y",
                      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  const Plan plan = make_plan(*r.spec);
  const auto ids = step_ids(plan);
  EXPECT_EQ(plan.find("1.define_slices")->phase, Phase::kPrepare);
  const Step& open = *plan.find("1.open_routes");
  EXPECT_EQ(open.phase, Phase::kShadowRead);
  EXPECT_NE(open.sql.find("ON public.parts"), std::string::npos) << open.sql;
  EXPECT_NE(open.sql.find("ON public.tags"), std::string::npos) << open.sql;
  EXPECT_NE(open.rollback_sql->find("DROP TRIGGER IF EXISTS"), std::string::npos);
  EXPECT_EQ(plan.find("1.create_back_trigger_1"), nullptr);
  EXPECT_EQ(plan.find("1.cut_routes")->phase, Phase::kCutover);
  EXPECT_LT(position(ids, "1.remove_routes"), position(ids, "1.drop_sync"));
  const SlicedTables t = sliced_tables(*r.spec);
  EXPECT_EQ(t.source, "public.docs");
  EXPECT_FALSE(t.copy);
}

}  // namespace
}  // namespace tandem
