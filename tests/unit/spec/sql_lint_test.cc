// The lint of hand-written SQL: each statement that holds applications back
// is named, with the online way; what is online already is not.
#include "spec/sql_lint.h"

#include <gtest/gtest.h>

#include "tandem/spec.h"

namespace tandem {
namespace {

// What the lint says of `sql`, one finding's `what` per entry.
std::vector<std::string> whats(const std::string& sql, bool in_transaction = true) {
  SqlLintContext context;
  std::vector<std::string> out;
  for (const auto& f : lint_sql(sql, in_transaction, context)) out.push_back(f.what);
  return out;
}

using V = std::vector<std::string>;

TEST(SqlLint, NamesEachStatementThatHoldsTheApplicationBack) {
  EXPECT_EQ(whats("CREATE INDEX orders_customer ON orders (customer_id)"),
            V{"CREATE INDEX without CONCURRENTLY on orders"});
  EXPECT_EQ(whats("create unique index if not exists u on public.users (lower(email))"),
            V{"CREATE INDEX without CONCURRENTLY on public.users"});
  EXPECT_EQ(whats("DROP INDEX orders_customer"), V{"DROP INDEX without CONCURRENTLY"});
  EXPECT_EQ(whats("ALTER TABLE orders ALTER COLUMN id TYPE bigint"),
            V{"ALTER COLUMN id TYPE on orders"});
  EXPECT_EQ(whats("alter table orders alter total set data type numeric(12,2)"),
            V{"ALTER COLUMN total TYPE on orders"});
  EXPECT_EQ(whats("ALTER TABLE users ALTER COLUMN email SET NOT NULL"),
            V{"SET NOT NULL on users.email"});
  EXPECT_EQ(whats("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()"),
            V{"ADD COLUMN with a volatile default on users"});
  EXPECT_EQ(whats("ALTER TABLE users ADD COLUMN seq bigserial"),
            V{"ADD COLUMN with a volatile default on users"});
  EXPECT_EQ(whats("ALTER TABLE users ADD CONSTRAINT email_ok CHECK (email <> '')"),
            V{"ADD CONSTRAINT ... CHECK without NOT VALID on users"});
  EXPECT_EQ(whats("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users"),
            (V{"ADD CONSTRAINT ... FOREIGN KEY without NOT VALID on orders",
               "one step locks orders, users"}));
  EXPECT_EQ(whats("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)"),
            V{"ADD CONSTRAINT ... UNIQUE/PRIMARY KEY on users"});
  EXPECT_EQ(whats("ALTER TABLE orders ADD COLUMN user_id int REFERENCES users (id)"),
            (V{"ADD COLUMN ... REFERENCES on orders", "one step locks orders, users"}));
  EXPECT_EQ(whats("VACUUM FULL orders"), V{"VACUUM FULL"});
  EXPECT_EQ(whats("CLUSTER orders USING orders_pkey"), V{"CLUSTER"});
  EXPECT_EQ(whats("REINDEX TABLE orders"), V{"REINDEX without CONCURRENTLY"});
  EXPECT_EQ(whats("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"), V{"LOCK TABLE"});
  EXPECT_EQ(whats("ALTER TABLE orders SET TABLESPACE fast"),
            V{"ALTER TABLE orders SET TABLESPACE"});
  // Two tables altered in one transaction.
  EXPECT_EQ(whats("ALTER TABLE a ADD COLUMN x int; ALTER TABLE b ADD COLUMN y int"),
            V{"one step locks a, b"});
  EXPECT_EQ(whats("ALTER TABLE a ADD COLUMN x int; ALTER TABLE b ADD COLUMN y int", false), V{});
}

TEST(SqlLint, LeavesTheOnlineWaysAlone) {
  for (const std::string sql : {
           "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON orders (a)",
           "DROP INDEX CONCURRENTLY IF EXISTS i",
           "REINDEX INDEX CONCURRENTLY i",
           "ALTER TABLE users ADD COLUMN note text",
           "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()",
           "ALTER TABLE users ADD COLUMN flag boolean NOT NULL DEFAULT false",
           "ALTER TABLE users ADD CONSTRAINT c CHECK (email <> '') NOT VALID",
           "ALTER TABLE users VALIDATE CONSTRAINT c",
           "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES orders NOT VALID",
           "ALTER TABLE users ADD CONSTRAINT pk PRIMARY KEY USING INDEX users_id_idx",
           "ALTER TABLE users RENAME COLUMN a TO b",
           "ALTER TABLE users SET (fillfactor = 80)",
           "UPDATE users SET flag = true WHERE id < 1000",
           "SELECT 1",
           // Words inside strings, comments, quoted names and function bodies
           // are not statements.
           "INSERT INTO audit (what) VALUES ('CREATE INDEX i ON orders (a)')",
           "-- CREATE INDEX i ON orders (a)\nSELECT 1",
           "/* DROP INDEX i; /* nested */ VACUUM FULL t */ SELECT 1",
           "SELECT \"CREATE INDEX\" FROM t",
           "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $body$ DROP INDEX i $body$",
           "SELECT E'it\\'s; DROP INDEX i'",
       }) {
    EXPECT_EQ(whats(sql), V{}) << sql;
  }
}

TEST(SqlLint, RemembersTablesTheSpecCreatedAndChecksItValidated) {
  SqlLintContext context;
  // A new table is empty: an index on it or a type change holds no one back.
  EXPECT_TRUE(lint_sql("CREATE TABLE IF NOT EXISTS audit (id bigint, at timestamptz)", true, context)
                  .empty());
  EXPECT_TRUE(lint_sql("CREATE INDEX audit_at ON audit (at)", true, context).empty());
  EXPECT_TRUE(lint_sql("ALTER TABLE audit ALTER COLUMN id TYPE numeric", true, context).empty());
  // SET NOT NULL after a validated CHECK needs no scan.
  EXPECT_EQ(lint_sql("ALTER TABLE users ALTER COLUMN email SET NOT NULL", true, context).size(), 1u);
  EXPECT_TRUE(lint_sql("ALTER TABLE users VALIDATE CONSTRAINT email_nn", true, context).empty());
  EXPECT_TRUE(lint_sql("ALTER TABLE users ALTER COLUMN email SET NOT NULL", true, context).empty());
}

TEST(SqlLint, EachFindingSaysWhyAndTheOnlineWay) {
  SqlLintContext context;
  const auto f = lint_sql("CREATE INDEX i ON orders (a)", true, context);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].to_string(),
            "CREATE INDEX without CONCURRENTLY on orders: it blocks every write to orders for the "
            "whole build; instead: the create_index operation (CONCURRENTLY, an invalid leftover "
            "repaired), or CREATE INDEX CONCURRENTLY in a step with transaction: false");
}

