#include "engine/comm.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"

namespace cxr {

#ifdef CXR_HAVE_MPI
std::unique_ptr<Comm> make_mpi_comm();  // engine/comm_mpi.cpp
bool mpi_compiled() { return true; }
#else
bool mpi_compiled() { return false; }
#endif

namespace {

class SingleProcessComm final : public Comm {
 public:
  std::string name() const override { return "single process"; }
  void allreduce_sum(double*, int64_t, const char*) override {}
  void allreduce_sum(float*, int64_t, const char*) override {}
  void broadcast(void*, int64_t, const char*) override {}
  std::vector<float> allgather(const std::vector<float>& mine, const char*) override { return mine; }
  std::vector<int64_t> allgather(const std::vector<int64_t>& mine, const char*) override { return mine; }
  void barrier(const char*) override {}
  void start_allreduce_sum(float*, int64_t, const char*) override {}
  void progress() override {}
  double wait_all() override { return 0.0; }
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "cxr: error: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

}  // namespace

std::unique_ptr<Comm> make_single_process_comm() { return std::make_unique<SingleProcessComm>(); }

bool launched_by_mpi() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE")) return true;
  // SLURM_STEP_NUM_TASKS: set by srun for its tasks (an sbatch script itself has SLURM_NTASKS and
  // SLURM_PROCID=0 but is one process).
  return std::getenv("SLURM_PROCID") != nullptr && env_int("SLURM_STEP_NUM_TASKS", 1) > 1;
}

Comm& process_comm() {
  static std::unique_ptr<Comm> comm = [] {
    if (!launched_by_mpi()) return make_single_process_comm();
#ifdef CXR_HAVE_MPI
    return make_mpi_comm();
#else
    const int n = env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", env_int("SLURM_STEP_NUM_TASKS", 1)));
    if (n > 1)
      CXR_FAIL("started by a launcher as one of ", n, " ranks, but this cxr was built without MPI "
               "(configure with -DCXR_MPI=ON and libopenmpi-dev installed)");
    return make_single_process_comm();
#endif
  }();
  return *comm;
}

}  // namespace cxr
