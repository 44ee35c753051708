// Fleet files: what they say, and every mistake located at file:line:column.
#include "fleet/fleet_spec.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "fleet/fleet_store.h"
#include "util/text.h"

namespace tandem {
namespace {

const std::string kMigration =
    std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/pgbench_abalance_bigint.yaml";

std::string errors_of(const std::string& text) {
  auto r = parse_fleet(text, "fleet.yaml");
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.to_string());
  return join(out, "\n");
}

TEST(FleetSpec, ReadsTargetsWavesAndSettings) {
  auto r = parse_fleet(
      "name: shards\n"
      "migration: " +
          kMigration +
          "\n"
          "control: dbname=control\n"
          "targets:\n"
          "  - {name: a, dsn: dbname=a, labels: {ring: canary}}\n"
          "  - {name: b, dsn: dbname=b, labels: {ring: '1', region: eu}}\n"
          "  - {name: c, dsn: dbname=c, labels: {ring: '2'}}\n"
          "  - {name: d, dsn: dbname=d}\n"
          "waves:\n"
          "  - {name: canary, select: {ring: canary}, soak: 2m}\n"
          "  - {name: main, select: {ring: ['1', '2']}, parallel: 4, on_error: continue}\n"
          "  - {name: rest, select: rest}\n"
          "cutover: each\n"
          "drift: ignore\n"
          "cleanup: wave\n"
          "limits: {per_daemon: 3, per_host: 2}\n",
      "fleet.yaml");
  ASSERT_TRUE(r.fleet) << (r.errors.empty() ? "" : r.errors[0].to_string());
  const FleetSpec& f = *r.fleet;
  EXPECT_EQ(f.name, "shards");
  EXPECT_EQ(f.control_dsn, "dbname=control");
  ASSERT_EQ(f.targets.size(), 4u);
  EXPECT_EQ(f.targets[1].labels.at("region"), "eu");
  ASSERT_EQ(f.waves.size(), 3u);
  EXPECT_EQ(f.waves[0].soak, std::chrono::minutes(2));
  EXPECT_EQ(f.waves[0].parallel, 1);
  EXPECT_TRUE(f.waves[0].stop_on_error);
  EXPECT_EQ(f.waves[1].parallel, 4);
  EXPECT_FALSE(f.waves[1].stop_on_error);
  EXPECT_TRUE(f.waves[2].rest);
  EXPECT_EQ(f.cutover, FleetCutover::kEach);
  EXPECT_FALSE(f.hold_on_drift);
  EXPECT_TRUE(f.cleanup_per_wave);
  EXPECT_EQ(f.per_daemon, 3);
  EXPECT_EQ(f.per_host, 2);
  std::vector<SpecError> errors;
  EXPECT_EQ(assign_waves(f, f.targets, errors), (std::vector<int>{0, 1, 1, 2}));
  EXPECT_TRUE(errors.empty());
}

TEST(FleetSpec, EachTargetInExactlyOneWave) {
  const std::string head = "migration: " + kMigration +
                           "\n"
                           "targets:\n"
                           "  - {name: a, dsn: dbname=a, labels: {ring: canary, region: eu}}\n"
                           "  - {name: b, dsn: dbname=b, labels: {ring: '1'}}\n";
  EXPECT_EQ(errors_of(head + "waves:\n"
                             "  - {name: canary, select: {ring: canary}}\n"
                             "  - {name: eu, select: {region: eu}}\n"
                             "  - {name: one, select: {ring: '1'}}\n"),
            "fleet.yaml:3:5: target \"a\" is selected by waves canary and eu; each target must "
            "be in exactly one wave");
  EXPECT_EQ(errors_of(head + "waves:\n"
                             "  - {name: canary, select: {ring: canary}}\n"),
            "fleet.yaml:4:5: target \"b\" is in no wave: no wave's select matches its labels "
            "and no wave selects the rest");
  EXPECT_EQ(errors_of(head + "waves:\n"
                             "  - {name: canary, select: {ring: canary}}\n"
                             "  - {name: one, select: {ring: '1'}}\n"
                             "  - {name: empty, select: {ring: '9'}}\n"),
            "fleet.yaml:8:5: wave \"empty\" selects no target");
}

TEST(FleetSpec, MistakesAreLocated) {
  EXPECT_EQ(errors_of("migration: nowhere.yaml\ntargets: []\nwaves: []\n"),
            "fleet.yaml:1:12: migration: nowhere.yaml does not exist (the path is relative to "
            "the fleet file)\n"
            "fleet.yaml:2:10: targets: expected a list of targets ({name, dsn, labels}), got an "
            "empty list\n"
            "fleet.yaml:3:8: waves: expected a list of waves ({name, select, parallel, "
            "on_error, soak}), got an empty list");
  const std::string m = "migration: " + kMigration + "\n";
  EXPECT_EQ(errors_of(m + "targets:\n"
                          "  - {name: a, dsn: x}\n"
                          "  - {name: a, dsn: y, lables: {}}\n"
                          "  - {name: 'B!', dsn: z}\n"
                          "waves:\n"
                          "  - {name: w, select: rest, parallel: 0, on_error: retry, soak: soon}\n"
                          "cutover: later\n"),
            "fleet.yaml:4:12: target \"a\" is named twice (first at fleet.yaml:3:12)\n"
            "fleet.yaml:4:23: unknown key \"lables\" in target; did you mean \"labels\"?\n"
            "fleet.yaml:5:12: name: \"B!\" must be characters of a-z, 0-9, '_', '-' and '.'\n"
            "fleet.yaml:7:39: parallel: expected a whole number from 1 to 256, got \"0\"\n"
            "fleet.yaml:7:52: on_error: expected stop (no later wave starts) or continue, got "
            "\"retry\"\n"
            "fleet.yaml:7:65: soak: expected a duration such as 30s or 10m, got \"soon\"\n"
            "fleet.yaml:8:10: cutover: expected together (every target cuts over once all are "
            "ready) or each (every target in its wave), got \"later\"");
  EXPECT_EQ(errors_of(m + "targets_query: SELECT 1\ntargets_file: x.yaml\nwaves: [{name: w, "
                          "select: rest}]\n"),
            "fleet.yaml:3:15: give one of targets, targets_file and targets_query, not several\n"
            "fleet.yaml:3:15: targets_file: cannot read x.yaml");
  // The second and third `rest` are both refused, naming the first (the
  // waves' list grows meanwhile: found by the fuzzer as a use after free).
  EXPECT_EQ(errors_of(m + "targets: [{name: a, dsn: x}]\nwaves:\n  - {name: w1, select: rest}\n"
                          "  - {name: w2, select: rest}\n  - {name: w3, select: rest}\n"),
            "fleet.yaml:5:5: only one wave may select the rest (another does at line 4)\n"
            "fleet.yaml:6:5: only one wave may select the rest (another does at line 4)");
  EXPECT_EQ(errors_of("migration: [a\n"),
            "fleet.yaml:2:1: YAML syntax: end of sequence flow not found");
  EXPECT_EQ(errors_of(""),
            "fleet.yaml:1:1: the fleet file is empty; expected a mapping with "
            "\"migration\", \"targets\" and \"waves\"");
}

TEST(FleetSpec, TargetsFromAFileAreLocatedInIt) {
  char dir[] = "/tmp/tandem-fleet-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string targets = std::string(dir) + "/targets.yaml";
  FILE* f = fopen(targets.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("- {name: a, dsn: dbname=a, labels: {ring: '1'}}\n- {name: b}\n", f);
  fclose(f);
  auto r = parse_fleet("migration: " + kMigration +
                           "\ntargets_file: targets.yaml\nwaves: [{name: w, select: rest}]\n",
                       std::string(dir) + "/fleet.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(), targets + ":2:3: target b: missing required key \"dsn\"");
  std::system(("rm -rf " + std::string(dir)).c_str());
}

TEST(FleetSpec, ServerOfADsn) {
  EXPECT_EQ(server_of("host=db1 port=5433 dbname=x"), "db1:5433");
  EXPECT_EQ(server_of("postgresql://u@db2:6432/x"), "db2:6432");
  EXPECT_EQ(server_of("host=/tmp/s port=7 dbname=y"), "/tmp/s:7");
}

TEST(FleetSpec, FingerprintDiffSaysWhatDiffers) {
  EXPECT_EQ(fingerprint_diff("t: column a integer\nt: column b text\n",
                             "t: column a bigint\nt: column b text\n"),
            "-t: column a integer; +t: column a bigint");
  EXPECT_EQ(fingerprint_of("x"), fingerprint_of("x"));
  EXPECT_NE(fingerprint_of("x"), fingerprint_of("y"));
}

}  // namespace
}  // namespace tandem
