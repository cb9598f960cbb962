#!/usr/bin/env python3
"""One summary line per stage of scripts/gpu_check.sh, and the side-by-side table it prints last.

    gpu_check_summary.py gtest XML STATUS        -> "12 passed, 0 failed, 0 skipped"; exit 1 unless all passed
    gpu_check_summary.py cxr-bench JSON STATUS   -> images/s, measured peak, cxr's allocations, plan
    gpu_check_summary.py profile JSON STATUS     -> step, how it was timed, share of the ops, top 3 ops
    gpu_check_summary.py train-step JSON STATUS  -> per benchmark: images/s, measured peak, plan
    gpu_check_summary.py kernels JSON STATUS     -> how many cases ran, and any that disagreed
    gpu_check_summary.py torch JSON STATUS       -> images/s, peak, warm-up seconds (compilation included)
    gpu_check_summary.py side-by-side DIR DEVICE -> cxr against each PyTorch mode at batch 32, 320x320

Each line subcommand exits 1 when the stage failed (STATUS is the stage's exit status; 124 is
'timed out'), so the caller can count failures. Python's own libraries only: this runs on the GPU
machine's python3, never with the bundle's LD_LIBRARY_PATH.
"""
import json
import re
import sys

GIB = 2 ** 30


def load(path):
    with open(path) as f:
        return json.load(f)


def failed_status(status):
    return "timed out" if status == 124 else f"exit status {status}"


def gtest(xml, status):
    """A run that skipped any test, or passed none, is a failed run."""
    try:
        text = open(xml).read()
    except OSError:
        return f"no result ({failed_status(status)})", False
    m = re.search(r'<testsuites tests="(\d+)" failures="(\d+)" disabled="\d+" errors="(\d+)"', text)
    if not m:
        return f"no result in {xml}", False
    skipped = len(re.findall(r"<skipped", text))
    failures = int(m[2]) + int(m[3])
    passed = int(m[1]) - failures - skipped
    line = f"{passed} passed, {failures} failed, {skipped} skipped"
    ok = status == 0 and failures == 0 and skipped == 0 and passed > 0
    if skipped:
        line += " (a run that skipped is a failed run)"
    elif passed == 0:
        line += " (none passed)"
    return line, ok


def memory(peak, allocated, plan):
    text = f"peak {peak / GIB:.2f} GiB measured, cxr allocated {allocated / GIB:.2f} GiB, plan {plan / GIB:.2f} GiB"
    return text + (f" (plan/peak {plan / peak:.2f})" if peak else "")


def cxr_bench(path, status):
    try:
        j = load(path)
    except Exception:
        return f"failed ({failed_status(status)}): see its log", False
    return (f'{j["images_per_second"]:.1f} img/s, median step {j["median_step_seconds"] * 1e3:.1f} ms, '
            + memory(j["peak_bytes"], j.get("allocated_peak_bytes", 0), j["arena_bytes"])), status == 0


def profile(path, status):
    """cxr profile --json: device-event timing must be what ran, and the ops must fill the step."""
    try:
        j = load(path)
    except Exception:
        return f"failed ({failed_status(status)}): see its log", False
    rows = j["by_op"]
    ops_ms = sum(r["total_ms"] for r in rows)
    share = ops_ms / j["step_ms"] if j["step_ms"] else 0
    top = ", ".join(f'{r["key"]} {r["total_ms"]:.1f} ms ({100 * r["roofline"]:.0f}% of roofline)' for r in rows[:3])
    line = (f'step {j["step_ms"]:.1f} ms ({j["timing"]}), ops {100 * share:.0f}% of it; peaks '
            f'{j["peak_gflops"]:.0f} GFLOP/s, {j["peak_gbps"]:.0f} GB/s; top: {top}')
    ok = status == 0 and j["timing"] == "device events" and 0.5 <= share <= 1.05
    if j["timing"] != "device events":
        line += " (expected device events)"
    return line, ok


def train_step(path, status):
    try:
        rows = load(path)["benchmarks"]
    except Exception:
        return f"no result ({failed_status(status)})", False
    parts, ok = [], status == 0
    for b in rows:
        name = b["name"].replace("/real_time", "").replace("train_step/", "")
        if "error_message" in b:
            parts.append(f'{name}: {b["error_message"]}')
            ok = False
        else:
            parts.append(f'{name}: {b["images_per_second"]:.1f} img/s, '
                         + memory(b["peak_bytes"], b.get("allocated_peak_bytes", 0), b["arena_bytes"]))
    return "; ".join(parts) or "no benchmark ran", ok and bool(parts)


def kernels(path, status):
    try:
        rows = load(path)["benchmarks"]
    except Exception:
        return f"no result ({failed_status(status)})", False
    errors = [b["name"] for b in rows if "error_message" in b]
    line = f"{len(rows) - len(errors)} of {len(rows)} cases validated and timed (kernels.json)"
    if errors:
        line += "; failed: " + ", ".join(e.replace("/real_time", "") for e in errors[:3])
        line += f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return line, status == 0 and not errors and bool(rows)


def torch(path, status):
    try:
        t = load(path)
    except Exception:
        return f"failed ({failed_status(status)}): see its log", False
    warm = sum(t.get("warmup_seconds", []))
    return (f'{t["images_per_second"]:.1f} img/s, peak {t["peak_device_bytes"] / GIB:.2f} GiB (allocator), '
            f"warm-up {warm:.1f} s apart"), status == 0


def side_by_side(out, device):
    # 34.7 GFLOP per image per training step at 320x320 (../shared/guide/FACTS.md).
    limits = {"H200": (67, 495), "H100": (67, 495)}  # dense FP32, TF32 TFLOP/s (datasheet leads)
    try:
        c = load(f"{out}/cxr_bench.json")
    except Exception:
        print("no cxr bench result: no side-by-side")
        return
    print(f"\n{'b32 / 320x320':18s} {'img/s':>8s} {'peak GiB':>9s} {'cxr/this img/s':>15s} {'cxr/this peak':>14s}")
    print(f"{'cxr fp32':18s} {c['images_per_second']:8.1f} {c['peak_bytes'] / GIB:9.2f} {1.0:15.2f} {1.0:14.2f}")
    for mode in ("amp-bf16-cl", "compile", "eager-tf32", "eager-fp32"):
        try:
            t = load(f"{out}/torch_{mode}.json")
        except Exception:
            print(f"{'torch ' + mode:18s} {'no result (see its log)':>8s}")
            continue
        ips, peak = t["images_per_second"], t["peak_device_bytes"]
        print(f"{'torch ' + mode:18s} {ips:8.1f} {peak / GIB:9.2f} {c['images_per_second'] / ips:15.2f} "
              f"{c['peak_bytes'] / peak:14.2f}")
    tflops = c["images_per_second"] * 34.7e9 / 1e12
    lim = next((v for k, v in limits.items() if k in device), None)
    extra = f" = {100 * tflops / lim[0]:.0f}% of FP32 peak" if lim else " (no peak figures for this GPU)"
    print(f"cxr: {tflops:.1f} TFLOP/s{extra}")


def main():
    kind = sys.argv[1]
    if kind == "side-by-side":
        side_by_side(sys.argv[2], sys.argv[3])
        return 0
    fn = {"gtest": gtest, "cxr-bench": cxr_bench, "profile": profile, "train-step": train_step, "kernels": kernels, "torch": torch}[kind]
    line, ok = fn(sys.argv[2], int(sys.argv[3]))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
