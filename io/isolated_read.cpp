#include "io/isolated_read.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "engine/error.h"

namespace cxr::io {

// Note [untrusted files]
// ~~~~~~~~~~~~~~~~~~~~~~
// Two libraries we read files with are not hardened against malformed ones. Fuzzing our readers
// (tests/fuzz, RELIABILITY.md) found within seconds: in libhdf5 1.10.8 (Debian bookworm) a
// heap-buffer-overflow read inside H5Aexists (attribute message decoding) and endless loops inside
// H5HG_read (a damaged global heap of variable-length strings); in GDCM 3.0.21, built with its
// assertions on, failed assertions (abort) in its file-meta, element and offset-table readers for
// damaged headers, and leaks in its JPEG and JPEG-LS codecs. Upstream keeps fixing such faults
// (HDF5: CVE-2025-2310 and HDFGroup/hdf5 issues #1368, #2529, #6401). Weight files come from the
// internet, DICOMs from PACS exports, packed files and checkpoints sit on shared disks: a file must
// not be able to crash or hang cxr, or take a whole `prepare` down with it. We cannot fix the
// libraries here; we contain them. The structural read of an HDF5 file (everything but the bulk
// image reads that go through pread, Note [direct chunk reads]) runs first in a forked child and
// is repeated here only if the child succeeded; a DICOM is decoded in a child that sends the pixels
// back. If the child dies of a signal or an abort, stops on a sanitizer's report, or passes the
// deadline, the user gets one error naming the file; if it throws, its message is passed on as it
// would have been in process. fork() copies the address space lazily: a child costs about a
// millisecond plus the memory it touches. The child only calls the library and our readers (no
// CUDA, no OpenMP), and leaves with _exit(), so nothing of the parent's is flushed or closed. The
// child gets one thread, the forking one: no other thread may be inside libhdf5 or GDCM then, or the
// child would wait for its lock until the deadline. Today they are called from one thread at a time
// (the loader reads images with pread, Note [direct chunk reads]); DICOMs are decoded on several
// threads, each in its own child. Not contained: a fault that corrupts memory silently in the
// child without crashing it is repeated in the parent's own HDF5 read (DICOM pixels come back from
// the child instead, checked for size).
// No pass is free: a weight file or checkpoint is read twice whole (all tensors, their checksums);
// a packed file's structure twice (its images are read once, with pread, outside the library).

thread_local int isolated_depth = 0;

namespace {

std::atomic<int> guard_state{-1};  // -1: not yet read from the environment

int deadline_seconds() {
  const char* s = std::getenv("CXR_ISOLATE_SECONDS");
  const int v = s ? std::atoi(s) : 0;
  return v > 0 ? v : 300;
}

std::string signal_name(int sig) {
  const char* d = strsignal(sig);
  return std::string(d ? d : "signal") + " (signal " + std::to_string(sig) + ")";
}

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// pipe() to the parent's close of the write end: a child forked meanwhile by another thread (prepare
// decodes on several) would inherit the write end and hold our pipe open until it exits.
std::mutex fork_mu;

// The parent's side: reaps the child (killing it first if it still runs) and closes the pipe on
// every way out, exceptions included.
struct Child {
  pid_t pid = -1;
  int fd = -1;
  bool reaped = false;
  ~Child() {
    if (!reaped && pid > 0) {
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
    }
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void set_isolated_reads(bool on) { guard_state = on ? 1 : 0; }

bool isolated_reads_enabled() {
  int s = guard_state.load();
  if (s < 0) {
    const char* e = std::getenv("CXR_ISOLATE");
    s = e && std::strcmp(e, "0") == 0 ? 0 : 1;
    guard_state = s;
  }
  return s == 1;
}

std::string run_isolated(const std::string& path, const char* library, const std::function<std::string()>& work) {
  if (isolated_depth > 0 || !isolated_reads_enabled()) return work();
  const int deadline_s = deadline_seconds();
  Child child;
  int fds[2];
  {
    std::lock_guard<std::mutex> lock(fork_mu);
    if (::pipe(fds) != 0) CXR_FAIL(path, ": cannot read the file in a child process: pipe: ", std::strerror(errno));
    child.fd = fds[0];
    child.pid = ::fork();
    if (child.pid < 0) {
      const int err = errno;
      ::close(fds[1]);
      CXR_FAIL(path, ": cannot read the file in a child process: fork: ", std::strerror(err));
    }
    if (child.pid == 0) {
      ::close(fds[0]);
      // Gone with the parent (a killed cxr leaves no looping child), and never past the deadline
      // even if the parent stopped watching.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::alarm(unsigned(deadline_s) + 5);
      // No core file: writing one of a large parent's address space can outlast the deadline, and a
      // malformed file's crash is reported, not debugged, here.
      const rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);
      // What the library prints on its way down (GDCM's failed assertion, a sanitizer's report) is
      // not the user's error message; CXR_ISOLATE_STDERR=1 keeps it for debugging.
      const char* keep = std::getenv("CXR_ISOLATE_STDERR");
      if (!keep || std::strcmp(keep, "1") != 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        if (null >= 0) ::dup2(null, 2), ::close(null);
      }
      isolated_depth = 1;
      int code = 0;
      std::string out;
      try {
        out = work();
      } catch (const std::exception& e) {
        out = e.what();
        if (out.compare(0, path.size(), path) != 0) out = path + ": " + out;  // name the file
        code = 1;
      } catch (...) {
        out = path + ": unknown error while reading";
        code = 1;
      }
      if (!write_all(fds[1], out)) code = 2;  // a cut reply must not pass for a whole one
      ::close(fds[1]);
      ::_exit(code);
    }
    ::close(fds[1]);
  }
  std::string message;  // the payload, or the error message
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(deadline_s);
  int status = 0;
  bool open = true;
  while (!child.reaped) {
    if (open) {
      pollfd p{child.fd, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char buf[65536];
        const ssize_t n = ::read(child.fd, buf, sizeof buf);
        if (n > 0) message.append(buf, size_t(n));
        else if (n == 0 || errno != EINTR) open = false;
      }
    }
    // The pipe reaches its end when the child has written everything and is in _exit(), or has
    // died: then wait for it without polling (the library never sees the pipe's descriptor).
    if (::waitpid(child.pid, &status, open ? WNOHANG : 0) == child.pid) child.reaped = true;
    if (!child.reaped && std::chrono::steady_clock::now() > deadline)
      CXR_FAIL(path, ": reading the file did not finish in ", deadline_s, " s (", library,
               " loops on some malformed files; the file is damaged or not what it claims)");  // ~Child kills it
  }
  if (open) {  // what the child wrote just before it exited; nobody else holds the write end
    ::fcntl(child.fd, F_SETFL, O_NONBLOCK);
    for (char buf[65536];;) {
      const ssize_t n = ::read(child.fd, buf, sizeof buf);
      if (n <= 0) break;
      message.append(buf, size_t(n));
    }
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
    CXR_FAIL(path, ": the child process reading this file was killed (SIGKILL: out of memory?); nothing was loaded");
  if (WIFSIGNALED(status))
    CXR_FAIL(path, ": ", library, " crashed reading this file (", signal_name(WTERMSIG(status)),
             " in a child process): the file is malformed; nothing was loaded");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && !message.empty()) throw Error(message);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    CXR_FAIL(path, ": ", library, " stopped abnormally reading this file (exit status ", WEXITSTATUS(status),
             " in a child process, as after a sanitizer's report): the file is malformed; nothing was loaded");
  return message;
}

void check_hdf5_in_child(const std::string& path, const std::function<void()>& read) {
  if (isolated_depth > 0 || !isolated_reads_enabled()) return;
  (void)run_isolated(path, "the HDF5 library", [&] {
    read();
    return std::string();
  });
}

}  // namespace cxr::io
