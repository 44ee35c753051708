#include "spec/schema.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "spec/settings.h"
#include "tandem/phase.h"
#include "tandem/spec.h"
#include "util/duration.h"

namespace tandem {
namespace {

using json = nlohmann::json;

// What a key's value may be, as a schema says it. YAML types scalars, so a
// name or an expression may reach a schema checker as a number or a
// boolean (`default: 0`, `table: 2024`); the parser reads them as text.
enum class Shape {
  kName,      // an identifier or "schema.name"
  kText,      // SQL or free text
  kScalar,    // an expression: any scalar
  kNullable,  // an expression, or null (drop it)
  kBool,
  kNames,      // a column name, or a non-empty list of them (or expressions)
  kColumnMap,  // column name -> SQL expression
  kTextMap,    // name -> text
  kPhase,
  kWhole,  // a whole number, 0 or more
  kSlices,
  kCanary,
  kSliceList,
  kParams,
  kRatio,
  kRatioValue,  // a number from 1 to 1000
  kType,        // a type name: no quote but a quoted identifier's, no comment
  kPlainName,   // a bare name such as btree
  kNumber,      // 0 or more
  kDuration,    // 500ms, 2s, 3m20s, or milliseconds
  kEnum,
};

struct Field {
  const char* key;
  Shape shape;
  bool required = false;
  const char* description = "";
  std::vector<std::string> choices = {};  // kEnum
};

struct Object {
  const char* name;
  const char* description;
  std::vector<Field> fields;
  // What the schema says of the keys together (oneOf, dependencies, if/then).
  json rules = json::object();
};

constexpr bool kRequired = true;

// Every mapping of a spec with its keys, in the order docs/spec.md gives
// them. The parser checks keys against these lists (schema_keys).
const std::vector<Object>& objects() {
  static const std::vector<Object> kObjects = {
      {"spec",
       "A migration: what to change, how fast, and what to compare (docs/spec.md)",
       {{"name", Shape::kName, kRequired, "1 to 48 characters of a-z, 0-9, '_' and '-'"},
        {"description", Shape::kText},
        {"settings", Shape::kScalar},  // replaced by settings_schema()
        {"operations", Shape::kScalar, kRequired},
        {"gates", Shape::kScalar},
        {"shadow_reads", Shape::kScalar}}},
      {"alter_column_type",
       "Change a column's type through a shadow column, backfill and swap",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"type", Shape::kType, kRequired},
        {"up", Shape::kScalar, false, "old value -> new, e.g. abalance::bigint"},
        {"down", Shape::kScalar, false, "new value -> old, for writes after cutover"}}},
      {"sql",
       "Hand-written SQL run in a phase, with its undo",
       {{"phase", Shape::kPhase, kRequired},
        {"up", Shape::kText, kRequired},
        {"down", Shape::kText},
        {"transaction", Shape::kBool},
        {"lock", Shape::kText}}},
      {"create_index",
       "CREATE INDEX CONCURRENTLY, with an invalid leftover repaired",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"name", Shape::kName, kRequired},
        {"columns", Shape::kNames, kRequired},
        {"include", Shape::kNames},
        {"unique", Shape::kBool},
        {"method", Shape::kPlainName},
        {"with", Shape::kTextMap},
        {"where", Shape::kScalar},
        {"phase", Shape::kPhase}}},
      {"add_constraint",
       "A CHECK, FOREIGN KEY or UNIQUE constraint added without a long lock (NOT VALID, then "
       "VALIDATE)",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"name", Shape::kName, kRequired},
        {"check", Shape::kScalar},
        {"foreign_key", Shape::kNames},
        {"unique", Shape::kNames},
        {"references", Shape::kName},
        {"referenced_columns", Shape::kNames},
        {"on_delete",
         Shape::kEnum,
         false,
         "",
         {"no action", "restrict", "cascade", "set null", "set default"}},
        {"orphans", Shape::kEnum, false, "", {"fail", "set_null", "delete"}}},
       {{"oneOf",
         {{{"required", {"check"}}}, {{"required", {"foreign_key"}}}, {{"required", {"unique"}}}}},
        {"dependencies", {{"orphans", {"foreign_key"}}}}}},
      {"set_not_null",
       "SET NOT NULL through a validated CHECK, without a scan under a long lock",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired}}},
      {"drop_column",
       "Drop a column after cutover; down re-creates it for a rollback",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"type", Shape::kType},
        {"down", Shape::kScalar}},
       {{"dependencies", {{"down", {"type"}}}}}},
      {"add_column",
       "A new column filled by a backfill expression, then unique and NOT NULL online",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"type", Shape::kType, kRequired},
        {"backfill", Shape::kScalar},
        {"default", Shape::kScalar},
        {"unique", Shape::kBool},
        {"not_null", Shape::kBool}}},
      {"move_column",
       "Move a column to another table (the 10-step attribute migration)",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"key", Shape::kNames, kRequired},
        {"to", Shape::kName, kRequired},
        {"to_column", Shape::kName},
        {"compat_view", Shape::kName},
        {"slices", Shape::kSlices}}},
      {"copy_table",
       "Copy a table into a new one (v1 -> v2), kept in sync both ways",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"to", Shape::kName, kRequired},
        {"key", Shape::kNames, kRequired},
        {"up", Shape::kColumnMap, kRequired},
        {"down", Shape::kColumnMap},
        {"create", Shape::kText},
        {"compat_view", Shape::kName},
        {"slices", Shape::kSlices}},
       {{"dependencies", {{"compat_view", {"down"}}, {"slices", {"down"}}}}}},
      {"add_reference",
       "Rekey by lookup: fill a new key column from a referenced table, then a foreign key",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"type", Shape::kType, kRequired},
        {"via", Shape::kName, kRequired},
        {"references", Shape::kName, kRequired},
        {"referenced_column", Shape::kName, kRequired},
        {"lookup", Shape::kName, kRequired},
        {"on_delete",
         Shape::kEnum,
         false,
         "",
         {"no action", "restrict", "cascade", "set null", "set default"}},
        {"not_null", Shape::kBool},
        {"index", Shape::kBool},
        {"drop_via", Shape::kBool},
        {"compat_view", Shape::kName},
        {"orphans", Shape::kEnum, false, "", {"fail", "set_null", "delete"}}}},
      {"rename_column",
       "Rename a column, with a compatibility view for old readers",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"to", Shape::kName, kRequired},
        {"compat_view", Shape::kName}}},
      {"drop_index",
       "DROP INDEX CONCURRENTLY at cleanup",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"name", Shape::kName, kRequired}}},
      {"rename_constraint",
       "Rename a constraint",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"name", Shape::kName, kRequired},
        {"to", Shape::kName, kRequired}}},
      {"create_table",
       "Create a table in prepare",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"columns", Shape::kNames, kRequired}}},
      {"drop_table",
       "Drop a table at cleanup (renamed aside until then)",
       {{"schema", Shape::kName}, {"table", Shape::kName, kRequired}}},
      {"rename_table",
       "Rename a table, with a compatibility view under the old name",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"to", Shape::kName, kRequired},
        {"compat_view", Shape::kBool}}},
      {"drop_constraint",
       "Drop a constraint at cleanup",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"name", Shape::kName, kRequired}}},
      {"set_replica_identity",
       "ALTER TABLE ... REPLICA IDENTITY",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"identity", Shape::kEnum, kRequired, "", {"default", "full", "nothing", "index"}},
        {"index", Shape::kName}}},
      {"set_comment",
       "COMMENT ON a table or a column",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName},
        {"comment", Shape::kNullable, kRequired}}},
      {"set_default",
       "SET DEFAULT or DROP DEFAULT (null) at cutover",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"default", Shape::kNullable, kRequired}}},
      {"alter_column",
       "Several changes to one column at once (type, constraints, default, comment, name)",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"column", Shape::kName, kRequired},
        {"type", Shape::kType},
        {"not_null", Shape::kBool},
        {"check", Shape::kScalar},
        {"check_name", Shape::kName},
        {"unique", Shape::kBool},
        {"unique_name", Shape::kName},
        {"references", Shape::kName},
        {"referenced_column", Shape::kName},
        {"foreign_key_name", Shape::kName},
        {"on_delete",
         Shape::kEnum,
         false,
         "",
         {"no action", "restrict", "cascade", "set null", "set default"}},
        {"default", Shape::kNullable},
        {"comment", Shape::kNullable},
        {"rename", Shape::kName},
        {"compat_view", Shape::kName},
        {"up", Shape::kScalar},
        {"down", Shape::kScalar}}},
      {"add_primary_key",
       "A primary key from a unique index built concurrently",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"columns", Shape::kNames, kRequired},
        {"name", Shape::kName},
        {"replace", Shape::kBool},
        {"old_key_name", Shape::kName}}},
      {"transform",
       "Reshape rows (e.g. jsonb documents into relational tables) with your SQL",
       {{"schema", Shape::kName},
        {"table", Shape::kName, kRequired},
        {"key", Shape::kNames, kRequired},
        {"create", Shape::kTextMap},
        {"targets", Shape::kNames},
        {"apply", Shape::kText, kRequired},
        {"remove", Shape::kText, kRequired},
        {"reverse", Shape::kTextMap},
        {"slices", Shape::kSlices}},
       {{"anyOf", {{{"required", {"create"}}}, {{"required", {"targets"}}}}},
        {"dependencies", {{"slices", {"reverse"}}}}}},
      {"shadow_reads",
       "A pair of queries compared on sampled parameters (golden master)",
       {{"name", Shape::kName, kRequired},
        {"params", Shape::kParams, kRequired},
        {"old", Shape::kText, kRequired},
        {"new", Shape::kText, kRequired},
        {"write", Shape::kText},
        {"write_after_cutover", Shape::kText},
        {"compare", Shape::kEnum, false, "", {"ordered", "unordered", "keyed"}},
        {"key", Shape::kNames},
        {"ignore", Shape::kNames},
        {"tolerate", Shape::kNames},
        {"max_mismatches", Shape::kWhole},
        {"min_samples", Shape::kWhole},
        {"max_latency_ratio", Shape::kRatio}},
       {{"if", {{"properties", {{"compare", {{"const", "keyed"}}}}}, {"required", {"compare"}}}},
        {"then", {{"required", {"key"}}}},
        {"else", {{"not", {{"required", {"key"}}}}}}}},
      {"params",
       "Where a pair's parameters come from: a table's columns, or a query",
       {{"table", Shape::kName},
        {"schema", Shape::kName},
        {"columns", Shape::kNames},
        {"sample", Shape::kWhole},
        {"seed", Shape::kWhole},
        {"query", Shape::kText}},
       {{"oneOf", {{{"required", {"table"}}}, {{"required", {"query"}}}}},
        {"dependencies", {{"columns", {"table"}}, {"seed", {"table"}}, {"schema", {"table"}}}}}},
      {"max_latency_ratio", "", {{"p50", Shape::kRatioValue}, {"p99", Shape::kRatioValue}}},
      {"slices",
       "Move the rows slice by slice (docs/slices.md)",
       {{"by", Shape::kName, kRequired},
        {"new_keys", Shape::kEnum, false, "", {"new", "old"}},
        {"list", Shape::kSliceList, kRequired},
        {"canary", Shape::kCanary}}},
      {"slice",
       "One slice: a name and a SQL predicate on the routing column",
       {{"name", Shape::kName, kRequired},
        {"where", Shape::kScalar, false, "absent on the last slice only: every key left"}}},
      {"canary",
       "A health query over live slices; a live slice whose value exceeds max goes back",
       {{"query", Shape::kText, kRequired},
        {"max", Shape::kNumber, false, "the highest healthy value of the query"},
        {"every", Shape::kDuration}}},
  };
  return kObjects;
}

