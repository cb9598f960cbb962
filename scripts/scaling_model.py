#!/usr/bin/env python3
"""Data-parallel scaling model of a DenseNet121 training step (PERFORMANCE.md, "Data parallel").

    scripts/scaling_model.py --images-per-second X [--batch-per-gpu 32] [--markdown]

From one GPU's measured (or, labelled so, estimated) training throughput X at a per-GPU batch b, the
step's compute time is T_c = b / X. Each step all-reduces the FP32 gradients, G = 27.9 MB for
DenseNet121 with 14 classes (cxr model-info: 6,968,206 trainable parameters x 4 bytes), by ring
all-reduce: every rank sends and receives 2 (N - 1) / N x G, so the exchange takes
T_ar = 2 (N - 1) / N x G / B over a bus of B bytes/s per rank. Across nodes, NCCL reduces within each
node over NVLink first and the ring between nodes carries G once per node over the network, so there
N is the number of nodes and B a node's network bandwidth (one NIC per node assumed; 8 GPUs/node).

Two bounds: no overlap, T = T_c + T_ar; full overlap (buckets all-reduced during backward; the
first bucket cannot start before backward does, and the last cannot finish before it ends: at
least one bucket's exchange, ~1/3 of T_ar with 25 MB buckets, stays exposed), T = max(T_c, T_ar) +
T_ar / 3. Images/s = N_gpus x b / T; efficiency = T_c / T.

Bandwidths are nominal link rates derated to what NCCL's bus bandwidth typically reaches (stated in
the table); they are assumptions until measured with nccl-tests on the machines in question.
"""
import argparse

GRAD_BYTES = 6_968_206 * 4  # DenseNet121, 14 classes: trainable parameters x 4 bytes (27.9 MB)


def step(tc, tar):
    return tc + tar, max(tc, tar) + tar / 3.0


def rows(x, b):
    tc = b / x
    out = []
    # One node, 8 GPUs over NVLink: H100 SXM NVLink 4, 450 GB/s per direction nominal, NCCL all-reduce
    # bus bandwidth ~360 GB/s (80%).
    n = 8
    tar = 2 * (n - 1) / n * GRAD_BYTES / 360e9
    out.append(("1 node x 8 GPUs, NVLink (360 GB/s bus)", n, tc, tar))
    for gbit in (100, 200, 400):
        bus = gbit / 8 * 1e9 * 0.9  # InfiniBand: ~90% of the link rate
        for nodes in (2, 4, 8, 16):
            tar = 2 * (nodes - 1) / nodes * GRAD_BYTES / bus
            tar += 2 * 7 / 8 * GRAD_BYTES / 360e9  # the intra-node reduce/broadcast over NVLink
            out.append((f"{nodes} nodes x 8 GPUs, {gbit} Gb/s InfiniBand", nodes * 8, tc, tar))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images-per-second", type=float, required=True, help="one GPU's training throughput")
    ap.add_argument("--batch-per-gpu", type=int, default=32)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    x, b = a.images_per_second, a.batch_per_gpu
    head = ("configuration", "GPUs", "T_c ms", "T_allreduce ms", "images/s (no overlap .. overlap)",
            "efficiency (no overlap .. overlap)")
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" for _ in head) + " |")
    for name, gpus, tc, tar in rows(x, b):
        slow, fast = step(tc, tar)
        cells = (name, str(gpus), f"{tc * 1e3:.2f}", f"{tar * 1e3:.2f}",
                 f"{gpus * b / slow:,.0f} .. {gpus * b / fast:,.0f}", f"{tc / slow:.0%} .. {tc / fast:.0%}")
        print("| " + " | ".join(cells) + " |" if a.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
