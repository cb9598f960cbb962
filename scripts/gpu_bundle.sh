# Bundling of cxr's binaries for the GPU machines (sourced by scripts/gpu_check.sh and by the
# bundle test, tests/gpu_bundle_test.sh): the binaries and every shared library they load, except
# glibc's and CUDA's, which must come from the machine they run on.
#
#   bundle_binaries DEST BINARY...   copy the binaries to DEST/bin and their libraries to DEST/lib
#   archive_bundle DEST ARCHIVE      DEST's bin and lib as one .tar.xz (the device tool carries 64 MiB)
#   check_bundle DEST                every library resolves inside DEST/lib under DEST/lib alone,
#                                    except glibc's and CUDA's; DEST/lib holds none of those
#   bundle_library_path DEST         the LD_LIBRARY_PATH for running DEST's binaries on a GPU machine
#
# glibc's own libraries must never travel: a binary and the dynamic loader it meets must be one glibc
# release, and the host's (the GPU image's) loader is the one that runs. CUDA's come from the host's
# driver (libcuda) and PyTorch's wheels (cuDNN, cuBLAS, the runtime, NVRTC).

# The file names of glibc's libraries (Debian 12's libc6), and of CUDA's.
GLIBC_LIBS_RE='^(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec|libBrokenLocale|libthread_db|libnsl|libnss_[a-z0-9_]+|libc_malloc_debug|libmemusage|libpcprofile|ld-linux[a-z0-9_-]*)\.so'
CUDA_LIBS_RE='^(libcuda|libcudart|libcudnn[a-z_]*|libcublas|libcublasLt|libnvrtc[a-z_-]*|libnvJitLink)\.so'

# "name path" for each library ldd resolves for $1 ("name not-found" when it resolves none).
_bundle_ldd() {
  ldd "$1" | awk '$2 == "=>" { print $1, ($3 == "not" ? "not-found" : $3) }'
}

bundle_binaries() {
  local dest=$1 lib name path
  shift
  rm -rf "$dest" && mkdir -p "$dest/bin" "$dest/lib"
  cp "$@" "$dest/bin/"
  for b in "$@"; do _bundle_ldd "$b"; done | sort -u | while read -r name path; do
    if [[ $name =~ $GLIBC_LIBS_RE || $name =~ $CUDA_LIBS_RE ]]; then continue; fi
    if [ "$path" = not-found ]; then
      echo "gpu_bundle: $name, which the binaries need, is not found here" >&2
      return 1
    fi
    cp -L "$path" "$dest/lib/$name"
  done
}

archive_bundle() {
  tar -C "$1" -cJf "$2" bin lib
}

# Prints each problem; returns non-zero if there is any.
check_bundle() {
  local dest bad=0 lib name path
  dest=$(cd "$1" && pwd)
  for lib in "$dest"/lib/*; do
    name=$(basename "$lib")
    if [[ $name =~ $GLIBC_LIBS_RE || $name =~ $CUDA_LIBS_RE ]]; then
      echo "gpu_bundle: $name is in the bundle; it must come from the host" && bad=1
    fi
  done
  for b in "$dest"/bin/*; do
    while read -r name path; do
      if [[ $name =~ $CUDA_LIBS_RE ]]; then continue; fi
      if [[ $name =~ $GLIBC_LIBS_RE ]]; then
        [[ $path == "$dest"/* ]] && echo "gpu_bundle: $(basename "$b") loads glibc's $name from the bundle" && bad=1
        continue
      fi
      [[ $path == "$dest"/lib/* ]] || { echo "gpu_bundle: $(basename "$b") resolves $name to $path, outside the bundle" && bad=1; }
    done < <(env -i PATH="$PATH" LD_LIBRARY_PATH="$dest/lib" bash -c "$(declare -f _bundle_ldd); _bundle_ldd '$b'")
  done
  return $bad
}

# The bundle's libraries, then cuDNN, cuBLAS, the CUDA runtime, NVRTC and NCCL (opened at run time by
# kernels/cuda/nccl_reducer.cu) from PyTorch's wheels
# (found through python3), then the toolkit's. Only for our binaries: PyTorch must keep the host's.
bundle_library_path() {
  local wheels
  wheels=$(python3 - <<'PY' 2>/dev/null || true
import importlib, os
paths = []
for m in ("nvidia.cudnn", "nvidia.cublas", "nvidia.cuda_runtime", "nvidia.cu13", "nvidia.cuda_nvrtc", "nvidia.nccl"):
    try:
        mod = importlib.import_module(m)
    except Exception:
        continue
    for p in getattr(mod, "__path__", []):
        for sub in ("lib", "lib64"):
            if os.path.isdir(os.path.join(p, sub)):
                paths.append(os.path.join(p, sub))
print(":".join(paths))
PY
)
  echo "$1/lib${wheels:+:$wheels}:/usr/local/cuda/lib64"
}