json duration_schema() {
  return {{"type", json::array({"string", "integer"})}, {"pattern", kDurationPattern}};
}

json ref(const std::string& name) { return {{"$ref", "#/definitions/" + name}}; }

json shape_schema(const Field& f) {
  // A string must not be empty.
  const json scalar = {{"type", json::array({"string", "number", "boolean"})}, {"minLength", 1}};
  switch (f.shape) {
    case Shape::kName:
      // At most 63 bytes (PostgreSQL's limit); no double quote, no control
      // character. (maxLength counts characters: the parser, bytes.)
      return {{"type", json::array({"string", "number"})},
              {"minLength", 1},
              {"maxLength", 63},
              {"pattern", "^[^\"\\u0000-\\u001f]+$"}};
    case Shape::kText:
      return {{"type", json::array({"string", "number"})}, {"minLength", 1}};
    case Shape::kScalar:
      return scalar;
    case Shape::kType:
      return {{"type", "string"},
              {"pattern", "^([A-Za-z0-9_ ,.()\\[\\]\\u0080-\\uffff]|\"[^\"]*\")+$"}};
    case Shape::kPlainName:
      return {{"type", "string"}, {"pattern", "^[A-Za-z_][A-Za-z0-9_]*$"}};
    case Shape::kNumber:
      return {{"type", "number"}, {"minimum", 0}};
    case Shape::kDuration:
      return duration_schema();
    case Shape::kRatioValue:
      return {{"type", "number"}, {"minimum", 1}, {"maximum", 1000}};
    case Shape::kNullable:
      return {{"type", json::array({"string", "number", "boolean", "null"})}};
    case Shape::kBool:
      return {{"anyOf", {{{"type", "boolean"}}, {{"enum", {"yes", "no", "on", "off"}}}}}};
    case Shape::kNames:
      return {{"anyOf",
               {{{"type", json::array({"string", "number"})}, {"minLength", 1}},
                {{"type", "array"},
                 {"minItems", 1},
                 {"items", {{"type", json::array({"string", "number"})}, {"minLength", 1}}}}}}};
    case Shape::kColumnMap:
      return {{"type", "object"}, {"minProperties", 1}, {"additionalProperties", scalar}};
    case Shape::kTextMap:
      return {{"type", "object"}, {"minProperties", 1}, {"additionalProperties", scalar}};
    case Shape::kPhase:
      return ref("phase");
    case Shape::kWhole:
      return {
          {"anyOf",
           {{{"type", "integer"}, {"minimum", 0}}, {{"type", "string"}, {"pattern", "^[0-9]+$"}}}}};
    case Shape::kSlices:
      return ref("slices");
    case Shape::kCanary:
      return ref("canary");
    case Shape::kSliceList:
      return {{"type", "array"}, {"minItems", 1}, {"items", ref("slice")}};
    case Shape::kParams:
      return ref("params");
    case Shape::kRatio:
      return {
          {"anyOf",
           {{{"type", "number"}, {"minimum", 1}, {"maximum", 1000}}, ref("max_latency_ratio")}}};
    case Shape::kEnum:
      return {{"enum", f.choices}};
  }
  return scalar;
}

