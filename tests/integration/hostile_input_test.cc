// Names and expressions nobody here would write: keywords as column names,
// quotes and dollar quotes inside names, a database whose owner turned off
// function body checks. Each is carried through every phase; none may end a
// quote that tandem opened or change anything tandem did not plan.
#include <gtest/gtest.h>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override { db_ = pg_.create_database("hostile"); }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// Issue 16, item 8: these became unquoted function parameter names, and the
// migration failed at create_functions after validate and plan had passed.
TEST_F(HostileInput, KeywordColumnNamesGoThroughEveryPhase) {
  pg_.psql(
      db_,
      "CREATE TABLE \"Ledger Ü\" (id bigserial PRIMARY KEY, \"time\" int NOT NULL,"
      " \"values\" int, \"where\" int, \"using\" int, \"with\" int, \"unique\" int);"
      "INSERT INTO \"Ledger Ü\" (\"time\", \"values\", \"where\", \"using\", \"with\", \"unique\")"
      " SELECT g, g, g, g, g, g FROM generate_series(1, 1000) g;");
  std::string ops;
  for (const char* c : {"time", "values", "where", "using", "with", "unique"}) {
    ops += std::string("  - alter_column_type: {table: \"Ledger Ü\", column: \"") + c +
           "\", type: bigint}\n";
  }
  ops +=
      "  - add_column: {table: \"Ledger Ü\", column: select, type: int, backfill: \"\\\"time\\\" + "
      "1\"}\n";
  Spec spec = spec_from("name: keywords\nsettings: {batch_size: 300}\noperations:\n" + ops);
  ASSERT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(
      pg_.psql(db_,
               "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', '"
               " ORDER BY attname) FROM pg_attribute WHERE attrelid = '\"Ledger Ü\"'::regclass"
               " AND attnum > 1 AND NOT attisdropped"),
      "select integer, time bigint, unique bigint, using bigint, values bigint, where bigint, "
      "with bigint");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM \"Ledger Ü\" WHERE \"time\" + \"values\" + \"where\" +"
                     " \"using\" + \"with\" + \"unique\" = 6 * id AND \"select\" = id + 1"),
            "1000");
}

// Issue 16, item 10: a column name holding $tandem$ ended the dollar quote
// of a function body; with check_function_bodies off the rest ran as SQL in
// tandem's session and dropped a table, and the step reported done.
TEST_F(HostileInput, ADollarQuoteInANameCannotEndTandemsQuote) {
  const std::string column = "a$tandem$;drop table if exists cn;select $tandem$";
  pg_.psql(db_, "ALTER DATABASE " + db_ + " SET check_function_bodies = off");
  pg_.psql(db_, "CREATE TABLE cn (x int); CREATE TABLE victim (id bigserial PRIMARY KEY, \"" +
                    column +
                    "\" int NOT NULL);"
                    "INSERT INTO victim (\"" +
                    column + "\") SELECT g FROM generate_series(1, 500) g;");
  // The expression holds the tag as well ($1: the conversion's parameter,
  // the old value).
  Spec spec =
      spec_from("name: dollar\noperations:\n  - alter_column_type: {table: victim, column: '" +
                column + "', type: bigint, up: \"$1 + length('$tandem$') - 8\"}\n");
  ASSERT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_, "SELECT to_regclass('cn') IS NOT NULL"), "t");
  EXPECT_EQ(column_type(pg_, db_, "victim", column), "bigint");
  EXPECT_EQ(pg_.psql(db_, "SELECT sum(\"" + column + "\") FROM victim"), "125250");
  EXPECT_EQ(leftovers(pg_, db_, "victim"), "");
}

}  // namespace
}  // namespace tandem::testing
