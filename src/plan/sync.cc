#include "plan/sync.h"

#include "plan/steps.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

std::string column_tuple(const std::vector<std::string>& columns, const std::string& prefix) {
  std::vector<std::string> parts;
  for (const auto& c : columns) parts.push_back(prefix + quote_ident(c));
  return "ROW(" + join(parts, ", ") + ")";
}

namespace {

std::vector<std::string> targets(const Mirror& m) {
  std::vector<std::string> out;
  for (const auto& [column, expr] : m.columns) out.push_back(column);
  return out;
}

// "e1 AS c1, e2 AS c2": the mapped values computed over `_row`.
std::string mapped_values(const Mirror& m) {
  std::vector<std::string> parts;
  for (const auto& [column, expr] : m.columns)
    parts.push_back("(" + expr + ") AS " + quote_ident(column));
  return join(parts, ", ");
}

// INSERT INTO to ... SELECT <key, mapped> FROM <source> ON CONFLICT ...; the
// key is copied as it is, even into a GENERATED ALWAYS identity column.
std::string upsert(const Mirror& m, const std::string& source) {
  std::vector<std::string> cols, values, sets;
  for (const auto& k : m.key) {
    cols.push_back(quote_ident(k));
    values.push_back("_row." + quote_ident(k));
  }
  for (const auto& [column, expr] : m.columns) {
    cols.push_back(quote_ident(column));
    values.push_back("(" + expr + ")");
    sets.push_back(quote_ident(column) + " = EXCLUDED." + quote_ident(column));
  }
  std::vector<std::string> keys;
  for (const auto& k : m.key) keys.push_back(quote_ident(k));
  std::string sql = "INSERT INTO " + m.to + " AS _t (" + join(cols, ", ") +
                    ")\n  OVERRIDING SYSTEM VALUE SELECT " + join(values, ", ") + " FROM " +
                    source + "\n  ON CONFLICT (" + join(keys, ", ") + ") DO ";
  if (sets.empty()) return sql + "NOTHING";
  return sql + "UPDATE SET " + join(sets, ", ") + "\n    WHERE " + column_tuple(targets(m), "_t.") +
         " IS DISTINCT FROM " + column_tuple(targets(m), "EXCLUDED.");
}

// Clears the mirrored columns (or deletes the row) of the `to` row keyed like `record`.
std::string remove(const Mirror& m, const std::string& record) {
  const std::string where =
      " WHERE " + column_tuple(m.key, "_t.") + " = " + column_tuple(m.key, record + ".");
  if (m.whole_rows) return "DELETE FROM " + m.to + " AS _t" + where;
  std::vector<std::string> sets;
  for (const auto& c : targets(m)) sets.push_back(quote_ident(c) + " = NULL");
  return "UPDATE " + m.to + " AS _t SET " + join(sets, ", ") + where;
}

}  // namespace

std::string mirror_function_body(const Mirror& m) {
  const std::string guard = quote_literal(m.guard);
  std::string write;
  if (m.whole_rows) {
    write = upsert(m, "(SELECT NEW.*) AS _row");
  } else {
    std::vector<std::string> sets;
    for (const auto& c : targets(m)) sets.push_back(quote_ident(c) + " = _n." + quote_ident(c));
    write = "UPDATE " + m.to + " AS _t SET " + join(sets, ", ") + "\n    FROM (SELECT " +
            mapped_values(m) + " FROM (SELECT NEW.*) AS _row) AS _n\n   WHERE " +
            column_tuple(m.key, "_t.") + " = " + column_tuple(m.key, "NEW.") + "\n     AND " +
            column_tuple(targets(m), "_t.") + " IS DISTINCT FROM " +
            column_tuple(targets(m), "_n.");
  }
  return "BEGIN\n"
         "  IF current_setting(" +
         guard +
         ", true) = 'on' THEN RETURN NULL; END IF;\n"
         "  PERFORM set_config(" +
         guard +
         ", 'on', true);\n"
         "  IF TG_OP = 'DELETE' THEN\n    " +
         remove(m, "OLD") +
         ";\n"
         "  ELSIF TG_OP = 'UPDATE' THEN\n"
         "    IF " +
         column_tuple(m.key, "OLD.") + " IS DISTINCT FROM " + column_tuple(m.key, "NEW.") +
         " THEN\n      " + remove(m, "OLD") +
         ";\n    END IF;\n"
         "  END IF;\n"
         "  IF TG_OP <> 'DELETE' THEN\n    " +
         write +
         ";\n  END IF;\n"
         "  PERFORM set_config(" +
         guard +
         ", 'off', true);\n"
         "  RETURN NULL;\n"
         "END\n";
}

