// The pgroll-style lifecycle for each operation, under a concurrent writer:
// start (through cutover) → check → rollback → check → start → complete →
// check. The writer counts every insert and update it commits; afterwards the
// table must hold exactly those, and no write may have failed.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/scenario.h"
#include "support/writers.h"
#include "util/text.h"

namespace tandem::testing {
namespace {

struct OperationCase {
  const char* title;
  const char* operation;  // YAML of one list item under operations:
  const char* probe;      // a query describing the state the operation changes
  const char* before;     // the probe before the migration (and after rollback)
  const char* started;    // after start (through cutover)
  const char* completed;  // after cleanup
  // Where the writer writes before cleanup, when the operation moves the table.
  const char* moved_to = nullptr;
  const char* setup = nullptr;  // SQL run before anything else
};

void PrintTo(const OperationCase& c, std::ostream* os) { *os << c.title; }

const OperationCase kCases[] = {
    {"create_index",
     "  - create_index: {table: accounts, name: accounts_email_idx, columns: [email]}\n",
     "SELECT coalesce((SELECT indisvalid::text FROM pg_index"
     " WHERE indexrelid = to_regclass('accounts_email_idx')), 'absent')",
     "absent", "true", "true"},
    {"create_unique_partial_index",
     "  - create_index:\n      table: accounts\n      name: accounts_email_live\n"
     "      columns: [lower(email)]\n      unique: true\n      where: balance >= 0\n",
     "SELECT coalesce((SELECT indisunique::text || '/' || (indpred IS NOT NULL)::text"
     " FROM pg_index WHERE indexrelid = to_regclass('accounts_email_live')), 'absent')",
     "absent", "true/true", "true/true"},
    {"create_index_with_opclass_include_and_storage",
     "  - create_index: {table: accounts, name: accounts_email_prefix,"
     " columns: [email text_pattern_ops, balance DESC NULLS LAST], include: [note],"
     " with: {fillfactor: 70, deduplicate_items: \"off\"}}\n",
     "SELECT coalesce((SELECT pg_get_indexdef(i) FROM to_regclass('accounts_email_prefix') i"
     " WHERE i IS NOT NULL), 'absent')",
     "absent",
     "CREATE INDEX accounts_email_prefix ON public.accounts USING btree (email text_pattern_ops,"
     " balance DESC NULLS LAST) INCLUDE (note) WITH (fillfactor='70', deduplicate_items=off)",
     "CREATE INDEX accounts_email_prefix ON public.accounts USING btree (email text_pattern_ops,"
     " balance DESC NULLS LAST) INCLUDE (note) WITH (fillfactor='70', deduplicate_items=off)"},
    {"add_check_constraint",
     "  - add_constraint: {table: accounts, name: balance_not_negative, check: balance >= 0}\n",
     "SELECT coalesce((SELECT contype::text || '/' || convalidated::text FROM pg_constraint"
     " WHERE conname = 'balance_not_negative'), 'absent')",
     "absent", "c/true", "c/true"},
    {"add_foreign_key",
     "  - add_constraint:\n      table: accounts\n      name: accounts_owner_fk\n"
     "      foreign_key: [owner_id]\n      references: owners\n      referenced_columns: [id]\n"
     "      on_delete: restrict\n",
     "SELECT coalesce((SELECT contype::text || '/' || convalidated::text FROM pg_constraint"
     " WHERE conname = 'accounts_owner_fk'), 'absent')",
     "absent", "f/true", "f/true"},
    {"add_unique_constraint",
     "  - add_constraint: {table: accounts, name: accounts_email_key, unique: [email]}\n",
     "SELECT coalesce((SELECT contype::text FROM pg_constraint WHERE conname = "
     "'accounts_email_key'),"
     " 'absent') || '/' || coalesce((SELECT 'index' FROM pg_class"
     " WHERE relname = 'accounts_email_key'), 'no index')",
     "absent/no index", "u/index", "u/index"},
    {"set_not_null", "  - set_not_null: {table: accounts, column: email}\n",
     "SELECT attnotnull::text || '/' || (SELECT count(*) FROM pg_constraint"
     " WHERE conrelid = 'accounts'::regclass AND contype = 'c')::text"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email'",
     "false/0", "true/0", "true/0"},
    {"add_column_uuid",
     "  - add_column:\n      table: accounts\n      column: uid\n      type: uuid\n"
     "      backfill: gen_random_uuid()\n      default: gen_random_uuid()\n"
     "      unique: true\n      not_null: true\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) || '/' || attnotnull::text"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'uid'"
     " AND NOT attisdropped), 'absent') || '/' || coalesce((SELECT contype::text"
     " FROM pg_constraint WHERE conname = 'accounts_uid_key'), '-')",
     "absent/-", "uuid/true/u", "uuid/true/u"},
    // Metadata only: no trigger, no backfill; existing rows show the default.
    {"add_column_constant_default",
     "  - add_column: {table: accounts, column: status, type: text, default: \"'active'\","
     " not_null: true}\n",
     "SELECT coalesce((SELECT attnotnull::text || '/' || attmissingval::text FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'status' AND NOT attisdropped),"
     " 'absent')",
     "absent", "true/{active}", "true/{active}"},
    {"add_column_derived",
     "  - add_column: {table: accounts, column: email_domain, type: text,"
     " backfill: \"split_part(email, '@', 2)\"}\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'email_domain'"
     " AND NOT attisdropped), 'absent')",
     "absent", "text", "text"},
    {"drop_column",
     "  - drop_column: {table: accounts, column: note, type: text, down: \"'restored'\"}\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'note' AND NOT attisdropped),"
     " 'absent')",
     "text", "text", "absent"},
    {"move_column",
     "  - move_column: {table: accounts, column: note, key: [id], to: account_notes,"
     " compat_view: accounts_with_note}\n",
     "SELECT (to_regclass('account_notes') IS NOT NULL)::text || '/' || (SELECT count(*)"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'note'"
     " AND NOT attisdropped) || '/' || (to_regclass('accounts_with_note') IS NOT NULL)::text",
     "false/1/false", "true/1/true", "true/0/false"},
    {"copy_table",
     "  - copy_table:\n      table: accounts\n      to: accounts_v2\n      key: [id]\n"
     "      create: id bigint PRIMARY KEY, email text, balance_cents bigint NOT NULL\n"
     "      up: {email: email, balance_cents: balance * 100}\n"
     "      down: {email: email, balance: balance_cents / 100}\n"
     "      compat_view: accounts_v1\n",
     "SELECT (to_regclass('accounts_v2') IS NOT NULL)::text || '/' ||"
     " (to_regclass('accounts_v1') IS NOT NULL)::text",
     "false/false", "true/true", "true/false"},
    {"add_reference",
     "  - add_reference:\n      table: accounts\n      column: owner_code\n      type: uuid\n"
     "      via: owner_id\n      references: owners\n      referenced_column: code\n"
     "      lookup: id\n      compat_view: accounts_by_owner_id\n",
     "SELECT coalesce((SELECT attnotnull::text FROM pg_attribute WHERE attrelid ="
     " 'accounts'::regclass AND attname = 'owner_code' AND NOT attisdropped), 'absent') || '/' ||"
     " coalesce((SELECT convalidated::text FROM pg_constraint"
     " WHERE conname = 'accounts_owner_code_fkey'), '-') || '/' ||"
     " (to_regclass('accounts_by_owner_id') IS NOT NULL)::text",
     "absent/-/false", "false/true/true", "false/true/false"},
    {"rename_column",
     "  - rename_column: {table: accounts, column: note, to: remark, compat_view: "
     "accounts_compat}\n",
     "SELECT (SELECT string_agg(attname::text, ',') FROM pg_attribute WHERE attrelid ="
     " 'accounts'::regclass AND attname IN ('note', 'remark') AND NOT attisdropped) || '/' ||"
     " (to_regclass('accounts_compat') IS NOT NULL)::text",
     "note/false", "remark/true", "remark/false"},
    {"drop_index", "  - drop_index: {table: accounts, name: accounts_owner_idx}\n",
     "SELECT (to_regclass('accounts_owner_idx') IS NOT NULL)::text", "true", "true", "false"},
    {"rename_constraint",
     "  - rename_constraint: {table: accounts, name: accounts_pkey, to: accounts_key}\n",
     "SELECT conname || '/' || conindid::regclass::text FROM pg_constraint"
     " WHERE conrelid = 'accounts'::regclass AND contype = 'p'",
     "accounts_pkey/accounts_pkey", "accounts_key/accounts_key", "accounts_key/accounts_key"},
    {"set_replica_identity", "  - set_replica_identity: {table: accounts, identity: full}\n",
     "SELECT relreplident FROM pg_class WHERE oid = 'accounts'::regclass", "d", "f", "f"},
    {"set_comment",
     "  - set_comment: {table: accounts, column: email, comment: \"where it's sent\"}\n",
     "SELECT coalesce(col_description('accounts'::regclass, 2), 'none')", "none", "where it's sent",
     "where it's sent"},
    // A default that is there before (0) is what a rollback puts back.
    {"set_default", "  - set_default: {table: accounts, column: balance, default: 5}\n",
     "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'accounts'::regclass"
     " AND adnum = 4",
     "0", "5", "5"},
    {"create_table",
     "  - create_table:\n      table: account_events\n      columns:\n"
     "        - id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY\n"
     "        - account_id bigint NOT NULL REFERENCES accounts (id)\n"
     "        - at timestamptz NOT NULL DEFAULT now()\n",
     "SELECT coalesce((SELECT relnatts::text FROM pg_class"
     " WHERE oid = to_regclass('account_events')), 'absent')",
     "absent", "3", "3"},
    {"drop_table", "  - drop_table: {table: owners}\n",
     "SELECT (to_regclass('owners') IS NOT NULL)::text || '/' || (SELECT count(*)"
     " FROM pg_class WHERE relname LIKE '\\_tandem\\_dropped\\_owners%')",
     "true/0", "false/1", "false/0"},
    // The writer goes on writing `accounts`, after cutover through the view,
    // and moves to the new name before cleanup.
    {"rename_table", "  - rename_table: {table: accounts, to: customer_accounts}\n",
     "SELECT coalesce((SELECT relkind::text FROM pg_class WHERE oid = to_regclass('accounts')),"
     " '-') || '/' || (to_regclass('customer_accounts') IS NOT NULL)::text",
     "r/false", "v/true", "-/true", "customer_accounts"},
    // One column made NOT NULL, checked and unique, its values rewritten by
    // `up`, with a comment: one shadow column.
    {"alter_column_constraints",
     "  - alter_column:\n      table: accounts\n      column: email\n      not_null: true\n"
     "      check: email LIKE '%@%'\n      unique: true\n      comment: where it's sent\n"
     "      up: lower(email)\n",
     "SELECT a.attnotnull::text || '/' || coalesce((SELECT string_agg(conname || ':' ||"
     " contype::text || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint"
     " WHERE conrelid = a.attrelid AND conkey = ARRAY[a.attnum]), '') || '/' ||"
     " coalesce(col_description(a.attrelid, a.attnum), '') FROM pg_attribute a"
     " WHERE a.attrelid = 'accounts'::regclass AND a.attname = 'email'",
     "false//", "true/accounts_email_check:c:true,accounts_email_key:u:true/where it's sent",
     "true/accounts_email_check:c:true,accounts_email_key:u:true/where it's sent"},
    // The writer's inserts leave the column out: NULL, which `up` turns into
    // '' before cutover, and the new default from cutover on.
    {"alter_column_rename_not_null_default",
     "  - alter_column: {table: accounts, column: note, not_null: true, default: \"''\","
     " rename: memo, compat_view: accounts_v1, up: \"coalesce(note, '')\"}\n",
     "SELECT string_agg(a.attname || ':' || a.attnotnull || ':' ||"
     " coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), ',') || '/' ||"
     " (to_regclass('accounts_v1') IS NOT NULL)::text FROM pg_attribute a"
     " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
     " WHERE a.attrelid = 'accounts'::regclass AND a.attname IN ('note', 'memo')",
     "note:false:-/false", "memo:true:''::text/true", "memo:true:''::text/false"},
    {"alter_column_type_and_check",
     "  - alter_column: {table: accounts, column: balance, type: bigint, check: balance >= 0}\n",
     "SELECT format_type(atttypid, atttypmod) || '/' || attnotnull::text || '/' ||"
     " coalesce((SELECT string_agg(conname || ':' || convalidated, ',') FROM pg_constraint"
     " WHERE conrelid = 'accounts'::regclass AND contype = 'c'), '') FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'balance'",
     "integer/true/", "bigint/true/accounts_balance_check:true",
     "bigint/true/accounts_balance_check:true"},
    {"drop_primary_key", "  - drop_constraint: {table: accounts, name: accounts_pkey}\n",
     "SELECT coalesce((SELECT contype::text || '/' || conindid::regclass::text FROM pg_constraint"
     " WHERE conname = 'accounts_pkey'), 'absent') || '/' ||"
     " (to_regclass('accounts_pkey') IS NOT NULL)::text",
     "p/accounts_pkey/true", "absent/false", "absent/false"},
};

// The table the writer writes: `accounts`, or the new name it moves to.
std::atomic<const char*> g_accounts{"accounts"};

class OperationLifecycle : public ::testing::TestWithParam<OperationCase> {
 protected:
  void SetUp() override {
    g_accounts = "accounts";
    db_ = pg_.create_database("ops");
    pg_.psql(db_,
             "CREATE TABLE owners (id int PRIMARY KEY,"
             " code uuid NOT NULL UNIQUE DEFAULT gen_random_uuid());"
             "INSERT INTO owners SELECT g FROM generate_series(1, 100) g;"
             "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text, owner_id int,"
             " balance int NOT NULL DEFAULT 0, note text);"
             "CREATE INDEX accounts_owner_idx ON accounts (owner_id);"
             "INSERT INTO accounts (email, owner_id, balance, note)"
             " SELECT 'u' || g || '@x', 1 + g % 100, g % 1000, 'n'"
             " FROM generate_series(1, 20000) g;"
             "ANALYZE accounts;");
  }
  std::string spec() const {
    return std::string("name: op_") + GetParam().title +
           "\nsettings:\n  lock_timeout: 300ms\n  retry_backoff: 20ms\n"
           "operations:\n" +
           GetParam().operation;
  }
  std::string probe() { return pg_.psql(db_, GetParam().probe); }
  // start (through cutover) → check → rollback → check → start → complete
  // → check, under a writer.
  void lifecycle();

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// Inserts rows and updates balances.
void write_accounts(Connection& c, int, long n, Writers::Counts& add) {
  const std::string table = g_accounts.load();
  if (n % 2 == 0) {
    c.exec("INSERT INTO " + table +
               " (email, owner_id, balance)"
               " VALUES ('w' || $1 || '@x', 1 + $1::int % 100, 5)",
           {std::to_string(n)});
    add["inserted"] = 1;
  } else {
    add["updated"] = c.exec("UPDATE " + table + " SET balance = balance + 1 WHERE id = $1",
                            {std::to_string(1 + (n * 7919) % 20000)})
                         .affected;
  }
}

// One client of write_accounts, as the lifecycle tests run it.
struct Writer : Writers {
  Writer(const PgServer& pg, const std::string& db) : Writers(pg, db, 1, write_accounts) {}
  long inserted() const { return count("inserted"); }
  long updated() const { return count("updated"); }
};

TEST_P(OperationLifecycle, StartRollbackStartCompleteUnderAConcurrentWriter) { lifecycle(); }

void OperationLifecycle::lifecycle() {
  const OperationCase& c = GetParam();
  if (c.setup) pg_.psql(db_, c.setup);
  const long base_sum = std::stol(pg_.psql(db_, "SELECT sum(balance) FROM accounts"));
  Spec s = spec_from(spec());
  Plan plan = make_plan(s);
  ASSERT_EQ(probe(), c.before);

  // An operation without cleanup steps is complete once cutover is done.
  auto started = [](RunOutcome o) {
    return o == RunOutcome::kReachedUntil || o == RunOutcome::kCompleted;
  };
  auto completed = [](RunOutcome o) {
    return o == RunOutcome::kCompleted || o == RunOutcome::kAlreadyCompleted;
  };
  Writer writer(pg_, db_);
  EXPECT_TRUE(started(run_until(s, pg_.dsn(db_), Phase::kCutover)));
  EXPECT_EQ(probe(), c.started);
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(probe(), c.before);
  EXPECT_TRUE(started(run_until(s, pg_.dsn(db_), Phase::kCutover)));
  EXPECT_EQ(probe(), c.started);
  if (c.moved_to) g_accounts = c.moved_to;  // the application moves before cleanup
  EXPECT_TRUE(completed(run_until(s, pg_.dsn(db_))));
  EXPECT_EQ(probe(), c.completed);
  writer.stop();
  EXPECT_EQ(leftovers(pg_, db_, g_accounts.load()), "");

  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.inserted(), 10);
  EXPECT_EQ(pg_.psql(db_, std::string("SELECT count(*), sum(balance) FROM ") + g_accounts.load()),
            std::to_string(20000 + writer.inserted()) + "|" +
                std::to_string(base_sum + 5 * writer.inserted() + writer.updated()));
}

INSTANTIATE_TEST_SUITE_P(Every, OperationLifecycle, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.title); });

