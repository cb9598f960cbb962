// CUDA backend: device discovery, the error reporter, construction of the stream and library
// handles, memory, copies, fill.
#include <nvtx3/nvToolsExt.h>

#include <cstdio>
#include <sstream>

#include "engine/library_versions.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_util.cuh"

namespace cxr {

namespace cuda {

namespace {
std::string failure_text(const char* library, const char* stmt, int code, const char* message) {
  std::ostringstream os;
  os << library << " call `" << stmt << "` failed: error " << code << " (" << (message ? message : "?")
     << ")";
  return os.str();
}
}  // namespace

void report_failure(const char* library, const char* stmt, const char* file, int line, int code,
                    const char* message) {
  throw_error(file, line, failure_text(library, stmt, code, message));
}

void log_failure(const char* library, const char* stmt, const char* file, int line, int code,
                 const char* message) {
  std::fprintf(stderr, "%s:%d: %s (ignored: cleanup must not throw)\n", file, line,
               failure_text(library, stmt, code, message).c_str());
}

}  // namespace cuda

// ---- discovery -----------------------------------------------------------------------------------

namespace {
// cudaGetDeviceCount, with the error it returned (cudaErrorInsufficientDriver or
// cudaErrorNoDevice on machines without a driver or a GPU). Clears the error so it does not linger.
cudaError_t query_device_count(int* count) {
  *count = 0;
  const cudaError_t e = cudaGetDeviceCount(count);
  if (e != cudaSuccess) {
    *count = 0;
    (void)cudaGetLastError();
  }
  return e;
}
}  // namespace

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int count = 0;
  query_device_count(&count);
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = query_device_count(&count);
  if (e != cudaSuccess) return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  return count == 0 ? "no CUDA device" : "";
}

std::string cuda_device_bus_id(int index) {
  char id[64] = {0};
  if (cudaDeviceGetPCIBusId(id, int(sizeof id), index) != cudaSuccess) {
    cudaGetLastError();  // clear it: "unknown" is the answer
    return "";
  }
  return id;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  const int count = cuda_device_count();
  if (count == 0) CXR_FAIL("no usable CUDA device: ", cuda_unavailable_reason());
  CXR_CHECK(device_index >= 0 && device_index < count, "CUDA device ", device_index,
            " requested, but this machine has ", count);
  return std::make_unique<CudaBackend>(device_index);
}

// ---- library versions ------------------------------------------------------------------------------

namespace {
struct CudaLibraries {
  LibraryVersion cudnn_compiled, cudnn_loaded, cublas_compiled, cublas_loaded;
};

// The loaded cuBLAS's version without a handle (so without a GPU): cublasGetProperty.
LibraryVersion cublas_loaded_version() {
  int major = 0, minor = 0, patch = 0;
  CXR_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  CXR_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  CXR_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  return LibraryVersion{major, minor, patch};
}

CudaLibraries cuda_libraries() {
  return CudaLibraries{decode_library_version(CUDNN_VERSION), decode_library_version(long(cudnnGetVersion())),
                       LibraryVersion{CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR, CUBLAS_VER_PATCH},
                       cublas_loaded_version()};
}

std::string describe(const CudaLibraries& l) {
  return "cuDNN " + l.cudnn_loaded.str() + " (compiled " + l.cudnn_compiled.str() + "), cuBLAS " +
         l.cublas_loaded.str() + " (compiled " + l.cublas_compiled.str() + ")";
}

// Note [cuDNN version policy] in engine/library_versions.h: refuses a loaded major version that
// differs from the compiled one, warns once on stderr about an older minor.
void check_cuda_libraries(const CudaLibraries& l) {
  const VersionVerdict verdicts[] = {check_library_version("cuDNN", l.cudnn_compiled, l.cudnn_loaded),
                                     check_library_version("cuBLAS", l.cublas_compiled, l.cublas_loaded)};
  for (const VersionVerdict& v : verdicts) {
    if (v.refuse) CXR_FAIL("the CUDA backend cannot start: ", v.message);
    if (!v.message.empty()) std::fprintf(stderr, "cxr: %s\n", v.message.c_str());
  }
}
}  // namespace

std::string cuda_library_versions() { return describe(cuda_libraries()); }

// ---- construction ----------------------------------------------------------------------------------

CudaBackend::CudaBackend(int device_index) : device_(device_index) {
  CudaLibraries libraries = cuda_libraries();
  check_cuda_libraries(libraries);
  memory_meter_.start(device_);  // before the context exists: Note [measured device memory]
  CXR_CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  CXR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  multiprocessors_ = prop.multiProcessorCount;

  cudaStream_t stream = nullptr;
  CXR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_.reset(stream);

  cudnnHandle_t cudnn = nullptr;
  CXR_CUDNN_CHECK(cudnnCreate(&cudnn));
  cudnn_.reset(cudnn);
  CXR_CUDNN_CHECK(cudnnSetStream(cudnn, stream));

  cublasHandle_t cublas = nullptr;
  CXR_CUBLAS_CHECK(cublasCreate(&cublas));
  cublas_.reset(cublas);
  CXR_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  CXR_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_PEDANTIC_MATH));  // Note [TF32]
  int cublas_version = 0;
  CXR_CUBLAS_CHECK(cublasGetVersion(cublas, &cublas_version));
  libraries.cublas_loaded = decode_library_version(cublas_version);

  // Note [BN statistics over many blocks]: at most 2 * 4 blocks per multiprocessor share channels.
  bn_partial_capacity_ = size_t(8) * size_t(multiprocessors_);
  void* partials = nullptr;
  CXR_CUDA_CHECK(cudaMalloc(&partials, 2 * bn_partial_capacity_ * sizeof(double)));
  bn_partials_.reset(static_cast<double*>(partials));

  // Peak FP32 rate: SMs x FP32 lanes per SM (Volta and Ampere GA100: 64; Turing: 64; Ampere GA10x,
  // Ada, Hopper, Blackwell: 128) x 2 (FMA) x clock; memory: 2 (DDR) x memory clock x bus width.
  int clock_khz = 0, mem_clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device_);
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, device_);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device_);
  const int lanes = prop.major >= 9 || (prop.major == 8 && prop.minor > 0) ? 128 : 64;
  peak_gflops_ = 2.0 * multiprocessors_ * lanes * clock_khz * 1e-6;
  peak_gbps_ = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) * 1e-9;

  std::ostringstream os;
  os << "cuda:" << device_ << " " << prop.name << " (sm_" << prop.major << prop.minor << ", "
     << multiprocessors_ << " SMs), " << describe(libraries);
  name_ = os.str();
  memory_meter_.sample();
}

