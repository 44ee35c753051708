#include <gtest/gtest.h>

#include "plan/plan_output.h"
#include "plan/steps.h"
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
                     "1.validate_not_null_check", "1.build_indexes", "1.verify", "1.cutover",
                     "1.move_sequence_owner", "1.validate_constraints", "1.drop_old_column",
                     "1.fit_sequence", "1.drop_functions"}));
  // The steps whose statements depend on the column's indexes and
  // constraints when they run: queries yielding them, outside a transaction.
  for (const char* id : {"1.build_indexes", "1.validate_constraints"}) {
    const Step* s = plan.find(id);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->generates) << id;
    EXPECT_FALSE(s->transactional) << id;
  }
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
    EXPECT_FALSE(s.lock.to_string().empty()) << s.id;
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
  // Every lock is taken first, both ways: the tables of the column's
  // foreign keys in the writers' order around the table's own, found in the
  // catalog when it runs (an order the executor can learn another from);
  // the sequence is not touched while they are held (issue 16), but in a
  // step of its own.
  ASSERT_TRUE(c->locks_query);
  EXPECT_EQ(*c->locks_query,
            swap_locks_query("'public.accounts'::regclass", {"balance", "balance"}));
  EXPECT_NE(c->locks_query->find("ORDER BY min(x.o), 1"), std::string::npos);
  EXPECT_EQ(c->sql.rfind("DROP TRIGGER", 0), 0u) << c->sql;
  EXPECT_EQ(c->rollback_sql->rfind("DROP TRIGGER", 0), 0u) << *c->rollback_sql;
  const Step* owner = plan.find("1.move_sequence_owner");
  ASSERT_NE(owner, nullptr);
  EXPECT_TRUE(owner->locks.empty());
  EXPECT_EQ(owner->sql,
            "SELECT tandem.move_sequence_owner('public.accounts'::regclass, "
            "'_tandem_old_balance', 'balance');\n");
  // The forward trigger's rollback drops the shadow column with it, in one
  // transaction: after a rolled back cutover the column is NOT NULL, and
  // the trigger is what fills it.
  const Step* fwd = plan.find("1.create_forward_trigger");
  EXPECT_NE(fwd->rollback_sql->find("DROP COLUMN IF EXISTS _tandem_new_balance"),
            std::string::npos);
  EXPECT_EQ(fwd->rollback_locks.size(), 1u);
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
  auto j = plan_to_json(make_plan(widen_spec()));
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

// The spec plan_of parsed last.
Spec plan_spec_;

Plan plan_of(const std::string& operations) {
  auto r = parse_spec("name: ops\noperations:\n" + operations, "spec.yaml");
  EXPECT_TRUE(r.spec) << (r.errors.empty() ? "" : r.errors[0].to_string());
  if (!r.spec) return Plan{};
  plan_spec_ = *r.spec;
  return make_plan(*r.spec);
}

std::vector<std::string> ids_and_phases(const Plan& plan) {
  std::vector<std::string> out;
  for (const auto& s : plan.steps) out.push_back(s.id + "@" + phase_name(s.phase));
  return out;
}

TEST(Planner, CreateIndexBuildsConcurrentlyAndIdempotently) {
  Plan plan = plan_of(
      "  - create_index: {table: app.users, name: users_email, columns: [lower(email)], "
      "unique: true, where: deleted_at IS NULL}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.create_index@prepare"}));
  // The statements come from the catalog when the step runs (what is built
  // already is skipped; a partitioned table is built partition by partition).
  const Step* s = plan.find("1.create_index");
  EXPECT_EQ(s->sql,
            "SELECT * FROM tandem.index_builds('app.users'::regclass, 'users_email', true, "
            "'USING btree (lower(email)) WHERE deleted_at IS NULL');\n");
  EXPECT_FALSE(s->transactional);
  EXPECT_TRUE(s->generates);
  EXPECT_EQ(*s->rollback_sql,
            "SELECT * FROM tandem.index_drops('app.users'::regclass, 'users_email');\n");
  EXPECT_NE(plan.find("1.precheck")->sql.find("works on plain and partitioned tables"),
            std::string::npos);
  EXPECT_NE(plan.find("1.precheck")->sql.find("is a foreign table"), std::string::npos);
}

TEST(Planner, ForeignKeyIsAddedNotValidThenValidated) {
  Plan plan = plan_of(
      "  - add_constraint: {table: orders, name: orders_user_fk, foreign_key: [user_id], "
      "references: users, referenced_columns: [id], on_delete: cascade}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.add_not_valid@prepare",
                                      "1.validate@backfill"}));
  EXPECT_EQ(plan.find("1.add_not_valid")->sql,
            "ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
            "REFERENCES public.users (id) ON DELETE cascade NOT VALID;\n");
  // Adding and dropping lock the referenced table first, in the order
  // writers take them, then the referencing one.
  const Step* add = plan.find("1.add_not_valid");
  EXPECT_EQ(*add->rollback_sql,
            "ALTER TABLE public.orders DROP CONSTRAINT IF EXISTS orders_user_fk;\n");
  ASSERT_EQ(add->locks.size(), 2u);
  EXPECT_EQ(add->locks[0].table + " " + add->locks[0].mode, "public.users SHARE ROW EXCLUSIVE");
  EXPECT_EQ(add->locks[1].table + " " + add->locks[1].mode, "public.orders SHARE ROW EXCLUSIVE");
  ASSERT_EQ(add->rollback_locks.size(), 2u);
  EXPECT_EQ(add->rollback_locks[0].table + " " + add->rollback_locks[0].mode,
            "public.users ACCESS EXCLUSIVE");
  EXPECT_EQ(add->rollback_locks[1].table + " " + add->rollback_locks[1].mode,
            "public.orders ACCESS EXCLUSIVE");
}

TEST(Planner, UniqueConstraintAttachesAConcurrentlyBuiltIndex) {
  Plan plan = plan_of("  - add_constraint: {table: t, name: t_k, unique: [a, b]}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.build_unique_index@prepare",
                                      "1.attach_unique_index@backfill"}));
  EXPECT_EQ(plan.find("1.attach_unique_index")->sql,
            "ALTER TABLE public.t ADD CONSTRAINT t_k UNIQUE USING INDEX t_k;\n");
}

TEST(Planner, SetNotNullAvoidsTheScanUnderAnExclusiveLock) {
  Plan plan = plan_of("  - set_not_null: {table: t, column: c}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.add_check@prepare",
                                      "1.validate@backfill", "1.set_not_null@cutover"}));
  EXPECT_EQ(*plan.find("1.set_not_null")->rollback_sql,
            "ALTER TABLE public.t ALTER COLUMN c DROP NOT NULL;\n");
}

TEST(Planner, DropColumnIsReversibleOnlyWithDown) {
  Plan with = plan_of("  - drop_column: {table: t, column: c, type: int, down: \"0\"}\n");
  EXPECT_TRUE(with.find("1.drop_column")->reversible);
  // The definition is recorded before the drop; the rollback re-creates the
  // column from it, and the step before validates its CHECKs afterwards.
  EXPECT_EQ(ids_and_phases(with),
            (std::vector<std::string>{"1.precheck@prepare", "1.save_definition@cleanup",
                                      "1.drop_column@cleanup"}));
  EXPECT_NE(with.find("1.save_definition")->sql.find("'column_definition'"), std::string::npos);
  const std::string back = *with.find("1.drop_column")->rollback_sql;
  EXPECT_NE(back.find("ADD COLUMN IF NOT EXISTS %I %s%s DEFAULT (%s)', 'public.t', 'c', 'int'"),
            std::string::npos)
      << back;
  EXPECT_NE(back.find("ADD CONSTRAINT %I %s NOT VALID"), std::string::npos) << back;
  EXPECT_NE(with.find("1.save_definition")->rollback_sql->find("VALIDATE CONSTRAINT"),
            std::string::npos);
  Plan without = plan_of("  - drop_column: {table: t, column: c}\n");
  EXPECT_FALSE(without.find("1.drop_column")->reversible);
  EXPECT_EQ(without.find("1.drop_column")->phase, Phase::kCleanup);
}

