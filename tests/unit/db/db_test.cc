// The database adapter's pure parts: SQLSTATE classes, connection strings as
// libpq reads them, and the statement_timeout a call's deadline follows.
#include <gtest/gtest.h>

#include "db/call_deadline.h"
#include "db/connection.h"
#include "db/conninfo.h"
#include "tandem/error.h"

namespace tandem {
namespace {

TEST(Errors, ClassifiesSqlStates) {
  EXPECT_EQ(classify_sqlstate("55P03"), ErrorKind::kRetryable);  // lock timeout
  EXPECT_EQ(classify_sqlstate("40P01"), ErrorKind::kRetryable);  // deadlock
  EXPECT_EQ(classify_sqlstate("40001"), ErrorKind::kRetryable);  // serialization
  EXPECT_EQ(classify_sqlstate("08006"), ErrorKind::kRetryable);  // connection failure
  EXPECT_EQ(classify_sqlstate("57P01"), ErrorKind::kRetryable);  // admin shutdown
  EXPECT_EQ(classify_sqlstate("40003"), ErrorKind::kInDoubt);
  EXPECT_EQ(classify_sqlstate("42P01"), ErrorKind::kFatal);  // undefined table
  EXPECT_EQ(classify_sqlstate("23505"), ErrorKind::kFatal);  // unique violation
}

// Issue 16: a call's client-side deadline follows the statement_timeout it
// runs under: the session's, or the transaction's while one is open.
TEST(StatementTimeout, FollowsSessionAndLocalSettings) {
  using std::chrono::milliseconds;
  StatementTimeout t(milliseconds(60'000));
  EXPECT_EQ(t.bound_for("SELECT 1"), milliseconds(60'000));
  t.ran("SET statement_timeout = '5s'; SET lock_timeout = '1s'");
  EXPECT_EQ(t.in_effect(), milliseconds(5'000));
  t.ran("BEGIN");
  // The call that sets a longer one runs under it already.
  EXPECT_EQ(t.bound_for("SET LOCAL lock_timeout = '10ms'; SET LOCAL statement_timeout = '2h'"),
            milliseconds(7'200'000));
  t.ran("SET LOCAL lock_timeout = '10ms'; SET LOCAL statement_timeout = '2h'");
  EXPECT_EQ(t.in_effect(), milliseconds(7'200'000));
  t.ran("COMMIT");
  EXPECT_EQ(t.in_effect(), milliseconds(5'000));
  t.ran("set local STATEMENT_TIMEOUT to 250");
  EXPECT_EQ(t.in_effect(), milliseconds(250));
  t.ran(" rollback; ");
  EXPECT_EQ(t.in_effect(), milliseconds(5'000));
  // A shorter one set on the way does not shorten the call that sets it.
  EXPECT_EQ(t.bound_for("SET statement_timeout = '1min'; SELECT 1"), milliseconds(60'000));
  EXPECT_EQ(t.bound_for("SET statement_timeout = 100"), milliseconds(5'000));
  // 0 is none: only the server check bounds such a call.
  EXPECT_EQ(t.bound_for("SET statement_timeout = 0"), milliseconds(0));
  t.ran("SET statement_timeout = '0'");
  EXPECT_EQ(t.bound_for("SET LOCAL statement_timeout = '1s'"), milliseconds(0));
  // Not an assignment, or not a value PostgreSQL would take: ignored.
  t.ran("SELECT current_setting('statement_timeout'); SET statement_timeout = 'x'");
  EXPECT_EQ(t.in_effect(), milliseconds(0));
  StatementTimeout u(milliseconds(60'000));
  u.ran("SET statement_timeout TO '3 d'");
  EXPECT_EQ(u.in_effect(), milliseconds(3LL * 86'400'000));
}

// Issue 16: the old masking missed "password = s3cret" and "password= s3cret"
// (shown as "password=*** s3cret") and quoted passwords with escapes.
TEST(Conninfo, HidesThePasswordHoweverLibpqWouldReadIt) {
  EXPECT_EQ(redacted_conninfo("host=db password=s3cret dbname=app"),
            "password=*** dbname=app host=db");
  EXPECT_EQ(redacted_conninfo("host=db password = s3cret"), "password=*** host=db");
  EXPECT_EQ(redacted_conninfo("host=db password= s3cret"), "password=*** host=db");
  EXPECT_EQ(redacted_conninfo("password='s3 cr\\'et\\\\' host=db"), "password=*** host=db");
  EXPECT_EQ(redacted_conninfo("postgresql://app:s3cret@db:5433/app?sslmode=require"),
            "user=app password=*** dbname=app host=db port=5433 sslmode=require");
  EXPECT_EQ(redacted_conninfo("postgresql://app:s%33cret@db/app?password=other"),
            "user=app password=*** dbname=app host=db");
  EXPECT_EQ(redacted_conninfo("application_name='a b'"), "application_name='a b'");
  EXPECT_EQ(redacted_conninfo(""), "");
  // What libpq cannot read is not echoed: the password could be in it.
  EXPECT_EQ(redacted_conninfo("host=db s3cret"), "(a connection string libpq cannot read)");
  EXPECT_EQ(redacted_conninfo("password='s3cret"), "(a connection string libpq cannot read)");
}

// Issue 16: libpq's defaults left a session on a vanished server waiting
// about two hours. What the DSN sets wins.
TEST(Conninfo, AddsKeepalivesAndTimeoutsTheDsnLeavesUnset) {
  EXPECT_EQ(with_connection_defaults("host=db password='a b' keepalives_idle=60"),
            "password='a b' host=db keepalives_idle=60 keepalives=1 keepalives_interval=3 "
            "keepalives_count=3 tcp_user_timeout=30000 connect_timeout=10");
  EXPECT_EQ(with_connection_defaults("postgresql://u@h1,h2/app?target_session_attrs=read-write"
                                     "&connect_timeout=2&tcp_user_timeout=5000"),
            "user=u connect_timeout=2 dbname=app host=h1,h2 port=, tcp_user_timeout=5000 "
            "target_session_attrs=read-write keepalives=1 keepalives_idle=10 "
            "keepalives_interval=3 keepalives_count=3");
  EXPECT_EQ(with_connection_defaults("host=db s3cret"), "host=db s3cret");
}

}  // namespace
}  // namespace tandem
