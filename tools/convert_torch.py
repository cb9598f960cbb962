#!/usr/bin/env python3
"""Convert a PyTorch DenseNet (torchvision state dict, or a CheXNet checkpoint) into a cxr model file.

    python tools/convert_torch.py IN.pth OUT.h5 [--arch densenet121|densenet169|densenet201|auto]
           [--class-names A,B,...] [--image-size 224] [--normalization imagenet] [--unsafe-pickle]
    python tools/convert_torch.py --self-test
    python tools/convert_torch.py --make-fixture tests/fixtures

Needs torch and h5py (pinned in tests/fixtures/requirements.txt; /work/venv-torch has them).

Input: a state dict (torch.save(model.state_dict())), a dict holding one under `state_dict` (CheXNet
reimplementations: `{'epoch', 'state_dict', 'optimizer', ...}`), or a pickled module. Key names are
normalised before mapping: any `module.` prefix (DataParallel) and a `densenet121.`/`densenet169.`/
`densenet201.` prefix are removed, the old torchvision names `norm.1`, `relu.1`, `conv.1`, `norm.2`,
`relu.2`, `conv.2` become `norm1` ... `conv2`, the CheXNet head `classifier.0` (Linear inside
Sequential(Linear, Sigmoid)) becomes `classifier`; `num_batches_tracked` is ignored. With --arch auto
(the default) the block list, growth rate, bottleneck and stem width are read from the keys and
shapes; otherwise the file must hold exactly the named architecture. Any difference between the
expected and the given keys fails with both lists (missing and unexpected, in the file's own names).

Output: what cxr's save_checkpoint writes, without training state: the legacy Keras 2 layout (root
attributes layer_names/backend/keras_version, per-layer weight_names, /<layer>/<layer>/<w>:0; conv
kernels OIHW -> HWIO, the Linear weight (out, in) -> Dense kernel (in, out)) plus /cxr with the model
meta (arch, classes, class names, image size, normalisation) and the source's description. Written to
a temporary file in the same directory and renamed.

BN epsilon: torchvision uses 1e-5, Keras and cxr 1.001e-5. Only var + eps enters the forward pass,
so the converter stores moving_variance = running_var + (1e-5 - 1.001e-5) (computed in float64, then
rounded to float32): the converted model computes the same function (up to that rounding). The file
records it (/cxr attributes bn_epsilon_source = 1e-5, moving_variance_offset = -1e-8). A variance
below 1e-8 becomes slightly negative; harmless, since only var + eps > 0 is used.
"""
import argparse
import os
import re
import sys
import tempfile

import h5py
import numpy as np

KERAS_EPS, TORCH_EPS = 1.001e-5, 1e-5
ARCHS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}


class ConversionError(Exception):
    pass


# ---- reading and normalising a checkpoint ----------------------------------------------------------

def load_state_dict(path, unsafe_pickle=False):
    import torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:  # noqa: BLE001 (torch raises many types)
        hint = "" if unsafe_pickle else " (if it pickles more than tensors and you trust it, pass --unsafe-pickle)"
        raise ConversionError(f"{path}: cannot read it with torch.load: {e}{hint}") from e
    kind = "state dict"
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj, kind = obj.state_dict(), "pickled module"
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj, kind = obj["state_dict"], "checkpoint with a state_dict"
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a state dict or a dict with 'state_dict', found {type(obj).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}, kind


OLD_NAME = re.compile(r"\.(norm|relu|conv)\.([12])\.")


def normalise_key(key):
    k = key
    while k.startswith("module."):
        k = k[len("module."):]
    for a in ARCHS:
        if k.startswith(a + "."):
            k = k[len(a) + 1:]
    k = OLD_NAME.sub(r".\1\2.", k)
    return k.replace("classifier.0.", "classifier.")


# ---- the architecture: expected torchvision keys and their Keras names -----------------------------

def infer_config(sd):
    blocks = []
    for b in range(1, 10):
        layers = {int(m.group(1)) for k in sd for m in [re.match(rf"features\.denseblock{b}\.denselayer(\d+)\.", k)] if m}
        if not layers:
            break
        blocks.append(max(layers))
    cfg = {"blocks": tuple(blocks), "stem": 64, "growth": 32, "bottleneck": 128}
    if "features.conv0.weight" in sd:
        cfg["stem"] = sd["features.conv0.weight"].shape[0]
    if "features.denseblock1.denselayer1.conv1.weight" in sd:
        cfg["bottleneck"] = sd["features.denseblock1.denselayer1.conv1.weight"].shape[0]
    if "features.denseblock1.denselayer1.conv2.weight" in sd:
        cfg["growth"] = sd["features.denseblock1.denselayer1.conv2.weight"].shape[0]
    return cfg