Step mirror_function_step(const std::string& id, const std::string& description,
                          const std::string& function, const Mirror& m) {
  return trigger_function_step(id, description, function, mirror_function_body(m));
}

std::string mirror_backfill_statement(const Mirror& m) {
  return upsert(m, m.from + " AS _row WHERE " + std::string(kBatchRange) + " FOR UPDATE OF _row");
}

std::string mirror_mismatch(const Mirror& m) {
  std::string up = m.columns.empty() ? "" : "(SELECT " + mapped_values(m) + ") AS _up CROSS JOIN ";
  std::string same = m.columns.empty()
                         ? ""
                         : " AND " + column_tuple(targets(m), "_t.") + " IS NOT DISTINCT FROM " +
                               column_tuple(targets(m), "_up.");
  return "NOT EXISTS (SELECT 1 FROM " + up + m.to + " AS _t WHERE " + column_tuple(m.key, "_t.") +
         " = " + column_tuple(m.key, "_row.") + same + ")";
}

std::string orphan_mismatch(const Mirror& m) {
  return "NOT EXISTS (SELECT 1 FROM " + m.from + " AS _f WHERE " + column_tuple(m.key, "_f.") +
         " = " + column_tuple(m.key, "_row.") + ")";
}

namespace {

// Column aliases of the compare queries (_k1, _k2... for the key, _c1... for
// the mirrored columns), so that no user column name can clash with another.
std::vector<std::string> aliases(const std::string& stem, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 1; i <= n; ++i) out.push_back(stem + std::to_string(i));
  return out;
}

// "_row.k1 AS _k1, ...": the key columns of `_row` under their aliases.
std::string aliased_keys(const Mirror& m) {
  std::vector<std::string> parts;
  const auto k = aliases("_k", m.key.size());
  for (size_t i = 0; i < m.key.size(); ++i)
    parts.push_back("_row." + quote_ident(m.key[i]) + " AS " + k[i]);
  return join(parts, ", ");
}

std::vector<std::string> quoted(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back(quote_ident(n));
  return out;
}

// The chunk of `table` (as `_row`, {range}) with its key columns aliased,
// and `more` after them.
std::string chunk(const Mirror& m, const std::string& table, const std::string& more) {
  return "(SELECT " + aliased_keys(m) + more + " FROM " + table + " AS _row WHERE " +
         std::string(kBatchRange) + ")";
}

}  // namespace

BatchWork mirror_verify_work(const Mirror& m) {
  const auto k = aliases("_k", m.key.size());
  const auto c = aliases("_c", m.columns.size());
  std::string mapped, copied;
  for (size_t i = 0; i < m.columns.size(); ++i) {
    mapped += ", (" + m.columns[i].second + ") AS " + c[i];
    copied += ", _row." + quote_ident(m.columns[i].first) + " AS " + c[i];
  }
  std::string differs = "_t." + k[0] + " IS NULL";
  if (!c.empty())
    differs += " OR " + column_tuple(c, "_t.") + " IS DISTINCT FROM " + column_tuple(c, "_s.");
  BatchWork w{m.from, "", mirror_mismatch(m), "", ""};
  w.compare = "SELECT CASE WHEN " + differs + " THEN " + key_text(k, "_s.") + " END AS k\n  FROM " +
              chunk(m, m.from, mapped) + " AS _s\n  LEFT JOIN " + chunk(m, m.to, copied) +
              " AS _t ON " + column_tuple(k, "_t.") + " = " + column_tuple(k, "_s.");
  w.compare_key = quoted(m.key);
  return w;
}