// The case of that title (cases are added in the middle of the list).
const OperationCase& case_named(const std::string& title) {
  for (const auto& c : kCases) {
    if (title == c.title) return c;
  }
  throw std::logic_error("no operation case " + title);
}

// The same lifecycle on a partitioned `accounts` (by hash of its key,
// three partitions): triggers on the table reach every partition, the
// backfill walks the partitioned key, checks are added NOT VALID to the
// table and every partition and validated in each.
class PartitionedLifecycle : public OperationLifecycle {
 protected:
  void SetUp() override {
    g_accounts = "accounts";
    db_ = pg_.create_database("ops");
    pg_.psql(
        db_,
        "CREATE TABLE owners (id int PRIMARY KEY,"
        " code uuid NOT NULL UNIQUE DEFAULT gen_random_uuid());"
        "INSERT INTO owners SELECT g FROM generate_series(1, 100) g;"
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text, owner_id int,"
        " balance int NOT NULL DEFAULT 0, note text) PARTITION BY HASH (id);"
        "CREATE TABLE accounts_0 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 0);"
        "CREATE TABLE accounts_1 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 1);"
        "CREATE TABLE accounts_2 PARTITION OF accounts FOR VALUES WITH (MODULUS 3, REMAINDER 2);"
        "CREATE INDEX accounts_owner_idx ON accounts (owner_id);"
        "INSERT INTO accounts (email, owner_id, balance, note)"
        " SELECT 'u' || g || '@x', 1 + g % 100, g % 1000, 'n'"
        " FROM generate_series(1, 20000) g;"
        "ANALYZE accounts;");
  }
};

