// The Debian package, as scripts/package.sh makes it, from this build tree:
// CPack packs it, dpkg-deb unpacks it into a scratch root (no container, no
// dpkg database touched), and what a host would get is checked there — the
// binaries run, the unit names the installed paths and verifies against the
// installed binary, the user and runtime directory come from sysusers.d and
// tmpfiles.d, the config is a conffile, and the dependencies are declared.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "support/pg_server.h"
#include "support/scenario.h"
#include "tandem/spec.h"

namespace tandem::testing {
namespace {

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Packed and unpacked once for the tests below.
class PackageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = "/tmp/tandem-package-" + std::to_string(getpid());
    run_command("rm -rf " + dir_ + " && mkdir -p " + dir_);
    const auto packed = run_command(std::string("cd ") + TANDEM_BINARY_DIR +
                                    " && cpack -G DEB -B " + dir_ + " >" + dir_ + "/cpack.log");
    packed_ = packed.exit_code == 0;
    deb_ = run_command("ls " + dir_ + "/tandem_*.deb").output;
    while (!deb_.empty() && deb_.back() == '\n') deb_.pop_back();
    root_ = dir_ + "/root";
    run_command("dpkg-deb -x " + deb_ + " " + root_);
    run_command("dpkg-deb -e " + deb_ + " " + dir_ + "/DEBIAN");
  }
  static void TearDownTestSuite() { run_command("rm -rf " + dir_); }
  void SetUp() override {
    ASSERT_TRUE(packed_) << read_file(dir_ + "/cpack.log");
    ASSERT_TRUE(exists(deb_)) << deb_;
    ASSERT_TRUE(exists(root_ + "/usr/bin/tandemd"));
  }
  static inline std::string dir_, deb_, root_;
  static inline bool packed_ = false;
};

TEST_F(PackageTest, TheDebInstallsWhatTheServiceNeedsWhereTheUnitLooksForIt) {
  for (const char* path :
       {"/usr/bin/tandemd", "/usr/bin/tandemctl", "/usr/lib/systemd/system/tandemd.service",
        "/usr/share/man/man8/tandemd.8", "/usr/share/man/man1/tandemctl.1",
        "/usr/lib/sysusers.d/tandem.conf", "/usr/lib/tmpfiles.d/tandem.conf",
        "/etc/tandem/tandemd.yaml", "/usr/share/doc/tandem/daemon.md",
        "/usr/share/doc/tandem/README.md", "/usr/share/tandem/schema/spec.schema.json",
        "/usr/share/tandem/schema/tandemd-config.schema.json"}) {
    EXPECT_TRUE(exists(root_ + path)) << path;
  }
  // The installed binaries run (their libraries are the host's).
  auto v = run_command(root_ + "/usr/bin/tandemd --version");
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("tandemd"), std::string::npos) << v.output;
  EXPECT_EQ(run_command(root_ + "/usr/bin/tandemctl --help").exit_code, 0);

  const std::string unit = read_file(root_ + "/usr/lib/systemd/system/tandemd.service");
  EXPECT_NE(unit.find("ExecStart=/usr/bin/tandemd serve --config /etc/tandem/tandemd.yaml"),
            std::string::npos)
      << unit;
  EXPECT_NE(unit.find("Documentation=file:///usr/share/doc/tandem/daemon.md"), std::string::npos);
  EXPECT_NE(unit.find("User=tandem"), std::string::npos);
  EXPECT_NE(read_file(root_ + "/usr/lib/sysusers.d/tandem.conf").find("u tandem -"),
            std::string::npos);
  EXPECT_NE(read_file(root_ + "/usr/lib/tmpfiles.d/tandem.conf")
                .find("d /run/tandemd 0750 tandem tandem -"),
            std::string::npos);

  // The package's control: dependencies found by dpkg-shlibdeps, the config
  // a conffile, maintainer scripts that parse.
  const std::string depends = run_command("dpkg-deb -f " + deb_ + " Depends").output;
  for (const char* lib : {"libpqxx-6.4", "libsystemd0", "libyaml-cpp0.7", "libc6"})
    EXPECT_NE(depends.find(lib), std::string::npos) << lib << " in: " << depends;
  EXPECT_EQ(read_file(dir_ + "/DEBIAN/conffiles"), "/etc/tandem/tandemd.yaml\n");
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    const std::string path = dir_ + "/DEBIAN/" + script;
    EXPECT_EQ(run_command("test -x " + path + " && sh -n " + path).exit_code, 0) << script;
  }
  const std::string postinst = read_file(dir_ + "/DEBIAN/postinst");
  EXPECT_NE(postinst.find("systemd-sysusers tandem.conf"), std::string::npos);
  // The config (mode 0640) is the service's group's to read.
  EXPECT_NE(postinst.find("chgrp tandem /etc/tandem/tandemd.yaml"), std::string::npos);
  EXPECT_NE(run_command("dpkg-deb -c " + deb_ + " | grep ' ./etc/tandem/tandemd.yaml'")
                .output.find("-rw-r-----"),
            std::string::npos);
}