TEST(Planner, AddColumnFillsNewRowsByTriggerAndOldRowsByBackfill) {
  Plan plan = plan_of(
      "  - add_column: {table: users, column: user_id, type: uuid, backfill: gen_random_uuid(),"
      " unique: true, not_null: true, default: gen_random_uuid()}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{
                "1.precheck@prepare", "1.add_column@prepare", "1.create_fill_function@prepare",
                "1.create_fill_trigger@dual_write", "1.backfill@backfill",
                "1.build_unique_index@backfill", "1.attach_unique_index@backfill",
                "1.add_check@backfill", "1.validate@backfill", "1.verify@shadow_read",
                "1.set_not_null@cutover", "1.set_default@cutover", "1.drop_fill_trigger@cleanup"}));
  const Step* b = plan.find("1.backfill");
  EXPECT_EQ(b->batch->set_clause, "user_id = (gen_random_uuid())");
  EXPECT_EQ(b->batch->filter, "user_id IS NULL");
  EXPECT_NE(
      plan.find("1.create_fill_function")
          ->sql.find("NEW.user_id := (SELECT gen_random_uuid() FROM (SELECT NEW.*) AS _row);"),
      std::string::npos);
}

TEST(Planner, SeveralOperationsRunPhaseByPhaseInSpecOrder) {
  Plan plan = plan_of(
      "  - set_not_null: {table: t, column: c}\n"
      "  - create_index: {table: t, name: t_c, columns: [c]}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.add_check@prepare",
                                      "2.precheck@prepare", "2.create_index@prepare",
                                      "1.validate@backfill", "1.set_not_null@cutover"}));
}

TEST(Planner, MoveColumnMirrorsEveryWriteThenSyncsBackAfterCutover) {
  Plan plan = plan_of(
      "  - move_column: {table: users, column: full_name, key: [user_id], to: users_pii,"
      " compat_view: users_v1}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{
                "1.precheck@prepare", "1.create_target@prepare", "1.create_sync_function@prepare",
                "1.create_back_function@prepare", "1.create_sync_trigger@dual_write",
                "1.backfill@backfill", "1.analyze@backfill", "1.verify@shadow_read",
                "1.create_back_trigger@cutover", "1.create_compat_view@cutover",
                "1.drop_compat_view@cleanup", "1.drop_back_sync@cleanup", "1.drop_sync@cleanup",
                "1.drop_source_column@cleanup"}));
  // The backfill locks the rows it copies and never writes an unchanged value.
  const std::string& copy = plan.find("1.backfill")->batch->statement;
  EXPECT_NE(copy.find("FROM public.users AS _row WHERE {range} FOR UPDATE OF _row"),
            std::string::npos)
      << copy;
  EXPECT_NE(copy.find("ON CONFLICT (user_id) DO UPDATE SET full_name = EXCLUDED.full_name"),
            std::string::npos)
      << copy;
  EXPECT_NE(copy.find("IS DISTINCT FROM ROW(EXCLUDED.full_name)"), std::string::npos) << copy;
  // The mirror deletes, and follows a key change by deleting the old row.
  const std::string& fwd = plan.find("1.create_sync_function")->sql;
  EXPECT_NE(fwd.find("DELETE FROM public.users_pii AS _t WHERE ROW(_t.user_id) = ROW(OLD.user_id)"),
            std::string::npos)
      << fwd;
  // The way back only writes the column; the two directions share a guard.
  const std::string& back = plan.find("1.create_back_function")->sql;
  EXPECT_NE(back.find("UPDATE public.users AS _t SET full_name = _n.full_name"), std::string::npos)
      << back;
  EXPECT_NE(back.find("current_setting('tandem.sync_"), std::string::npos);
  EXPECT_FALSE(plan.find("1.drop_source_column")->reversible);
}

TEST(Planner, CopyTableVerifiesBothWaysAndCreatesTheTargetWhenAsked) {
  Plan plan = plan_of(
      "  - copy_table:\n      table: v1\n      to: v2\n      key: [id, cur]\n"
      "      create: id int, cur text, amount numeric, PRIMARY KEY (id, cur)\n"
      "      up: {amount: cents / 100.0}\n");
  EXPECT_EQ(
      ids_and_phases(plan),
      (std::vector<std::string>{
          "1.precheck@prepare", "1.create_target@prepare", "1.create_sync_function@prepare",
          "1.create_sync_trigger@dual_write", "1.backfill@backfill", "1.analyze@backfill",
          "1.verify@shadow_read", "1.verify_no_extra_rows@shadow_read", "1.drop_sync@cleanup"}));
  EXPECT_EQ(plan.find("1.verify")->batch->mismatch,
            "NOT EXISTS (SELECT 1 FROM (SELECT (cents / 100.0) AS amount) AS _up CROSS JOIN "
            "public.v2 AS _t WHERE ROW(_t.id, _t.cur) = ROW(_row.id, _row.cur) AND "
            "ROW(_t.amount) IS NOT DISTINCT FROM ROW(_up.amount))");
  // Walked by (id, cur), a chunk of v1 is joined with the same key range of v2.
  const BatchWork& check = *plan.find("1.verify")->batch;
  EXPECT_EQ(check.compare_key, (std::vector<std::string>{"id", "cur"}));
  EXPECT_EQ(
      check.compare,
      "SELECT CASE WHEN _t._k1 IS NULL OR ROW(_t._c1) IS DISTINCT FROM ROW(_s._c1) THEN "
      "'(' || concat_ws(',', _s._k1::text, _s._k2::text) || ')' END AS k\n"
      "  FROM (SELECT _row.id AS _k1, _row.cur AS _k2, (cents / 100.0) AS _c1 FROM public.v1 "
      "AS _row WHERE {range}) AS _s\n"
      "  LEFT JOIN (SELECT _row.id AS _k1, _row.cur AS _k2, _row.amount AS _c1 FROM public.v2 "
      "AS _row WHERE {range}) AS _t ON ROW(_t._k1, _t._k2) = ROW(_s._k1, _s._k2)");
  const BatchWork& extra = *plan.find("1.verify_no_extra_rows")->batch;
  EXPECT_EQ(extra.table, "public.v2");
  EXPECT_EQ(extra.compare,
            "SELECT CASE WHEN _f._k1 IS NULL THEN '(' || concat_ws(',', _row.id::text, "
            "_row.cur::text) || ')' END AS k\n"
            "  FROM public.v2 AS _row\n"
            "  LEFT JOIN (SELECT _row.id AS _k1, _row.cur AS _k2 FROM public.v1 AS _row WHERE "
            "{range}) AS _f ON ROW(_f._k1, _f._k2) = ROW(_row.id, _row.cur)\n"
            " WHERE {range}");
  EXPECT_EQ(*plan.find("1.create_target")->rollback_sql, "DROP TABLE IF EXISTS public.v2;\n");
}

TEST(Planner, AddReferenceRunsAfterTheOperationThatCreatesTheReferencedKey) {
  // Written in the wrong order: the reference needs users.user_id.
  Plan plan = plan_of(
      "  - add_reference: {table: orders, column: user_id, type: uuid, via: username,"
      " references: users, referenced_column: user_id, lookup: username, drop_via: true}\n"
      "  - add_column: {table: users, column: user_id, type: uuid, backfill: gen_random_uuid(),"
      " unique: true}\n");
  EXPECT_EQ(dependency_order(plan_spec_), (std::vector<size_t>{1, 0}));
  std::vector<std::string> backfill;
  for (const Step* st : plan.steps_in(Phase::kBackfill)) backfill.push_back(st->id);
  EXPECT_EQ(backfill, (std::vector<std::string>{
                          "2.backfill", "2.build_unique_index", "2.attach_unique_index",
                          "1.backfill", "1.create_index", "1.fk_add_not_valid", "1.fk_validate"}));
  EXPECT_EQ(plan.find("1.backfill")->batch->filter, "_row.user_id IS NULL");
  EXPECT_FALSE(plan.find("1.drop_old_key")->reversible);
}