TEST_P(PartitionedLifecycle, StartRollbackStartCompleteUnderAConcurrentWriter) { lifecycle(); }

const OperationCase kPartitionedCases[] = {
    {"add_check_constraint",
     "  - add_constraint: {table: accounts, name: balance_not_negative, check: balance >= 0}\n",
     "SELECT coalesce((SELECT string_agg(conrelid::regclass || ':' || convalidated, ','"
     " ORDER BY conrelid::regclass::text) FROM pg_constraint"
     " WHERE conname = 'balance_not_negative'), 'absent')",
     "absent", "accounts:true,accounts_0:true,accounts_1:true,accounts_2:true",
     "accounts:true,accounts_0:true,accounts_1:true,accounts_2:true"},
    case_named("set_not_null"),
    // A rollback adds it again NOT VALID to the table and every partition,
    // then validates it.
    {"drop_check_constraint",
     "  - drop_constraint: {table: accounts, name: accounts_email_check}\n",
     "SELECT coalesce((SELECT string_agg(conrelid::regclass || ':' || convalidated, ','"
     " ORDER BY conrelid::regclass::text) FROM pg_constraint"
     " WHERE conname = 'accounts_email_check'), 'absent')",
     "accounts:true,accounts_0:true,accounts_1:true,accounts_2:true", "absent", "absent", nullptr,
     "ALTER TABLE accounts ADD CONSTRAINT accounts_email_check CHECK (email <> '')"},
    // The writer leaves the column out: the default serves it after cleanup.
    {"add_column_not_null_backfilled",
     "  - add_column: {table: accounts, column: email_domain, type: text,"
     " backfill: \"split_part(email, '@', 2)\", default: \"''\", not_null: true}\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) || '/' || attnotnull::text"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email_domain'"
     " AND NOT attisdropped), 'absent')",
     "absent", "text/true", "text/true"},
    case_named("add_column_derived"),
    // Each partition holds the default as its missing value; the table has none.
    {"add_column_constant_default", case_named("add_column_constant_default").operation,
     "SELECT coalesce((SELECT string_agg(attrelid::regclass || ':' || attnotnull || '/' ||"
     " coalesce(attmissingval::text, '-'), ' ' ORDER BY attrelid::regclass::text)"
     " FROM pg_attribute WHERE attname = 'status' AND NOT attisdropped AND attrelid IN"
     " (SELECT relid FROM pg_partition_tree('accounts'))), 'absent')",
     "absent",
     "accounts:true/- accounts_0:true/{active} accounts_1:true/{active} accounts_2:true/{active}",
     "accounts:true/- accounts_0:true/{active} accounts_1:true/{active} accounts_2:true/{active}"},
    case_named("drop_column"),
    case_named("move_column"),
    case_named("copy_table"),
    case_named("rename_column"),
    case_named("set_comment"),
    case_named("set_default"),
    {"rename_table", case_named("rename_table").operation,
     "SELECT coalesce((SELECT relkind::text FROM pg_class WHERE oid = to_regclass('accounts')),"
     " '-') || '/' || (to_regclass('customer_accounts') IS NOT NULL)::text",
     "p/false", "v/true", "-/true", "customer_accounts"},
    // Every partition gets the identity, and gets its own back on rollback.
    {"set_replica_identity_full", case_named("set_replica_identity").operation,
     "SELECT string_agg(relname || ':' || relreplident::text, ' ' ORDER BY relname) FROM pg_class"
     " WHERE relname ~ '^accounts(_[0-9])?$'",
     "accounts:d accounts_0:d accounts_1:d accounts_2:d",
     "accounts:f accounts_0:f accounts_1:f accounts_2:f",
     "accounts:f accounts_0:f accounts_1:f accounts_2:f"},
    {"set_replica_identity_index",
     "  - set_replica_identity: {table: accounts, identity: index, index: accounts_pkey}\n",
     "SELECT string_agg(c.relname || ':' || c.relreplident::text || coalesce((SELECT ':' ||"
     " x.indexrelid::regclass FROM pg_index x WHERE x.indrelid = c.oid AND x.indisreplident),"
     " ''), ' ' ORDER BY c.relname) FROM pg_class c WHERE c.relname ~ '^accounts(_[0-9])?$'",
     "accounts:d accounts_0:d accounts_1:d accounts_2:d",
     "accounts:i:accounts_pkey accounts_0:i:accounts_0_pkey accounts_1:i:accounts_1_pkey "
     "accounts_2:i:accounts_2_pkey",
     "accounts:i:accounts_pkey accounts_0:i:accounts_0_pkey accounts_1:i:accounts_1_pkey "
     "accounts_2:i:accounts_2_pkey"},
    // The table's index and each partition's (its own name), at cleanup.
    {"drop_index", case_named("drop_index").operation,
     "SELECT count(*) FROM pg_index WHERE indrelid IN (SELECT relid FROM"
     " pg_partition_tree('accounts')) AND NOT indisprimary",
     "4", "4", "0"},
    case_named("alter_column_rename_not_null_default"),
    case_named("alter_column_type_and_check"),
};