CudaBackend::~CudaBackend() {
  // Work still queued may use the handles and descriptors about to be destroyed.
  if (stream_) CXR_CUDA_LOG(cudaStreamSynchronize(stream_.get()));
  for (cudaEvent_t e : marks_) CXR_CUDA_LOG(cudaEventDestroy(e));
}

// ---- profiling hooks -------------------------------------------------------------------------------

void CudaBackend::range_push(const char* name) { nvtxRangePushA(name); }
void CudaBackend::range_pop() { nvtxRangePop(); }

int64_t CudaBackend::timer_mark() {
  if (marks_used_ == marks_.size()) {
    cudaEvent_t e = nullptr;
    CXR_CUDA_CHECK(cudaEventCreate(&e));  // with timing (no cudaEventDisableTiming)
    marks_.push_back(e);
  }
  CXR_CUDA_CHECK(cudaEventRecord(marks_[marks_used_], stream_.get()));
  return static_cast<int64_t>(marks_used_++);
}

double CudaBackend::timer_elapsed_ms(int64_t a, int64_t b) {
  CXR_CHECK(a >= 0 && b >= 0 && size_t(a) < marks_used_ && size_t(b) < marks_used_, "timer markers ", a, ", ", b,
            " of ", marks_used_);
  float ms = 0;
  CXR_CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[size_t(a)], marks_[size_t(b)]));
  return ms;
}

// ---- memory ----------------------------------------------------------------------------------------

void* CudaBackend::allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, rounded);  // 256-byte aligned by contract of cudaMalloc
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    size_t held = 0;
    {
      std::lock_guard<std::mutex> lock(alloc_mutex_);
      held = live_;
    }
    CXR_FAIL("cudaMalloc of ", bytes, " bytes on ", name_, " failed: ", cudaGetErrorString(e), " (",
             free_bytes >> 20, " MiB free of ", total_bytes >> 20, " MiB; this backend holds ", held >> 20,
             " MiB)");
  }
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  memory_meter_.sample();
  alloc_sizes_[p] = rounded;
  live_ += rounded;
  peak_ = std::max(peak_, live_);
  return p;
}

// Never throws: release runs in destructors (arena, test buffers). Failures are logged.
void CudaBackend::release(void* p) {
  if (!p) return;
  // Kernels queued on the stream may still read or write this block.
  CXR_CUDA_LOG(cudaStreamSynchronize(stream()));
  {
    std::lock_guard<std::mutex> lock(alloc_mutex_);
    auto it = alloc_sizes_.find(p);
    if (it == alloc_sizes_.end()) {
      std::fprintf(stderr, "%s:%d: release of %p, which %s did not allocate (ignored)\n", __FILE__, __LINE__,
                   p, name_.c_str());
      return;
    }
    live_ -= it->second;
    alloc_sizes_.erase(it);
  }
  CXR_CUDA_LOG(cudaFree(p));
}

size_t CudaBackend::peak_allocated_bytes() const {
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  return peak_;
}

void CudaBackend::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  CXR_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream()));
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CXR_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
}

MeasuredMemory CudaBackend::measured_peak() {
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  memory_meter_.sample();
  return MeasuredMemory{memory_meter_.peak_bytes(), memory_meter_.how()};
}

MemoryBudget CudaBackend::default_memory_budget() const {
  size_t free_bytes = 0, total_bytes = 0;
  CXR_CUDA_CHECK(cudaSetDevice(device_));
  CXR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return MemoryBudget{free_bytes, "free device memory (of " + std::to_string(total_bytes >> 20) + " MiB)"};
}

void CudaBackend::synchronize() {
  CXR_CUDA_CHECK(cudaStreamSynchronize(stream()));
  std::lock_guard<std::mutex> lock(alloc_mutex_);
  memory_meter_.sample();
}

// ---- fill ------------------------------------------------------------------------------------------

namespace {
__global__ void fill_kernel(float* dst, float value, int64_t count) {
  for (int64_t i = cuda::global_thread(); i < count; i += cuda::grid_threads()) dst[i] = value;
}
}  // namespace

void CudaBackend::fill(float* dst, float value, int64_t count) {
  CXR_CHECK(count >= 0, "fill of ", count, " elements");
  if (count == 0) return;
  fill_kernel<<<cuda::blocks_for(count), cuda::kThreads, 0, stream()>>>(dst, value, count);
  CXR_CUDA_CHECK_LAUNCH();
}

}  // namespace cxr
