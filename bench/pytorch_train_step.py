#!/usr/bin/env python3
"""Reference timing of one DenseNet121 training step in PyTorch, on the CPU or a GPU.

One configuration per invocation (peak memory is per process), e.g.
    /work/venv-torch/bin/python bench/pytorch_train_step.py --batch 8 --size 128 --steps 10 --warmup 2 --threads 2 --json
    python3 bench/pytorch_train_step.py --device cuda --mode amp-bf16-cl --batch 32 --size 320 --json

Modes (--mode; TF32 has no meaning on the CPU, where the other modes serve as smoke tests):
  eager-fp32    eager, NCHW, TF32 off for convolutions and matrix products
  eager-tf32    eager, NCHW, TF32 on (cudnn.allow_tf32, matmul precision 'high')
  amp-bf16-cl   eager, channels-last, autocast to bfloat16 (FP32 master weights; no loss scaling needed)
  amp-fp16-cl   eager, channels-last, autocast to float16 with a GradScaler
  compile       torch.compile(model) (default mode) with amp-bf16-cl's settings; compilation happens
                in the warm-up steps, which are timed apart (warmup_seconds)

Step = zero_grad + forward + weighted BCE loss + backward + Adam(lr=1e-4) update,
model in train mode (BatchNorm uses batch statistics), fp32, NCHW.
Model: torchvision densenet121(weights=None) with classifier = Linear(1024, 14).
Loss (per-class weighted BCE, written out):
    L = sum_c mean_n -( w_pos[c] * y * logsigmoid(z) + w_neg[c] * (1 - y) * logsigmoid(-z) )
Inputs: random N(0,1) images (N,3,S,S) and random 0/1 labels (fixed once, outside the timed region).

Reported:
  images_per_second       median over timed steps of batch / step_time (mean also given)
  peak_device_bytes       (GPU) torch.cuda.max_memory_allocated(): the caching allocator's peak of live
                          tensors, workspaces included; peak_device_reserved_bytes is what it held
  peak_rss_bytes          resource.getrusage(RUSAGE_SELF).ru_maxrss * 1024 at the end; this INCLUDES
                          the Python + torch baseline (interpreter, shared libraries, allocator caches)
  baseline_rss_bytes      resident set size after importing torch/torchvision, before building the model
Requirements: bench/requirements-torch.txt.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table line")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--mode", choices=["eager-fp32", "eager-tf32", "amp-bf16-cl", "amp-fp16-cl", "compile"],
                    default="eager-fp32")
    ap.add_argument("--no-optimizer", action="store_true",
                    help="forward + loss + backward only (no Adam update), like `cxr bench` before issue 5")
    args = ap.parse_args()

    load_before = os.getloadavg()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    baseline_rss = current_rss_bytes()
    baseline_peak = peak_rss_bytes()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("pytorch_train_step: no CUDA device visible to torch", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    tf32 = args.mode != "eager-fp32"
    channels_last = args.mode in ("amp-bf16-cl", "amp-fp16-cl", "compile")
    amp_dtype = {"amp-bf16-cl": torch.bfloat16, "compile": torch.bfloat16, "amp-fp16-cl": torch.float16}.get(args.mode)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")

    C = args.classes
    model = torchvision.models.densenet121(weights=None)
    model.classifier = nn.Linear(1024, C)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(args.device) if amp_dtype == torch.float16 else None
    fwd = torch.compile(model) if args.mode == "compile" else model

    # Per-class positive rates p[c]; CheXNet-style weights w_pos = 1 - p, w_neg = p.
    p = torch.empty(C).uniform_(0.05, 0.5)
    w_pos = (1.0 - p).to(dev)
    w_neg = p.clone().to(dev)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = (torch.rand(args.batch, C) < p).float().to(dev)
    x = x.to(dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def weighted_bce(z, y):
        z = z.float()
        per = -(w_pos * y * F.logsigmoid(z) + w_neg * (1.0 - y) * F.logsigmoid(-z))  # (N, C)
        return per.mean(dim=0).sum()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(args.device, dtype=amp_dtype, enabled=amp_dtype is not None):
            z = fwd(x)
        loss = weighted_bce(z, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            if not args.no_optimizer:
                scaler.step(opt)
                scaler.update()
        else:
            loss.backward()
            if not args.no_optimizer:
                opt.step()
        return loss.item()  # .item() synchronises with the GPU: the step is complete

    # Warm-up timed apart: under torch.compile the first step includes the compilation.
    warmup_times = []
    for i in range(args.warmup):
        t0 = time.perf_counter()
        step()
        warmup_times.append(time.perf_counter() - t0)
        print(f"warm-up step {i + 1}/{args.warmup}: {warmup_times[-1]:.2f} s", file=sys.stderr, flush=True)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()  # compilation's and warm-up's temporaries not counted
    times = []
    losses = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    load_after = os.getloadavg()

    ips = [args.batch / t for t in times]
    res = {
        "framework": "pytorch",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "mode": args.mode,
        "batch": args.batch,
        "size": args.size,
        "threads": args.threads,
        "images_per_second": statistics.median(ips),
        "images_per_second_mean": statistics.fmean(ips),
        "step_seconds": times,
        "steps": args.steps,
        "warmup": args.warmup,
        "warmup_seconds": warmup_times,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_device_bytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else None,
        "peak_device_reserved_bytes": torch.cuda.max_memory_reserved() if args.device == "cuda" else None,
        "baseline_rss_bytes": baseline_rss,
        "baseline_peak_rss_bytes": baseline_peak,
        "final_loss": losses[-1] if losses else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{'framework':>9} {'batch':>5} {'size':>4} {'thr':>3} {'img/s med':>9} {'img/s mean':>10} "
              f"{'peak RSS MiB':>12} {'base RSS MiB':>12} torch")
        print(f"{'pytorch':>9} {args.batch:>5} {args.size:>4} {args.threads:>3} {res['images_per_second']:>9.2f} "
              f"{res['images_per_second_mean']:>10.2f} {res['peak_rss_bytes'] / 2**20:>12.0f} "
              f"{baseline_rss / 2**20:>12.0f} {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