INSTANTIATE_TEST_SUITE_P(Partitioned, PartitionedLifecycle, ::testing::ValuesIn(kPartitionedCases),
                         [](const auto& info) { return std::string(info.param.title); });

class DropColumnRollback : public OperationLifecycle {
 protected:
  // Runs the drop through cleanup, then rolls it back.
  void complete_then_roll_back() {
    Spec s = spec_from(spec());
    Plan plan = make_plan(s);
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    EXPECT_EQ(probe(), "absent");
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  }
};

TEST_P(DropColumnRollback, ReversibleEvenAfterCleanupWhenDownIsGiven) {
  complete_then_roll_back();
  EXPECT_EQ(probe(), "text");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FILTER (WHERE note = 'restored') FROM accounts"),
            "20000");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('after@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT note IS NULL FROM accounts WHERE email = 'after@x'"), "t");
}

// Issue 16: the column came back without its NOT NULL, default and CHECKs.
TEST_P(DropColumnRollback, BringsBackNotNullDefaultAndChecks) {
  pg_.psql(db_,
           "UPDATE accounts SET note = coalesce(note, 'n');"
           "ALTER TABLE accounts ALTER COLUMN note SET DEFAULT 'fresh',"
           " ALTER COLUMN note SET NOT NULL,"
           " ADD CONSTRAINT note_short CHECK (length(note) < 40),"
           " ADD CONSTRAINT note_not_email CHECK (note IS DISTINCT FROM email);"
           "ALTER TABLE accounts ADD CONSTRAINT note_unchecked CHECK (note <> 'x') NOT VALID");
  const std::string definition =
      "SELECT a.attnotnull::text || '|' || pg_get_expr(d.adbin, d.adrelid) || '|' ||"
      " (SELECT string_agg(conname || ':' || convalidated::text, ',' ORDER BY conname)"
      "    FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c')"
      "  FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
      " WHERE a.attrelid = 'accounts'::regclass AND a.attname = 'note'";
  const std::string before = pg_.psql(db_, definition);
  EXPECT_EQ(before, "true|'fresh'::text|note_not_email:true,note_short:true,note_unchecked:false");
  complete_then_roll_back();
  EXPECT_EQ(pg_.psql(db_, definition), before);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FILTER (WHERE note = 'restored') FROM accounts"),
            "20000");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('after@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT note FROM accounts WHERE email = 'after@x'"), "fresh");
  // And forward again, through cleanup.
  EXPECT_EQ(run_until(spec_from(spec()), pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(probe(), "absent");
}

// What a rollback could not bring back as it was is refused before anything
// changes.
TEST_P(DropColumnRollback, RefusesAColumnARollbackCouldNotRestore) {
  for (const auto& [setup, why] : std::vector<std::pair<std::string, std::string>>{
           {"UPDATE accounts SET note = coalesce(note, 'n');"
            "ALTER TABLE accounts ALTER COLUMN note SET NOT NULL",
            ""},
           {"ALTER TABLE accounts DROP COLUMN note;"
            "ALTER TABLE accounts ADD COLUMN note text GENERATED ALWAYS AS (email) STORED",
            "a generated column"}}) {
    SCOPED_TRACE(setup);
    pg_.psql(db_, setup);
    std::string yaml = spec();
    if (why.empty()) {
      // NOT NULL, and `down` gives NULL.
      yaml =
          "name: drop_null\noperations:\n  - drop_column: {table: accounts, column: note, "
          "type: text, down: \"NULL\"}\n";
    }
    Spec s = spec_from(yaml);
    Plan plan = make_plan(s);
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    try {
      Executor(s, plan, o).run();
      ADD_FAILURE() << "not refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why.empty() ? "gives NULL" : why), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(pg_.psql(db_,
                       "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                       " 'accounts'::regclass AND attname = 'note' AND NOT attisdropped"),
              "1");
    EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.migrations"), "0")
        << "a refused precheck records nothing";
  }
}

INSTANTIATE_TEST_SUITE_P(Down, DropColumnRollback, ::testing::Values(case_named("drop_column")),
                         [](const auto&) { return std::string("drop_column"); });

class ViolatingData : public OperationLifecycle {};

TEST_P(ViolatingData, FailsAtTheStepThatFindsItAndRollsBackCleanly) {
  // A NULL email and a duplicate email break set_not_null and unique.
  pg_.psql(db_,
           "UPDATE accounts SET email = NULL WHERE id = 17;"
           "UPDATE accounts SET email = 'u2@x' WHERE id = 3;");
  Spec s = spec_from(spec());
  Plan plan = make_plan(s);
  try {
    run_until(s, pg_.dsn(db_));
    FAIL() << "the migration must fail";
  } catch (const StepFailedError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.substr(0, m.find('\n')), GetParam().completed);  // the expected message here
  }
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(probe(), GetParam().before);
}

const OperationCase kViolations[] = {
    {"set_not_null", case_named("set_not_null").operation, case_named("set_not_null").probe,
     case_named("set_not_null").before, "",
     "step 1.validate failed: check constraint \"_tandem_nn_email_c4030c\" of relation "
     "\"accounts\" is violated by some row [SQLSTATE 23514]."},
    {"add_unique_constraint", case_named("add_unique_constraint").operation,
     case_named("add_unique_constraint").probe, case_named("add_unique_constraint").before, "",
     "step 1.build_unique_index failed: could not create unique index \"accounts_email_key\" "
     "(DETAIL:  Key (email)=(u2@x) is duplicated.) [SQLSTATE 23505]."},
};

INSTANTIATE_TEST_SUITE_P(Every, ViolatingData, ::testing::ValuesIn(kViolations),
                         [](const auto& info) { return std::string(info.param.title); });

class AddColumnValues : public OperationLifecycle {};

TEST_P(AddColumnValues, NewRowsGetTheirValueInTheWritersTransactionAndEveryRowEndsUpFilled) {
  Spec s = spec_from(spec());
  // Once the trigger is in place, a row is never visible without its value.
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('new@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT uid IS NOT NULL FROM accounts WHERE email = 'new@x'"), "t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM accounts WHERE uid IS NULL"), "20000");
  {
    Writer writer(pg_, db_);
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    writer.stop();
    EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  }
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) = count(DISTINCT uid) AND count(uid) = count(*)"
                     " FROM accounts"),
            "t");
  // After cleanup the fill trigger is gone and the default serves new rows.
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'accounts'::regclass"),
            "0");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('later@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT uid IS NOT NULL FROM accounts WHERE email = 'later@x'"), "t");
}

