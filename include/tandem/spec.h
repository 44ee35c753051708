// The migration spec: the model a YAML file is parsed into. See docs/spec.md.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "tandem/phase.h"

namespace tandem {

// A place in a spec file, 1-based.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  std::string to_string() const;
};

struct Settings {
  // Upper bound on how long any DDL waits for its lock; application queries
  // queue behind a waiting DDL for at most this long.
  std::chrono::milliseconds lock_timeout{500};
  std::chrono::milliseconds statement_timeout{60000};
  // Rows per backfill or verify transaction; with target_batch_time, the
  // size of the first batch.
  int batch_size = 5000;
  // When set, each batch's size is adjusted toward this duration (between 10
  // rows and max_batch_size); 0 keeps batch_size fixed.
  std::chrono::milliseconds target_batch_time{0};
  int max_batch_size = 100'000;
  // After each batch, rest this share (percent) of the batch's duration, so
  // the application gets the database to itself that long; 0: back to back.
  int batch_rest_percent = 0;
  // Backfill and verify steps split the table's key space into this many
  // ranges when they start (fewer for small tables), one worker session each.
  int backfill_workers = 1;
  // Throttle thresholds (0: off): before each batch, the backfill waits while
  // more than this many other sessions of the database are active, or are
  // waiting for a lock.
  int throttle_active_sessions = 0;
  int throttle_lock_waits = 0;
  // Waits while the slowest physical standby replays more than this far
  // behind (measured with tandem's heartbeat); 0: off.
  std::chrono::milliseconds throttle_replica_lag{0};
  // Holds the backfill so that the server writes WAL at no more than this
  // many MB per second on average (all sessions, the backfill's own
  // included); 0: off.
  int throttle_wal_rate_mb = 0;
  // Waits while a one-row write transaction, flushed to the WAL at commit
  // as the application's are (synchronous_commit local), takes longer than
  // this: what a committing client waits for at that moment (the WAL
  // behind its commit record, the disk, CPU); 0: off.
  std::chrono::milliseconds throttle_commit_latency{0};
  // SQL run before each batch, read-only, 5s at most: the backfill waits while
  // its first value is true or a number above zero (or while it fails).
  std::string throttle_query;
  // "HH:MM-HH:MM" in tandemd's local time: batches run only inside it; empty: any time.
  std::string backfill_window;
  // What the lint of `sql` steps does with what it finds (src/spec/sql_lint.h):
  // warn (validate, plan and run say it), error (the spec is refused), off.
  std::string sql_lint = "warn";
  // Critical thresholds (0: off): crossing one pauses the migration with an
  // alert until an operator resumes it. No work is lost.
  std::chrono::milliseconds critical_replica_lag{0};
  int critical_active_sessions = 0;
  // Attempts of one step (or one batch) that failed with a retryable error
  // before the migration stops as failed.
  int retry_budget = 30;
  std::chrono::milliseconds retry_backoff{100};  // first pause; doubles, with jitter
  std::chrono::milliseconds retry_backoff_max{10000};
  // While a migration with shadow_reads waits at the cutover gate under
  // `tandemd serve`, a new round of every pair starts this long after the
  // last one ended; 0: no rounds.
  std::chrono::milliseconds shadow_round_interval{600'000};
};

// Changes a column's type through a shadow column (see docs/operations.md).
struct AlterColumnType {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::string type;                 // the new type, as SQL
  std::optional<std::string> up;    // expression over `column` giving the new value
  std::optional<std::string> down;  // expression over `column` (new type) giving the old value
};

// A new column filled for existing rows by a backfill expression, and for new
// rows in the writer's own transaction; then optionally unique and NOT NULL.
struct AddColumn {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::string type;
  // Expression over the row's columns; may be volatile. Empty: the column
  // is added with its DEFAULT (not volatile) in one metadata-only step,
  // which gives every existing row that value without writing it.
  std::string backfill;
  std::optional<std::string> default_value;  // the column's DEFAULT from cutover on
  bool unique = false;
  bool not_null = false;
};

// CREATE [UNIQUE] INDEX CONCURRENTLY; an INVALID leftover is dropped and rebuilt.
struct CreateIndex {
  std::string schema = "public";
  std::string table;
  std::string name;
  // Column names or expressions, in order, each as an index writes it
  // (with a collation, an operator class, ASC/DESC, NULLS FIRST/LAST).
  std::vector<std::string> columns;
  std::vector<std::string> include;  // INCLUDE columns (names)
  bool unique = false;
  std::string method = "btree";
  std::vector<std::pair<std::string, std::string>> with;  // storage parameters, in order
  std::optional<std::string> where;                       // partial index predicate
  Phase phase = Phase::kPrepare;
};

// What becomes of rows whose parent is missing (orphans) when a reference
// to it is added: refused at precheck (kFail), or the reference left NULL /
// the rows deleted in batches before the constraint is validated.
enum class Orphans { kFail, kSetNull, kDelete };

// A constraint added without blocking writers: NOT VALID, then VALIDATE (CHECK,
// FOREIGN KEY), or a unique index built concurrently and attached (UNIQUE).
struct AddConstraint {
  enum class Kind { kCheck, kForeignKey, kUnique };
  std::string schema = "public";
  std::string table;
  std::string name;
  Kind kind = Kind::kCheck;
  std::string check;                 // kCheck: the boolean expression
  std::vector<std::string> columns;  // kForeignKey, kUnique
  std::string references;            // kForeignKey: the referenced table, qualified
  std::vector<std::string> referenced_columns;
  std::string on_delete;  // kForeignKey: "", cascade, restrict, set null, ...
  // kForeignKey: what becomes of rows whose parent is missing (orphans):
  // refused at precheck, or set NULL / deleted in batches before VALIDATE.
  using Orphans = tandem::Orphans;
  Orphans orphans = Orphans::kFail;
};

// SET NOT NULL without a long exclusive lock: CHECK NOT VALID, VALIDATE, SET NOT NULL.
struct SetNotNull {
  std::string schema = "public";
  std::string table;
  std::string column;
};

// DROP COLUMN at cleanup; reversible when `down` (and the column's `type`) are given.
struct DropColumn {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::optional<std::string> type;
  std::optional<std::string> down;  // the value the column gets back on rollback
};

// Where a compatibility view goes: a view with the table's old shape over the
// new storage, created at cutover and dropped at cleanup.
struct ViewName {
  std::string schema = "public";
  std::string name;
};

// One slice of a migration that moves its keys to the new side in slices.
struct Slice {
  std::string name;
  // A predicate over the source row; nullopt: every key no earlier slice took.
  std::optional<std::string> where;
};

// The routing of a migration done in slices (docs/slices.md): values of
// `by` (a column of the source) are routing keys; each key present when the
// slices are defined belongs to the first slice whose predicate one of its
// rows matches, for good; keys that appear later go to the side `new_keys`
// names. Applications ask tandem.route(migration, key) which side serves a key.
// The health of live slices (docs/slices.md#canary): `query` returns one
// value, a boolean (false: unhealthy) or a number (above `max`: unhealthy);
// with $1 in it, it runs once per live slice with the slice's name. A live
// slice found unhealthy, or whose query fails, goes back to shadow by itself
// and the slices are held until someone resumes them.
struct Canary {
  std::string query;
  double max = 0;
  std::chrono::milliseconds every{10'000};
};

struct Slices {
  std::optional<Canary> canary;
  std::string by;
  std::vector<Slice> list;   // in order: a key belongs to the first that matches
  bool new_keys_new = true;  // keys created after definition: the new side (or the old)
  SourceLocation where;
};

// A column moved to another table, keyed by the same key: users.full_name →
// users_pii(user_id, full_name). The target table is created by tandem.
struct MoveColumn {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::vector<std::string> key;  // columns of `table` that identify a row (unique, NOT NULL)
  std::string to_schema = "public";
  std::string to_table;
  std::string to_column;  // defaults to `column`
  std::optional<ViewName> compat_view;
  std::optional<Slices> slices;
};

// Rows of one table copied into another of a different shape, kept in sync
// both ways until cleanup: balances_v1 → balances_v2.
struct CopyTable {
  std::string schema = "public";
  std::string table;
  std::string to_schema = "public";
  std::string to_table;
  std::vector<std::string> key;  // the same columns, with the same values, in both tables
  // target column ← expression over the source row, in order; keys are copied as they are
  std::vector<std::pair<std::string, std::string>> up;
  // source column ← expression over the target row (for the way back)
  std::vector<std::pair<std::string, std::string>> down;
  std::optional<std::string> create;  // column definitions: tandem creates the target table
  std::optional<ViewName> compat_view;
  std::optional<Slices> slices;
};

// Rows of a source table reshaped by SQL the spec gives into rows of other
// tables (a document into normalized tables, one table split in several):
// `apply` writes a source row's target rows, `remove` removes them; `_row`
// is the source row in both.
struct Transform {
  std::string schema = "public";
  std::string table;
  std::vector<std::string> key;  // unique and NOT NULL in the source
  // target tables tandem creates (name → column definitions), in the
  // source's schema, dropped on rollback
  std::vector<std::pair<std::string, std::string>> create;
  std::vector<std::string> targets;  // existing tables it writes ("name" or "schema.name")
  std::string apply;
  std::string remove;
  // After cutover, a target table's writes reach the source: target table
  // (as named in create or targets) → SQL over the target's changed row,
  // `_row` (the old row and the new one, each in turn), that writes it back.
  std::vector<std::pair<std::string, std::string>> reverse;
  std::optional<Slices> slices;
};

// A dependent table that names its parent by an old key (orders.username)
// gains a column with the parent's new key (orders.user_id), found by lookup.
struct AddReference {
  std::string schema = "public";
  std::string table;
  std::string column;  // the new column
  std::string type;    // its type, the type of the parent's new key
  std::string via;     // the old key column in `table`
  std::string references_schema = "public";
  std::string references;         // the parent table
  std::string referenced_column;  // the parent's new key
  std::string lookup;             // the parent's column that `via` matches
  std::string on_delete;
  bool not_null = false;
  bool index = true;
  bool drop_via = false;  // cleanup drops `via` (irreversible)
  std::optional<ViewName> compat_view;
  // Rows whose `via` no parent's `lookup` holds: kFail refuses at precheck;
  // kSetNull leaves their new column NULL; kDelete deletes them before the
  // foreign key and NOT NULL are validated.
  Orphans orphans = Orphans::kFail;
};

// A column renamed at cutover; a compatibility view keeps the old name.
struct RenameColumn {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::string to;
  std::optional<ViewName> compat_view;
};

// DROP INDEX CONCURRENTLY at cleanup.
struct DropIndex {
  std::string schema = "public";
  std::string table;
  std::string name;
};

// ALTER TABLE ... RENAME CONSTRAINT at cutover; rollback renames it back.
struct RenameConstraint {
  std::string schema = "public";
  std::string table;
  std::string name;
  std::string to;
};

// CREATE TABLE in prepare; rollback drops it.
struct CreateTable {
  std::string schema = "public";
  std::string table;
  std::vector<std::string> columns;  // column and table constraint definitions, as SQL writes them
};

// A table moved out of the way at cutover (rollback moves it back, with its
// rows) and dropped at cleanup.
struct DropTable {
  std::string schema = "public";
  std::string table;
};

// A table renamed at cutover; a view under the old name (compat_view) keeps
// old readers and writers working until cleanup.
struct RenameTable {
  std::string schema = "public";
  std::string table;
  std::string to;
  bool compat_view = true;
};

// ALTER TABLE ... DROP CONSTRAINT at cutover, the constraint kept in the
// state schema; rollback puts it back (its index built CONCURRENTLY, a CHECK
// or foreign key NOT VALID, then validated).
struct DropConstraint {
  std::string schema = "public";
  std::string table;
  std::string name;
};

// ALTER TABLE ... REPLICA IDENTITY at cutover; rollback sets the one before.
struct SetReplicaIdentity {
  std::string schema = "public";
  std::string table;
  std::string identity;  // "default", "full", "nothing" or "index"
  std::string index;     // identity "index": a unique index of the table
};

// COMMENT ON TABLE / COLUMN at cutover; rollback sets the one before.
struct SetComment {
  std::string schema = "public";
  std::string table;
  std::optional<std::string> column;   // absent: the table's comment
  std::optional<std::string> comment;  // absent (null): no comment
};

// ALTER COLUMN ... SET / DROP DEFAULT at cutover; rollback sets the one before.
struct SetDefault {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::optional<std::string> value;  // absent (null): DROP DEFAULT
};

// One column changed through one shadow column: any of its type, NOT NULL,
// a CHECK, UNIQUE, a foreign key, its default, its comment and its name, with
// `up` rewriting the values old writers still write until cutover. Built on
// the shadow (NOT VALID then VALIDATE, the unique index CONCURRENTLY), the
// constraints take the column's place with it at cutover.
// alter_column_type is its simple form (type, up and down only).
struct AlterColumn {
  std::string schema = "public";
  std::string table;
  std::string column;
  std::optional<std::string> type;   // absent: the column keeps its type
  std::optional<bool> not_null;      // absent: as it is
  std::optional<std::string> check;  // a CHECK expression over the row's columns
  std::string check_name;            // default <table>_<column>_check
  bool unique = false;
  std::string unique_name;  // default <table>_<column>_key
  // A foreign key: referenced table (qualified, quoted; and as
  // "schema.table"), and column.
  std::string references;
  std::string references_raw;
  std::string referenced_column;
  std::string references_name;  // default <table>_<column>_fkey
  std::string on_delete;
  std::optional<std::optional<std::string>> default_value;  // set (or DROP when null)
  std::optional<std::optional<std::string>> comment;        // set (or removed when null)
  std::string rename;                                       // the column's new name, or ""
  std::optional<ViewName> compat_view;                      // with rename
  std::optional<std::string> up;    // expression over `column` giving the new value
  std::optional<std::string> down;  // expression over `column` (new) giving the old value
};

// A primary key on a table that has none, without a long lock: NOT NULL
// proved by validated checks, the unique index built CONCURRENTLY, both
// attached at cutover (ADD CONSTRAINT ... PRIMARY KEY USING INDEX).
struct AddPrimaryKey {
  std::string schema = "public";
  std::string table;
  std::vector<std::string> columns;
  std::string name;  // default <table>_pkey
  // Swap the table's primary key for this one; the old key's columns stay
  // unique (old_key_name, default <table>_<columns>_key, from cleanup on).
  bool replace = false;
  std::string old_key_name;
};

// Hand-written SQL for one phase.
struct SqlOperation {
  Phase phase = Phase::kPrepare;
  std::string up;
  std::optional<std::string> down;  // absent: irreversible
  bool transaction = true;          // false for CREATE INDEX CONCURRENTLY and the like
  std::optional<std::string> lock;  // what the statement locks, for `plan`
};

struct Operation {
  // One alternative per operation; each has one row, at the same index, in
  // the operation table (src/ops/registry.cc), which does not compile
  // without it.
  using Alternatives =
      std::variant<AlterColumnType, SqlOperation, CreateIndex, AddConstraint, SetNotNull,
                   DropColumn, AddColumn, MoveColumn, CopyTable, AddReference, RenameColumn,
                   DropIndex, RenameConstraint, CreateTable, DropTable, RenameTable, DropConstraint,
                   SetReplicaIdentity, SetComment, SetDefault, AlterColumn, AddPrimaryKey,
                   Transform>;
  SourceLocation where;
  Alternatives op;
};

// The operation's name as a spec writes it ("alter_column_type", "sql"...).
const char* operation_name(const Operation& operation);
// Every operation's name, in the order of Operation::op's alternatives.
const std::vector<std::string>& operation_names();

// A golden-master comparison run in the shadow_read phase: the old query and
// the new query, given the same parameters, must answer alike. Each
// parameter set's two queries run in one REPEATABLE READ snapshot.
struct ShadowReadPair {
  std::string name;
  SourceLocation where;
  std::string old_query;  // one SELECT, parameters $1, $2, ...
  std::string new_query;
  // A write probe: a statement through the old path, run before both reads
  // in their transaction, which is then rolled back.
  std::string write;
  // A write probe through the new path: a second comparison of the pair at
  // the end of cutover (step reads.<name>.after_cutover, its own sample),
  // with this statement before both reads, rolled back; it checks that the
  // new side's writes reach the old side (a `down`, `reverse` or back
  // trigger) end to end.
  std::string write_after_cutover;
  // Where the parameters come from: a sample of rows of `table` (its
  // `columns`, in order, are $1, $2, ...), or each row of `query`.
  std::string table;  // qualified and quoted; empty with `query`
  std::vector<std::string> columns;
  std::string query;
  int sample = 100;                   // parameter sets drawn (at most; `query`: its first rows)
  int seed = 1;                       // the sample's TABLESAMPLE REPEATABLE seed
  std::string compare = "unordered";  // ordered, unordered or keyed
  std::vector<std::string> key;       // keyed: the columns rows are matched by
  std::vector<std::string> ignore;    // columns left out of the comparison
  std::vector<std::string> tolerate;  // integer_width, text_types, numeric_scale
  long long max_mismatches = 0;       // the gate: more fails the step
  long long min_samples = 1;          // fewer parameter sets fails the step
  // The latency gate: the new query's median (p50) and 99th percentile
  // over the samples at most this many times the old query's; 0: none.
  double max_p50_ratio = 0;
  double max_p99_ratio = 0;
};

struct Spec {
  std::string file;
  std::string text;  // the file's bytes, stored with the migration
  std::string name;
  std::string description;
  Settings settings;
  std::set<std::string> settings_given;  // the keys the spec's settings named
  std::vector<Operation> operations;
  // Phases that wait for an operator's approval (cleanup always does).
  std::vector<Phase> approval_gates;
  std::vector<ShadowReadPair> shadow_reads;

  bool requires_approval(Phase phase) const;
  // Whether shadow_reads has a pair of this name.
  bool has_shadow_read(const std::string& name) const;
  // The slices of the operation done in slices, if one is (at most one per
  // migration), and that operation.
  const Slices* sliced() const;
  const Operation* sliced_operation() const;
};

// One located problem in a spec file.
struct SpecError {
  SourceLocation where;
  std::string message;
  std::string to_string() const;  // "file:line:column: message"
};

struct SpecParseResult {
  std::optional<Spec> spec;
  std::vector<SpecError> errors;  // empty when spec is set
  // What the lint of `sql` steps found (settings.sql_lint: warn), each
  // located at its operation: said, not refused.
  std::vector<SpecError> warnings;
};

// Parses spec text. `file` names the source in error messages. Never throws.
SpecParseResult parse_spec(const std::string& text, const std::string& file);
// Reads and parses a file; an unreadable file is reported as one error.
SpecParseResult load_spec_file(const std::string& path);

}  // namespace tandem
