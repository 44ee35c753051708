// Migrations done in slices (docs/slices.md): the spec's `slices:` block,
// the steps that define, open, cut over and remove the routes, the check of
// one slice's copy, and the stage ladder each slice climbs.
//
// The routes live in the database (state schema v13): tandem.slice_plans
// (one row per migration: the routing column, the rule for new keys, and
// whether routes are closed, open or cut over), tandem.slices (each slice's
// stage) and tandem.slice_members (routing key → slice, fixed when the
// slices are defined). tandem.route(migration, key) answers 'old' or 'new'
// and takes a shared transaction-level advisory lock on the key's slice; a
// change of stage takes it exclusively, so no transaction that routed before
// a change overlaps one that routed after it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "plan/sync.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace YAML {
class Node;
}

namespace tandem {

class SpecReader;

// Reads `slices:` of an operation (`n` is its mapping, `op` its name: the
// operations that can be done in slices are copy_table, move_column and
// transform); errors go to the reader. nullopt without `slices:` or with an
// error in it. What `by` may be depends on the operation: each checks it.
std::optional<Slices> parse_slices(SpecReader& r, const YAML::Node& n, const std::string& op);

// The tables of the operation done in slices as a slice's checks see them.
struct SlicedTables {
  std::string source;  // qualified: the table the routing keys come from
  std::string by;
  // The copy a slice's check compares (each source row of the slice against
  // its target row, and target rows of the slice without a source row).
  // nullopt for transform, whose new side SQL reshapes: the spec's
  // shadow-read pairs are its check.
  std::optional<Mirror> copy;
  std::string by_of_target;  // the routing key of a target row (`_row`), SQL
};
// Of spec.sliced_operation(), which must be set.
SlicedTables sliced_tables(const Spec& spec);

// A precheck (checks:: form, over `t`): the routing column is a column of
// the source table.
std::string slices_by_exists(const Slices& s);

// A precheck (checks:: form, over `t`) refusing a source column that a row
// created on the new side could not fill on its way back: NOT NULL, no
// default, not an identity or generated column, and not given by `down`
// nor a key column.
std::string slices_rows_reach_back(const CopyTable& op);

// prepare: tandem.slice_plans, tandem.slices and tandem.slice_members for
// the migration; fails, naming keys, when the last slice has a `where` and
// some key matches no slice. Rollback forgets them.
Step define_slices_step(const Spec& spec, const std::string& source, const Slices& s,
                        const std::string& id);
// The triggers that carry writes of the new side back to the old: each
// `trigger` on `table` calls `function` after every change.
struct BackTrigger {
  std::string trigger, table, function;
};
// The end of shadow_read: the back triggers created and the routes opened,
// in one transaction. Rollback closes them and drops the triggers.
Step open_routes_step(const Spec& spec, const std::string& id,
                      const std::vector<BackTrigger>& back);
// cutover: every key to the new side. Rollback opens the routes again.
Step cut_routes_step(const Spec& spec, const std::string& id);
// cleanup: the slices and their members forgotten; the plan's row stays, so
// route() keeps answering 'new' to applications not yet changed.
Step remove_routes_step(const Spec& spec, const std::string& id);

// The SQL that takes the routing locks of a migration's slices and of its
// new keys exclusively (in one order: new keys first, then slices by name).
std::string lock_all_routes_sql(const std::string& migration);

// The check of one slice's copy: $1 the migration, $2 the slice. One row:
// rows (source rows of the slice), differing (source rows whose target row
// is missing or not equal to up of it, plus target rows of the slice that
// lack their source row), sample (up to five keys of differing rows, text).
// `t.copy` must be set.
std::string slice_check_sql(const SlicedTables& t);

// The stages of a slice, in order. old and shadow route to the old side,
// live and complete to the new.
enum class SliceStage { kOld, kShadow, kLive, kComplete };
const char* to_string(SliceStage s);
std::optional<SliceStage> slice_stage_from(const std::string& s);
bool routes_new(SliceStage s);

enum class SliceMove { kPromote, kDemote, kRollback };
const char* to_string(SliceMove m);
std::optional<SliceMove> slice_move_from(const std::string& s);

// What a move asks for: the stage it leads to, or why it is refused; and
// what must hold first.
struct SliceStep {
  std::optional<SliceStage> to;
  std::string refused;      // set when `to` is not
  bool copy_check = false;  // the slice's copy checked, no difference
};
SliceStep next_slice_stage(SliceStage from, SliceMove move);

}  // namespace tandem
