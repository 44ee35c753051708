#include "daemon/metrics.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "daemon/metrics_server.h"
#include "util/logging.h"

namespace tandem {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, RendersEveryFamilyWithOneSeriesPerMigration) {
  MigrationMetrics m;
  m.name = "users_uuid";
  m.state = "running";
  m.phase = Phase::kBackfill;
  m.backfill_rows = 12000;
  m.backfill_batch_seconds.observe(0.03);
  m.backfill_batch_seconds.observe(0.3);
  m.throttled_seconds["manual"] = 4.5;
  m.throttle_reason = "manual";
  m.lock_timeouts = 2;
  m.step_rows_done = 12000;
  m.step_rows_total = 50000;
  m.eta_seconds = 7.5;
  m.ranges = 3;
  m.ranges_finished = 1;
  m.workers = 2;
  auto& pair = m.shadow_reads["orders_of_user"];
  pair.compared = 3;
  pair.differed = 1;
  for (double s : {0.0004, 0.002, 0.002}) pair.old_seconds.observe(s);
  for (double s : {0.0006, 0.0008, 0.03}) pair.new_seconds.observe(s);
  m.slices["pilot"] = {"live", 3};
  m.slices["eu"] = {"shadow", 57};
  m.canary_rollbacks = 2;
  std::string text = render_metrics({m}, "0.1.0");
  EXPECT_TRUE(has_line(
      text, "tandem_slice_stage{migration=\"users_uuid\",slice=\"pilot\",stage=\"live\"} 1"))
      << text;
  // The phase as a label too, and whether the database answers.
  EXPECT_TRUE(
      has_line(text, "tandem_migration_phase_info{migration=\"users_uuid\",phase=\"backfill\"} 1"))
      << text;
  EXPECT_TRUE(has_line(text, "tandem_database_up 1")) << text;
  EXPECT_TRUE(has_line(render_metrics({m}, "0.1.0", false), "tandem_database_up 0"));
  EXPECT_TRUE(has_line(text, "tandem_slice_keys{migration=\"users_uuid\",slice=\"eu\"} 57"))
      << text;
  EXPECT_TRUE(has_line(text, "tandem_canary_rollbacks_total{migration=\"users_uuid\"} 2")) << text;
  const std::string pl = "migration=\"users_uuid\",pair=\"orders_of_user\"";
  EXPECT_TRUE(has_line(text, "tandem_shadow_reads_compared_total{" + pl + "} 3")) << text;
  EXPECT_TRUE(has_line(text, "tandem_shadow_reads_differed_total{" + pl + "} 1")) << text;
  EXPECT_TRUE(has_line(
      text, "tandem_shadow_read_query_seconds_bucket{" + pl + ",side=\"old\",le=\"0.0005\"} 1"))
      << text;
  EXPECT_TRUE(has_line(
      text, "tandem_shadow_read_query_seconds_bucket{" + pl + ",side=\"new\",le=\"0.001\"} 2"))
      << text;
  EXPECT_TRUE(has_line(text, "tandem_shadow_read_query_seconds_count{" + pl + ",side=\"new\"} 3"))
      << text;
  EXPECT_TRUE(has_line(text, "tandem_build_info{version=\"0.1.0\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE tandem_backfill_rows_total counter"));
  EXPECT_TRUE(has_line(text, "tandem_migration_phase{migration=\"users_uuid\"} 3"));
  EXPECT_TRUE(
      has_line(text, "tandem_migration_state{migration=\"users_uuid\",state=\"running\"} 1"));
  EXPECT_TRUE(has_line(text, "tandem_backfill_rows_total{migration=\"users_uuid\"} 12000"));
  EXPECT_TRUE(has_line(
      text,
      "tandem_backfill_batch_duration_seconds_bucket{migration=\"users_uuid\",le=\"0.025\"} 0"));
  EXPECT_TRUE(has_line(
      text,
      "tandem_backfill_batch_duration_seconds_bucket{migration=\"users_uuid\",le=\"0.05\"} 1"));
  EXPECT_TRUE(has_line(
      text,
      "tandem_backfill_batch_duration_seconds_bucket{migration=\"users_uuid\",le=\"+Inf\"} 2"));
  EXPECT_TRUE(
      has_line(text, "tandem_backfill_batch_duration_seconds_count{migration=\"users_uuid\"} 2"));
  EXPECT_TRUE(has_line(
      text, "tandem_throttled_seconds_total{migration=\"users_uuid\",reason=\"manual\"} 4.5"));
  EXPECT_TRUE(has_line(text, "tandem_throttled{migration=\"users_uuid\"} 1"));
  EXPECT_TRUE(has_line(text, "tandem_lock_timeouts_total{migration=\"users_uuid\"} 2"));
  EXPECT_TRUE(has_line(text, "tandem_step_rows_done{migration=\"users_uuid\"} 12000"));
  EXPECT_TRUE(has_line(text, "tandem_step_rows_total{migration=\"users_uuid\"} 50000"));
  EXPECT_TRUE(has_line(text, "tandem_step_eta_seconds{migration=\"users_uuid\"} 7.5"));
  EXPECT_TRUE(has_line(text, "tandem_step_ranges{migration=\"users_uuid\"} 3"));
  EXPECT_TRUE(has_line(text, "tandem_step_ranges_finished{migration=\"users_uuid\"} 1"));
  EXPECT_TRUE(has_line(text, "tandem_step_workers{migration=\"users_uuid\"} 2"));
  // Every sample line belongs to a family announced by TYPE before it.
  std::string family;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (line[0] != '#') {
      EXPECT_EQ(line.rfind(family, 0), 0u) << line;
    }
  }
}