json object_schema(const Object& o) {
  json props = json::object();
  json required = json::array();
  for (const auto& f : o.fields) {
    json p = shape_schema(f);
    if (*f.description) p["description"] = f.description;
    props[f.key] = p;
    if (f.required) required.push_back(f.key);
  }
  json out = {{"type", "object"}, {"properties", props}, {"additionalProperties", false}};
  if (*o.description) out["description"] = o.description;
  out.update(o.rules);
  if (!required.empty()) out["required"] = required;
  return out;
}

}  // namespace

const std::vector<std::string>& schema_keys(const std::string& what) {
  static const std::map<std::string, std::vector<std::string>> kKeys = [] {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& o : objects()) {
      for (const auto& f : o.fields) out[o.name].push_back(f.key);
    }
    return out;
  }();
  auto it = kKeys.find(what);
  if (it == kKeys.end()) throw std::logic_error("no schema object " + what);
  return it->second;
}

json spec_schema() {
  json defs = json::object();
  json operations = json::array();
  for (const auto& o : objects()) {
    defs[o.name] = object_schema(o);
  }
  const auto& ops = operation_names();
  for (const auto& o : objects()) {
    const std::string name = o.name;
    if (std::find(ops.begin(), ops.end(), name) == ops.end()) continue;  // a part of one
    operations.push_back({{"type", "object"},
                          {"properties", {{name, ref(name)}}},
                          {"required", {name}},
                          {"additionalProperties", false}});
  }
  defs["phase"] = {{"enum", phase_names()}};
  defs["operation"] = {{"description", "exactly one operation, by its name"},
                       {"oneOf", operations}};
  json spec = defs["spec"];
  defs.erase("spec");
  spec["properties"]["name"]["pattern"] = "^[a-z0-9_-]{1,48}$";
  spec["properties"]["name"]["type"] = "string";
  spec["properties"]["settings"] = settings_schema();
  spec["properties"]["operations"] = {
      {"type", "array"}, {"minItems", 1}, {"items", ref("operation")}};
  spec["properties"]["gates"] = {{"type", "object"},
                                 {"description", "phases that wait for an operator's approval"},
                                 {"propertyNames", ref("phase")},
                                 {"additionalProperties", {{"const", "approval"}}}};
  spec["properties"]["shadow_reads"] = {{"type", "array"}, {"items", ref("shadow_reads")}};
  spec["$schema"] = "http://json-schema.org/draft-07/schema#";
  spec["$id"] = "https://tandem.invalid/schema/spec.json";
  spec["title"] = "tandem migration spec";
  spec["definitions"] = defs;
  return spec;
}

