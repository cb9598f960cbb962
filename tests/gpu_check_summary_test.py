#!/usr/bin/env python3
"""scripts/gpu_check_summary.py on hand-made result files of each kind (the GPU check's stages run
for the first time on a GPU machine; their summaries should not): every stage's line, the exit
status that counts a failure, and the side-by-side table. The figures are made up, not measured."""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "gpu_check_summary.py")
GIB = 2 ** 30


def summary(*args):
    r = subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)
    return r.returncode, r.stdout.strip()


def write(path, obj):
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def xml(tests, failures, skipped):
    cases = "".join('<testcase name="t%d"><skipped message="no GPU"/></testcase>' % i for i in range(skipped))
    return (f'<?xml version="1.0"?>\n<testsuites tests="{tests}" failures="{failures}" disabled="0" errors="0">'
            f"{cases}</testsuites>")


def main():
    d = tempfile.mkdtemp()
    checks = []

    def expect(cond, what):
        checks.append((cond, what))

    rc, line = summary("gtest", write(f"{d}/ok.xml", xml(10, 0, 0)), 0)
    expect(rc == 0 and line == "10 passed, 0 failed, 0 skipped", f"all passed: {rc} {line}")
    rc, line = summary("gtest", write(f"{d}/skip.xml", xml(10, 0, 1)), 0)
    expect(rc == 1 and "a run that skipped is a failed run" in line, f"one skipped: {rc} {line}")
    rc, line = summary("gtest", write(f"{d}/none.xml", xml(0, 0, 0)), 0)
    expect(rc == 1 and "none passed" in line, f"none: {rc} {line}")
    rc, line = summary("gtest", f"{d}/missing.xml", 124)
    expect(rc == 1 and "timed out" in line, f"killed: {rc} {line}")

    bench = {"images_per_second": 100.0, "median_step_seconds": 0.32, "peak_bytes": 10 * GIB,
             "allocated_peak_bytes": 9 * GIB, "arena_bytes": 9 * GIB}
    rc, line = summary("cxr-bench", write(f"{d}/cxr_bench.json", bench), 0)
    expect(rc == 0 and "100.0 img/s" in line and "peak 10.00 GiB measured" in line and "plan/peak 0.90" in line,
           f"cxr bench: {rc} {line}")
    prof = {"step_ms": 320.0, "timing": "device events", "peak_gflops": 60000.0, "peak_gbps": 4800.0,
            "by_op": [{"key": "conv2d_backward_filter", "total_ms": 120.0, "roofline": 0.31},
                      {"key": "conv2d_forward", "total_ms": 100.0, "roofline": 0.4},
                      {"key": "batchnorm_relu_backward", "total_ms": 60.0, "roofline": 0.7}]}
    rc, line = summary("profile", write(f"{d}/profile.json", prof), 0)
    expect(rc == 0 and "ops 88% of it" in line and "conv2d_backward_filter 120.0 ms (31% of roofline)" in line,
           f"profile: {rc} {line}")
    rc, line = summary("profile", write(f"{d}/profile_host.json", dict(prof, timing="host steady clock")), 0)
    expect(rc == 1 and "expected device events" in line, f"profile timed on the host: {rc} {line}")
    steps = {"benchmarks": [{"name": "train_step/cuda_b8_s128/real_time", "error_message": "no CUDA device"},
                            {"name": "train_step/cuda_b32_s320/real_time", "images_per_second": 90.0,
                             "peak_bytes": 10 * GIB, "allocated_peak_bytes": 9 * GIB, "arena_bytes": 9 * GIB}]}
    rc, line = summary("train-step", write(f"{d}/ts.json", steps), 0)
    expect(rc == 1 and "cuda_b8_s128: no CUDA device" in line and "cuda_b32_s320: 90.0 img/s" in line,
           f"train step: {rc} {line}")
    kern = {"benchmarks": [{"name": f"k{i}/real_time", "error_message": "x"} for i in range(5)]}
    rc, line = summary("kernels", write(f"{d}/k.json", kern), 0)
    expect(rc == 1 and "0 of 5" in line and "and 2 more" in line, f"kernels: {rc} {line}")
    torch = {"images_per_second": 200.0, "peak_device_bytes": 5 * GIB, "warmup_seconds": [40.0, 1.5, 0.5]}
    for mode in ("amp-bf16-cl", "compile"):
        write(f"{d}/torch_{mode}.json", torch)
    rc, line = summary("torch", f"{d}/torch_compile.json", 0)
    expect(rc == 0 and "200.0 img/s" in line and "warm-up 42.0 s apart" in line, f"torch: {rc} {line}")
    rc, table = summary("side-by-side", d, "GPU 0: NVIDIA H200 (UUID: x)")
    expect(rc == 0 and "torch compile" in table and "0.50" in table and "no result" in table
           and "% of FP32 peak" in table, f"side by side:\n{table}")

    bad = [w for ok, w in checks if not ok]
    for w in bad:
        print("FAILED:", w)
    print(f"{len(checks) - len(bad)} of {len(checks)} checks passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
