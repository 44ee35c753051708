#include <gtest/gtest.h>

#include "util/duration.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {
namespace {

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration("250ms")->count(), 250);
  EXPECT_EQ(parse_duration("2s")->count(), 2000);
  EXPECT_EQ(parse_duration("1.5s")->count(), 1500);
  EXPECT_EQ(parse_duration("3m")->count(), 180000);
  EXPECT_EQ(parse_duration("1h")->count(), 3600000);
  EXPECT_EQ(parse_duration("40")->count(), 40);
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("2 s"));
  EXPECT_FALSE(parse_duration("fast"));
  EXPECT_FALSE(parse_duration(""));
  // Sums, as format_duration writes them.
  EXPECT_EQ(parse_duration("1m00s")->count(), 60000);
  EXPECT_EQ(parse_duration("3m20s")->count(), 200000);
  EXPECT_EQ(parse_duration("1h05m")->count(), 3900000);
  EXPECT_FALSE(parse_duration("1m5"));
  EXPECT_FALSE(parse_duration("5s-1s"));
  EXPECT_FALSE(parse_duration("2x"));
}

TEST(Duration, ExactFormReadsBackTheSameValue) {
  using std::chrono::milliseconds;
  EXPECT_EQ(format_duration_exact(milliseconds(500)), "500ms");
  EXPECT_EQ(format_duration_exact(milliseconds(1550)), "1.55s");
  EXPECT_EQ(format_duration_exact(milliseconds(90000)), "90s");
  EXPECT_EQ(format_duration_exact(milliseconds(120000)), "2m");
  EXPECT_EQ(format_duration_exact(milliseconds(7200000)), "2h");
  EXPECT_EQ(format_duration_exact(milliseconds(0)), "0s");
  for (long long ms : {0LL, 1LL, 999LL, 1000LL, 1001LL, 1550LL, 59999LL, 60000LL, 61234LL,
                       3600000LL, 86400000LL}) {
    EXPECT_EQ(parse_duration(format_duration_exact(milliseconds(ms)))->count(), ms) << ms;
    EXPECT_EQ(parse_duration(format_duration(milliseconds(ms))).has_value(), true) << ms;
  }
}

TEST(Duration, Formats) {
  using std::chrono::milliseconds;
  EXPECT_EQ(format_duration(milliseconds(850)), "850ms");
  EXPECT_EQ(format_duration(milliseconds(2500)), "2.5s");
  EXPECT_EQ(format_duration(milliseconds(200000)), "3m20s");
  EXPECT_EQ(format_duration(milliseconds(3900000)), "1h05m");
}

TEST(Text, ClosestSuggestsOnlyNearNames) {
  EXPECT_EQ(closest("lock_timout", {"lock_timeout", "batch_size"}), "lock_timeout");
  EXPECT_EQ(closest("zzz", {"lock_timeout", "batch_size"}), "");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(with_commas(1234567), "1,234,567");
  EXPECT_EQ(with_commas(-1000), "-1,000");
}

TEST(Text, FormatsBytesInPostgresUnits) {
  EXPECT_EQ(format_bytes(0), "0 bytes");
  EXPECT_EQ(format_bytes(1023), "1023 bytes");
  EXPECT_EQ(format_bytes(1024), "1.0 kB");
  EXPECT_EQ(format_bytes(134299648), "128 MB");
  EXPECT_EQ(format_bytes(8LL << 30), "8.0 GB");
  EXPECT_EQ(format_bytes(10695475200LL), "10 GB");  // 9.96 GB: not "10.0"
  EXPECT_EQ(format_bytes(-2048), "-2.0 kB");
}

TEST(Text, FindsTheFirstByteThatIsNotUtf8) {
  EXPECT_EQ(invalid_utf8_at("plain ascii"), std::string::npos);
  EXPECT_EQ(invalid_utf8_at("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::string::npos);
  EXPECT_EQ(invalid_utf8_at("ab\x9e"), 2u);            // a lone continuation byte
  EXPECT_EQ(invalid_utf8_at("ab\xc3"), 2u);            // truncated
  EXPECT_EQ(invalid_utf8_at("\xc0\xaf"), 0u);          // overlong '/'
  EXPECT_EQ(invalid_utf8_at("\xed\xa0\x80"), 0u);      // a UTF-16 surrogate
  EXPECT_EQ(invalid_utf8_at("\xf4\x90\x80\x80"), 0u);  // past U+10FFFF
}

TEST(Text, Utf8PrefixNeverSplitsACharacter) {
  EXPECT_EQ(utf8_prefix("abcdef", 4), "abcd");
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 3), "ab");  // é is two bytes
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 4), "ab\xc3\xa9");
  EXPECT_EQ(utf8_prefix("short", 40), "short");
}

TEST(Ident, QuotesLikePostgres) {
  EXPECT_EQ(quote_ident("abalance"), "abalance");
  EXPECT_EQ(quote_ident("user"), "\"user\"");
  EXPECT_EQ(quote_ident("Mixed"), "\"Mixed\"");
  EXPECT_EQ(quote_ident("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(quote_ident("1abc"), "\"1abc\"");
  EXPECT_EQ(quote_literal("it's"), "'it''s'");
  EXPECT_EQ(quote_literals({"a", "it's"}), "'a', 'it''s'");
  EXPECT_EQ(quote_literals({}), "");
}

TEST(Ident, QuotesEveryKeywordPostgresDoesNotAllowBareAsAColumnName) {
  // Column-name and type keywords, which the first list missed (issue 16).
  for (const char* k : {"time", "values", "where", "using", "with", "unique", "timestamp",
                        "interval", "position", "coalesce", "overlay", "json_table"}) {
    EXPECT_EQ(quote_ident(k), std::string("\"") + k + "\"") << k;
  }
  // Unreserved keywords stand bare, as PostgreSQL's quote_ident leaves them.
  for (const char* k : {"name", "type", "value", "data", "comment", "version", "zone"}) {
    EXPECT_EQ(quote_ident(k), k) << k;
  }
}

TEST(Ident, ALiteralWithABackslashReadsTheSameWhateverStandardConformingStringsSays) {
  EXPECT_EQ(quote_literal("a\\b"), "E'a\\\\b'");
  EXPECT_EQ(quote_literal("x\\'; drop table t; --"), "E'x\\\\''; drop table t; --'");
}

TEST(Ident, DollarQuoteNeverUsesATagItsBodyHolds) {
  EXPECT_EQ(dollar_quote("SELECT 1"), "$tandem$SELECT 1$tandem$");
  const std::string hostile = "a$tandem$;drop table cn;select $tandem$";
  EXPECT_EQ(dollar_quote(hostile), "$tandem_1$" + hostile + "$tandem_1$");
  EXPECT_EQ(dollar_quote("$tandem$ $tandem_1$"), "$tandem_2$$tandem$ $tandem_1$$tandem_2$");
  // A body that ends with the start of the tag would end the quote early.
  EXPECT_EQ(dollar_quote("x$tandem"), "$tandem_1$x$tandem$tandem_1$");
}

}  // namespace
}  // namespace tandem
