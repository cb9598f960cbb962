// MPI's world as a Comm (engine/comm.h): compiled when CMake finds MPI (CXR_MPI, on by default).
// Every collective is started non-blocking and waited on with a deadline (Note [Collective
// deadlines]).
// The C API only (OpenMPI and MPICH otherwise pull in the removed C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "engine/comm.h"
#include "engine/error.h"

namespace cxr {

namespace {

// Note [Collective deadlines]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A blocking MPI collective waits forever for a rank that died or hangs (MPI's default error
// handling notices neither). Every collective here is the non-blocking form (MPI_Iallreduce,
// MPI_Ibcast, ...) polled with MPI_Test, yielding the core in between for the first 50 ms, then
// with a growing sleep (1 us to 1 ms: a waiting rank leaves its core to a rank still computing,
// which matters when ranks share cores, as in CI's mpirun -np 2 on 2 cores). Past the deadline the rank names the collective and the step and calls MPI_Abort,
// which ends every rank of the job with a non-zero status. A rank that exits or is killed is noticed
// by the launcher itself (mpirun ends the job and names the rank); the deadline covers the rank that
// stops without exiting (a hung filesystem, a stopped process, a deadlocked driver).
class MpiComm final : public Comm {
 public:
  MpiComm() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
      // The loader's threads never call MPI; only the main thread does (FUNNELED).
      if (provided < MPI_THREAD_FUNNELED)
        std::fprintf(stderr, "cxr: warning: MPI gives thread level %d, below MPI_THREAD_FUNNELED\n", provided);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
    MPI_Comm_rank(node_, &local_rank_);
    MPI_Comm_size(node_, &local_size_);
    char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, size_t(len));
    name_ = "mpi (" + v.substr(0, v.find_first_of(",\n")) + ")";
  }
  ~MpiComm() override {
    if (!owns_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      MPI_Comm_free(&node_);
      MPI_Finalize();
    }
  }
  std::string name() const override { return name_; }

  void allreduce_sum(double* data, int64_t count, const char* what) override {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, data, checked(count), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r);
    wait(&r, what);
  }
  void allreduce_sum(float* data, int64_t count, const char* what) override {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, data, checked(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    wait(&r, what);
  }
  void broadcast(void* data, int64_t bytes, const char* what) override {
    // In pieces below 2 GiB (MPI counts are int).
    auto* p = static_cast<char*>(data);
    for (int64_t at = 0; at < bytes; at += kMaxChunk) {
      MPI_Request r;
      MPI_Ibcast(p + at, int(std::min<int64_t>(kMaxChunk, bytes - at)), MPI_BYTE, 0, MPI_COMM_WORLD, &r);
      wait(&r, what);
    }
  }
  std::vector<float> allgather(const std::vector<float>& mine, const char* what) override {
    return gather_impl(mine, MPI_FLOAT, what);
  }
  std::vector<int64_t> allgather(const std::vector<int64_t>& mine, const char* what) override {
    return gather_impl(mine, MPI_INT64_T, what);
  }
  void barrier(const char* what) override {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    wait(&r, what);
  }

  void start_allreduce_sum(float* data, int64_t count, const char* what) override {
    pending_.emplace_back();
    pending_what_.push_back(what);
    MPI_Iallreduce(MPI_IN_PLACE, data, checked(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending_.back());
  }
  void progress() override {
    if (pending_.empty()) return;
    int done = 0;
    MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
  }
  double wait_all() override {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < pending_.size(); ++i) wait(&pending_[i], pending_what_[i].c_str());
    pending_.clear();
    pending_what_.clear();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "cxr: rank %d: error: %s\n", rank_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; in case an implementation does
  }

 private:
  static constexpr int64_t kMaxChunk = int64_t(1) << 30;
  static int checked(int64_t count) {
    CXR_CHECK(count >= 0 && count < (int64_t(1) << 31), "an MPI message of ", count, " elements");
    return int(count);
  }

  // Note [Collective deadlines].
  void wait(MPI_Request* r, const char* what) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    int sleep_us = 1;
    for (;;) {
      int done = 0;
      MPI_Test(r, &done, MPI_STATUS_IGNORE);
      if (done) return;
      const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
      if (interrupt_flag_ && *interrupt_flag_ && !interrupt_noted_) {
        interrupt_noted_ = true;
        std::fprintf(stderr, "cxr: rank %d: step %ld: signal received while waiting for %s; the step ends when "
                     "every rank reaches it\n", rank_, long(step_), what);
        std::fflush(stderr);
      }
      if (waited > timeout_s_) {
        char msg[512];
        std::snprintf(msg, sizeof msg,
                      "step %ld: %s did not complete within %.0f s (--comm-timeout): another rank has died or "
                      "hangs; ending every rank of the job",
                      long(step_), what, timeout_s_);
        abort(msg, 4);
      }
      // Each MPI_Test advances a non-blocking collective by a step (OpenMPI's libnbc has no progress
      // thread): polling with sleeps in between would stretch a 28 MB all-reduce of many rounds
      // by a sleep per round (measured: 0.59 s of a 1.41 s step with 1 ms sleeps). So the first
      // 50 ms only yield the core (to a rank that shares it), then the sleeps grow.
      if (waited < 0.05) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
        sleep_us = std::min(sleep_us * 2, 1000);
      }
    }
  }

  template <typename T>
  std::vector<T> gather_impl(const std::vector<T>& mine, MPI_Datatype type, const char* what) {
    std::vector<int> counts(size_t(size_), 0), displs(size_t(size_), 0);
    int n = checked(int64_t(mine.size()));
    MPI_Request r;
    MPI_Iallgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD, &r);
    wait(&r, what);
    int64_t total = 0;
    for (int i = 0; i < size_; ++i) displs[size_t(i)] = checked(total), total += counts[size_t(i)];
    std::vector<T> all(static_cast<size_t>(total));
    MPI_Iallgatherv(mine.data(), n, type, all.data(), counts.data(), displs.data(), type, MPI_COMM_WORLD, &r);
    wait(&r, what);
    return all;
  }

  bool owns_ = false;
  MPI_Comm node_ = MPI_COMM_NULL;
  std::string name_;
  std::vector<MPI_Request> pending_;
  std::vector<std::string> pending_what_;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm() { return std::make_unique<MpiComm>(); }

}  // namespace cxr
