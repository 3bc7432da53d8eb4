"""Opening an ONNX model for the optional plug-in backends (faces, scenes).

One place for the choices every plug-in shares: the model must be a local file
(nothing is downloaded), CPU provider only, and one thread per session because
parallelism comes from worker processes, one image each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_session(model_path: Path, what: str) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model_path`` (FileNotFoundError names ``what``)."""
    import onnxruntime as ort  # optional dependency: only needed when a plug-in is configured

    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX {what} model not found: {model_path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