// Issue 16: a check written before the add_column that creates its column
// failed ("column age does not exist"); the order now follows expressions.
TEST(Planner, AnOperationWhoseExpressionNamesANewColumnComesAfterIt) {
  plan_of(
      "  - add_constraint: {table: people, name: adult, check: \"Age >= 18 OR note = 'age'\"}\n"
      "  - create_index: {table: people, name: people_nick, columns: [lower(\"Nick\")]}\n"
      "  - add_column: {table: people, column: age, type: int, backfill: '0'}\n"
      "  - add_column: {table: people, column: Nick, type: text, backfill: \"'x'\"}\n"
      "  - add_column: {table: other, column: age, type: int, backfill: '0'}\n");
  // Unquoted names fold to lower case (Age is age); a quoted one is taken as
  // written ("Nick", the column the fourth operation adds as Nick); a
  // literal ('age') names nothing, and other's age is another table's.
  EXPECT_EQ(dependency_order(plan_spec_), (std::vector<size_t>{2, 0, 3, 1, 4}));
}

// How a spec of these operations (under "operations:", file s.yaml) plans:
// "planned", or the bad-input error that refuses it.
std::string plan_outcome(const std::string& ops) {
  auto r = parse_spec("name: x\noperations:\n" + ops, "s.yaml");
  EXPECT_TRUE(r.spec) << r.errors[0].to_string();
  try {
    make_plan(*r.spec);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    return std::string(e.what());
  }
  return std::string("planned");
}

// Issue 16: several operations on one column planned fine, then failed at
// cutover ("constraint _tandem_nn_... does not exist").
TEST(Planner, RefusesAnOperationOnAColumnThatAnotherReplaces) {
  const auto& refused = plan_outcome;
  EXPECT_EQ(refused("  - alter_column_type: {table: t, column: price, type: numeric}\n"
                    "  - set_not_null: {table: t, column: price}\n"
                    "  - add_constraint: {table: t, name: p, check: price >= 0}\n"),
            "s.yaml:4:5: set_not_null and the alter_column_type at s.yaml:3:5 both change "
            "public.t.price, which alter_column_type replaces: what the other puts on the "
            "column would stay on the old one, which cleanup drops. Run them as two migrations, "
            "one after the other; or write them as one alter_column, which changes the column's "
            "type, NOT NULL, check, uniqueness, foreign key, default, comment and name together");
  EXPECT_EQ(refused("  - create_index: {table: t, name: i, columns: [a], where: note IS NULL}\n"
                    "  - drop_column: {table: t, column: note}\n")
                .substr(0, 60),
            "s.yaml:4:5: drop_column and the create_index at s.yaml:3:5 b");
  EXPECT_EQ(refused("  - rename_column: {table: t, column: a, to: b}\n"
                    "  - alter_column_type: {table: t, column: a, type: bigint}\n")
                .substr(0, 50),
            "s.yaml:4:5: alter_column_type and the rename_colum");
  // Other columns, other tables: planned.
  EXPECT_EQ(refused("  - alter_column_type: {table: t, column: price, type: numeric}\n"
                    "  - set_not_null: {table: t, column: qty}\n"
                    "  - set_not_null: {table: u, column: price}\n"),
            "planned");
}

// Issue 18: two operations that create the same thing validated and planned,
// and the second failed mid-run ("already exists"), or found at cutover that
// the first had already dropped the check it meant to turn into NOT NULL.
TEST(Planner, RefusesTwoOperationsThatCreateTheSameThing) {
  const auto& outcome = plan_outcome;
  EXPECT_EQ(outcome("  - set_not_null: {table: t, column: a}\n"
                    "  - set_not_null: {table: t, column: a}\n"),
            "s.yaml:4:5: set_not_null and the set_not_null at s.yaml:3:5 both create NOT NULL on "
            "public.t.a: leave one of them out");
  EXPECT_EQ(outcome("  - add_column: {table: t, column: c, type: int, backfill: '0', not_null: "
                    "true}\n"
                    "  - set_not_null: {table: t, column: c}\n"),
            "s.yaml:4:5: set_not_null and the add_column at s.yaml:3:5 both create NOT NULL on "
            "public.t.c: leave one of them out");
  EXPECT_EQ(outcome("  - create_index: {table: t, name: t_a, columns: [a]}\n"
                    "  - add_constraint: {table: u, name: t_a, unique: [b]}\n"),
            "s.yaml:4:5: add_constraint and the create_index at s.yaml:3:5 both create index, "
            "table or view public.t_a: give one of them another name, or leave one of them out");
  EXPECT_EQ(
      outcome("  - add_constraint: {table: t, name: k, check: a > 0}\n"
              "  - add_constraint: {table: t, name: k, check: b > 0}\n")
          .substr(0, 94),
      "s.yaml:4:5: add_constraint and the add_constraint at s.yaml:3:5 both create constraint "
      "k on pu");
  EXPECT_EQ(outcome("  - add_column: {table: t, column: b, type: int, backfill: '0'}\n"
                    "  - rename_column: {table: t, column: a, to: b}\n")
                .substr(0, 88),
            "s.yaml:4:5: rename_column and the add_column at s.yaml:3:5 both create column "
            "public.t.b");
  EXPECT_EQ(outcome("  - move_column: {table: t, column: a, key: [id], to: t_a}\n"
                    "  - create_index: {table: t, name: t_a, columns: [b]}\n")
                .substr(0, 49),
            "s.yaml:4:5: create_index and the move_column at s");
  // The same names on other tables or schemas, and a constraint name that is
  // also an index name elsewhere (check constraints make no index): planned.
  EXPECT_EQ(outcome("  - set_not_null: {table: t, column: a}\n"
                    "  - set_not_null: {table: u, column: a}\n"
                    "  - add_constraint: {table: t, name: k, check: a > 0}\n"
                    "  - add_constraint: {table: u, name: k, check: a > 0}\n"
                    "  - create_index: {table: t, name: k, columns: [a]}\n"
                    "  - create_index: {table: other.t, name: t_a, columns: [a]}\n"
                    "  - create_index: {table: t, name: t_a, columns: [a]}\n"),
            "planned");
}

// Issue 16: 50,000 operations took 4.2 s to order and 200,000 took 39 s (a
// search over every pair for each one placed). A chain as long as the
// largest spec allowed is ordered in one pass.
TEST(Planner, OrdersAChainOfTwentyThousandOperations) {
  Spec spec;
  spec.name = "many";
  for (int i = 0; i < 20000; ++i) {
    AddColumn a;
    a.table = "t";
    a.column = "c" + std::to_string(i);
    a.backfill = "c" + std::to_string(i + 1) + " + 1";  // reads the next one's column
    spec.operations.push_back({{"s.yaml", i + 1, 1}, a});
  }
  auto order = dependency_order(spec);
  ASSERT_EQ(order.size(), 20000u);
  EXPECT_EQ(order.front(), 19999u);
  EXPECT_EQ(order.back(), 0u);
}

TEST(Planner, TablesTouchedNamesEveryTableAnOperationChangesOrReads) {
  plan_of(
      "  - add_reference: {table: orders, column: user_id, type: uuid, via: username,"
      " references: users, referenced_column: user_id, lookup: username}\n"
      "  - move_column: {table: app.users, column: bio, key: id, to: profiles}\n"
      "  - sql: {phase: prepare, up: 'SELECT 1', down: 'SELECT 1'}\n");
  EXPECT_EQ(tables_touched(plan_spec_),
            (std::set<std::string>{"public.orders", "public.users", "app.users", "app.profiles"}));
}

