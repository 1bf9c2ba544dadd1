#include "tools/shell.hpp"

#include <gtest/gtest.h>

#include <iostream>
#include <sstream>

#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

// Runs `tandem shell -c` against a server and captures what it prints.
struct shell_run {
  int status;
  std::string out;
  std::string err;
};

shell_run run(const test_server& srv, const std::string& command, const std::string& mode = "table") {
  tools::shell_options o;
  o.url = "tandem://127.0.0.1:" + std::to_string(srv.port());
  o.command = command;
  o.mode = mode;
  std::ostringstream out, err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  const int status = tools::run_shell(o);
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  return {status, out.str(), err.str()};
}

TEST(Shell, RunsStatementsAndPrintsTables) {
  test_server srv;
  auto r = run(srv,
               "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);\n"
               "INSERT INTO t(name) VALUES ('ada'), ('grace'); SELECT * FROM t ORDER BY id;");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| id | name  |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2  | grace |"), std::string::npos) << r.out;
}

TEST(Shell, DotCommandsAndJsonMode) {
  test_server srv;
  auto r = run(srv, "CREATE TABLE b(x); INSERT INTO b VALUES (X'00FF');\n.tables\n.schema b\n.mode json\nSELECT x FROM b;");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("b\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CREATE TABLE b(x);"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[{\"x\":{\"base64\":\"AP8=\"}}]"), std::string::npos) << r.out;
}

TEST(Shell, ErrorsGiveNonZeroStatus) {
  test_server srv;
  auto r = run(srv, "SELECT * FROM missing;");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("SQL_ERROR"), std::string::npos) << r.err;
  r = run(srv, "BEGIN;");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("UNSUPPORTED"), std::string::npos) << r.err;
}

TEST(Shell, SemicolonsInsideStringsAndTriggers) {
  test_server srv;
  auto r = run(srv,
               "CREATE TABLE log(m); CREATE TABLE t(x);\n"
               "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('a;b'); END;\n"
               "INSERT INTO t VALUES (';');\nSELECT m FROM log;",
               "list");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a;b\n");
}

TEST(Shell, UnreachableServer) {
  tools::shell_options o;
  o.url = "tandem://127.0.0.1:1";
  o.command = "SELECT 1;";
  std::ostringstream err;
  auto* old = std::cerr.rdbuf(err.rdbuf());
  const int status = tools::run_shell(o);
  std::cerr.rdbuf(old);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.str().find("UNAVAILABLE"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace tandem::testing
