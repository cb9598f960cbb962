// The processes of a data-parallel run (Note [Data parallel] in engine/data_parallel.h): every rank
// runs the same command; MPI launches them (mpirun, srun), tells each its rank, and carries the
// host-side collectives. Run without a launcher, a program is one rank and every collective is the
// identity (no MPI call is made, MPI_Init included).
//
// Every blocking collective here waits with a deadline (set_timeout, `--comm-timeout`): a rank that
// died or hangs never leaves the others waiting. On a timeout the rank prints which collective at
// which step did not complete and aborts the whole job (MPI_Abort), so every rank exits non-zero.
// `what` names the collective in those messages ("gradients bucket 3", "validation logits").
#pragma once
#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cxr {

class Comm {
 public:
  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank and number of ranks on this node (MPI_COMM_TYPE_SHARED): the GPU a rank takes.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool root() const { return rank_ == 0; }
  // "mpi (OpenMPI 4.1.4)" or "single process".
  virtual std::string name() const = 0;

  // The step named by timeout and failure messages (the trainer sets it each step; 0: before training).
  void set_step(int64_t step) { step_ = step; }
  int64_t step() const { return step_; }
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  // A flag a signal handler sets (the trainer's SIGINT/SIGTERM): a rank that is waiting in a
  // collective when it is set says so once, naming the step and the collective (when a rank dies,
  // the launcher signals the others while they wait for it; null: no flag).
  void set_interrupt_flag(const volatile std::sig_atomic_t* flag) { interrupt_flag_ = flag; }
  double timeout() const { return timeout_s_; }

  // ---- blocking collectives on host memory, with the deadline -------------------------------------
  virtual void allreduce_sum(double* data, int64_t count, const char* what) = 0;  // in place
  virtual void allreduce_sum(float* data, int64_t count, const char* what) = 0;   // in place
  virtual void broadcast(void* data, int64_t bytes, const char* what) = 0;        // from rank 0
  // Every rank's `mine`, concatenated in rank order, on every rank (counts may differ).
  virtual std::vector<float> allgather(const std::vector<float>& mine, const char* what) = 0;
  virtual std::vector<int64_t> allgather(const std::vector<int64_t>& mine, const char* what) = 0;
  virtual void barrier(const char* what) = 0;

  // ---- non-blocking sums in place on host floats (gradient buckets) -------------------------------
  // Starts a sum of data[0, count) over the ranks; the memory must stay untouched until wait_all().
  virtual void start_allreduce_sum(float* data, int64_t count, const char* what) = 0;
  // Lets started sums advance (MPI progresses them only inside MPI calls); returns at once.
  virtual void progress() = 0;
  // Waits for every started sum (with the deadline); returns the seconds spent waiting.
  virtual double wait_all() = 0;

  // Ends the whole job (every rank) after printing message; never returns.
  [[noreturn]] virtual void abort(const std::string& message, int code = 3) = 0;

 protected:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  int64_t step_ = 0;
  double timeout_s_ = 300;
  const volatile std::sig_atomic_t* interrupt_flag_ = nullptr;
  bool interrupt_noted_ = false;
};

// The process's communicator, made on first use and kept until exit: MPI's world when this process
// was started by a launcher (mpirun, srun; see launched_by_mpi) and MPI support was compiled,
// otherwise the one-rank communicator. Throws when a launcher started several ranks but this build
// has no MPI.
Comm& process_comm();
// A one-rank communicator (tests, tools that never distribute).
std::unique_ptr<Comm> make_single_process_comm();
// Whether a launcher started this process as one rank of a job: OpenMPI's OMPI_COMM_WORLD_SIZE,
// PMIx's PMIX_RANK, srun's SLURM_STEP_NUM_TASKS > 1 with SLURM_PROCID, MPICH/Hydra's PMI_SIZE.
bool launched_by_mpi();
bool mpi_compiled();

}  // namespace cxr