INSTANTIATE_TEST_SUITE_P(Uuid, AddColumnValues, ::testing::Values(case_named("add_column_uuid")),
                         [](const auto&) { return std::string("add_column_uuid"); });

TEST(DropColumnWithoutDown, IsIrreversibleAndNeedsApproval) {
  Spec s = spec_from("name: d\noperations:\n  - drop_column: {table: t, column: c}\n");
  Plan plan = make_plan(s);
  const Step* step = plan.find("1.drop_column");
  ASSERT_NE(step, nullptr);
  EXPECT_FALSE(step->reversible);
  EXPECT_EQ(step->phase, Phase::kCleanup);
}

class Sync : public ::testing::Test {
 protected:
  void SetUp() override { db_ = pg_.create_database("sync"); }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(Sync, MoveColumnWritesFlowBothWaysAfterCutoverAndTheViewShowsTheOldShape) {
  pg_.psql(db_,
           "CREATE TABLE users (user_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " email text NOT NULL, full_name text);"
           "INSERT INTO users (email, full_name) SELECT 'u' || g, 'Name ' || g"
           " FROM generate_series(1, 3000) g;");
  Spec s = spec_from(
      "name: pii\noperations:\n  - move_column: {table: users, column: full_name,"
      " key: [user_id], to: users_pii, compat_view: users_v1}\n");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  // The new application writes users_pii; the old column follows.
  pg_.psql(db_, "UPDATE users_pii SET full_name = 'New' WHERE user_id = 7");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users WHERE user_id = 7"), "New");
  // The old application still writes users; users_pii follows, with no echo.
  pg_.psql(db_, "UPDATE users SET full_name = 'Old' WHERE user_id = 8");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users_pii WHERE user_id = 8"), "Old");
  pg_.psql(db_, "INSERT INTO users (email, full_name) VALUES ('late', 'Late')");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT p.full_name FROM users_pii p JOIN users u USING (user_id)"
                     " WHERE u.email = 'late'"),
            "Late");
  pg_.psql(db_, "DELETE FROM users WHERE user_id = 9");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM users_pii WHERE user_id = 9"), "0");
  // The view has the old columns in the old order, full_name from users_pii.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                     " WHERE attrelid = 'users_v1'::regclass"),
            "user_id,email,full_name");
  pg_.psql(db_, "UPDATE users_pii SET full_name = 'Via pii' WHERE user_id = 10");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users_v1 WHERE user_id = 10"), "Via pii");
  ASSERT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*), count(full_name) FROM users_pii"), "3000|3000");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass"
                     " AND attname = 'full_name' AND NOT attisdropped"),
            "0");
}