TEST_F(PackageTest, TheManPagesRenderFromTheBinariesHelp) {
  // help2man made them from --help: the subcommands are there, and the
  // sections of config/man.
  const auto d = run_command("MANWIDTH=100 man -l " + root_ + "/usr/share/man/man8/tandemd.8");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  for (const char* s :
       {"tandemd - online, zero-downtime migrations for PostgreSQL", "validate", "slices",
        "Exit codes", "TANDEM_DSN", "/etc/tandem/tandemd.yaml", "tandemctl(1)"})
    EXPECT_NE(d.output.find(s), std::string::npos) << s << " in:\n" << d.output;
  const auto c = run_command("MANWIDTH=100 man -l " + root_ + "/usr/share/man/man1/tandemctl.1");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  for (const char* s :
       {"tandemctl - steer tandemd serve", "approve", "TANDEM_SOCKET", "tandemd(8)"})
    EXPECT_NE(c.output.find(s), std::string::npos) << s << " in:\n" << c.output;
  // The spec's page, made from docs/spec.md: every operation is in it.
  const auto p = run_command("MANWIDTH=100 man -l " + root_ + "/usr/share/man/man5/tandem-spec.5");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  for (const std::string s : {"tandem-spec - the migration spec", "DESCRIPTION", "Shadow reads",
                              "tandemd(8)", "spec.schema.json"})
    EXPECT_NE(p.output.find(s), std::string::npos) << s;
  for (const auto& op : operation_names())
    EXPECT_NE(p.output.find(op), std::string::npos) << op << " is not in tandem-spec(5)";
}

TEST_F(PackageTest, TheInstalledUnitVerifiesAgainstTheInstalledBinary) {
  if (run_command("command -v systemd-analyze").exit_code != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed";
  }
  // The unit as installed, against the binary installed in the scratch root.
  auto r = verify_unit(read_file(root_ + "/usr/lib/systemd/system/tandemd.service"),
                       root_ + "/usr/bin/tandemd");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
}