TEST(Planner, RenameColumnPublishesTheViewBeforeRenaming) {
  Plan plan = plan_of("  - rename_column: {table: t, column: a, to: b, compat_view: legacy.t}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.create_compat_view@cutover",
                                      "1.rename@cutover", "1.drop_compat_view@cleanup"}));
  EXPECT_NE(plan.find("1.create_compat_view")->sql.find("'CREATE VIEW ' || 'legacy.t'"),
            std::string::npos);
  EXPECT_EQ(*plan.find("1.rename")->rollback_sql, "ALTER TABLE public.t RENAME COLUMN b TO a;\n");
}

TEST(Planner, EveryOperationHasUniqueStepIds) {
  // make_plan throws on a duplicate; every operation at once must plan.
  EXPECT_NO_THROW(plan_of(
      "  - add_column: {table: u, column: k, type: uuid, backfill: gen_random_uuid(),"
      " unique: true, not_null: true}\n"
      "  - add_reference: {table: o, column: k, type: uuid, via: n, references: u,"
      " referenced_column: k, lookup: n, not_null: true, drop_via: true, compat_view: o_v}\n"
      "  - move_column: {table: u, column: c, key: [id], to: u2, compat_view: u_v}\n"
      "  - copy_table: {table: a, to: b, key: [id], up: {x: y}, down: {y: x}, compat_view: a_v}\n"
      "  - rename_column: {table: t, column: a, to: b, compat_view: t_v}\n"));
}

TEST(Planner, DropIndexDropsItConcurrentlyAtCleanupAndCannotBeUndone) {
  auto r = parse_spec(
      "name: x\noperations:\n  - drop_index: {table: orders, name: orders_old_idx}\n", "s.yaml");
  ASSERT_TRUE(r.spec);
  Plan plan = make_plan(*r.spec);
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0].kind, StepKind::kPrecheck);
  EXPECT_NE(plan.steps[0].sql.find("drop the constraint instead"), std::string::npos);
  const Step& drop = plan.steps[1];
  EXPECT_EQ(drop.phase, Phase::kCleanup);
  // CONCURRENTLY, but not an index of a partitioned table (relkind I).
  EXPECT_EQ(drop.sql,
            "SELECT CASE relkind WHEN 'I' THEN 'DROP INDEX IF EXISTS '\n"
            "                    ELSE 'DROP INDEX CONCURRENTLY IF EXISTS ' END || "
            "'public.orders_old_idx'\n"
            "  FROM pg_class WHERE oid = to_regclass('public.orders_old_idx');\n");
  EXPECT_TRUE(drop.generates);
  EXPECT_FALSE(drop.transactional);
  EXPECT_FALSE(drop.reversible);
  EXPECT_FALSE(drop.rollback_sql.has_value());
}

