// Hooks without a database: real executables in a scratch directory and a
// webhook served on loopback by the test.
#include "engine/hooks.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace tandem {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class HooksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/tandem-hooks-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
    settings_.path = dir_;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  // A shell script `name` in the directory, executable unless told otherwise.
  void script(const std::string& name, const std::string& body, bool executable = true) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    chmod(path.c_str(), executable ? 0755 : 0644);
  }
  HookEvent event(const std::string& name, const std::string& phase = "") {
    return {name, "m1", phase, "", "", "host=db1 dbname=app user=app password=***", "me"};
  }
  std::string calls() { return slurp(dir_ + "/calls"); }

  std::string dir_;
  HookSettings settings_;
};

TEST_F(HooksTest, EveryExecutableOfTheEventRunsInNameOrderWithTheEventInItsEnvironmentAndOnStdin) {
  script(
      "tandem-on-success",
      "echo \"a $TANDEM_HOOK $TANDEM_MIGRATION $TANDEM_PHASE [$TANDEM_STEP] $TANDEM_ACTOR\" >> " +
          dir_ + "/calls; cat > " + dir_ + "/payload.json");
  script("tandem-on-success-2-notify", "echo b >> " + dir_ + "/calls");
  script("tandem-on-success.sh", "echo c >> " + dir_ + "/calls");
  script("tandem-on-successful", "echo not-this-event >> " + dir_ + "/calls");
  script("tandem-on-failure", "echo not-this-event >> " + dir_ + "/calls");
  script("tandem-on-success-disabled", "echo not-executable >> " + dir_ + "/calls", false);
  EXPECT_EQ(deliver_hook(settings_, event("success", "cleanup")), "");
  EXPECT_EQ(calls(), "a success m1 cleanup [] me\nb\nc\n");
  const auto j = nlohmann::json::parse(slurp(dir_ + "/payload.json"));
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["hook"], "success");
  EXPECT_EQ(j["migration"], "m1");
  EXPECT_EQ(j["phase"], "cleanup");
  EXPECT_TRUE(j["step"].is_null());
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_EQ(j["database"], "host=db1 dbname=app user=app password=***");
  // RFC 3339, UTC, milliseconds.
  const std::string t = j["time"];
  ASSERT_EQ(t.size(), 24u) << t;
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t.back(), 'Z');
}

TEST_F(HooksTest, AFailingHookSaysWhichAndItsLastLineAndTheOthersStillRun) {
  script("tandem-on-before-cutover-1",
         "echo checking; echo 'the release train is not ready'; exit 3");
  script("tandem-on-before-cutover-2", "echo ran >> " + dir_ + "/calls");
  EXPECT_EQ(deliver_hook(settings_, event("before-cutover", "cutover")),
            "tandem-on-before-cutover-1 exited with status 3: the release train is not ready");
  EXPECT_EQ(calls(), "ran\n");
  script("tandem-on-before-cutover-3", "kill -9 $$");
  EXPECT_EQ(deliver_hook(settings_, event("before-cutover", "cutover")),
            "tandem-on-before-cutover-1 exited with status 3: the release train is not ready; "
            "tandem-on-before-cutover-3 was killed by signal 9");
}

TEST_F(HooksTest, AHookThatOutlivesTheTimeoutIsKilledWithWhatItStarted) {
  // The hook's own child (a sleep) must go too: its whole process group.
  script("tandem-on-failure", "sleep 60 & echo $! > " + dir_ + "/child; wait");
  settings_.timeout = 300ms;
  EXPECT_EQ(deliver_hook(settings_, event("failure")), "tandem-on-failure timed out after 300ms");
  const std::string child = slurp(dir_ + "/child");
  ASSERT_FALSE(child.empty());
  // Gone, or a zombie waiting for init to reap it.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    const std::string stat = slurp("/proc/" + child.substr(0, child.find('\n')) + "/stat");
    gone = stat.empty() || stat.find(") Z ") != std::string::npos;
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(gone) << "the hook's child still runs";
}

