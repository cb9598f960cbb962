"""Other writers' layouts of the HDF5 fuzz seeds (tests/fuzz/make_hdf5_seeds.cpp writes cxr's own).

    build/tests/fuzz/cxr_make_hdf5_seeds tests/fuzz/corpus
    /usr/bin/python3 tests/fuzz/make_hdf5_seeds.py tests/fuzz/corpus

From corpus/weights/cxr_tiny.h5 (the tiny model of tests/fuzz/tiny_model.h in the legacy Keras 2
layout, h5py-3-style variable-length strings) it writes, with the same tensors:
  corpus/weights/keras2_h5py2_tiny.h5    layer_names / weight_names as numpy S arrays, i.e. fixed-length
                                         NULLPAD strings as h5py 2.x wrote them (the official files)
  corpus/weights/keras3_tiny.weights.h5  Keras 3's layout: /layers/<class>_<n>/vars/<i> with the
                                         layer's `name` attribute on vars, and an empty /vars
Needs h5py and numpy (Debian's python3-h5py).
"""
import os
import sys

import h5py
import numpy as np


def main(corpus):
    src = os.path.join(corpus, "weights", "cxr_tiny.h5")
    layers = []  # (layer, [(weight name, array)])
    with h5py.File(src, "r") as f:
        for layer in [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]:
            g = f[layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            layers.append((layer, [(n, g[n][()]) for n in names]))

    with h5py.File(os.path.join(corpus, "weights", "keras2_h5py2_tiny.h5"), "w") as f:
        f.attrs["layer_names"] = np.array([l.encode() for l, _ in layers])  # dtype S<longest>
        f.attrs["backend"] = np.bytes_(b"tensorflow")
        f.attrs["keras_version"] = np.bytes_(b"2.2.4")
        for layer, weights in layers:
            g = f.create_group(layer)
            g.attrs["weight_names"] = np.array([n.encode() for n, _ in weights]) if weights else np.zeros(0)
            for n, a in weights:
                g.create_dataset(n, data=a)

    counters = {}
    with h5py.File(os.path.join(corpus, "weights", "keras3_tiny.weights.h5"), "w") as f:
        f.create_group("vars")
        top = f.create_group("layers")
        for layer, weights in layers:
            if not weights:
                continue
            last = weights[0][0].split("/")[-1]
            cls = "batch_normalization" if last.startswith("gamma") else (
                "dense" if len(weights) == 2 else "conv2d")
            k = counters.get(cls, 0)
            counters[cls] = k + 1
            v = top.create_group(cls + ("_%d" % k if k else "")).create_group("vars")
            v.attrs["name"] = layer
            for i, (_, a) in enumerate(weights):
                v.create_dataset(str(i), data=a)
    for fn in ("keras2_h5py2_tiny.h5", "keras3_tiny.weights.h5"):
        p = os.path.join(corpus, "weights", fn)
        print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
