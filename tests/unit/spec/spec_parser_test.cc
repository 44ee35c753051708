#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "spec/schema.h"
#include "spec/settings.h"
#include "tandem/spec.h"
#include "util/text.h"

namespace tandem {
namespace {

const char* kValid = R"(name: widen
description: widen a column
settings:
  lock_timeout: 250ms
  statement_timeout: 30s
  batch_size: 1000
  retry_budget: 5
operations:
  - alter_column_type:
      table: app.accounts
      column: balance
      type: bigint
      up: balance::bigint
  - sql:
      phase: backfill
      up: ANALYZE app.accounts
      down: SELECT 1
gates:
  cutover: approval
)";

TEST(SpecParser, ParsesAValidSpec) {
  auto r = parse_spec(kValid, "spec.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  const Spec& s = *r.spec;
  EXPECT_EQ(s.name, "widen");
  EXPECT_EQ(s.settings.lock_timeout.count(), 250);
  EXPECT_EQ(s.settings.statement_timeout.count(), 30000);
  EXPECT_EQ(s.settings.batch_size, 1000);
  EXPECT_EQ(s.settings.retry_budget, 5);
  ASSERT_EQ(s.operations.size(), 2u);
  const auto& a = std::get<AlterColumnType>(s.operations[0].op);
  EXPECT_EQ(a.schema, "app");
  EXPECT_EQ(a.table, "accounts");
  EXPECT_EQ(a.column, "balance");
  EXPECT_EQ(*a.up, "balance::bigint");
  EXPECT_FALSE(a.down.has_value());
  EXPECT_EQ(s.operations[0].where.line, 9);
  EXPECT_EQ(s.operations[0].where.column, 5);
  const auto& q = std::get<SqlOperation>(s.operations[1].op);
  EXPECT_EQ(q.phase, Phase::kBackfill);
  EXPECT_TRUE(q.transaction);
  EXPECT_TRUE(s.requires_approval(Phase::kCutover));
  EXPECT_TRUE(s.requires_approval(Phase::kCleanup));  // always
  EXPECT_FALSE(s.requires_approval(Phase::kBackfill));
}

TEST(SpecParser, DefaultsWhenSettingsAreAbsent) {
  auto r = parse_spec("name: x\noperations:\n  - sql: {phase: prepare, up: SELECT 1}\n", "s.yaml");
  ASSERT_TRUE(r.spec);
  EXPECT_EQ(r.spec->settings.lock_timeout.count(), 500);
  EXPECT_EQ(r.spec->settings.batch_size, 5000);
  EXPECT_EQ(r.spec->settings.retry_budget, 30);
}

struct Malformed {
  const char* title;
  const char* text;
  const char* message;  // the first error, exactly
};

const Malformed kMalformed[] = {
    {"empty file", "",
     "bad.yaml:1:1: the spec is empty; expected a mapping with \"name\" and "
     "\"operations\""},
    {"top level list", "- a\n- b\n",
     "bad.yaml:1:1: expected a mapping at the top level, got a list"},
    {"yaml syntax", "name: [unclosed\n",
     "bad.yaml:2:1: YAML syntax: end of sequence flow not found"},
    {"missing name", "operations:\n  - sql: {phase: prepare, up: x}\n",
     "bad.yaml:1:1: spec: missing required key \"name\""},
    {"missing operations", "name: x\n", "bad.yaml:1:1: spec: missing required key \"operations\""},
    {"unknown top key", "name: x\noperation:\n  - sql: {phase: prepare, up: x}\n",
     "bad.yaml:2:1: unknown key \"operation\" in the spec; did you mean \"operations\"?"},
    {"bad name", "name: Widen Column\noperations: []\n",
     "bad.yaml:1:7: name: \"Widen Column\" must be 1 to 48 characters of a-z, 0-9, '_' and '-'"},
    {"name is a list", "name: [a]\noperations: []\n",
     "bad.yaml:1:7: name: expected a string, got a list"},
    {"empty operations", "name: x\noperations: []\n",
     "bad.yaml:2:13: operations: the list is empty; a migration needs at least one"},
    {"operations not a list", "name: x\noperations: {sql: 1}\n",
     "bad.yaml:2:13: operations: expected a list, got a mapping"},
    {"unknown operation", "name: x\noperations:\n  - alter_colum_type: {table: t}\n",
     "bad.yaml:3:5: unknown operation \"alter_colum_type\"; did you mean \"alter_column_type\"?"},
    {"operation with two names",
     "name: x\noperations:\n  - sql: {phase: prepare, up: x}\n    alter_column_type: {}\n",
     "bad.yaml:3:5: operation: expected a mapping with exactly one operation name, such as "
     "\"alter_column_type:\""},
    {"unknown setting", "name: x\nsettings:\n  lock_timout: 1s\noperations: []\n",
     "bad.yaml:3:3: unknown key \"lock_timout\" in settings; did you mean \"lock_timeout\"?"},
    {"bad duration", "name: x\nsettings:\n  lock_timeout: soon\noperations: []\n",
     "bad.yaml:3:17: lock_timeout: expected a duration such as 500ms or 2s, got \"soon\""},
    {"duration out of range", "name: x\nsettings:\n  lock_timeout: 1ms\noperations: []\n",
     "bad.yaml:3:17: lock_timeout: 1ms is out of range (10ms to 10m00s)"},
    {"batch size not a number", "name: x\nsettings:\n  batch_size: lots\noperations: []\n",
     "bad.yaml:3:15: batch_size: expected a whole number, got \"lots\""},
    {"batch size zero", "name: x\nsettings:\n  batch_size: 0\noperations: []\n",
     "bad.yaml:3:15: batch_size: 0 is out of range (1 to 1000000)"},
    {"backoff max below backoff",
     "name: x\nsettings:\n  retry_backoff: 2s\n  retry_backoff_max: 1s\noperations:\n"
     "  - sql: {phase: prepare, up: x}\n",
     "bad.yaml:3:3: settings: retry_backoff_max must not be less than retry_backoff"},
    {"alter without table",
     "name: x\noperations:\n  - alter_column_type:\n      column: c\n      type: bigint\n",
     "bad.yaml:4:7: alter_column_type: missing required key \"table\""},
    {"alter without type",
     "name: x\noperations:\n  - alter_column_type:\n      table: t\n      column: c\n",
     "bad.yaml:4:7: alter_column_type: missing required key \"type\""},
    {"alter unknown key",
     "name: x\noperations:\n  - alter_column_type:\n      table: t\n      column: c\n"
     "      type: bigint\n      dwon: c::int\n",
     "bad.yaml:7:7: unknown key \"dwon\" in alter_column_type; did you mean \"down\"?"},
    {"alter up with semicolon",
     "name: x\noperations:\n  - alter_column_type:\n      table: t\n      column: c\n"
     "      type: bigint\n      up: c::bigint; DROP TABLE t\n",
     "bad.yaml:7:11: up: expected one SQL expression, found ';'"},
    {"alter long table name",
     "name: x\noperations:\n  - alter_column_type:\n      table: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n      column: c\n"
     "      type: bigint\n",
     "bad.yaml:4:14: table: "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
     "is longer than PostgreSQL's 63-byte limit"},
    {"alter is not a mapping", "name: x\noperations:\n  - alter_column_type: yes\n",
     "bad.yaml:3:24: alter_column_type: expected a mapping, got a scalar"},
    {"sql without phase", "name: x\noperations:\n  - sql:\n      up: SELECT 1\n",
     "bad.yaml:4:7: sql: missing required key \"phase\""},
    {"sql unknown phase",
     "name: x\noperations:\n  - sql:\n      phase: backfil\n      up: SELECT 1\n",
     "bad.yaml:4:14: phase: unknown phase \"backfil\"; did you mean \"backfill\"?"},
    {"sql without up", "name: x\noperations:\n  - sql:\n      phase: prepare\n",
     "bad.yaml:4:7: sql: missing required key \"up\""},
    {"sql bad transaction flag",
     "name: x\noperations:\n  - sql:\n      phase: prepare\n      up: SELECT 1\n      transaction: "
     "maybe\n",
     "bad.yaml:6:20: transaction: expected true or false, got \"maybe\""},
    {"gate unknown phase",
     "name: x\noperations:\n  - sql: {phase: prepare, up: x}\ngates:\n  cutovr: approval\n",
     "bad.yaml:5:3: gates: unknown phase \"cutovr\"; did you mean \"cutover\"?"},
    {"gate unknown kind",
     "name: x\noperations:\n  - sql: {phase: prepare, up: x}\ngates:\n  cutover: vote\n",
     "bad.yaml:5:12: gates: the only gate is \"approval\", got \"vote\""},
    {"constraint with two kinds",
     "name: x\noperations:\n  - add_constraint:\n      table: t\n      name: c\n"
     "      check: a > 0\n      unique: [a]\n",
     "bad.yaml:4:7: add_constraint: give exactly one of \"check\", \"foreign_key\" or "
     "\"unique\""},
    {"foreign key column count",
     "name: x\noperations:\n  - add_constraint:\n      table: t\n      name: c\n"
     "      foreign_key: [a, b]\n      references: u\n      referenced_columns: [id]\n",
     "bad.yaml:4:7: add_constraint: foreign_key has 2 columns but referenced_columns has 1"},
    {"foreign key bad on_delete",
     "name: x\noperations:\n  - add_constraint:\n      table: t\n      name: c\n"
     "      foreign_key: [a]\n      references: u\n      referenced_columns: [id]\n"
     "      on_delete: cascde\n",
     "bad.yaml:9:18: on_delete: unknown action \"cascde\"; did you mean \"cascade\"?"},
    {"drop column down without type",
     "name: x\noperations:\n  - drop_column: {table: t, column: c, down: \"'x'\"}\n",
     "bad.yaml:3:18: drop_column: \"down\" needs \"type\", the type the column is re-created "
     "with"},
    {"create index empty columns",
     "name: x\noperations:\n  - create_index: {table: t, name: i, columns: []}\n",
     "bad.yaml:3:48: columns: the list is empty; name at least one column"},
    {"create index without name",
     "name: x\noperations:\n  - create_index: {table: t, columns: [a]}\n",
     "bad.yaml:3:19: create_index: missing required key \"name\""},
    {"set not null unknown key", "name: x\noperations:\n  - set_not_null: {table: t, colunm: c}\n",
     "bad.yaml:3:30: unknown key \"colunm\" in set_not_null; did you mean \"column\"?"},
    {"move column without key",
     "name: x\noperations:\n  - move_column: {table: users, column: full_name, to: pii}\n",
     "bad.yaml:3:18: move_column: missing required key \"key\""},
    {"move column of a key column",
     "name: x\noperations:\n  - move_column: {table: u, column: id, key: [id], to: p}\n",
     "bad.yaml:3:37: move_column: \"id\" is part of the key; it cannot move"},
    {"copy table up not a mapping",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: [x]}\n",
     "bad.yaml:3:50: up: expected a mapping of column names to SQL expressions, got a list"},
    {"copy table maps a key column",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {id: id + 1}}\n",
     "bad.yaml:3:17: copy_table: key column \"id\" is copied as it is; leave it out of up and "
     "down"},
    {"copy table expression with two statements",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: \"1; DROP TABLE "
     "a\"}}\n",
     "bad.yaml:3:54: up.v: expected one SQL expression, found ';'"},
    {"copy table view without down",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w},"
     " compat_view: a_old}\n",
     "bad.yaml:3:71: copy_table: compat_view needs \"down\", which gives the view its columns"},
    {"slices without down",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w},"
     " slices: {by: id, list: [{name: all}]}}\n",
     "bad.yaml:3:66: copy_table: slices: slices need \"down\": once a slice is live, its writes "
     "reach the old table through it, so that the slice can go back"},
    {"slices by a column down does not give",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: region, list: [{name: all}]}}\n",
     "bad.yaml:3:85: copy_table: slices: by: \"region\" is neither a key column nor a column that "
     "down gives, so a row of the new table could not be told which slice it is in"},
    {"slices with a rest before the end",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, list: [{name: rest}, {name: eu, where: \"w = 1\"}]}}\n",
     "bad.yaml:3:96: copy_table: slices: slice \"rest\" has no \"where\", so it takes every key "
     "and the slices after it none; only the last slice may leave it out"},
    {"slices named twice",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, list: [{name: a, where: \"w = 1\"}, {name: a}]}}\n",
     "bad.yaml:3:130: copy_table: slices: two slices are named \"a\""},
    {"slices new keys neither side",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, new_keys: both, list: [{name: all}]}}\n",
     "bad.yaml:3:99: copy_table: slices: new_keys: expected new or old (the side that serves "
     "keys created after the slices are defined), got \"both\""},
    {"slices canary max not a number",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, list: [{name: all}], canary: {query: SELECT true, max: lots}}}\n",
     "bad.yaml:3:144: copy_table: slices: canary: max: expected a number of 0 or more (the "
     "highest healthy value of the query), got \"lots\""},
    {"slices canary misspelt key",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, list: [{name: all}], canary: {query: SELECT true, evry: 5s}}}\n",
     "bad.yaml:3:139: unknown key \"evry\" in copy_table: slices: canary; did you mean "
     "\"every\"?"},
    {"move_column routed by the column that moves",
     "name: x\noperations:\n  - move_column: {table: u, column: c, key: [id], to: p, slices: {by: "
     "c, list: [{name: all}]}}\n",
     "bad.yaml:3:71: move_column: slices: by: \"c\" is the column that moves; route by a column "
     "that stays in u (a key column, or another that identifies whose row it is)"},
    {"transform in slices without reverse for each table",
     "name: x\noperations:\n  - transform: {table: d, key: [id], create: {a: \"id int\", b: \"id "
     "int\"}, apply: x, remove: y, reverse: {a: z}, slices: {by: id, list: [{name: all}]}}\n",
     "bad.yaml:3:120: transform: slices need \"reverse\" for every table it writes: once a slice "
     "is live, its writes land on those tables and reach d through reverse, so that the slice can "
     "go back"},
    {"transform in slices without a pair on its keys",
     "name: x\noperations:\n  - transform: {table: d, key: [id], create: {a: \"id int\"}, apply: "
     "x, remove: y, reverse: {a: z}, slices: {by: id, list: [{name: all}]}}\n",
     "bad.yaml:3:107: transform: slices: no shadow-read pair draws its parameters from d with "
     "\"id\" among its columns; a transform's slice is checked by such pairs on its own keys "
     "(shadow_reads: ... params: {table: d, columns: [id, ...]})"},
    {"two operations in slices",
     "name: x\noperations:\n  - copy_table: {table: a, to: b, key: [id], up: {v: w}, down: {w: "
     "v}, slices: {by: id, list: [{name: all}]}}\n  - copy_table: {table: c, to: d, key: [id], "
     "up: {v: w}, down: {w: v}, slices: {by: id, list: [{name: all}]}}\n",
     "bad.yaml:4:80: copy_table: slices: another operation of this migration is in slices "
     "already (line 3); tandem.route answers per migration, so one can be: split the migration "
     "in two"},
    {"transform without tables",
     "name: x\noperations:\n  - transform: {table: d, key: [id], apply: a, remove: r}\n",
     "bad.yaml:3:16: transform: name the tables it writes, in \"create\" (new tables) or "
     "\"targets\""},
    {"transform create not a mapping",
     "name: x\noperations:\n  - transform: {table: d, key: [id], create: [t], apply: a,"
     " remove: r}\n",
     "bad.yaml:3:46: create: expected a mapping of table names to column definitions, got a "
     "list"},
    {"transform without remove",
     "name: x\noperations:\n  - transform: {table: d, key: [id], targets: [t], apply: a}\n",
     "bad.yaml:3:16: transform: missing required key \"remove\""},
    {"transform without key",
     "name: x\noperations:\n  - transform: {table: d, targets: [t], apply: a, remove: r}\n",
     "bad.yaml:3:16: transform: missing required key \"key\""},
    {"add reference misspelt lookup",
     "name: x\noperations:\n  - add_reference: {table: orders, column: user_id, type: uuid,"
     " via: username, references: users, referenced_column: user_id, lokup: username}\n",
     "bad.yaml:3:127: unknown key \"lokup\" in add_reference; did you mean \"lookup\"?"},
    {"rename column to itself",
     "name: x\noperations:\n  - rename_column: {table: t, column: a, to: a}\n",
     "bad.yaml:3:46: rename_column: \"to\" is the column's current name"},
    // Issue 16: fields that are not documented as SQL take only what they name.
    {"index method with a statement",
     "name: x\noperations:\n  - create_index:\n      table: t\n      name: i\n"
     "      columns: [a]\n      method: \"btree (a); drop table cn; --\"\n",
     "bad.yaml:7:15: method: \"btree (a); drop table cn; --\" is not an index method name "
     "(btree, hash, gist, spgist, gin, brin, or one an extension adds)"},
    {"type with a comment",
     "name: x\noperations:\n  - alter_column_type: {table: t, column: c, type: \"bigint -- x\"}\n",
     "bad.yaml:3:52: type: \"bigint -- x\" is not a type name (a comment)"},
    {"type with a quote",
     "name: x\noperations:\n  - add_column: {table: t, column: c, type: \"text'\", backfill: "
     "x}\n",
     "bad.yaml:3:45: type: \"text'\" is not a type name (''' has no place in one)"},
    {"type with an open parenthesis",
     "name: x\noperations:\n  - add_column: {table: t, column: c, type: \"numeric(12\", backfill: "
     "x}\n",
     "bad.yaml:3:45: type: \"numeric(12\" is not a type name (a '(' without its ')')"},
    // Found by the fuzzer: a null or empty backfill with no default planned
    // as if a default had been given.
    {"add column with a null backfill and no default",
     "name: x\noperations:\n  - add_column: {table: t, column: c, type: int, backfill: null}\n",
     "bad.yaml:3:60: backfill: expected an expression (or give default: instead)"},
    {"add column with an empty backfill and no default",
     "name: x\noperations:\n  - add_column: {table: t, column: c, type: int, backfill: \"\"}\n",
     "bad.yaml:3:60: backfill: expected an expression (or give default: instead)"},
    {"duplicate key",
     "name: x\nsettings:\n  lock_timeout: 500ms\n  lock_timeout: 10m\noperations:\n"
     "  - sql: {phase: prepare, up: x}\n",
     "bad.yaml:4:3: duplicate key \"lock_timeout\" (first at bad.yaml:3:3); a key may appear "
     "once"},
    {"duplicate key in an operation",
     "name: x\noperations:\n  - set_not_null: {table: a, column: c, table: b}\n",
     "bad.yaml:3:41: duplicate key \"table\" (first at bad.yaml:3:20); a key may appear once"},
    {"unknown key far off", "name: x\nzzz: 1\noperations:\n  - sql: {phase: prepare, up: x}\n",
     "bad.yaml:2:1: unknown key \"zzz\" in the spec; expected one of: name, description, settings, "
     "operations, gates, shadow_reads"},
    {"shadow read without params",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - {name: p, old: "
     "SELECT 1, new: SELECT 1}\n",
     "bad.yaml:4:5: shadow_reads: missing required key \"params\""},
    {"shadow read with a parameter it is not given",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n    "
     "params: {table: u, columns: [a]}\n"
     "    old: SELECT * FROM t WHERE a = $1\n    new: SELECT * FROM t WHERE a = $1 AND b = $2\n",
     "bad.yaml:7:10: new: uses $2 but params gives 1 value per sample (columns)"},
    {"shadow read with two statements",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n    "
     "params: {query: SELECT 1}\n"
     "    old: SELECT 1; DELETE FROM t\n    new: SELECT 1\n",
     "bad.yaml:6:10: old: one statement only; found ';' inside"},
    {"shadow read compared by a misspelt mode",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n    "
     "params: {query: SELECT 1}\n"
     "    old: SELECT 1\n    new: SELECT 1\n    compare: keyd\n",
     "bad.yaml:8:14: compare: expected ordered, unordered or keyed, got \"keyd\"; did you mean "
     "\"keyed\"?"},
    {"shadow read keyed without a key",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n    "
     "params: {query: SELECT 1}\n"
     "    old: SELECT 1\n    new: SELECT 1\n    compare: keyed\n",
     "bad.yaml:4:5: shadow_reads: compare: keyed needs key: the columns rows are matched by"},
    {"shadow read with both kinds of params",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n"
     "    params: {query: SELECT 1, table: t, columns: [a]}\n    old: SELECT 1\n    new: SELECT "
     "1\n",
     "bad.yaml:5:13: params: give either table (and columns) or query"},
    {"shadow read asking more samples than it draws",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n    "
     "params: {query: SELECT 1, sample: "
     "5}\n"
     "    old: SELECT 1\n    new: SELECT 1\n    min_samples: 10\n",
     "bad.yaml:8:18: min_samples: 10 is more than params draws (sample: 5)"},
    {"shadow read latency ratio below one",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - name: p\n"
     "    params: {query: SELECT 1}\n    old: SELECT 1\n    new: SELECT 1\n"
     "    max_latency_ratio: {p99: 0.5}\n",
     "bad.yaml:8:30: max_latency_ratio: expected a number from 1 to 1000 (the new query's time "
     "over "
     "the old one's), got \"0.5\""},
    {"two shadow reads of one name",
     "name: x\noperations: [{sql: {phase: prepare, up: x}}]\nshadow_reads:\n  - {name: p, params: "
     "{query: SELECT 1}, old: SELECT "
     "1,"
     " new: SELECT 1}\n  - {name: p, params: {query: SELECT 2}, old: SELECT 2, new: SELECT 2}\n",
     "bad.yaml:5:12: name: \"p\" is the name of the pair at bad.yaml:4:5 too"},
};

