// The loader's threads shut down on every exit path (issue 14, item 7): destroyed before an epoch,
// mid-epoch with the batch thread blocked on a full double buffer or busy filling one, after an
// epoch restart, after its batch thread failed (a damaged image), while an exception unwinds the
// consumer, and when the operating system refuses one of its helper threads in the constructor.
// Each case counts this process's threads (/proc/self/task) before and after: all joined, none
// left behind; a hang would time the test out.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <chrono>

#include "engine/error.h"
#include "io/loader.h"
#include "io/packed.h"
#include "io/synth.h"
#include "tests/test_data_util.h"
#include "tests/test_file_damage.h"

namespace cxr::io {
namespace {

int thread_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// The count once joined threads have left /proc: pthread_join returns when the kernel clears the
// thread's id (early in its exit), but the task stays listed until the kernel has released it a
// moment later, so a count taken at once can still see a joined thread (it did in CI). Polls until
// the count is `expected` or 5 s have passed; a thread that was never joined stays listed, and the
// last count is returned to fail the check.
int thread_count_settled(int expected) {
  int n = thread_count();
  for (int i = 0; i < 500 && n != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = thread_count();
  }
  return n;
}

// 24 synthetic images of 32 x 32, all in the training set.
std::string make_packed(const test::ScratchDir& dir) {
  SynthOptions so;
  so.patients = 12, so.size = 32;
  SynthResult r = synth_labels(so);
  r.rows.resize(std::min<size_t>(r.rows.size(), 24));
  const std::vector<Split> split(r.rows.size(), Split::Train);
  PackedMeta meta;
  meta.image_size = 32;
  const std::string path = dir / "d.h5";
  PackedWriter w(path, r.rows, split, meta);
  for (size_t i = 0; i < r.rows.size(); ++i) w.write_image(int64_t(i), synth_image(r.rows[i], 32, 0, nullptr).data());
  w.finish();
  return path;
}

LoaderOptions options() {
  LoaderOptions o = LoaderOptions::train(4, 3);
  o.threads = 3;  // the batch thread and two helpers
  return o;
}

TEST(LoaderShutdown, EveryExitPathJoinsItsThreads) {
  test::ScratchDir dir("loader_shutdown");
  const std::string path = make_packed(dir);
  PackedDataset d(path);
  ASSERT_GE(d.size(), 12);
  const int before = thread_count();
  {
    Loader l(d, options());  // never started
    EXPECT_EQ(thread_count(), before + 2);
  }
  EXPECT_EQ(thread_count_settled(before), before) << "destroyed before an epoch";
  {
    Loader l(d, options());
    l.start_epoch(0);  // destroyed while the batch thread fills its first buffer
  }
  EXPECT_EQ(thread_count_settled(before), before) << "destroyed at once after start_epoch";
  {
    Loader l(d, options());
    l.start_epoch(0);
    ASSERT_NE(l.next(), nullptr);  // both buffers fill, the batch thread then waits for a free one
    l.start_epoch(1);
    ASSERT_NE(l.next(), nullptr);
  }
  EXPECT_EQ(thread_count_settled(before), before) << "destroyed mid-epoch after a restart";
  try {
    Loader l(d, options());
    l.start_epoch(0);
    ASSERT_NE(l.next(), nullptr);
    throw std::runtime_error("the consumer failed");  // as a training step that throws
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(thread_count_settled(before), before) << "destroyed while an exception unwound its consumer";
}

TEST(LoaderShutdown, AFailedBatchThreadIsReportedAndJoined) {
  test::ScratchDir dir("loader_shutdown_damaged");
  const std::string path = make_packed(dir);
  const int64_t chunk = test::data_offset(path, "/images", 5);
  ASSERT_GT(chunk, 0);
  test::flip_byte(path, chunk + 100);  // image 5 fails its checksum in the second batch
  PackedDataset d(path);
  const int before = thread_count();
  {
    Loader l(d, LoaderOptions::eval(Split::Train, 4));
    l.start_epoch(0);
    ASSERT_NE(l.next(), nullptr);
    try {
      while (l.next()) {
      }
      FAIL() << "a damaged image was loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("image 5"), std::string::npos) << e.what();
    }
    l.start_epoch(1);  // a new epoch after the failure starts cleanly and fails the same way
    EXPECT_THROW(
        {
          while (l.next()) {
          }
        },
        Error);
  }
  EXPECT_EQ(thread_count_settled(before), before);
}

// The constructor starts helper threads one by one; when the system refuses one (EAGAIN), the
// constructor throws and those already started must be stopped and joined: a joinable std::thread
// destroyed during the unwinding would call std::terminate. Run in a child process as an
// unprivileged user with RLIMIT_NPROC set so that only a few threads can start.
TEST(LoaderShutdown, ARefusedHelperThreadIsAnErrorNotAnAbort) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the child as an unprivileged user (RLIMIT_NPROC binds only those)";
  test::ScratchDir dir("loader_shutdown_nproc");
  const std::string path = make_packed(dir);
  PackedDataset d(path);  // opened here: the child inherits it and reads nothing more from disk
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    // This process counts 1; nobody's other processes (usually none) count too.
    const rlimit lim{3, 3};
    if (::setrlimit(RLIMIT_NPROC, &lim) != 0) ::_exit(4);
    LoaderOptions o = options();
    o.threads = 8, o.batch = 8;  // wants seven helpers
    try {
      Loader l(d, o);
      ::_exit(5);  // every thread started: the limit did not bind
    } catch (const std::system_error&) {
      ::_exit(0);  // refused, unwound, the started helpers joined
    } catch (...) {
      ::_exit(6);
    }
  }
  // Before the fix the child hung (the unwinding destroyed the condition variable its helpers slept
  // on): give it 60 s, far more than a constructor needs, then kill it and fail.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 600 && (done = ::waitpid(pid, &status, WNOHANG)) == 0; ++i) ::usleep(100000);
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the constructor hung after a refused helper thread";
  }
  ASSERT_EQ(done, pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status) << " (std::terminate aborts)";
  if (WEXITSTATUS(status) == 5) GTEST_SKIP() << "RLIMIT_NPROC did not limit threads here";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cxr::io