// docker/ cannot be run here (no Docker engine): what can be checked is that
// the compose file parses with the services the rehearsal needs, every file
// it mounts and builds from exists, the daemon config it mounts loads, and
// the image is built by the project's own scripts.
TEST(Docker, TheComposeRehearsalParsesAndTheDaemonConfigItMountsLoads) {
  const std::string docker = std::string(TANDEM_SOURCE_DIR) + "/docker/";
  const YAML::Node compose = YAML::LoadFile(docker + "compose.yaml");
  for (const char* service : {"postgres", "writer", "tandemd"})
    EXPECT_TRUE(compose["services"][service].IsMap()) << service;
  const YAML::Node tandemd = compose["services"]["tandemd"];
  const std::string context = docker + tandemd["build"]["context"].as<std::string>() + "/";
  EXPECT_TRUE(exists(context + tandemd["build"]["dockerfile"].as<std::string>()));
  for (const auto& v : tandemd["volumes"]) {
    const std::string host = v.as<std::string>().substr(0, v.as<std::string>().find(':'));
    if (host.rfind(".", 0) == 0) {
      EXPECT_TRUE(exists(docker + host)) << host;
    }
  }
  // The config reads the DSN from the environment compose gives the service.
  const std::string dsn = tandemd["environment"]["TANDEM_DSN"].as<std::string>();
  EXPECT_EQ(dsn.find("host=postgres"), 0u);
  setenv("TANDEM_DSN", dsn.c_str(), 1);
  const DaemonConfig c = load_config(docker + "tandemd.yaml");
  unsetenv("TANDEM_DSN");
  EXPECT_EQ(c.dsn, dsn);
  EXPECT_EQ(c.control.path, "/run/tandemd/control.sock");
  EXPECT_EQ(c.metrics_listen, "0.0.0.0:9188");
  EXPECT_NE(tandemd["ports"][0].as<std::string>().find("9188"), std::string::npos);

  // The build stage runs scripts/package.sh; the runtime stage installs the
  // package it made and runs as its user.
  const std::string dockerfile = read_file(docker + "Dockerfile");
  EXPECT_NE(dockerfile.find("RUN scripts/package.sh"), std::string::npos);
  EXPECT_EQ(access((std::string(TANDEM_SOURCE_DIR) + "/scripts/package.sh").c_str(), X_OK), 0);
  EXPECT_NE(dockerfile.find("FROM debian:bookworm AS build"), std::string::npos);
  EXPECT_NE(dockerfile.find("COPY --from=build /tandem.deb"), std::string::npos);
  EXPECT_NE(dockerfile.find("USER tandem"), std::string::npos);
}

// Every scalar of `n`, depth first.
void scalars(const YAML::Node& n, std::vector<std::string>& out) {
  if (n.IsScalar()) out.push_back(n.as<std::string>());
  if (n.IsSequence()) {
    for (const auto& x : n) scalars(x, out);
  }
  if (n.IsMap()) {
    for (const auto& x : n) scalars(x.second, out);
  }
}

TEST(CiRecipes, TheWorkflowsInTheDocsParseAndEveryCommandAndFlagTheyUseExists) {
  const std::string doc = read_file(std::string(TANDEM_SOURCE_DIR) + "/docs/ci.md");
  std::vector<YAML::Node> workflows;
  for (size_t at = doc.find("```yaml\n"); at != std::string::npos;
       at = doc.find("```yaml\n", at + 1)) {
    const size_t begin = at + 8;
    const std::string text = doc.substr(begin, doc.find("```\n", begin) - begin);
    ASSERT_NO_THROW(workflows.push_back(YAML::Load(text))) << text;
  }
  ASSERT_EQ(workflows.size(), 2u);
  EXPECT_TRUE(workflows[0]["jobs"]["plan"].IsMap());
  EXPECT_TRUE(workflows[1]["submit"].IsMap());
  // Each `tandemd SUB --flag ...` and `tandemctl SUB --flag ...` in a script
  // names a command and flags that its --help lists.
  std::vector<std::string> lines;
  for (const auto& w : workflows) scalars(w, lines);
  const std::regex command(R"((tandemd|tandemctl) ([a-z]+)([^|;&\n]*))");
  const std::regex flag(R"(--[a-z][a-z-]*)");
  int checked = 0;
  for (const auto& text : lines) {
    for (std::sregex_iterator m(text.begin(), text.end(), command), end; m != end; ++m) {
      const std::string binary = (*m)[1] == "tandemd" ? TANDEMD_PATH : TANDEMCTL_PATH;
      const auto help = run_command(binary + " " + (*m)[2].str() + " --help");
      ASSERT_EQ(help.exit_code, 0) << (*m)[0] << "\n" << help.output;
      const std::string args = (*m)[3];
      for (std::sregex_iterator f(args.begin(), args.end(), flag); f != end; ++f) {
        EXPECT_NE(help.output.find((*f)[0].str()), std::string::npos)
            << (*m)[0] << ": " << (*f)[0] << " is not in its --help";
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 15);
}

}  // namespace
}  // namespace tandem::testing