// The old application's role reads the compatibility view with the old
// table's grants. Over a table under row security the view applies the
// reader's policies (security_invoker), never its owner's rights.
TEST_F(Sync, TheCompatibilityViewHasTheOldTablesGrantsAndKeepsRowSecurity) {
  const std::string role = "tandem_reader_" + db_;
  pg_.psql(db_, "DO $$BEGIN CREATE ROLE " + role +
                    "; EXCEPTION WHEN duplicate_object THEN NULL; END$$;"
                    "CREATE TABLE users (user_id bigint PRIMARY KEY, email text NOT NULL,"
                    " full_name text);"
                    "INSERT INTO users SELECT g, 'u' || g, 'Name ' || g"
                    " FROM generate_series(1, 300) g;"
                    "GRANT SELECT ON users TO " +
                    role + ";");
  Spec s = spec_from(
      "name: pii\noperations:\n  - move_column: {table: users, column: full_name,"
      " key: [user_id], to: users_pii, compat_view: users_v1}\n");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, "SET ROLE " + role + "; SELECT count(full_name) FROM users_v1"), "300");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class"
                     " WHERE oid = 'users_v1'::regclass"),
            "");
  Plan plan = make_plan(s);
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  ASSERT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  // Under row security the reader sees its rows only, through the view too
  // (given SELECT on the new table, as an invoker's view needs).
  pg_.psql(db_,
           "ALTER TABLE users ENABLE ROW LEVEL SECURITY;"
           "CREATE POLICY first_hundred ON users FOR SELECT TO " +
               role + " USING (user_id <= 100);");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT array_to_string(reloptions, ',') FROM pg_class"
                     " WHERE oid = 'users_v1'::regclass"),
            "security_invoker=true");
  pg_.psql(db_, "GRANT SELECT ON users_pii TO " + role);
  EXPECT_EQ(pg_.psql(db_, "SET ROLE " + role + "; SELECT count(full_name) FROM users_v1"), "100");
  ASSERT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
}

