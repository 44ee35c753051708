// A step's lock: a mode and a note, and the words a spec's `sql` gives.
#include <gtest/gtest.h>

#include "tandem/plan.h"

namespace tandem {
namespace {

TEST(StepLock, WordsAreTheModeThenTheNote) {
  EXPECT_EQ(StepLock::metadata_only().to_string(), "ACCESS EXCLUSIVE (brief: metadata only)");
  EXPECT_EQ((StepLock{LockMode::kRowExclusive, "; row locks"}).to_string(),
            "ROW EXCLUSIVE; row locks");
  EXPECT_EQ((StepLock{LockMode::kNone, ""}).to_string(), "none");
  EXPECT_EQ((StepLock{LockMode::kAsWritten, "whatever it says"}).to_string(), "whatever it says");
}

TEST(StepLock, ReadsTheLongestModeASpecsWordsBeginWith) {
  struct Case {
    const char* words;
    LockMode mode;
    const char* note;
  };
  for (const Case& c :
       {Case{"SHARE ROW EXCLUSIVE on t", LockMode::kShareRowExclusive, "on t"},
        Case{"SHARE UPDATE EXCLUSIVE", LockMode::kShareUpdateExclusive, ""},
        Case{"SHARE; brief", LockMode::kShare, "; brief"},
        Case{"ROW SHARE", LockMode::kRowShare, ""},
        Case{"ACCESS SHARE (reads)", LockMode::kAccessShare, "(reads)"},
        Case{"EXCLUSIVE", LockMode::kExclusive, ""}, Case{"none at all", LockMode::kNone, "at all"},
        Case{"SHAREX", LockMode::kAsWritten, "SHAREX"},
        Case{"share", LockMode::kAsWritten, "share"}}) {
    const StepLock lock = StepLock::from_words(c.words);
    EXPECT_EQ(lock.mode, c.mode) << c.words;
    EXPECT_EQ(lock.note, c.note) << c.words;
    EXPECT_EQ(lock.to_string(), c.words);
  }
}

TEST(StepLock, OnlyLocksWeakerThanVacuumsLetItRun) {
  for (LockMode m :
       {LockMode::kNone, LockMode::kAccessShare, LockMode::kRowShare, LockMode::kRowExclusive}) {
    EXPECT_FALSE((StepLock{m, ""}).conflicts_with_vacuum()) << to_string(m);
  }
  for (LockMode m :
       {LockMode::kShareUpdateExclusive, LockMode::kShare, LockMode::kShareRowExclusive,
        LockMode::kExclusive, LockMode::kAccessExclusive, LockMode::kAsWritten}) {
    EXPECT_TRUE((StepLock{m, ""}).conflicts_with_vacuum()) << to_string(m);
  }
}

}  // namespace
}  // namespace tandem