TEST(SqlLint, TheSpecWarnsOrRefusesAsItsSettingSays) {
  const std::string ops =
      "operations:\n"
      "  - sql:\n"
      "      phase: prepare\n"
      "      up: CREATE INDEX i ON orders (a)\n"
      "      down: DROP INDEX i\n";
  auto r = parse_spec("name: x\n" + ops, "m.yaml");
  ASSERT_TRUE(r.spec.has_value());
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0].to_string(),
            "m.yaml:3:5: sql step 1.sql (up): CREATE INDEX without CONCURRENTLY on orders: it "
            "blocks every write to orders for the whole build; instead: the create_index "
            "operation (CONCURRENTLY, an invalid leftover repaired), or CREATE INDEX "
            "CONCURRENTLY in a step with transaction: false");
  EXPECT_EQ(r.warnings[1].message.rfind("sql step 1.sql (down): DROP INDEX without CONCURRENTLY", 0),
            0u);
  r = parse_spec("name: x\nsettings:\n  sql_lint: error\n" + ops, "m.yaml");
  EXPECT_FALSE(r.spec.has_value());
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].message.find("(settings: sql_lint: error; warn lets it run)"),
            std::string::npos);
  r = parse_spec("name: x\nsettings:\n  sql_lint: off\n" + ops, "m.yaml");
  ASSERT_TRUE(r.spec.has_value());
  EXPECT_TRUE(r.warnings.empty());
  r = parse_spec("name: x\nsettings:\n  sql_lint: loud\n" + ops, "m.yaml");
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].to_string(),
            "m.yaml:3:13: sql_lint: expected warn, error or off, got \"loud\"");
}

}  // namespace
}  // namespace tandem