json config_schema() {
  const json duration = duration_schema();
  const json text = {{"type", "string"}, {"minLength", 1}};
  json hooks = {
      {"type", "object"},
      {"additionalProperties", false},
      {"description", "docs/hooks.md"},
      {"properties",
       {{"path",
         {{"type", "string"}, {"description", "a directory of tandem-on-EVENT executables"}}},
        {"url", {{"type", "string"}, {"pattern", "^http://"}}},
        {"timeout", duration},
        {"retry", duration}}}};
  json defaults = settings_schema();
  defaults["description"] = "settings for submitted migrations whose spec does not give them";
  return {
      {"$schema", "http://json-schema.org/draft-07/schema#"},
      {"$id", "https://tandem.invalid/schema/tandemd-config.json"},
      {"title", "tandemd.yaml, the config of tandemd serve"},
      {"type", "object"},
      {"additionalProperties", false},
      {"properties",
       {{"database",
         {{"type", "object"},
          {"additionalProperties", false},
          {"maxProperties", 1},
          {"description", "give one of dsn, dsn_env and dsn_file"},
          {"properties", {{"dsn", text}, {"dsn_env", text}, {"dsn_file", text}}}}},
        {"control",
         {{"type", "object"},
          {"additionalProperties", false},
          {"properties",
           {{"socket", text},
            {"mode",
             {{"type", json::array({"string", "integer"})},
              {"description", "octal permissions such as \"0660\" (quoted), nothing for others"},
              {"pattern", "^0?[0-7]?[0-7][0-7]0$"}}},
            {"owner", {{"type", json::array({"string", "integer"})}}},
            {"group", {{"type", json::array({"string", "integer"})}}},
            {"allowed_uids",
             {{"type", "array"}, {"items", {{"type", "integer"}, {"minimum", 0}}}}}}}}},
        {"metrics",
         {{"type", "object"},
          {"additionalProperties", false},
          {"properties", {{"listen", {{"type", "string"}, {"pattern", "^.+:[0-9]+$"}}}}}}},
        {"log",
         {{"type", "object"},
          {"additionalProperties", false},
          {"properties",
           {{"level", {{"enum", {"trace", "debug", "info", "warn", "error"}}}},
            {"format", {{"enum", {"text", "json"}}}}}}}},
        {"shutdown_grace", duration},
        {"defaults", defaults},
        {"hooks", hooks},
        {"fleets",
         {{"type", "array"},
          {"items", text},
          {"description",
           "fleet files (docs/fleet.md) this daemon runs, sharing their targets with every "
           "other runner of them"}}}}}};
}

}  // namespace tandem
