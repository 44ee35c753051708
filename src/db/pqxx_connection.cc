// libpqxx 6.4 behind tandem::Connection. libpqxx's exceptions stop here.
#include <csignal>
#include <pqxx/pqxx>

#include "db/call_deadline.h"
#include "db/connection.h"
#include "db/conninfo.h"

namespace tandem {
namespace {

// libpq's text: "ERROR:  message\nDETAIL:  ...\n" → "message (DETAIL:  ...)".
std::string first_line(const std::string& s) {
  std::string t = s;
  for (const char* prefix : {"ERROR:  ", "FATAL:  "}) {
    if (t.rfind(prefix, 0) == 0) t = t.substr(std::string(prefix).size());
  }
  auto end = t.find_last_not_of("\n ");
  t = end == std::string::npos ? t : t.substr(0, end + 1);
  auto nl = t.find('\n');
  if (nl != std::string::npos) {
    // One line: newlines become spaces; libpq's tab before a hint goes.
    std::string rest;
    for (char c : t.substr(nl + 1)) {
      if (c == '\t') {
        if (!rest.empty() && rest.back() != ' ') rest += ' ';
      } else {
        rest += c == '\n' ? ' ' : c;
      }
    }
    t = t.substr(0, nl) + " (" + rest + ")";
  }
  return t;
}

// The SQLSTATE of a transaction_rollback, which libpqxx 6.4 does not keep.
std::string rollback_sqlstate(const pqxx::transaction_rollback& e) {
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e)) return "40P01";
  if (dynamic_cast<const pqxx::serialization_failure*>(&e)) return "40001";
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e)) return "40003";
  return "40000";
}

class PqxxConnection final : public Connection {
 public:
  explicit PqxxConnection(const std::string& dsn) : conn_(dsn) {
    conn_.inhibit_reactivation(true);
    const char* host = conn_.hostname();
    const char* port = conn_.port();
    if (host && *host) ping_conninfo_ = server_conninfo(host, port ? port : "");
  }

  Rows exec(const std::string& sql, const std::vector<std::string>& params) override {
    return translate(
        [&] {
          pqxx::nontransaction tx(conn_);
          pqxx::result r = params.empty()
                               ? tx.exec(sql)
                               : tx.exec_params(sql, pqxx::prepare::make_dynamic_params(params));
          Rows out;
          out.affected = r.affected_rows();
          for (pqxx::row::size_type c = 0; c < r.columns(); ++c) {
            out.columns.emplace_back(r.column_name(c));
            out.types.push_back(static_cast<unsigned>(r.column_type(c)));
          }
          out.rows.reserve(r.size());
          for (const auto& row : r) {
            std::vector<std::optional<std::string>> values;
            values.reserve(row.size());
            for (const auto& f : row) {
              if (f.is_null()) {
                values.emplace_back(std::nullopt);
              } else {
                values.emplace_back(std::string(f.c_str(), f.size()));
              }
            }
            out.rows.push_back(std::move(values));
          }
          return out;
        },
        false, sql);
  }

  void commit() override {
    translate(
        [&] {
          pqxx::nontransaction tx(conn_);
          tx.exec("COMMIT");
          return 0;
        },
        true, "COMMIT");
  }

  bool is_open() const override { return conn_.is_open(); }
  int backend_pid() const override { return conn_.backendpid(); }

 private:
  template <typename F>
  auto translate(F&& f, bool committing, const std::string& sql) -> decltype(f()) {
    WatchedCall call(conn_.sock(), timeout_.bound_for(sql), ping_conninfo_);
    // Whatever the call ended with, what it set is followed.
    struct Follow {
      StatementTimeout& t;
      const std::string& sql;
      ~Follow() { t.ran(sql); }
    } follow{timeout_, sql};
    try {
      return f();
    } catch (const pqxx::broken_connection& e) {
      const std::string cut = call.cut_reason();
      if (!cut.empty()) {
        throw Error(committing ? ErrorKind::kInDoubt : ErrorKind::kRetryable,
                    cut + "; the connection was dropped" +
                        (committing ? " during COMMIT; the outcome is unknown" : ""),
                    "08006");
      }
      if (committing) {
        throw Error(
            ErrorKind::kInDoubt,
            "connection lost during COMMIT; the outcome is unknown: " + first_line(e.what()),
            "08006");
      }
      throw Error(ErrorKind::kRetryable, "connection lost: " + first_line(e.what()), "08006");
    } catch (const pqxx::in_doubt_error& e) {
      throw Error(ErrorKind::kInDoubt, first_line(e.what()), "08006");
    } catch (const pqxx::sql_error& e) {
      // libpqxx 6.4 throws insufficient_privilege without the server's code.
      const bool denied = dynamic_cast<const pqxx::insufficient_privilege*>(&e) != nullptr;
      server_error(e, e.sqlstate().empty() && denied ? "42501" : e.sqlstate(), committing);
    } catch (const pqxx::transaction_rollback& e) {
      // Not an sql_error in libpqxx 6.4, and thrown without the server's
      // code: a deadlock or a serialization failure must still be retried.
      server_error(e, rollback_sqlstate(e), committing);
    } catch (const pqxx::failure& e) {
      if (!conn_.is_open()) {
        throw Error(committing ? ErrorKind::kInDoubt : ErrorKind::kRetryable,
                    "connection lost: " + first_line(e.what()), "08006");
      }
      throw Error(ErrorKind::kFatal, first_line(e.what()));
    }
  }

  // An error the server reported with `sqlstate`.
  [[noreturn]] void server_error(const pqxx::failure& e, const std::string& sqlstate,
                                 bool committing) {
    ErrorKind kind = classify_sqlstate(sqlstate);
    if (committing && !conn_.is_open()) kind = ErrorKind::kInDoubt;
    throw Error(kind, first_line(e.what()), sqlstate);
  }

  pqxx::connection conn_;
  // Every session starts with kSessionLimitsSql's 60 s.
  StatementTimeout timeout_{std::chrono::milliseconds(60'000)};
  std::string ping_conninfo_;
};

}  // namespace

namespace {

// A libpq session, its errors translated.
std::unique_ptr<Connection> open_session(const std::string& dsn) {
  try {
    return std::make_unique<PqxxConnection>(with_connection_defaults(dsn));
  } catch (const pqxx::broken_connection& e) {
    throw Error(ErrorKind::kRetryable, "cannot connect to the database: " + first_line(e.what()),
                "08001");
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kBadInput, "cannot connect to the database: " + first_line(e.what()));
  }
}

}  // namespace

std::unique_ptr<Connection> connect_postgres(const std::string& dsn,
                                             const std::string& application_name) {
  // A broken socket must surface as an error, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<Connection> conn = open_session(dsn);
  // Before any setting of tandem's reaches the session: through a
  // transaction pool it would reach the application's sessions instead.
  refuse_transaction_pooling(*conn, [&] { return open_session(dsn); });
  conn->exec("SELECT set_config('application_name', $1, false)", {application_name});
  // Let the server notice a vanished client (kill -9) within a second even in
  // the middle of a long statement, so its locks are released quickly.
  conn->exec("SET client_connection_check_interval = '1s'");
  conn->exec(kSessionLimitsSql);
  // What tandem commits (a step and its record) must survive a crash once
  // acknowledged: a server whose default is synchronous_commit = off would
  // lose it while tandem goes on to the next step. Batches, whose loss is
  // found and redone, turn it off again for their own transactions.
  conn->exec(
      "SELECT set_config('synchronous_commit', 'on', false)"
      " WHERE current_setting('synchronous_commit') = 'off'");
  return conn;
}

}  // namespace tandem