def layout(cfg, with_head, classes=0):
    """[(torch prefix, keras layer, kind, torch weight shape)] in Keras (and cxr ParamTable) order."""
    g, bott, c = cfg["growth"], cfg["bottleneck"], cfg["stem"]
    out = [("features.conv0", "conv1/conv", "conv", (c, 3, 7, 7)), ("features.norm0", "conv1/bn", "bn", (c,))]
    for b, n in enumerate(cfg["blocks"]):
        for l in range(1, n + 1):
            t, k = f"features.denseblock{b + 1}.denselayer{l}", f"conv{b + 2}_block{l}"
            out += [(t + ".norm1", k + "_0_bn", "bn", (c,)), (t + ".conv1", k + "_1_conv", "conv", (bott, c, 1, 1)),
                    (t + ".norm2", k + "_1_bn", "bn", (bott,)), (t + ".conv2", k + "_2_conv", "conv", (g, bott, 3, 3))]
            c += g
        if b + 1 < len(cfg["blocks"]):
            out += [(f"features.transition{b + 1}.norm", f"pool{b + 2}_bn", "bn", (c,)),
                    (f"features.transition{b + 1}.conv", f"pool{b + 2}_conv", "conv", (c // 2, c, 1, 1))]
            c //= 2
    out.append((f"features.norm{len(cfg['blocks']) + 1}", "bn", "bn", (c,)))
    if with_head:
        out.append(("classifier", "predictions", "dense", (classes, c)))
    return out


SUFFIXES = {"conv": [("weight", "kernel")], "dense": [("weight", "kernel"), ("bias", "bias")],
            "bn": [("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                   ("running_var", "moving_variance")]}


def check_keys(path, sd, original, lay):
    expected = {f"{t}.{s}" for t, _, kind, _ in lay for s, _ in SUFFIXES[kind]}
    given = {k for k in sd if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        def show(keys):
            names = [f"{original[k]}" + (f" (read as {k})" if original[k] != k else "") for k in keys]
            return ", ".join(names[:30]) + (f", ... ({len(names) - 30} more)" if len(names) > 30 else "")
        msg = f"{path}: the keys do not match the expected DenseNet ({len(expected)} tensors)"
        if missing:
            msg += f"; missing {len(missing)}: " + ", ".join(missing[:30]) + (" ..." if len(missing) > 30 else "")
        if unexpected:
            msg += f"; unexpected {len(unexpected)}: " + show(unexpected)
        raise ConversionError(msg)


def to_keras(kind, keras_weight, a):
    a = np.asarray(a, dtype=np.float64)
    if kind == "conv":
        return a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if kind == "dense" and keras_weight == "kernel":
        return a.T  # (out, in) -> (in, out)
    if keras_weight == "moving_variance":
        return a + (TORCH_EPS - KERAS_EPS)  # see the docstring: same var + eps
    return a


# ---- writing ---------------------------------------------------------------------------------------

def write_cxr_file(out, tensors, meta):
    """tensors: [(keras layer, weight, float32 array)] in order; meta: dict of /cxr attributes."""
    layers, weight_names = [], {}
    for layer, w, _ in tensors:
        if layer not in weight_names:
            layers.append(layer)
            weight_names[layer] = []
        weight_names[layer].append(f"{layer}/{w}:0")
    d = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".tmp-", dir=d)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            s = h5py.string_dtype()
            f.attrs["backend"], f.attrs["keras_version"] = "tensorflow", "2.21.0"
            f.attrs["cxr_writer"] = "tools/convert_torch.py"
            f.attrs.create("layer_names", np.array(layers, dtype=object), dtype=s)
            for layer in layers:
                f.require_group(layer).attrs.create("weight_names", np.array(weight_names[layer], dtype=object), dtype=s)
            for layer, w, a in tensors:
                f.create_dataset(f"{layer}/{layer}/{w}:0", data=np.asarray(a, dtype=np.float32))
            g = f.create_group("cxr")
            for k, v in meta.items():
                if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
                    g.attrs.create(k, np.array(v, dtype=object), dtype=s) if v else g.attrs.create(k, np.zeros(0))
                else:
                    g.attrs[k] = v
            f.flush()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert(path, out, arch="auto", class_names=None, image_size=224, normalization="imagenet", unsafe_pickle=False,
            state_dict=None):
    if state_dict is None:
        raw, kind = load_state_dict(path, unsafe_pickle)
    else:
        raw, kind = state_dict, "state dict"
    sd, original = {}, {}
    for k, v in raw.items():
        nk = normalise_key(k)
        if nk in sd:
            raise ConversionError(f"{path}: keys {original[nk]} and {k} both normalise to {nk}")
        sd[nk], original[nk] = v, k
    cfg = infer_config(sd)
    if arch != "auto":
        if arch not in ARCHS:
            raise ConversionError(f"--arch {arch}: expected auto or one of {', '.join(ARCHS)}")
        cfg = {"blocks": ARCHS[arch], "stem": 64, "growth": 32, "bottleneck": 128}
    if not cfg["blocks"]:
        raise ConversionError(f"{path}: no features.denseblock1.denselayer1.* keys: not a torchvision DenseNet "
                              f"(first keys: {', '.join(list(raw)[:5])})")
    with_head = any(k.startswith("classifier.") for k in sd)
    classes = int(sd["classifier.weight"].shape[0]) if "classifier.weight" in sd else 0
    lay = layout(cfg, with_head, classes)
    check_keys(path, sd, original, lay)
    tensors = []
    for t, layer, kind_, shape in lay:
        for s, w in SUFFIXES[kind_]:
            a, want = sd[f"{t}.{s}"], shape if s == "weight" else shape[:1]
            if tuple(a.shape) != tuple(want) or a.dtype != np.float32:
                raise ConversionError(f"{path}: {original[f'{t}.{s}']}: expected float32 {list(want)}, "
                                      f"found {a.dtype} {list(a.shape)}")
            tensors.append((layer, w, to_keras(kind_, w, a).astype(np.float32)))
    standard = [a for a, b in ARCHS.items() if b == tuple(cfg["blocks"])]
    name = standard[0] if standard and (cfg["growth"], cfg["bottleneck"], cfg["stem"]) == (32, 128, 64) else "densenet"
    if class_names and len(class_names) != classes:
        raise ConversionError(f"--class-names: {len(class_names)} names for a {classes}-class head")
    meta = {"format_version": 1, "writer": "tools/convert_torch.py", "arch": name, "classes": classes,
            "class_names": list(class_names or []), "image_size": image_size, "normalization": normalization,
            "norm_mean": 0.0, "norm_std": 1.0, "source": os.path.basename(path), "source_format": kind,
            "bn_epsilon_source": TORCH_EPS, "moving_variance_offset": TORCH_EPS - KERAS_EPS,
            "blocks": np.array(cfg["blocks"], dtype=np.int64), "growth": cfg["growth"],
            "bottleneck": cfg["bottleneck"], "stem": cfg["stem"]}
    if not with_head:  # a backbone only: no model meta (cxr initialises the head when loading)
        meta = {}
    write_cxr_file(out, tensors, meta) if meta else write_backbone(out, tensors)
    return cfg, classes, kind


def write_backbone(out, tensors):
    write_cxr_file(out, tensors, {})
    with h5py.File(out, "a") as f:
        del f["cxr"]


# ---- fixture and self-test -------------------------------------------------------------------------

FIX_CFG = dict(growth_rate=8, block_config=(1, 2, 1, 1), num_init_features=16, bn_size=2, num_classes=14)


def random_torch_model(seed):
    import torch
    import torchvision
    torch.manual_seed(seed)
    m = torchvision.models.DenseNet(**FIX_CFG)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # random statistics, some variances small
                c = mod.num_features
                mod.weight.copy_(1 + 0.25 * (2 * torch.rand(c, generator=g) - 1))
                mod.bias.copy_(0.25 * (2 * torch.rand(c, generator=g) - 1))
                mod.running_mean.copy_(0.25 * (2 * torch.rand(c, generator=g) - 1))
                mod.running_var.copy_(torch.exp(torch.empty(c).uniform_(np.log(1e-3), np.log(2.0), generator=g)))
            if isinstance(mod, torch.nn.Linear):
                mod.bias.copy_(0.25 * (2 * torch.rand(mod.out_features, generator=g) - 1))
    return m.eval()


def chexnet_style(sd):
    """A CheXNet reimplementation's checkpoint: DataParallel prefix, old names, Sequential head."""
    out = {}
    for k, v in sd.items():
        k2 = re.sub(r"\.(norm|relu|conv)([12])\.", r".\1.\2.", k).replace("classifier.", "classifier.0.")
        out["module.densenet121." + k2] = v
    return {"epoch": 3, "state_dict": out, "best_loss": 0.1}


def make_fixture(outdir):
    import torch
    m = random_torch_model(0)
    x = np.random.default_rng(1000).uniform(-2.0, 2.0, size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        z = m(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as d:
        pth = os.path.join(d, "chexnet_style.pth.tar")
        torch.save(chexnet_style(m.state_dict()), pth)
        convert(pth, os.path.join(outdir, "torch_reduced.h5"), class_names=[f"class{i}" for i in range(14)])
    with h5py.File(os.path.join(outdir, "torch_reduced_ref.h5"), "w") as f:
        f["input"], f["logits"] = x, z
        f.attrs.update(torch_version=str(torch.__version__), config=repr(FIX_CFG),
                       note="torchvision DenseNet in eval mode; converted from a CheXNet-style checkpoint")
    for fn in ["torch_reduced.h5", "torch_reduced_ref.h5"]:
        print(f"{fn}: {os.path.getsize(os.path.join(outdir, fn))} bytes")


def self_test():
    import torch
    m = random_torch_model(5)
    sd = m.state_dict()
    with tempfile.TemporaryDirectory() as d:
        pth, out = os.path.join(d, "ck.pth.tar"), os.path.join(d, "out.h5")
        torch.save(chexnet_style(sd), pth)
        cfg, classes, _ = convert(pth, out)
        assert cfg["blocks"] == (1, 2, 1, 1) and classes == 14, (cfg, classes)
        with h5py.File(out, "r") as f:
            k = f["conv3_block1_2_conv/conv3_block1_2_conv/kernel:0"][()]
            assert np.array_equal(k, sd["features.denseblock2.denselayer1.conv2.weight"].numpy().transpose(2, 3, 1, 0))
            assert np.array_equal(f["predictions/predictions/kernel:0"][()], sd["classifier.weight"].numpy().T)
            v = f["conv3_block2_1_bn/conv3_block2_1_bn/moving_variance:0"][()]
            want = (sd["features.denseblock2.denselayer2.norm2.running_var"].double().numpy() + TORCH_EPS - KERAS_EPS)
            assert np.array_equal(v, want.astype(np.float32))
            assert [n for n in f.attrs["layer_names"]][:2] == ["conv1/conv", "conv1/bn"]
        print("ok: CheXNet-style checkpoint (module.densenet121., norm.1/conv.2, classifier.0) converts")
        # Missing and unexpected keys: both listed, with the file's name.
        bad = chexnet_style(sd)
        del bad["state_dict"]["module.densenet121.features.denseblock2.denselayer2.conv.2.weight"]
        bad["state_dict"]["module.densenet121.features.extra_norm.weight"] = torch.zeros(3)
        torch.save(bad, pth)
        try:
            convert(pth, out)
            raise AssertionError("a checkpoint with a missing and an unexpected key converted")
        except ConversionError as e:
            msg = str(e)
            for part in [pth, "missing 1: features.denseblock2.denselayer2.conv2.weight",
                         "unexpected 1: module.densenet121.features.extra_norm.weight"]:
                assert part in msg, (part, msg)
            print("ok: missing/unexpected keys:", msg)
        # A reduced model read as densenet121: the missing layers are listed.
        torch.save(sd, pth)
        try:
            convert(pth, out, arch="densenet121")
            raise AssertionError("a reduced model converted as densenet121")
        except ConversionError as e:
            assert "missing 530: features.denseblock1.denselayer2.conv1.weight" in str(e), str(e)
            print("ok: --arch densenet121 on a reduced model:", str(e)[:160], "...")
        torch.save({"epoch": 1}, pth)
        try:
            convert(pth, out)
            raise AssertionError("a dict without weights converted")
        except ConversionError as e:
            print("ok: not a DenseNet:", e)
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--arch", default="auto")
    ap.add_argument("--class-names", default="")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--normalization", default="imagenet", choices=["imagenet", "sample", "dataset"])
    ap.add_argument("--unsafe-pickle", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--make-fixture", metavar="DIR")
    a = ap.parse_args()
    try:
        if a.self_test:
            return self_test()
        if a.make_fixture:
            return make_fixture(a.make_fixture)
        if not a.input or not a.output:
            ap.error("IN and OUT are required")
        names = [n for n in a.class_names.split(",") if n]
        cfg, classes, kind = convert(a.input, a.output, a.arch, names, a.image_size, a.normalization, a.unsafe_pickle)
        print(f"wrote {a.output}: DenseNet blocks {cfg['blocks']} growth {cfg['growth']}, "
              f"{classes or 'no'} head classes, from a {kind}", file=sys.stderr)
    except ConversionError as e:
        sys.exit(f"convert_torch.py: error: {e}")


if __name__ == "__main__":
    main()