void PrintTo(const Malformed& m, std::ostream* os) { *os << m.title; }

class MalformedSpec : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedSpec, IsRejectedWithItsExactMessage) {
  const Malformed& m = GetParam();
  auto r = parse_spec(m.text, "bad.yaml");
  EXPECT_FALSE(r.spec.has_value());
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].to_string(), m.message);
}

INSTANTIATE_TEST_SUITE_P(All, MalformedSpec, ::testing::ValuesIn(kMalformed), [](const auto& info) {
  std::string n = info.param.title;
  for (char& c : n) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
});

TEST(SpecParser, AMisspeltRequiredKeyIsReportedOnceWithItsHint) {
  auto r = parse_spec("name: x\noperation:\n  - sql: {phase: prepare, up: x}\n", "bad.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
}

TEST(SpecParser, ReportsEveryErrorNotJustTheFirst) {
  auto r = parse_spec("name: x\nsettings:\n  batch_size: 0\n  retry_budget: -1\noperations: []\n",
                      "bad.yaml");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[1].to_string(),
            "bad.yaml:4:17: retry_budget: -1 is out of range (1 to 10000)");
}

// Found by the fuzzer: invalid UTF-8 reached `plan --json` and aborted it.
TEST(SpecParser, RejectsInvalidUtf8WithItsPlace) {
  auto r = parse_spec("name: x\ndescription: caf\xc3\xa9 \x9e\noperations: []\n", "bad.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(), "bad.yaml:2:19: the file is not valid UTF-8 (byte 0x9e)");
}

// Found by the fuzzer: a NUL byte slipped through the identifier check.
TEST(SpecParser, RejectsControlBytesInNames) {
  std::string text = "name: x\noperations:\n  - set_not_null: {table: \"a\\0b\", column: c}\n";
  auto r = parse_spec(text, "bad.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "bad.yaml:3:27: table: contains a control character or bytes that are not UTF-8");
  // A raw NUL in the file is refused before YAML sees it.
  r = parse_spec(std::string("name: x\ndescription: a\0b\n", 26), "bad.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "bad.yaml:2:15: the file contains a control character (byte 0x00)");
  r = parse_spec("name: x\ndescription: \"\\x01\"\noperations: []\n", "bad.yaml");
  EXPECT_EQ(r.errors[0].to_string(),
            "bad.yaml:2:14: description: contains a control character or bytes that are not UTF-8");
}

TEST(SpecParser, DeepNestingIsRefusedWithItsPlaceAndReason) {
  // Flow collections: the bracket that goes one level too deep (the fuzzer's
  // 100,000 levels reached yaml-cpp's limit, reported as "bad file").
  for (size_t levels : {40, 100000}) {
    std::string text = "name: x\ndescription: " + std::string(levels, '[') +
                       std::string(levels, ']') + "\noperations: []\n";
    auto r = parse_spec(text, "bad.yaml");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(),
              "bad.yaml:2:46: nested more than 32 levels deep; a migration spec needs a few");
  }
  // Brackets inside quotes and comments are text.
  auto r = parse_spec("name: x\ndescription: \"" + std::string(40, '[') + "\" # " +
                          std::string(40, '{') +
                          "\noperations:\n  - sql: {phase: prepare, up: "
                          "x}\n",
                      "ok.yaml");
  EXPECT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  // Block collections: the node past the limit.
  std::string text = "name: x\ndescription:\n";
  for (int i = 0; i < 40; ++i) text += std::string(2 + 2 * i, ' ') + "- \n";
  r = parse_spec(text, "bad.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "bad.yaml:35:67: nested more than 32 levels deep; a migration spec needs a few");
}

TEST(SpecParser, AnOversizedSpecIsRefusedBeforeItIsParsed) {
  std::string text = "name: x\noperations:\n";
  while (text.size() <= (1u << 20)) text += "  - sql: {phase: prepare, up: SELECT 1}\n";
  auto r = parse_spec(text, "big.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "big.yaml:1:1: the spec is " + with_commas(static_cast<long long>(text.size())) +
                " bytes; tandem reads specs of up to 1,048,576 bytes: split the migration into "
                "several");
}

TEST(SpecParser, UnreadableFileNamesTheFile) {
  auto r = load_spec_file("/nonexistent/spec.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "/nonexistent/spec.yaml: cannot read the file: No such file or directory");
}

// Each file of `files` checked against `schema` by python3-jsonschema (a
// checker tandem did not write), as YAML editors read it: file -> "" when
// valid, else the first reason.
std::map<std::string, std::string> schema_verdicts(
    const nlohmann::json& schema, const std::map<std::string, std::string>& files) {
  char name[] = "/tmp/tandem-schema-XXXXXX";
  const std::string dir = mkdtemp(name);
  std::ofstream(dir + "/schema.json") << schema.dump();
  for (const auto& [file, text] : files) std::ofstream(dir + "/" + file) << text;
  std::ofstream(dir + "/check.py")
      << "import json, os, sys, yaml, jsonschema\n"
         "d = sys.argv[1]\n"
         "v = jsonschema.Draft7Validator(json.load(open(os.path.join(d, 'schema.json'))))\n"
         "out = {}\n"
         "for f in sorted(os.listdir(d)):\n"
         "    if not f.endswith('.yaml'): continue\n"
         "    try:\n"
         "        doc = yaml.safe_load(open(os.path.join(d, f)))\n"
         "    except yaml.YAMLError as e:\n"
         "        out[f] = 'YAML: ' + str(e).splitlines()[0]; continue\n"
         "    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))\n"
         "    out[f] = errors[0].message[:200] if errors else ''\n"
         "json.dump(out, open(os.path.join(d, 'verdicts.json'), 'w'))\n";
  const std::string cmd = "/usr/bin/python3 " + dir + "/check.py " + dir + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::map<std::string, std::string> out;
  std::ifstream in(dir + "/verdicts.json");
  if (rc == 0 && in) out = nlohmann::json::parse(in).get<std::map<std::string, std::string>>();
  std::system(("rm -rf '" + dir + "'").c_str());
  return out;
}

// Malformed specs the parser refuses for what a schema cannot say: how
// values relate to each other or to the SQL they hold. Every other one the
// schema must refuse too.
const std::set<std::string> kBeyondASchema = {
    // What the SQL says (one statement, the parameters it uses, a type's
    // parentheses).
    "alter up with semicolon",
    "copy table expression with two statements",
    "shadow read with a parameter it is not given",
    "shadow read with two statements",
    "type with an open parenthesis",
    // How values relate: to each other, across keys or list items.
    "backoff max below backoff",
    "copy table maps a key column",
    "foreign key column count",
    "move column of a key column",
    "move_column routed by the column that moves",
    "rename column to itself",
    "shadow read asking more samples than it draws",
    "slices by a column down does not give",
    "slices named twice",
    "slices with a rest before the end",
    "transform in slices without a pair on its keys",
    "transform in slices without reverse for each table",
    "two operations in slices",
    "two shadow reads of one name",
    // YAML itself: a schema checker sees the document after the loader
    // kept one of the two values.
    "duplicate key",
    "duplicate key in an operation",
};

TEST(SpecSchema, RefusesEveryMalformedSpecItCanAndAcceptsEveryExample) {
  ASSERT_EQ(std::system("/usr/bin/python3 -c 'import jsonschema, yaml' 2>/dev/null"), 0)
      << "python3-jsonschema and python3-yaml are needed (scripts/deps.sh installs them)";
  std::map<std::string, std::string> files;
  std::map<std::string, std::string> titles;
  int i = 0;
  for (const auto& m : kMalformed) {
    const std::string f = "bad-" + std::to_string(i++) + ".yaml";
    files[f] = m.text;
    titles[f] = m.title;
  }
  std::vector<std::string> examples;
  for (const auto& e : std::filesystem::recursive_directory_iterator(
           std::string(TANDEM_SOURCE_DIR) + "/migrations/examples")) {
    if (e.path().extension() != ".yaml") continue;
    const std::string f = "good-" + std::to_string(i++) + ".yaml";
    std::ifstream in(e.path());
    files[f] = std::string(std::istreambuf_iterator<char>(in), {});
    titles[f] = e.path().string();
    examples.push_back(f);
    // The parser accepts it too.
    EXPECT_TRUE(parse_spec(files[f], e.path().string()).spec.has_value()) << e.path();
  }
  ASSERT_GE(examples.size(), 7u);
  const auto verdicts = schema_verdicts(spec_schema(), files);
  ASSERT_EQ(verdicts.size(), files.size());
  std::set<std::string> accepted;
  for (const auto& [f, why] : verdicts) {
    const bool example = f.rfind("good-", 0) == 0;
    if (example) {
      EXPECT_EQ(why, "") << titles[f];
    } else if (why.empty()) {
      accepted.insert(titles[f]);
    }
  }
  // Exactly the ones a schema cannot refuse: a new fixture the schema lets
  // through is either a gap in the schema or belongs in kBeyondASchema.
  EXPECT_EQ(accepted, kBeyondASchema);
}

TEST(SpecSchema, EveryOperationIsInItWithTheKeysTheParserAccepts) {
  const nlohmann::json s = spec_schema();
  std::set<std::string> in_schema;
  for (const auto& alt : s["definitions"]["operation"]["oneOf"]) {
    const std::string op = alt["required"][0];
    in_schema.insert(op);
    std::set<std::string> keys;
    for (const auto& [k, v] : s["definitions"][op]["properties"].items()) keys.insert(k);
    const auto& parsed = schema_keys(op);
    EXPECT_EQ(keys, std::set<std::string>(parsed.begin(), parsed.end())) << op;
  }
  EXPECT_EQ(in_schema, std::set<std::string>(operation_names().begin(), operation_names().end()));
  std::set<std::string> settings;
  for (const auto& [k, v] : s["properties"]["settings"]["properties"].items()) settings.insert(k);
  EXPECT_EQ(settings, std::set<std::string>(setting_keys().begin(), setting_keys().end()));
}

TEST(ConfigSchema, AcceptsTheExampleConfigsAndRefusesMistakes) {
  ASSERT_EQ(std::system("/usr/bin/python3 -c 'import jsonschema, yaml' 2>/dev/null"), 0);
  const auto read = [](const std::string& path) {
    std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/" + path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto verdicts = schema_verdicts(
      config_schema(), {{"good-example.yaml", read("config/tandemd.yaml")},
                        {"good-docker.yaml", read("docker/tandemd.yaml")},
                        {"good-hooks.yaml", "hooks:\n  path: /etc/tandem/hooks\n  timeout: 5s\n"},
                        {"bad-key.yaml", "databse:\n  dsn: x\n"},
                        {"bad-level.yaml", "log:\n  level: verbose\n"},
                        {"bad-two-dsns.yaml", "database:\n  dsn: x\n  dsn_env: Y\n"},
                        {"bad-mode.yaml", "control:\n  mode: \"0666\"\n"},
                        {"bad-https.yaml", "hooks:\n  url: https://example.com/x\n"},
                        {"bad-default.yaml", "defaults:\n  batch_sise: 10\n"}});
  ASSERT_EQ(verdicts.size(), 9u);
  for (const auto& [f, why] : verdicts) {
    if (f.rfind("good-", 0) == 0) {
      EXPECT_EQ(why, "") << f;
    } else {
      EXPECT_NE(why, "") << f;
    }
  }
}

}  // namespace
}  // namespace tandem