TEST_F(Sync, CopyTableAppliesV2WritesToV1ThroughDownIntoAnIdentityKey) {
  pg_.psql(db_,
           "CREATE TABLE v1 (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, cents int NOT NULL);"
           "INSERT INTO v1 (cents) SELECT g FROM generate_series(1, 2000) g;");
  Spec s = spec_from(
      "name: copy\noperations:\n  - copy_table:\n      table: v1\n      to: v2\n"
      "      key: [id]\n      create: id int PRIMARY KEY, amount numeric(12,2) NOT NULL\n"
      "      up: {amount: cents / 100.0}\n      down: {cents: (amount * 100)::int}\n"
      "      compat_view: v1_compat\n");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, "SELECT amount FROM v2 WHERE id = 150"), "1.50");
  pg_.psql(db_,
           "INSERT INTO v2 VALUES (5000, 12.34); UPDATE v2 SET amount = 0.5 WHERE id = 1;"
           "DELETE FROM v2 WHERE id = 2;");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1 WHERE id = 5000"), "1234");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1 WHERE id = 1"), "50");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM v1 WHERE id = 2"), "0");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1_compat WHERE id = 5000"), "1234");
  // Rolling back after cutover drops v2 and leaves v1 with every write.
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  Plan plan = make_plan(s);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*), sum(cents) FROM v1"),
            "2000|" + std::to_string(2000 * 2001 / 2 - 1 - 2 + 50 + 1234));
  EXPECT_EQ(pg_.psql(db_, "SELECT to_regclass('v2') IS NULL AND to_regclass('v1_compat') IS NULL"),
            "t");
}

