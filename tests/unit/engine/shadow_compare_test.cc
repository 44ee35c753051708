#include "engine/shadow_compare.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

constexpr unsigned kInt4 = 23, kInt8 = 20, kText = 25, kVarchar = 1043, kBpchar = 1042,
                   kNumeric = 1700;

QueryResult result(std::vector<std::string> columns, std::vector<unsigned> types,
                   std::vector<std::vector<std::optional<std::string>>> rows) {
  QueryResult r;
  r.columns = std::move(columns);
  r.types = std::move(types);
  r.rows = std::move(rows);
  return r;
}

QueryResult failed(const std::string& sqlstate, const std::string& message) {
  QueryResult r;
  r.sqlstate = sqlstate;
  r.error = message;
  return r;
}

const QueryResult kOrders = result({"id", "total"}, {kInt4, kNumeric},
                                   {{"1", "10.00"}, {"2", "5.50"}, {"3", std::nullopt}});

TEST(ShadowCompare, TheSameRowsAreTheSameInEveryMode) {
  for (auto mode : {CompareMode::kOrdered, CompareMode::kUnordered, CompareMode::kKeyed}) {
    CompareRules rules;
    rules.mode = mode;
    rules.key = {"id"};
    EXPECT_EQ(compare_results(kOrders, kOrders, rules), "");
  }
}

TEST(ShadowCompare, OrderMattersOnlyWhenOrdered) {
  QueryResult shuffled = kOrders;
  std::swap(shuffled.rows[0], shuffled.rows[2]);
  CompareRules rules;
  EXPECT_EQ(compare_results(kOrders, shuffled, rules), "");
  rules.mode = CompareMode::kOrdered;
  EXPECT_EQ(compare_results(kOrders, shuffled, rules),
            "old 3 rows, new 3 rows (id, total)\n"
            "row 1: id: old '1', new '3'; total: old '10.00', new NULL\n"
            "row 3: id: old '3', new '1'; total: old NULL, new '10.00'");
}

TEST(ShadowCompare, AMultisetCountsDuplicates) {
  QueryResult twice = result({"id"}, {kInt4}, {{"1"}, {"1"}});
  QueryResult once = result({"id"}, {kInt4}, {{"1"}});
  EXPECT_EQ(compare_results(twice, once, {}),
            "old 2 rows, new 1 rows (id)\n1 row only in old:\n  ('1')");
}

TEST(ShadowCompare, KeyedNamesTheKeyAndTheColumnsThatDiffer) {
  QueryResult changed = kOrders;
  changed.rows[1][1] = "5.55";
  changed.rows.pop_back();
  changed.rows.push_back({"4", "1.00"});
  CompareRules rules;
  rules.mode = CompareMode::kKeyed;
  rules.key = {"id"};
  EXPECT_EQ(compare_results(kOrders, changed, rules),
            "old 3 rows, new 3 rows (id, total)\n"
            "key ('2'): total: old '5.50', new '5.55'\n"
            "1 row only in old:\n  ('3', NULL)\n"
            "1 row only in new:\n  ('4', '1.00')");
  rules.key = {"nope"};
  EXPECT_NE(compare_results(kOrders, changed, rules).find("key column nope is not in the results"),
            std::string::npos);
}

TEST(ShadowCompare, TypesMustMatchUnlessTheRulesTolerateTheDifference) {
  QueryResult wide = kOrders;
  wide.types[0] = kInt8;
  EXPECT_EQ(compare_results(kOrders, wide, {}), "column 1 (id): old integer, new bigint");
  CompareRules rules;
  rules.integer_width = true;
  EXPECT_EQ(compare_results(kOrders, wide, rules), "");

  QueryResult text = result({"name"}, {kText}, {{"ab"}});
  QueryResult padded = result({"name"}, {kBpchar}, {{"ab  "}});
  QueryResult varchar = result({"name"}, {kVarchar}, {{"ab"}});
  EXPECT_EQ(compare_results(text, varchar, {}), "column 1 (name): old text, new varchar");
  rules.text_types = true;
  EXPECT_EQ(compare_results(text, varchar, rules), "");
  EXPECT_EQ(compare_results(text, padded, rules), "");
}

TEST(ShadowCompare, NumericScaleIsToleratedOnlyWhenAsked) {
  QueryResult rescaled = kOrders;
  rescaled.rows[0][1] = "10";
  rescaled.rows[1][1] = "5.5000";
  EXPECT_NE(compare_results(kOrders, rescaled, {}), "");
  CompareRules rules;
  rules.numeric_scale = true;
  EXPECT_EQ(compare_results(kOrders, rescaled, rules), "");
  rescaled.rows[1][1] = "5.05";
  EXPECT_NE(compare_results(kOrders, rescaled, rules), "");
}

TEST(ShadowCompare, IgnoredColumnsAreLeftOutOfBothSides) {
  QueryResult stamped = result({"id", "total", "at"}, {kInt4, kNumeric, 1184},
                               {{"1", "10.00", "x"}, {"2", "5.50", "y"}, {"3", std::nullopt, "z"}});
  EXPECT_EQ(compare_results(kOrders, stamped, {}),
            "old has 2 columns (id, total), new 3 (id, total, at)");
  CompareRules rules;
  rules.ignore = {"at"};
  EXPECT_EQ(compare_results(kOrders, stamped, rules), "");
  rules.ignore = {"when"};
  EXPECT_NE(compare_results(kOrders, kOrders, rules).find("ignore: column when is in neither"),
            std::string::npos);
}

TEST(ShadowCompare, AnErrorOnOneSideIsADifferenceAndTheSameErrorOnBothIsNot) {
  const QueryResult boom = failed("22012", "division by zero");
  EXPECT_EQ(compare_results(kOrders, boom, {}),
            "old returned 3 rows\nnew failed [22012]: division by zero");
  EXPECT_EQ(compare_results(boom, boom, {}), "");
  EXPECT_NE(compare_results(boom, failed("42P01", "relation does not exist"), {}), "");
}

TEST(ShadowCompare, AReportIsBounded) {
  QueryResult many = result({"v"}, {kText}, {});
  QueryResult other = result({"v"}, {kText}, {});
  for (int i = 0; i < 1000; ++i) {
    many.rows.push_back({std::string(70, 'a') + std::to_string(i)});
    other.rows.push_back({std::string(70, 'b') + std::to_string(i)});
  }
  CompareRules rules;
  rules.mode = CompareMode::kOrdered;
  const std::string diff = compare_results(many, other, rules);
  EXPECT_LE(diff.size(), 2100u);
  EXPECT_NE(diff.find("row 1: v: old"), std::string::npos);
}

}  // namespace
}  // namespace tandem
