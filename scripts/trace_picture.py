#!/usr/bin/env python3
"""Draw a `cxr profile --trace` file as a PNG timeline (for PERFORMANCE.md; Perfetto is the tool).

Usage: python3 scripts/trace_picture.py TRACE.json OUT.png [--step N]

Rows from top: phases, blocks, layers (the model's ranges), then the ops coloured by kind. Needs
Debian's python3-matplotlib.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KIND_COLOURS = {
    "conv2d_forward": "#1f77b4", "conv2d_backward_data": "#17becf", "conv2d_backward_filter": "#2ca02c",
    "batchnorm_relu_apply": "#ff7f0e", "batchnorm_relu_backward": "#d62728", "batchnorm_stats": "#e377c2",
    "adam_update": "#9467bd", "maxpool_forward": "#8c564b", "maxpool_backward": "#8c564b",
    "avgpool_forward": "#bcbd22", "avgpool_backward": "#bcbd22",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--step", type=int, default=1, help="which profiled step to draw (default 1)")
    args = ap.parse_args()
    events = [e for e in json.load(open(args.trace))["traceEvents"] if e.get("ph") == "X"]
    steps = [e for e in events if e.get("cat") == "step"]
    step = steps[args.step - 1]
    t0, t1 = step["ts"], step["ts"] + step["dur"]
    inside = [e for e in events if t0 <= e["ts"] <= t1 and e.get("cat") != "step"]
    rows = {"phase": 3, "block": 2, "layer": 1, "op": 0}
    fig, ax = plt.subplots(figsize=(14, 3.2), dpi=110)
    for e in inside:
        row = rows.get(e.get("cat"), 0)
        start, width = (e["ts"] - t0) / 1e3, e["dur"] / 1e3
        if row == 0:
            colour = KIND_COLOURS.get(e["name"], "#7f7f7f")
        else:
            colour = ["#000000", "#c7c7c7", "#9edae5", "#dbdb8d"][row] if row < 4 else "#cccccc"
        ax.broken_barh([(start, width)], (row - 0.4, 0.8), facecolors=colour, edgecolors="white", linewidth=0.2)
        if row >= 2 and width > (t1 - t0) / 1e3 * 0.03:
            ax.text(start + width / 2, row, e["name"], ha="center", va="center", fontsize=7)
    ax.set_yticks(range(4))
    ax.set_yticklabels(["ops", "layers", "blocks", "phases"])
    ax.set_xlabel("ms from the start of step %d" % args.step)
    ax.set_xlim(0, (t1 - t0) / 1e3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    ax.legend(handles, list(KIND_COLOURS), fontsize=6, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    fig.savefig(args.out)


if __name__ == "__main__":
    main()