TEST(Planner, RenameConstraintRenamesAtCutoverAndBackOnRollback) {
  auto r = parse_spec(
      "name: x\noperations:\n"
      "  - rename_constraint: {table: orders, name: orders_pkey, to: \"Orders Key\"}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec);
  Plan plan = make_plan(*r.spec);
  const Step* rename = plan.find("1.rename");
  ASSERT_NE(rename, nullptr);
  EXPECT_EQ(rename->phase, Phase::kCutover);
  EXPECT_EQ(rename->sql,
            "ALTER TABLE public.orders RENAME CONSTRAINT orders_pkey TO \"Orders Key\";\n");
  EXPECT_EQ(*rename->rollback_sql,
            "ALTER TABLE public.orders RENAME CONSTRAINT \"Orders Key\" TO orders_pkey;\n");
  auto same = parse_spec(
      "name: x\noperations:\n  - rename_constraint: {table: t, name: c, to: c}\n", "s.yaml");
  ASSERT_FALSE(same.spec);
  EXPECT_EQ(same.errors[0].to_string(),
            "s.yaml:3:48: rename_constraint: \"to\" is the constraint's current name");
  // Renaming to a name another operation creates is refused at validate.
  EXPECT_EQ(plan_outcome("  - rename_constraint: {table: t, name: a, to: b}\n"
                         "  - add_constraint: {table: t, name: b, check: x > 0}\n")
                .substr(0, 71),
            "s.yaml:4:5: add_constraint and the rename_constraint at s.yaml:3:5 both");
}

TEST(Planner, DropConstraintKeepsItAtCutoverPutsItBackOnRollbackAndForgetsItAtCleanup) {
  auto r = parse_spec(
      "name: x\noperations:\n  - drop_constraint: {table: \"Or ders\", name: \"it's\"}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec);
  Plan plan = make_plan(*r.spec);
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_EQ(plan.steps[0].kind, StepKind::kPrecheck);
  EXPECT_NE(plan.steps[0].sql.find("drop that foreign key first"), std::string::npos);
  const Step& drop = plan.steps[1];
  EXPECT_EQ(drop.phase, Phase::kCutover);
  EXPECT_TRUE(drop.generates);
  EXPECT_FALSE(drop.transactional);
  EXPECT_EQ(drop.sql,
            "SELECT format('SELECT tandem.drop_constraint(%L::regclass, %L)', "
            "'public.\"Or ders\"', 'it''s')\n"
            " WHERE EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = "
            "'public.\"Or ders\"'::regclass\n"
            "                AND conname = 'it''s')");
  EXPECT_EQ(*drop.rollback_sql,
            "SELECT * FROM tandem.constraint_restorations('public.\"Or ders\"'::regclass, "
            "'it''s')");
  const Step& forget = plan.steps[2];
  EXPECT_EQ(forget.phase, Phase::kCleanup);
  EXPECT_FALSE(forget.reversible);
}

TEST(Planner, TableOperationsPlanTheirStepsInTheirPhases) {
  auto r = parse_spec(
      "name: x\noperations:\n"
      "  - create_table: {table: audit, columns: [id bigint PRIMARY KEY,"
      " a_id bigint REFERENCES a (id)]}\n"
      "  - drop_table: {table: old_log}\n"
      "  - rename_table: {table: orders, to: purchases}\n"
      "  - rename_table: {table: items, to: lines, compat_view: false}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  const Step* create = plan.find("1.create");
  ASSERT_NE(create, nullptr);
  EXPECT_EQ(create->phase, Phase::kPrepare);
  EXPECT_EQ(create->sql,
            "CREATE TABLE public.audit (\n  id bigint PRIMARY KEY,\n  a_id bigint REFERENCES a "
            "(id)\n);\n");
  EXPECT_EQ(*create->rollback_sql, "DROP TABLE IF EXISTS public.audit;\n");
  EXPECT_EQ(create->lock.mode, LockMode::kShareRowExclusive);

  const Step* aside = plan.find("2.move_aside");
  ASSERT_NE(aside, nullptr);
  EXPECT_EQ(aside->phase, Phase::kCutover);
  const std::string moved = aside->sql.substr(aside->sql.find(" TO ") + 4);
  EXPECT_EQ(moved.rfind("_tandem_dropped_old_log_", 0), 0u) << moved;
  EXPECT_EQ(*aside->rollback_sql,
            "ALTER TABLE public." + moved.substr(0, moved.size() - 2) + " RENAME TO old_log;\n");
  const Step* drop = plan.find("2.drop");
  ASSERT_NE(drop, nullptr);
  EXPECT_EQ(drop->phase, Phase::kCleanup);
  EXPECT_FALSE(drop->reversible);

  const Step* rename = plan.find("3.rename");
  ASSERT_NE(rename, nullptr);
  EXPECT_EQ(rename->sql,
            "ALTER TABLE public.orders RENAME TO purchases;\n"
            "CREATE VIEW public.orders WITH (security_invoker = true) AS SELECT * FROM "
            "public.purchases;\n"
            "SELECT tandem.copy_grants('public.purchases', 'public.orders');\n");
  EXPECT_EQ(*rename->rollback_sql,
            "DROP VIEW IF EXISTS public.orders;\nALTER TABLE public.purchases RENAME TO orders;\n");
  EXPECT_NE(plan.find("3.drop_compat_view"), nullptr);
  EXPECT_EQ(plan.find("4.rename")->sql, "ALTER TABLE public.items RENAME TO lines;\n");
  EXPECT_EQ(plan.find("4.drop_compat_view"), nullptr);
}

TEST(Planner, AnOperationOnATableAnotherRenamesOrDropsIsRefused) {
  EXPECT_EQ(plan_outcome("  - rename_table: {table: t, to: u}\n"
                         "  - add_constraint: {table: t, name: b, check: x > 0}\n"),
            "s.yaml:4:5: add_constraint and the rename_table at s.yaml:3:5 both work on "
            "public.t, which rename_table takes away under that name at cutover: the other's "
            "later steps would not find it. Run them as two migrations, one after the other");
  EXPECT_EQ(plan_outcome("  - create_index: {table: t, name: i, columns: [x]}\n"
                         "  - drop_table: {table: t}\n")
                .substr(0, 62),
            "s.yaml:4:5: drop_table and the create_index at s.yaml:3:5 both");
  auto same = parse_spec("name: x\noperations:\n  - rename_table: {table: t, to: t}\n", "s.yaml");
  ASSERT_FALSE(same.spec);
  EXPECT_EQ(same.errors[0].to_string(),
            "s.yaml:3:34: rename_table: \"to\" is the table's current name");
}

TEST(Planner, AddColumnWithOnlyADefaultIsOneMetadataStepAndRefusesAVolatileOne) {
  auto r = parse_spec(
      "name: x\noperations:\n  - add_column: {table: t, column: s, type: text,"
      " default: \"upper('a(b') || lower(x)\", not_null: true}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[1].sql,
            "ALTER TABLE public.t ADD COLUMN s text NOT NULL DEFAULT upper('a(b') || lower(x);\n");
  EXPECT_EQ(plan.steps[1].phase, Phase::kPrepare);
  // The functions it calls, not what a string literal holds, are checked.
  EXPECT_NE(plan.steps[0].sql.find("proname IN ('upper', 'lower')"), std::string::npos)
      << plan.steps[0].sql;
  auto unique = parse_spec(
      "name: x\noperations:\n  - add_column: {table: t, column: s, type: int, default: 0,"
      " unique: true}\n",
      "s.yaml");
  ASSERT_FALSE(unique.spec);
  EXPECT_EQ(unique.errors[0].to_string().substr(0, 68),
            "s.yaml:3:70: add_column: unique with only a default would give every");
  auto neither = parse_spec(
      "name: x\noperations:\n  - add_column: {table: t, column: s, type: int}\n", "s.yaml");
  ASSERT_FALSE(neither.spec);
  EXPECT_NE(neither.errors[0].to_string().find("backfill"), std::string::npos);
}

TEST(Planner, OrphansAreAForeignKeysOptionOnly) {
  auto check = parse_spec(
      "name: x\noperations:\n  - add_constraint: {table: t, name: c, check: x > 0,"
      " orphans: delete}\n",
      "s.yaml");
  ASSERT_FALSE(check.spec);
  EXPECT_EQ(check.errors[0].to_string(), "s.yaml:3:64: orphans: only a foreign_key has orphans");
  auto bogus = parse_spec(
      "name: x\noperations:\n  - add_constraint: {table: t, name: c, foreign_key: [a],"
      " references: p, referenced_columns: [id], orphans: drop}\n",
      "s.yaml");
  ASSERT_FALSE(bogus.spec);
  EXPECT_EQ(bogus.errors[0].to_string(),
            "s.yaml:3:109: orphans: expected fail, set_null or delete, got \"drop\"");
}

TEST(Planner, AReferencesOrphansAreRefusedKeptOrDeleted) {
  const std::string ref =
      "name: x\noperations:\n  - add_reference: {table: o, column: uid, type: uuid,"
      " via: username, references: users, referenced_column: id, lookup: username";
  // Refused at precheck by default, with or without not_null.
  auto fail = parse_spec(ref + "}\n", "s.yaml");
  ASSERT_TRUE(fail.spec);
  Plan plan = make_plan(*fail.spec);
  EXPECT_NE(plan.find("1.precheck")->sql.find("have no parent in %s"), std::string::npos);
  EXPECT_EQ(plan.find("1.delete_orphans"), nullptr);
  auto kept = parse_spec(ref + ", orphans: set_null}\n", "s.yaml");
  ASSERT_TRUE(kept.spec);
  plan = make_plan(*kept.spec);
  EXPECT_EQ(plan.find("1.precheck")->sql.find("have no parent"), std::string::npos);
  EXPECT_EQ(plan.find("1.delete_orphans"), nullptr);
  auto gone = parse_spec(ref + ", orphans: delete}\n", "s.yaml");
  ASSERT_TRUE(gone.spec);
  plan = make_plan(*gone.spec);
  const Step* del = plan.find("1.delete_orphans");
  ASSERT_NE(del, nullptr);
  EXPECT_EQ(del->phase, Phase::kBackfill);
  EXPECT_FALSE(del->reversible);
  EXPECT_NE(del->batch->statement.find("DELETE FROM public.o AS _row"), std::string::npos);
  // NULL is what not_null refuses.
  auto both = parse_spec(ref + ", orphans: set_null, not_null: true}\n", "s.yaml");
  ASSERT_FALSE(both.spec);
  EXPECT_EQ(both.errors[0].to_string().substr(0, 70),
            "s.yaml:3:140: orphans: set_null leaves the new column of those rows NU");
  auto typo = parse_spec(ref + ", orphans: delet}\n", "s.yaml");
  ASSERT_FALSE(typo.spec);
  EXPECT_NE(typo.errors[0].to_string().find("did you mean \"delete\""), std::string::npos)
      << typo.errors[0].to_string();
}

TEST(Planner, ReplicaIdentityAndCommentsKeepWhatTheyReplaceForARollback) {
  auto r = parse_spec(
      "name: x\noperations:\n"
      "  - set_replica_identity: {table: t, identity: index, index: \"t i\"}\n"
      "  - set_comment: {table: t, column: c, comment: \"it's\"}\n"
      "  - set_comment: {table: u, comment: null}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  const Step* identity = plan.find("1.change");
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->phase, Phase::kCutover);
  // The table's identity and each partition's are kept, then each set: the
  // partitions' from their own indexes of the one named.
  EXPECT_EQ(identity->sql.substr(0, identity->sql.find(" (SELECT string_agg")),
            "INSERT INTO tandem.undo VALUES ('public.t'::regclass, 'replica identity',");
  EXPECT_NE(identity->sql.find("tandem.replica_identity_statement(rel)"), std::string::npos);
  EXPECT_NE(identity->sql.find("pg_partition_tree('public.\"t i\"'::regclass)"), std::string::npos);
  EXPECT_NE(identity->sql.find("EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', r.rel, "
                               "r.clause)"),
            std::string::npos);
  EXPECT_EQ(*identity->rollback_sql,
            "SELECT tandem.undo_change('public.t'::regclass, 'replica identity');\n");
  EXPECT_NE(plan.find("1.precheck")->sql.find("cannot identify rows for logical replication"),
            std::string::npos);
  EXPECT_EQ(plan.find("2.change")->sql.substr(plan.find("2.change")->sql.find("COMMENT")),
            "COMMENT ON COLUMN public.t.c IS 'it''s';\n");
  EXPECT_EQ(plan.find("3.change")->sql.substr(plan.find("3.change")->sql.find("COMMENT")),
            "COMMENT ON TABLE public.u IS NULL;\n");
  EXPECT_FALSE(plan.find("3.forget")->reversible);
  auto bad = parse_spec(
      "name: x\noperations:\n  - set_replica_identity: {table: t, identity: fulll}\n", "s.yaml");
  ASSERT_FALSE(bad.spec);
  EXPECT_EQ(bad.errors[0].to_string(),
            "s.yaml:3:48: identity: expected default, full, nothing or index, got \"fulll\"");
  EXPECT_EQ(plan_outcome("  - set_comment: {table: t, comment: a}\n"
                         "  - set_comment: {table: t, comment: b}\n")
                .substr(0, 61),
            "s.yaml:4:5: set_comment and the set_comment at s.yaml:3:5 bot");
}

TEST(Planner, CreateIndexTakesIncludeColumnsAndStorageParameters) {
  auto r = parse_spec(
      "name: x\noperations:\n  - create_index: {table: t, name: i, columns: [a], include: [\"B "
      "c\"],"
      " with: {fillfactor: 70}}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  const std::string sql = make_plan(*r.spec).find("1.create_index")->sql;
  EXPECT_NE(sql.find("'USING btree (a) INCLUDE (\"B c\") WITH (fillfactor = ''70'')');"),
            std::string::npos)
      << sql;
  auto bad = parse_spec(
      "name: x\noperations:\n  - create_index: {table: t, name: i, columns: [a],"
      " with: fillfactor}\n",
      "s.yaml");
  ASSERT_FALSE(bad.spec);
  EXPECT_EQ(bad.errors[0].to_string(),
            "s.yaml:3:59: with: expected a mapping of storage parameters, such as {fillfactor: "
            "70}");
}

TEST(Planner, SetDefaultKeepsTheDefaultBeforeForARollback) {
  auto r = parse_spec(
      "name: x\noperations:\n  - set_default: {table: t, column: \"C x\", default: \"'n/a'\"}\n"
      "  - set_default: {table: t, column: d, default: null}\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  const std::string set = plan.find("1.change")->sql;
  EXPECT_EQ(set.substr(set.find("ALTER TABLE public.t ALTER")),
            "ALTER TABLE public.t ALTER COLUMN \"C x\" SET DEFAULT 'n/a';\n");
  EXPECT_NE(set.find("coalesce('SET DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), 'DROP DEFAULT')"),
            std::string::npos);
  EXPECT_EQ(*plan.find("1.change")->rollback_sql,
            "SELECT tandem.undo_change('public.t'::regclass, 'default of C x');\n");
  const std::string drop = plan.find("2.change")->sql;
  EXPECT_EQ(drop.substr(drop.find("ALTER TABLE public.t ALTER")),
            "ALTER TABLE public.t ALTER COLUMN d DROP DEFAULT;\n");
}

// alter_column with only a type is alter_column_type: the same steps and
// statements, but for the name the precheck gives its operation.
TEST(Planner, AlterColumnWithOnlyATypePlansWhatAlterColumnTypePlans) {
  Plan simple = plan_of(
      "  - alter_column_type: {table: t, column: n, type: bigint, up: n * 2, down: n / 2}\n");
  Plan composed =
      plan_of("  - alter_column: {table: t, column: n, type: bigint, up: n * 2, down: n / 2}\n");
  ASSERT_EQ(ids_and_phases(simple), ids_and_phases(composed));
  for (size_t i = 1; i < simple.steps.size(); ++i) {
    EXPECT_EQ(simple.steps[i].sql, composed.steps[i].sql) << simple.steps[i].id;
    EXPECT_EQ(simple.steps[i].rollback_sql, composed.steps[i].rollback_sql) << simple.steps[i].id;
  }
}

TEST(Planner, AlterColumnBuildsEveryNewConstraintOnTheShadowColumn) {
  Plan plan = plan_of(
      "  - alter_column:\n"
      "      table: products\n      column: price\n      not_null: true\n"
      "      check: price >= 0\n      unique: true\n      references: prices\n"
      "      referenced_column: amount\n      default: \"0\"\n      comment: in euros\n"
      "      rename: unit_price\n      compat_view: products_v1\n"
      "      up: CASE WHEN price < 0 THEN 0 ELSE coalesce(price, 0) END\n");
  EXPECT_EQ(ids_and_phases(plan), (std::vector<std::string>{"1.precheck@prepare",
                                                            "1.add_shadow_column@prepare",
                                                            "1.create_functions@prepare",
                                                            "1.create_forward_trigger@dual_write",
                                                            "1.backfill@backfill",
                                                            "1.add_not_null_check@backfill",
                                                            "1.validate_not_null_check@backfill",
                                                            "1.check_add_not_valid@backfill",
                                                            "1.check_validate@backfill",
                                                            "1.fk_add_not_valid@backfill",
                                                            "1.fk_validate@backfill",
                                                            "1.build_unique_index@backfill",
                                                            "1.attach_unique_index@backfill",
                                                            "1.build_indexes@backfill",
                                                            "1.verify@shadow_read",
                                                            "1.cutover@cutover",
                                                            "1.move_sequence_owner@cutover",
                                                            "1.validate_constraints@cutover",
                                                            "1.comment_change@cutover",
                                                            "1.drop_compat_view@cleanup",
                                                            "1.default_forget@cleanup",
                                                            "1.comment_forget@cleanup",
                                                            "1.drop_old_column@cleanup",
                                                            "1.fit_sequence@cleanup",
                                                            "1.drop_functions@cleanup"}));
  // No type given: the shadow column takes the column's own, from the catalog.
  EXPECT_NE(plan.find("1.add_shadow_column")->sql.find("format_type(atttypid, atttypmod)"),
            std::string::npos);
  // NOT NULL asked for: the check is added whether or not the column has it.
  EXPECT_EQ(plan.find("1.add_not_null_check")->sql,
            "ALTER TABLE public.products ADD CONSTRAINT _tandem_nn_price_" +
                HelperNames(plan_spec_, "public", "products", "price").tag() +
                " CHECK (_tandem_new_price IS NOT NULL) NOT VALID;\n");
  // The CHECK is written on the column's name, bound to the shadow column
  // while that one carries it.
  EXPECT_EQ(plan.find("1.check_add_not_valid")->sql,
            "ALTER TABLE public.products RENAME COLUMN price TO _tandem_old_price;\n"
            "ALTER TABLE public.products RENAME COLUMN _tandem_new_price TO price;\n"
            "ALTER TABLE public.products ADD CONSTRAINT products_unit_price_check CHECK "
            "(price >= 0) NOT VALID;\n"
            "ALTER TABLE public.products RENAME COLUMN price TO _tandem_new_price;\n"
            "ALTER TABLE public.products RENAME COLUMN _tandem_old_price TO price;\n");
  EXPECT_EQ(plan.find("1.check_add_not_valid")->locks.size(), 1u);
  EXPECT_EQ(plan.find("1.fk_add_not_valid")->sql,
            "ALTER TABLE public.products ADD CONSTRAINT products_unit_price_fkey FOREIGN KEY "
            "(_tandem_new_price) REFERENCES public.prices (amount) NOT VALID;\n");
  EXPECT_NE(plan.find("1.build_unique_index")
                ->sql.find("CREATE UNIQUE INDEX CONCURRENTLY products_unit_price_key ON "
                           "public.products (_tandem_new_price)"),
            std::string::npos);
  // The swap sets NOT NULL, publishes the view, renames and flips the sync
  // onto the new name, in one transaction; back, each column keeps its own.
  const Step* cutover = plan.find("1.cutover");
  const std::string& sql = cutover->sql;
  const size_t swap = sql.find("'_tandem_new_price', '_tandem_old_price', '_tandem_nn_price_");
  const size_t view = sql.find("CREATE VIEW ");
  const size_t rename = sql.find("RENAME COLUMN price TO unit_price");
  const size_t trigger = sql.find("UPDATE OF unit_price");
  ASSERT_NE(swap, std::string::npos);
  EXPECT_NE(sql.find("', true);", swap), std::string::npos);
  EXPECT_LT(swap, view);
  EXPECT_LT(view, rename);
  EXPECT_LT(rename, trigger);
  EXPECT_NE(trigger, std::string::npos);
  const std::string& back = *cutover->rollback_sql;
  EXPECT_EQ(*cutover->locks_query,
            swap_locks_query("'public.products'::regclass", {"price", "unit_price"}));
  EXPECT_LT(back.find("DROP VIEW IF EXISTS public.products_v1"),
            back.find("RENAME COLUMN unit_price TO price"));
  EXPECT_LT(back.find("RENAME COLUMN unit_price TO price"), back.find("', false);"));
  EXPECT_NE(plan.find("1.create_functions")->sql.find("_down(NEW.unit_price)"), std::string::npos);
  // The new default goes in with the swap (a NOT NULL column's inserts may
  // need it at once) and the one before comes back before the swap back.
  EXPECT_LT(rename, sql.find("ALTER TABLE public.products ALTER COLUMN unit_price SET DEFAULT 0;"));
  EXPECT_LT(sql.find("SET DEFAULT 0;"), trigger);
  EXPECT_LT(back.find("SELECT tandem.undo_change('public.products'::regclass, 'default of "
                      "unit_price');"),
            back.find("RENAME COLUMN unit_price TO price"));
  EXPECT_NE(plan.find("1.fit_sequence")->sql.find("'unit_price'"), std::string::npos);

  // NOT NULL dropped: no check, and the swap leaves the new column nullable.
  Plan nullable = plan_of(
      "  - alter_column: {table: t, column: c, not_null: false, down: \"coalesce(c, '')\"}\n");
  EXPECT_EQ(nullable.find("1.add_not_null_check"), nullptr);
  EXPECT_NE(nullable.find("1.cutover")->sql.find("', false);"), std::string::npos);
}

TEST(Planner, AlterColumnRefusesWhatItCannotDo) {
  auto error_of = [](const std::string& op) {
    auto r = parse_spec("name: x\noperations:\n  - alter_column: " + op + "\n", "s.yaml");
    EXPECT_FALSE(r.spec) << op;
    return r.errors.empty() ? std::string() : r.errors[0].to_string();
  };
  EXPECT_EQ(error_of("{table: t, column: c}"),
            "s.yaml:3:19: alter_column: nothing to change: give at least one of type, not_null, "
            "check, unique, references, default, comment or rename");
  EXPECT_EQ(error_of("{table: t, column: c, not_null: false}"),
            "s.yaml:3:51: not_null: false needs \"down\": the old column keeps its NOT NULL "
            "until cleanup, so down must give it a value for rows new writers leave NULL (e.g. "
            "down: COALESCE(c, ''))");
  EXPECT_EQ(error_of("{table: t, column: c, type: text, check_name: k}"),
            "s.yaml:3:65: check_name: only with check");
  EXPECT_EQ(error_of("{table: t, column: c, type: text, compat_view: v}"),
            "s.yaml:3:66: compat_view: only with rename");
  EXPECT_EQ(error_of("{table: t, column: c, rename: c}"),
            "s.yaml:3:49: alter_column: \"rename\" is the column's current name");
  // Two operations on one column: the refusal says how to write them as one.
  for (const char* other : {"  - set_not_null: {table: t, column: price}\n",
                            "  - set_default: {table: t, column: price, default: \"0\"}\n",
                            "  - set_comment: {table: t, column: price, comment: c}\n"}) {
    EXPECT_NE(plan_outcome(std::string("  - alter_column: {table: t, column: price, type: "
                                       "numeric}\n") +
                           other)
                  .find("write them as one alter_column"),
              std::string::npos)
        << other;
  }
  // A default for a column that another renames would not find it.
  EXPECT_NE(plan_outcome("  - rename_column: {table: t, column: a, to: b}\n"
                         "  - set_default: {table: t, column: a, default: \"0\"}\n")
                .find("which rename_column replaces"),
            std::string::npos);
}

TEST(Planner, AddPrimaryKeyBuildsItsIndexConcurrentlyAndAttachesItAtCutover) {
  Plan plan = plan_of("  - add_primary_key: {table: events, columns: [tenant, seq]}\n");
  EXPECT_EQ(
      ids_and_phases(plan),
      (std::vector<std::string>{"1.precheck@prepare", "1.add_not_null_checks@backfill",
                                "1.validate_not_null_checks@backfill", "1.build_index@backfill",
                                "1.attach@cutover", "1.forget@cleanup"}));
  const std::string tag = HelperNames(plan_spec_, "public", "events", "tenant").tag();
  EXPECT_FALSE(plan.find("1.build_index")->transactional);
  EXPECT_EQ(plan.find("1.build_index")->sql, "CREATE UNIQUE INDEX CONCURRENTLY _tandem_pk_tenant_" +
                                                 tag + " ON public.events (tenant, seq);\n");
  const Step* attach = plan.find("1.attach");
  EXPECT_NE(attach->sql.find("ALTER TABLE public.events ALTER COLUMN tenant SET NOT NULL, ALTER "
                             "COLUMN seq SET NOT NULL, DROP CONSTRAINT _tandem_nn_tenant_"),
            std::string::npos);
  EXPECT_NE(attach->sql.find("ALTER TABLE public.events ADD CONSTRAINT events_pkey PRIMARY KEY "
                             "USING INDEX _tandem_pk_tenant_" +
                             tag + ";\n"),
            std::string::npos);
  // Back: the key first, then NOT NULL off the columns that did not have it.
  EXPECT_EQ(*attach->rollback_sql,
            "ALTER TABLE public.events DROP CONSTRAINT IF EXISTS events_pkey;\n"
            "SELECT tandem.undo_change('public.events'::regclass, 'nullability of the key of "
            "events_pkey');\n");
  EXPECT_EQ(attach->locks.size(), 1u);
  EXPECT_EQ(attach->rollback_locks.size(), 1u);
}

// Every precheck runs before anything starts: one that asked for a column an
// earlier operation adds would refuse the spec (users_uuid_rekey did).
TEST(Planner, PrechecksDoNotAskForColumnsThatAnEarlierOperationAdds) {
  Plan plan = plan_of(
      "  - add_column: {table: users, column: user_id, type: uuid, backfill: gen_random_uuid()}\n"
      "  - add_primary_key: {table: users, columns: [user_id, tenant]}\n"
      "  - set_comment: {table: users, column: user_id, comment: the key}\n");
  const auto asks_for = [&](const char* step, const char* column) {
    return plan.find(step)->sql.find("format('column %I does not exist in table %s', '" +
                                     std::string(column) + "'") != std::string::npos;
  };
  EXPECT_FALSE(asks_for("2.precheck", "user_id"));
  EXPECT_TRUE(asks_for("2.precheck", "tenant"));
  EXPECT_FALSE(asks_for("3.precheck", "user_id"));
  EXPECT_TRUE(plan_of("  - set_comment: {table: users, column: user_id, comment: the key}\n")
                  .find("1.precheck")
                  ->sql.find("does not exist in table") != std::string::npos);
}

TEST(Planner, AddPrimaryKeyWithReplaceSwapsTheKeyAndKeepsTheOldColumnsUnique) {
  Plan plan = plan_of("  - add_primary_key: {table: users, columns: [user_id], replace: true}\n");
  EXPECT_EQ(ids_and_phases(plan),
            (std::vector<std::string>{"1.precheck@prepare", "1.add_not_null_checks@backfill",
                                      "1.validate_not_null_checks@backfill",
                                      "1.build_index@backfill", "1.build_old_key_index@backfill",
                                      "1.validate_after_rollback@cutover", "1.set_not_null@cutover",
                                      "1.replace_key@cutover", "1.validate_constraints@cutover",
                                      "1.keep_new_key_index@cutover", "1.forget@cleanup",
                                      "1.forget_key@cleanup", "1.keep_old_key@cleanup"}));
  const std::string tag = HelperNames(plan_spec_, "public", "users", "user_id").tag();
  const std::string twin = "_tandem_oldpk_user_id_" + tag;
  const std::string index = "_tandem_pk_user_id_" + tag;
  // The old key's twin is built from the catalog, as the key is when it runs.
  const Step* twin_build = plan.find("1.build_old_key_index");
  EXPECT_TRUE(twin_build->generates);
  EXPECT_EQ(
      twin_build->sql,
      "SELECT * FROM tandem.primary_key_index_builds('public.users'::regclass, '" + twin + "');\n");
  // The swap locks the table, then (from the catalog) the tables whose
  // foreign keys reference its key, both ways.
  const Step* swap = plan.find("1.replace_key");
  EXPECT_TRUE(swap->transactional);
  EXPECT_EQ(swap->sql, "SELECT tandem.replace_primary_key('public.users'::regclass, '" + index +
                           "', 'users_pkey', '" + twin + "');\n");
  EXPECT_EQ(*swap->rollback_sql,
            "SELECT tandem.undo_change('public.users'::regclass, 'primary key');\n");
  ASSERT_EQ(swap->locks.size(), 1u);
  EXPECT_EQ(swap->locks[0].table, "public.users");
  ASSERT_EQ(swap->rollback_locks.size(), 1u);
  ASSERT_TRUE(swap->locks_query);
  EXPECT_NE(swap->locks_query->find("c.contype = 'f'"), std::string::npos);
  // The NOT NULL is set without the key, and the key's own name is allowed
  // to exist (it is the old key's).
  EXPECT_EQ(plan.find("1.set_not_null")->sql.find("PRIMARY KEY"), std::string::npos);
  EXPECT_EQ(plan.find("1.precheck")->sql.find("already has a primary key"), std::string::npos);
  EXPECT_NE(plan.find("1.precheck")->sql.find("has no primary key to replace"), std::string::npos);
  // plan shows the locks the catalog will name, with the query that finds them.
  EXPECT_NE(plan_to_text(plan).find("-- then LOCK TABLE each (table, mode) this query returns, "
                                    "in its order:\n      --   SELECT format('%I.%I', n.nspname"),
            std::string::npos)
      << plan_to_text(plan);
  EXPECT_EQ(plan_to_json(plan)["phases"][4]["steps"][2]["locks_query"], *swap->locks_query)
      << plan_to_json(plan).dump();
  // Rollback builds the new key's index again first when foreign keys use it.
  EXPECT_EQ(*plan.find("1.keep_new_key_index")->rollback_sql,
            "SELECT * FROM tandem.primary_key_restorations('public.users'::regclass, '" + index +
                "');\n");
  EXPECT_FALSE(plan.find("1.keep_old_key")->reversible);
  EXPECT_EQ(plan.find("1.keep_old_key")->sql,
            "SELECT tandem.keep_old_key('public.users'::regclass, '" + twin + "', NULL);\n");
  Plan named = plan_of(
      "  - add_primary_key: {table: users, columns: [user_id], replace: true, old_key_name: "
      "users_username_key}\n");
  EXPECT_EQ(named.find("1.keep_old_key")->sql,
            "SELECT tandem.keep_old_key('public.users'::regclass, '" + twin +
                "', 'users_username_key');\n");
  // Without replace, the precheck says how to swap a key.
  EXPECT_NE(plan_of("  - add_primary_key: {table: users, columns: [user_id]}\n")
                .find("1.precheck")
                ->sql.find("give replace: true"),
            std::string::npos);
  auto refused = parse_spec(
      "name: x\noperations:\n  - add_primary_key: {table: u, columns: [a], old_key_name: k}\n",
      "s.yaml");
  ASSERT_FALSE(refused.spec);
  EXPECT_EQ(refused.errors.at(0).to_string(), "s.yaml:3:61: old_key_name: only with replace: true");
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// A shadow-read pair's queries appear in its step's SQL as comments only:
// a carriage return (which ends an SQL comment too) cannot put text of the
// query outside one.
TEST(Planner, AShadowReadsQueriesStayInsideComments) {
  auto r = parse_spec(
      "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n"
      "  - name: p\n    params: {table: t, columns: [a]}\n"
      "    old: \"SELECT 1 WHERE $1 = 'a'\\rINSERT INTO t VALUES (1)\"\n"
      "    new: \"SELECT 1\\n WHERE $1 = 'a'\"\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  const Step* s = plan.find("reads.p");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->kind, StepKind::kShadowRead);
  EXPECT_EQ(s->phase, Phase::kShadowRead);
  const std::string comments = s->sql.substr(s->sql.find("-- old:"));
  EXPECT_EQ(comments,
            "-- old:\n--   SELECT 1 WHERE $1 = 'a'\n--   INSERT INTO t VALUES (1)\n"
            "-- new:\n--   SELECT 1\n--    WHERE $1 = 'a'\n");
  EXPECT_EQ(*s->rollback_sql,
            "DELETE FROM tandem.shadow_samples WHERE migration = 'x' AND step_id = 'reads.p';\n"
            "DELETE FROM tandem.shadow_rounds WHERE migration = 'x';\n");
}

// A write probe through the new path is a second comparison at the end of
// cutover, after the steps that send the new side's writes back.
TEST(Planner, AProbeAfterCutoverComparesThePairAgainAtTheEndOfCutover) {
  auto r = parse_spec(
      "name: x\noperations:\n  - copy_table: {table: v1, to: v2, key: [id], up: {a: c},"
      " down: {c: a}}\nshadow_reads:\n"
      "  - name: p\n    params: {table: v1, columns: [id]}\n"
      "    old: SELECT c FROM v1 WHERE id = $1::int\n"
      "    new: SELECT a FROM v2 WHERE id = $1::int\n"
      "    write_after_cutover: UPDATE v2 SET a = a + 1 WHERE id = $1::int\n",
      "s.yaml");
  ASSERT_TRUE(r.spec) << r.errors[0].to_string();
  Plan plan = make_plan(*r.spec);
  std::vector<std::string> cutover;
  for (const Step* s : plan.steps_in(Phase::kCutover)) cutover.push_back(s->id);
  EXPECT_EQ(cutover, (std::vector<std::string>{"1.create_back_trigger", "reads.p.after_cutover"}));
  const Step* before = plan.find("reads.p");
  const Step* after = plan.find("reads.p.after_cutover");
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(before->reads->write.empty());
  EXPECT_EQ(after->reads->write, "UPDATE v2 SET a = a + 1 WHERE id = $1::int");
  EXPECT_EQ(after->kind, StepKind::kShadowRead);
  EXPECT_EQ(*after->rollback_sql,
            "DELETE FROM tandem.shadow_samples WHERE migration = 'x' AND step_id = "
            "'reads.p.after_cutover';\n");
  // A probe that uses more parameters than each set has is refused.
  auto bad = parse_spec(
      "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n"
      "  - name: p\n    params: {table: t, columns: [a]}\n    old: SELECT 1\n    new: SELECT 1\n"
      "    write_after_cutover: UPDATE t SET b = $2\n",
      "s.yaml");
  ASSERT_FALSE(bad.errors.empty());
  EXPECT_EQ(bad.errors[0].to_string(),
            "s.yaml:8:26: write_after_cutover: uses $2 but params gives 1 value per sample "
            "(columns)");
}

TEST(PlanOutput, MarkdownNamesTheIrreversibleStepsAndKeepsEachRowOnOneLine) {
  Plan plan = plan_of(
      "  - sql: {phase: prepare, up: \"SELECT 'a|b'\", down: 'SELECT 1'}\n"
      "  - sql: {phase: cleanup, up: \"SELECT '```'\"}\n");
  const std::string md = plan_to_markdown(plan);
  EXPECT_NE(md.find("**Irreversible** (after them the migration can only go forward): `2.sql` "
                    "(cleanup)."),
            std::string::npos)
      << md;
  // The pipe in a cell is escaped: the row keeps its columns.
  EXPECT_NE(md.find("| prepare | `1.sql` | hand-written: SELECT 'a\\|b' |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| cleanup | `2.sql` \u26a0\ufe0f |"), std::string::npos) << md;
  EXPECT_NE(md.find("| **irreversible** |"), std::string::npos) << md;
  // SQL holding ``` gets a longer fence.
  EXPECT_NE(md.find("````sql\nSELECT '```'\n````"), std::string::npos) << md;
  EXPECT_EQ(markdown_cell("a|b\nc \n"), "a\\|b c");
}

}  // namespace
}  // namespace tandem