BatchWork orphan_verify_work(const Mirror& m) {
  const auto k = aliases("_k", m.key.size());
  BatchWork w{m.to, "", orphan_mismatch(m), "", ""};
  w.compare = "SELECT CASE WHEN _f." + k[0] + " IS NULL THEN " + key_text(quoted(m.key), "_row.") +
              " END AS k\n  FROM " + m.to + " AS _row\n  LEFT JOIN " + chunk(m, m.from, "") +
              " AS _f ON " + column_tuple(k, "_f.") + " = " + column_tuple(m.key, "_row.") +
              "\n WHERE " + std::string(kBatchRange);
  w.compare_key = quoted(m.key);
  return w;
}

std::string create_compat_view_sql(const CompatView& v) {
  const std::string plain = v.others_null ? "'NULL::' || format_type(a.atttypid, a.atttypmod)"
                                          : "'_row.' || quote_ident(a.attname)";
  std::string column = plain;
  if (!v.replace.empty()) {
    column = "CASE a.attname";
    for (const auto& [name, expr] : v.replace) {
      column += "\n      WHEN " + quote_literal(name) + " THEN " +
                quote_literal("(" + expr + ")::") + " || format_type(a.atttypid, a.atttypmod)";
    }
    column += "\n      ELSE " + plain + " END";
  }
  return "DO " +
         dollar_quote(
             "\nDECLARE _cols text;\nBEGIN\n"
             "  SELECT string_agg(" +
             column +
             " || ' AS ' || quote_ident(a.attname), ', ' ORDER BY a.attnum)\n"
             "    INTO _cols FROM pg_attribute a\n"
             "   WHERE a.attrelid = " +
             quote_literal(v.shape) +
             "::regclass AND a.attnum > 0"
             " AND NOT a.attisdropped" +
             (v.skip.empty()
                  ? ""
                  : "\n     AND a.attname <> ALL (ARRAY[" + quote_literals(v.skip) + "]::name[])") +
             ";\n"
             "  EXECUTE 'CREATE VIEW ' || " +
             quote_literal(qualified(v.view.schema, v.view.name)) +
             " || ' AS SELECT ' || _cols || ' FROM ' || " + quote_literal(v.from_clause) +
             ";\n"
             // Its readers are the old table's: they get its grants. Over a
             // table under row security, the view checks privileges and
             // policies as its reader, not as its owner (who may bypass them).
             "  PERFORM tandem.copy_grants(" +
             quote_literal(v.shape) + "::regclass, " +
             quote_literal(qualified(v.view.schema, v.view.name)) +
             "::regclass);\n"
             "  IF EXISTS (SELECT 1 FROM pg_rewrite r\n"
             "               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = "
             "r.oid\n"
             "               JOIN pg_class c ON d.refclassid = 'pg_class'::regclass AND c.oid = "
             "d.refobjid\n"
             "              WHERE r.ev_class = " +
             quote_literal(qualified(v.view.schema, v.view.name)) +
             "::regclass AND c.relrowsecurity) THEN\n"
             "    EXECUTE 'ALTER VIEW ' || " +
             quote_literal(qualified(v.view.schema, v.view.name)) +
             " || ' SET (security_invoker = true)';\n"
             "  END IF;\n"
             "END\n") +
         ";\n";
}

Step compat_view_step(const std::string& id, const CompatView& v, const std::string& what) {
  return StepBuilder(id, Phase::kCutover,
                     "publish the view " + qualified(v.view.schema, v.view.name) + ": " + what)
      .sql(create_compat_view_sql(v))
      .rollback("DROP VIEW IF EXISTS " + qualified(v.view.schema, v.view.name) + ";\n")
      .lock(StepLock{LockMode::kAccessShare, "on the tables it reads"})
      .access("none");
}

Step drop_compat_view_step(const std::string& id, const ViewName& view) {
  return StepBuilder(id, Phase::kCleanup,
                     "drop the compatibility view " + qualified(view.schema, view.name) +
                         "; readers use the new shape now")
      .sql("DROP VIEW IF EXISTS " + qualified(view.schema, view.name) + ";\n")
      .reversible(false)
      .lock(StepLock{LockMode::kAccessExclusive, "on the view"})
      .access("none");
}

}  // namespace tandem