TEST(Metrics, BeforeThePhaseIsKnownThePhaseIsZeroAndNoEstimateIsShown) {
  MigrationMetrics m;
  m.name = "m";
  m.state = "starting";
  const std::string text = render_metrics({m}, "x");
  EXPECT_TRUE(has_line(text, "tandem_migration_phase{migration=\"m\"} 0"));
  EXPECT_EQ(text.find("tandem_migration_phase_info{"), std::string::npos) << text;
  EXPECT_TRUE(has_line(text, "tandem_step_ranges{migration=\"m\"} 1"));
  // Not known yet: the series is absent, not 0 (a 0 ETA would read as done).
  EXPECT_EQ(text.find("tandem_step_eta_seconds{"), std::string::npos) << text;
  EXPECT_EQ(text.find("tandem_step_rows_total{"), std::string::npos) << text;
}

TEST(Metrics, LabelValuesAreEscaped) { EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd"); }

TEST(Metrics, ListenAddresses) {
  EXPECT_EQ(parse_listen_address("127.0.0.1:9187"),
            std::make_pair(std::string("127.0.0.1"), static_cast<unsigned short>(9187)));
  EXPECT_EQ(parse_listen_address("[::1]:80").first, "::1");
  EXPECT_EQ(parse_listen_address(":9187").first, "0.0.0.0");
  EXPECT_THROW(parse_listen_address("localhost"), std::runtime_error);
  EXPECT_THROW(parse_listen_address("127.0.0.1:99999"), std::runtime_error);
  EXPECT_THROW(parse_listen_address("127.0.0.1:"), std::runtime_error);
}

TEST(Logging, JsonEscapeKeepsOneObjectPerLine) {
  EXPECT_EQ(json_escape("say \"hi\"\n\tand\x01"), "say \\\"hi\\\"\\n\\tand\\u0001");
  EXPECT_EQ(parse_log_format("json"), LogFormat::kJson);
  EXPECT_FALSE(parse_log_format("xml"));
}

// Writes a few lines through the formatter of `format`: one outside any
// migration, some inside one (one already naming it), one from a thread
// that copied the context, one from a thread that did not.
std::string lines_of(LogFormat format) {
  std::ostringstream out;
  spdlog::logger logger("test", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger.set_formatter(log_formatter(format, /*journal=*/true, /*tty=*/false));
  logger.info("before");
  {
    LogContextScope scope({"orders", "backfill", "1.backfill"});
    logger.warn("step 1.backfill: lock timeout");
    logger.info("migration orders: completed");
    std::thread([&logger, log = log_context()] {
      LogContextScope copied(log);
      logger.info("a worker's batch");
    }).join();
    std::thread([&logger] { logger.info("another thread"); }).join();
  }
  logger.info("after");
  return out.str();
}

TEST(Logging, TheLinesOfAMigrationNameItAndJsonCarriesItsPhaseAndStep) {
  EXPECT_EQ(lines_of(LogFormat::kText),
            "<6>before\n"
            "<4>migration orders: step 1.backfill: lock timeout\n"
            "<6>migration orders: completed\n"
            "<6>migration orders: a worker's batch\n"
            "<6>another thread\n"
            "<6>after\n");
  std::istringstream json(lines_of(LogFormat::kJson));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(json, line);) {
    ASSERT_EQ(line.rfind("<", 0), 0u) << line;
    lines.push_back(nlohmann::json::parse(line.substr(3)));
  }
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_FALSE(lines[0].contains("migration"));
  EXPECT_EQ(lines[1]["migration"], "orders");
  EXPECT_EQ(lines[1]["phase"], "backfill");
  EXPECT_EQ(lines[1]["step"], "1.backfill");
  EXPECT_EQ(lines[1]["msg"], "step 1.backfill: lock timeout");
  EXPECT_EQ(lines[3]["step"], "1.backfill");
  EXPECT_FALSE(lines[4].contains("migration"));
  EXPECT_FALSE(lines[5].contains("migration"));

  // Off the journal: the timestamp first, untouched by the prefix.
  std::ostringstream out;
  spdlog::logger logger("plain", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger.set_formatter(log_formatter(LogFormat::kText, false, false));
  LogContextScope scope({"orders", "", ""});
  logger.info("completed");
  EXPECT_TRUE(std::regex_match(
      out.str(),
      std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} info migration orders: completed\n)")))
      << out.str();
}

}  // namespace
}  // namespace tandem