TEST_F(HooksTest, NotifyNeverWaitsForASlowHookAndDeliversInOrder) {
  // The hook blocks until the test lets it go: notify() returning at all
  // while it is blocked shows it does not wait.
  script("tandem-on-phase-change", "echo \"$TANDEM_PHASE\" >> " + dir_ + "/calls\nwhile [ ! -e " +
                                       dir_ + "/release ]; do sleep 0.02; done");
  settings_.timeout = 60s;
  Hooks hooks(settings_);
  for (const char* p : {"prepare", "dual_write", "backfill"})
    hooks.notify(event("phase-change", p));
  // A repeat of the migration's last event (a daemon running it again at
  // the same place) is not sent again; another migration's is.
  hooks.notify(event("phase-change", "backfill"));
  HookEvent other = event("phase-change", "backfill");
  other.migration = "m2";
  hooks.notify(other);
  const std::string so_far = calls();
  EXPECT_TRUE(so_far.empty() || so_far == "prepare\n") << so_far;
  std::ofstream(dir_ + "/release") << "";
  hooks.drain(30s);
  EXPECT_EQ(calls(), "prepare\ndual_write\nbackfill\nbackfill\n");
}

TEST_F(HooksTest, GateRunsAtOnceWhileTheQueueWaits) {
  script("tandem-on-start", "while [ ! -e " + dir_ + "/release ]; do sleep 0.02; done");
  script("tandem-on-before-cutover", "echo gate >> " + dir_ + "/calls");
  settings_.timeout = 60s;
  Hooks hooks(settings_);
  hooks.notify(event("start", "prepare"));
  EXPECT_EQ(hooks.gate(event("before-cutover", "cutover")), "");
  EXPECT_EQ(calls(), "gate\n");
  std::ofstream(dir_ + "/release") << "";
}

// One HTTP exchange on loopback: records the request, answers `status`.
class OneShotServer {
 public:
  explicit OneShotServer(std::string status) : status_(std::move(status)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 1);
    thread_ = std::thread([this] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      for (;;) {
        const auto head = request_.find("\r\n\r\n");
        if (head != std::string::npos) {
          const auto cl = request_.find("Content-Length: ");
          const size_t want = cl == std::string::npos ? 0 : std::stoul(request_.substr(cl + 16));
          if (request_.size() >= head + 4 + want) break;
        }
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      const std::string answer = "HTTP/1.1 " + status_ + "\r\nContent-Length: 0\r\n\r\n";
      send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      close(c);
    });
  }
  ~OneShotServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks/tandem"; }
  const std::string& request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  std::string status_, request_;
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

TEST_F(HooksTest, TheWebhookIsPostedTheSamePayloadAndANon2xxAnswerFails) {
  settings_.path.clear();
  {
    OneShotServer server("204 No Content");
    settings_.url = server.url();
    EXPECT_EQ(deliver_hook(settings_, event("waiting-approval", "cleanup")), "");
    const std::string req = server.request();
    EXPECT_EQ(req.rfind("POST /hooks/tandem HTTP/1.1\r\n", 0), 0u) << req;
    EXPECT_NE(req.find("Content-Type: application/json\r\n"), std::string::npos) << req;
    const auto j = nlohmann::json::parse(req.substr(req.find("\r\n\r\n") + 4));
    EXPECT_EQ(j["hook"], "waiting-approval");
    EXPECT_EQ(j["phase"], "cleanup");
  }
  {
    OneShotServer server("500 Internal Server Error");
    settings_.url = server.url();
    EXPECT_EQ(deliver_hook(settings_, event("before-cutover", "cutover")),
              "POST " + settings_.url + ": 500 Internal Server Error");
  }
  // Nothing listens there any more.
  const std::string r = deliver_hook(settings_, event("failure"));
  EXPECT_EQ(r, "POST " + settings_.url + ": Connection refused");
}

TEST(HookSettingsCheck, SaysWhatIsWrong) {
  HookSettings s;
  EXPECT_FALSE(s.enabled());
  EXPECT_EQ(hooks_text(s), "off");
  s.path = "/nonexistent/hooks";
  EXPECT_EQ(check_hook_settings(s), "hooks path /nonexistent/hooks is not a directory");
  s.path = "/tmp";
  s.url = "https://hooks.example.com/x";
  EXPECT_EQ(check_hook_settings(s),
            "hooks url https://hooks.example.com/x: expected http://host[:port][/path] (for "
            "https, call it from a hook executable, e.g. with curl)");
  for (const std::string bad : {"http://", "http://host:port/", "http://a b/", "http://[::1/"}) {
    s.url = bad;
    EXPECT_NE(check_hook_settings(s), "") << bad;
  }
  for (const std::string good :
       {"http://localhost", "http://127.0.0.1:8080/x?y=1", "http://[::1]:9/"}) {
    s.url = good;
    EXPECT_EQ(check_hook_settings(s), "") << good;
  }
  EXPECT_EQ(hooks_text(s),
            "executables in /tmp, POST to http://[::1]:9/, timeout 10s, a held cutover tried "
            "again every 30s");
}

}  // namespace
}  // namespace tandem
