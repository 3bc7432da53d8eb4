"""The ONNX face-embedding plug-in, with a tiny model this test builds itself.

The model (average-pool 8x8, then a fixed random projection to 16 numbers) is
no face recogniser, but it is a real ONNX graph run by onnxruntime on real
aligned crops: enough to check loading, input layout, preprocessing,
alignment, registration and that edits of one photo stay close.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from indexer import images  # noqa: E402
from indexer.signals import base as signals  # noqa: E402
from indexer.signals import faces as F  # noqa: E402
from indexer.signals import onnx_faces  # noqa: E402
from tests.conftest import jpeg_bytes, photo, png_bytes  # noqa: E402

DIM = 16


def tiny_model(path: Path) -> Path:
    rng = np.random.default_rng(7)
    proj = rng.standard_normal((3 * 14 * 14, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_face",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", DIM])],
        initializer=[numpy_helper.from_array(proj, "proj")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def signal(tmp_path: Path):  # noqa: ANN201
    sig = onnx_faces.configure(tiny_model(tmp_path / "tiny.onnx"), name="face_tiny", replace=True)
    yield sig
    signals.unregister("face_tiny")


def test_configured_model_joins_the_faces_family(signal: onnx_faces.OnnxFaceSignal) -> None:
    assert signal.dim == DIM and signal.family == "faces"
    assert signals.get("face_tiny") is signal
    assert {"face_dlib", "face_tiny"} <= {s.name for s in signals.select(["faces"])}


def test_embeds_each_face_and_edits_stay_close(signal: onnx_faces.OnnxFaceSignal) -> None:
    astro = photo("astronaut.png")
    found = signal.extract(images.load(png_bytes(astro)))
    assert found  # HOG also fires on the suit's mission patch; the face is the central one
    v = max(found, key=lambda f: F.primary_weight(f.box, 512, 512))
    assert v.vector.shape == (DIM,) and abs(float(np.linalg.norm(v.vector)) - 1.0) < 1e-5
    assert v.box is not None and v.quality is not None
    again = max(signal.extract(images.load(jpeg_bytes(astro.resize((400, 400)), 60))),
                key=lambda f: F.primary_weight(f.box, 400, 400))
    assert signal.distance(v.vector, again.vector) < 0.05
    assert signal.extract(images.load(png_bytes(photo("coffee.png")))) == []


def test_alignment_puts_the_eyes_on_the_template() -> None:
    # Landmarks of a face turned by 90 degrees: the crop must come out upright.
    points = np.array([[60, 40], [60, 50], [60, 80], [60, 70], [40, 60]], dtype=np.float32)
    matrix = onnx_faces.similarity_transform(
        np.array([[60, 45], [60, 75], [40, 60]], dtype=np.float64), onnx_faces.TEMPLATE)
    mapped = matrix[:, :2] @ np.array([60, 45]) + matrix[:, 2]
    assert abs(mapped[1] - onnx_faces.TEMPLATE[0, 1]) < 3
    rgb = np.zeros((120, 120, 3), dtype=np.uint8)
    assert onnx_faces.aligned_crop(rgb, points).shape == (112, 112, 3)


def test_env_registration(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "env.onnx")
    assert onnx_faces.register_from_env({}) is None
    sig = onnx_faces.register_from_env({"REUNITE_ONNX_FACE_MODEL": str(path),
                                        "REUNITE_ONNX_FACE_NAME": "face_env",
                                        "REUNITE_ONNX_FACE_PREPROCESS": "sface"})
    try:
        assert sig is not None and signals.get("face_env") is sig
        img = Image.fromarray(np.full((112, 112, 3), 200, dtype=np.uint8))
        assert sig.embed(np.asarray(img)).shape == (DIM,)
    finally:
        signals.unregister("face_env")
    with pytest.raises(FileNotFoundError):
        onnx_faces.configure(tmp_path / "missing.onnx", name="face_missing")
