#!/usr/bin/env python3
"""Replays a `cxr train` run in PyTorch on the CPU: same initial weights, same batches (and flips), same
recipe; prints per-epoch validation AUCs as JSON. Used by scripts/validate_nih.sh.

    python scripts/torch_replay.py --data data.h5 --run RUN_DIR [--threads N] > torch.json

RUN_DIR must come from `cxr train ... --save-initial --log-batches` (initial.h5, batches.jsonl,
metrics.jsonl with the run's configuration in last.h5). The model is torchvision's densenet121 with a
Linear(1024, 14) head; BatchNorm gets Keras's epsilon (1.001e-5) and momentum (torch 0.01 = Keras
0.99); weights map from our legacy-Keras-layout file by layer name (HWIO -> OIHW, Dense (in, out) ->
(out, in)). Normalisation `sample`: (x - mean) / (std + 1e-7) per image, grey replicated to 3 channels,
as io/normalize.h. Loss: weighted BCE with w_pos = frequency of negatives, w_neg = of positives in the
training set, summed over classes, mean over the batch. Adam (PyTorch's), the run's lr and weight decay,
no schedule (run cxr with a --plateau-patience beyond the epoch count).
Requirements: torch, torchvision, h5py, scikit-learn, numpy (bench/requirements-torch.txt + h5py,
scikit-learn).
"""
import argparse
import json
import os
import re

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import roc_auc_score


def torch_name(layer, weight):
    """Keras layer/weight name of DenseNet121 -> torchvision state-dict key."""
    w = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var",
         "kernel": "weight", "bias": "bias"}[weight]
    if layer == "conv1/conv":
        return f"features.conv0.{w}"
    if layer == "conv1/bn":
        return f"features.norm0.{w}"
    if layer == "bn":
        return f"features.norm5.{w}"
    if layer == "predictions":
        return f"classifier.{w}"
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(bn|conv)", layer)
    if m:
        b, l, i, kind = int(m[1]), int(m[2]), int(m[3]), m[4]
        part = {(0, "bn"): "norm1", (1, "conv"): "conv1", (1, "bn"): "norm2", (2, "conv"): "conv2"}[(i, kind)]
        return f"features.denseblock{b - 1}.denselayer{l}.{part}.{w}"
    m = re.fullmatch(r"pool(\d)_(bn|conv)", layer)
    if m:
        part = "norm" if m[2] == "bn" else "conv"
        return f"features.transition{int(m[1]) - 1}.{part}.{w}"
    raise KeyError(layer)


def load_initial(model, path):
    sd = model.state_dict()
    seen = set()
    with h5py.File(path, "r") as f:
        for layer in [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]:
            g = f[layer]
            for wn in [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]:
                a = np.array(g[wn])
                weight = wn.split("/")[-1].split(":")[0]
                key = torch_name(layer, weight)
                if a.ndim == 4:
                    a = a.transpose(3, 2, 0, 1)
                elif a.ndim == 2:
                    a = a.T
                assert sd[key].shape == a.shape, (key, sd[key].shape, a.shape)
                sd[key].copy_(torch.from_numpy(np.ascontiguousarray(a)))
                seen.add(key)
    missing = [k for k in sd if k not in seen and not k.endswith("num_batches_tracked")]
    assert not missing, f"not in {path}: {missing[:5]}"


def normalize(pixels):
    x = pixels.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    y = ((x - mean) / (std + 1e-7)).astype(np.float32)
    return np.repeat(y[:, None], 3, axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with h5py.File(os.path.join(args.run, "last.h5"), "r") as f:
        raw = f["cxr/training_state/config_json"][()]
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    assert cfg["normalize"] == "sample" and cfg["arch"] == "densenet121", cfg
    with h5py.File(args.data, "r") as f:
        images = np.array(f["images"])
        labels = np.array(f["labels"]).astype(np.float32)
        split = np.array(f["split"])
    train, val = np.where(split == 0)[0], np.where(split == 1)[0]
    freq = labels[train].mean(axis=0)
    w_pos = torch.tensor(1.0 - freq) if cfg["loss"] == "weighted" else torch.ones(14)
    w_neg = torch.tensor(freq) if cfg["loss"] == "weighted" else torch.ones(14)

    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Linear(1024, 14)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps, m.momentum = 1.001e-5, 0.01
    with torch.no_grad():
        load_initial(model, os.path.join(args.run, "initial.h5"))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    steps = [json.loads(line) for line in open(os.path.join(args.run, "batches.jsonl"))]
    epochs = sorted({s["epoch"] for s in steps})
    xv = torch.from_numpy(normalize(images[val]))
    out = []
    for e in epochs:
        model.train()
        for s in (s for s in steps if s["epoch"] == e):
            idx = np.array(s["indices"])
            px = images[idx].copy()
            for k, fl in enumerate(s["flipped"]):
                if fl:
                    px[k] = px[k][:, ::-1]
            x, y = torch.from_numpy(normalize(px)), torch.from_numpy(labels[idx])
            opt.zero_grad(set_to_none=True)
            z = model(x)
            loss = -(w_pos * y * F.logsigmoid(z) + w_neg * (1 - y) * F.logsigmoid(-z)).mean(0).sum()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            zv = torch.cat([model(xv[i:i + 32]) for i in range(0, len(val), 32)]).numpy()
        aucs = {}
        for c in range(14):
            yc = labels[val, c]
            if 0 < yc.sum() < len(yc):
                aucs[c] = float(roc_auc_score(yc, zv[:, c]))
        out.append({"epoch": e, "val_mean_auc": float(np.mean(list(aucs.values()))), "val_auc": aucs})
        print(json.dumps(out[-1]), file=os.sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
