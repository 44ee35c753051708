#include "support/scenario.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

namespace tandem::testing {

Spec spec_from(const std::string& text) {
  auto r = parse_spec(text, "test.yaml");
  if (!r.spec) {
    ADD_FAILURE() << r.errors.at(0).to_string();
    return Spec{};
  }
  return *r.spec;
}

RunOutcome run_until(const Spec& spec, const std::string& dsn, std::optional<Phase> until,
                     ProgressSink* progress) {
  Plan plan = make_plan(spec);
  RunOptions o;
  o.dsn = dsn;
  o.progress = progress;
  o.actor = "test";
  o.until = until;
  o.approve_all = !until;
  return Executor(spec, plan, o).run();
}

std::string abalance_spec(int batch_size, const std::string& extra_settings) {
  return "name: abalance_bigint\n"
         "settings:\n"
         "  lock_timeout: 500ms\n"
         "  batch_size: " +
         std::to_string(batch_size) + "\n" + extra_settings +
         "operations:\n"
         "  - alter_column_type:\n"
         "      table: pgbench_accounts\n"
         "      column: abalance\n"
         "      type: bigint\n"
         "      up: abalance::bigint\n"
         "      down: abalance::integer\n";
}

std::string leftovers(const PgServer& pg, const std::string& db, const std::string& table) {
  // The table, and every partition when it is partitioned.
  const auto of_table = [&](const std::string& column) {
    return column + " IN (SELECT '" + table +
           "'::regclass UNION SELECT relid FROM pg_partition_tree('" + table + "'))";
  };
  return pg.psql(db,
                 "SELECT string_agg(x, ', ') FROM ("
                 " SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass AS x FROM pg_trigger"
                 "  WHERE " +
                     of_table("tgrelid") +
                     " AND tgname LIKE '%tandem%'"
                     " UNION ALL SELECT 'column ' || attname FROM pg_attribute"
                     "  WHERE attrelid = '" +
                     table +
                     "'::regclass AND attname LIKE '_tandem%'"
                     "    AND NOT attisdropped"
                     " UNION ALL SELECT 'constraint ' || conname || ' on ' || conrelid::regclass"
                     "  FROM pg_constraint WHERE " +
                     of_table("conrelid") +
                     " AND conname LIKE '_tandem%'"
                     " UNION ALL SELECT 'function ' || p.proname FROM pg_proc p"
                     "  JOIN pg_namespace n ON n.oid = p.pronamespace"
                     // A migration's own functions are "<table>__<column>_<tag>_<what>";
                     // the state schema's helpers have no "__".
                     "  WHERE n.nspname = 'tandem' AND p.proname LIKE '%\\_\\_%'"
                     " UNION ALL SELECT 'table ' || relname FROM pg_class"
                     "  WHERE relname LIKE '\\_tandem%' AND relkind IN ('r', 'v', 'p')"
                     " UNION ALL SELECT 'constraint kept for a rollback ' || conname"
                     "  FROM tandem.dropped_constraints"
                     " UNION ALL SELECT 'constraint to validate ' || conname FROM tandem.revalidate"
                     " UNION ALL SELECT 'kept for a rollback: ' || item FROM tandem.undo"
                     " UNION ALL SELECT 'index ' || c.relname FROM pg_index i"
                     "  JOIN pg_class c ON c.oid = i.indexrelid"
                     "  WHERE " +
                     of_table("i.indrelid") +
                     " AND c.relname LIKE '\\_tandem%'"
                     ") s");
}

std::string column_type(const PgServer& pg, const std::string& db, const std::string& table,
                        const std::string& column) {
  return pg.psql(
      db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '" + table +
              "'::regclass AND attname = '" + column + "' AND NOT attisdropped");
}

double worst_query_seconds(Connection& conn, const std::string& sql,
                           std::chrono::milliseconds how_long, std::chrono::milliseconds every) {
  using Clock = std::chrono::steady_clock;
  double worst = 0;
  for (auto end = Clock::now() + how_long; Clock::now() < end;) {
    auto t0 = Clock::now();
    conn.exec(sql);
    worst = std::max(worst, std::chrono::duration<double>(Clock::now() - t0).count());
    std::this_thread::sleep_for(every);
  }
  return worst;
}

std::string write_temp_file(const std::string& text, const std::string& suffix) {
  std::string tmpl = "/tmp/tandem-spec-XXXXXX" + suffix;
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = mkstemps(buf.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw std::runtime_error("mkstemps failed");
  close(fd);
  std::ofstream(buf.data()) << text;
  return buf.data();
}

std::string tandemd(const std::string& args) { return std::string(TANDEMD_PATH) + " " + args; }

pid_t spawn(const std::string& command, const std::string& output) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + command + " >>" + output + " 2>&1").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

CommandResult verify_unit(std::string unit, const std::string& binary) {
  const std::string installed = "/usr/bin/tandemd";
  unit.replace(unit.find(installed), installed.size(), binary);
  const std::string dir = "/tmp/tandem-unit-" + std::to_string(getpid());
  run_command("mkdir -p " + dir);
  {
    std::ofstream out(dir + "/tandemd.service");
    out << unit;
  }
  auto r = run_command("systemd-analyze verify " + dir + "/tandemd.service 2>&1");
  run_command("rm -rf " + dir);
  return r;
}

}  // namespace tandem::testing