// A copy is checked from both sides: every source row has its copy, equal
// to up of it, and no copy lacks its source row. Corrupted behind the
// triggers' back, each wrong row is named by its key, whether the check
// joins key ranges of both tables (the source walked by the copy's key,
// one or two columns) or looks each row up (walked by another key).
TEST_F(Sync, ACopyCheckNamesEveryMissingDifferingAndExtraRowByItsKey) {
  struct Case {
    const char* source;  // CREATE TABLE v1 ... and its rows
    const char* copy;    // the copy_table operation's key and create
    const char* where;   // SQL selecting row N in either table: % is N
    const char* keys;    // the copy's key columns, for an INSERT INTO v2
    // How the checks name row N, walking v1 and walking v2: % is N, and ""
    // is "(rN%3,N)".
    const char* v1_key;
    const char* v2_key;
  };
  const Case cases[] = {
      {"CREATE TABLE v1 (id int PRIMARY KEY, cents int NOT NULL);"
       "INSERT INTO v1 SELECT g, g FROM generate_series(1, 3000) g;",
       "      key: [id]\n      create: id int PRIMARY KEY, amount numeric(12,2) NOT NULL\n",
       "id = %", "id", "(%)", "(%)"},
      {"CREATE TABLE v1 (region text, id int, cents int NOT NULL, PRIMARY KEY (region, id));"
       "INSERT INTO v1 SELECT 'r' || (g % 3), g, g FROM generate_series(1, 3000) g;",
       "      key: [region, id]\n      create: region text, id int, amount numeric(12,2) NOT NULL,"
       " PRIMARY KEY (region, id)\n",
       "id = %", "region, id", "", ""},
      // Walked by id, checked by code: each row is looked up.
      {"CREATE TABLE v1 (id int PRIMARY KEY, code text NOT NULL UNIQUE, cents int NOT NULL);"
       "INSERT INTO v1 SELECT g, 'c' || g, g FROM generate_series(1, 3000) g;",
       "      key: [code]\n      create: code text PRIMARY KEY, amount numeric(12,2) NOT NULL\n",
       "code = 'c%'", "code", "(%)", "(c%)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.copy);
    const std::string db = pg_.create_database("copycheck");
    pg_.psql(db, c.source);
    Spec s = spec_from(std::string("name: copy\nsettings: {batch_size: 200}\noperations:\n"
                                   "  - copy_table:\n      table: v1\n      to: v2\n") +
                       c.copy + "      up: {amount: cents / 100.0}\n");
    ASSERT_EQ(run_until(s, pg_.dsn(db), Phase::kBackfill), RunOutcome::kReachedUntil);
    auto n = [](int id) {
      return std::vector<std::pair<std::string, std::string>>{{"%", std::to_string(id)}};
    };
    auto where = [&](int id) { return fill_template(c.where, n(id)); };
    auto key = [&](const char* format, int id) {
      if (*format) return fill_template(format, n(id));
      return "(r" + std::to_string(id % 3) + "," + std::to_string(id) + ")";
    };
    // Behind the triggers' back.
    auto corrupt = [&](const std::string& sql) {
      pg_.psql(db, "SET session_replication_role = replica; " + sql);
    };
    auto failure = [&] {
      try {
        run_until(s, pg_.dsn(db), Phase::kShadowRead);
      } catch (const StepFailedError& e) {
        std::string m = e.what();
        return m.substr(0, m.find('\n'));
      }
      return std::string("no failure");
    };
    // 10 differs and 2500 is missing; 30 and 2999 are copies without a
    // source row.
    corrupt("UPDATE v2 SET amount = amount + 1 WHERE " + where(10) + "; DELETE FROM v2 WHERE " +
            where(2500) + "; DELETE FROM v1 WHERE " + where(30) + " OR " + where(2999));
    std::string first = failure();
    EXPECT_NE(first.find("step 1.verify failed: 2 rows differ between old and new storage"),
              std::string::npos)
        << first;
    EXPECT_NE(first.find(key(c.v1_key, 10)), std::string::npos) << first;
    EXPECT_NE(first.find(key(c.v1_key, 2500)), std::string::npos) << first;
    corrupt("UPDATE v2 SET amount = amount - 1 WHERE " + where(10) + "; INSERT INTO v2 SELECT " +
            c.keys + ", cents / 100.0 FROM v1 WHERE " + where(2500));
    std::string second = failure();
    EXPECT_NE(second.find("step 1.verify_no_extra_rows failed: 2 rows differ between old and new "
                          "storage"),
              std::string::npos)
        << second;
    EXPECT_NE(second.find(key(c.v2_key, 30)), std::string::npos) << second;
    EXPECT_NE(second.find(key(c.v2_key, 2999)), std::string::npos) << second;
    // Repaired, the copy passes both checks.
    corrupt("DELETE FROM v2 WHERE " + where(30) + " OR " + where(2999));
    EXPECT_EQ(run_until(s, pg_.dsn(db), Phase::kShadowRead), RunOutcome::kReachedUntil);
  }
}

TEST_F(Sync, ATableWithoutPrimaryKeyIsWalkedByAUniqueNotNullKey) {
  pg_.psql(db_,
           "CREATE TABLE events (code text NOT NULL, seq int NOT NULL, payload text,"
           " UNIQUE (code, seq));"
           "INSERT INTO events SELECT 'c' || (g % 7), g, 'p' FROM generate_series(1, 5000) g;");
  Spec s = spec_from(
      "name: nopk\nsettings: {batch_size: 300}\noperations:\n"
      "  - add_column: {table: events, column: n, type: int, backfill: length(payload)}\n");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM events WHERE n = 1"), "5000");
}

TEST_F(Sync, ATableWithNoUsableKeyIsRefusedByPlanWithTheReason) {
  pg_.psql(db_, "CREATE TABLE loose (a int, b text UNIQUE); INSERT INTO loose VALUES (1, 'x');");
  std::string spec = write_temp_file(
      "name: loose\noperations:\n"
      "  - add_column: {table: loose, column: n, type: int, backfill: a + 1}\n");
  auto r = run_command(tandemd("plan " + spec + " --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("step 1.precheck: table loose has no primary key and no unique index "
                          "over NOT NULL columns; tandem walks the table by such a key (add one "
                          "first)"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace tandem::testing