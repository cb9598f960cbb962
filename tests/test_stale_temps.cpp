// Temporary files of killed writes are removed by the next write of the same file (io/fileutil.h
// remove_stale_temps), and only those: a temporary named after a live process that started before
// it was written is kept (its writer may still be at work); one named after a live process that
// started later is stale, its PID reused (KillCli.PrepareKilled* left "p.h5.report.txt.tmp.1328"
// behind while thousands of forked processes had wrapped the PIDs around).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "io/fileutil.h"
#include "test_data_util.h"

namespace cxr::io {
namespace {

namespace fs = std::filesystem;

pid_t start_sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

void stop(pid_t pid) {
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
}

TEST(StaleTemps, AReusedPidDoesNotKeepAKilledWritersTemporary) {
  test::ScratchDir dir("stale_temps");
  const std::string target = dir / "report.txt";
  const pid_t older = start_sleeper();  // alive, started before its "temporary" was written
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const std::string kept = target + ".tmp." + std::to_string(older);
  test::write_file(kept, "being written");
  // A temporary last written 60 s ago, named after a process that started just now: the PID of a
  // killed writer, reused.
  const pid_t newer = start_sleeper();
  const std::string stale = target + ".tmp." + std::to_string(newer);
  test::write_file(stale, "left by a killed writer");
  const timespec past[2] = {{::time(nullptr) - 60, 0}, {::time(nullptr) - 60, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, stale.c_str(), past, 0), 0);
  const std::string dead = target + ".tmp.999999999";  // no such process
  test::write_file(dead, "left by a killed writer");
  write_text_file(target, "the report\n");
  EXPECT_TRUE(fs::exists(kept)) << "a live writer's temporary was removed";
  EXPECT_FALSE(fs::exists(stale)) << "kept for a process that started after it was written";
  EXPECT_FALSE(fs::exists(dead));
  stop(older);
  stop(newer);
}

}  // namespace
}  // namespace cxr::io
