"""Text painted on a photo (phone numbers, handles, watermarks), read by OCR: the ``text`` family.

Why: traffickers put the contact where text filters cannot see it, on the
picture. PP-OCRv6 small (the detection and recognition ONNX models shipped
inside the ``rapidocr`` wheel, run by onnxruntime) read painted numbers in
real photos with 90%+ recall at a readable size (BENCHMARKS.md, *Text in ad
photos*); Debian's tesseract misread the same photos.

The models are located inside the installed wheel with
:mod:`importlib.resources` and never downloaded. The engine is built once per
process, on first use (0.5 s), so importing this module costs nothing and a
process that never reads text never loads the models.

What is kept: one :class:`~indexer.signals.base.Annotation` per text line,
with its box in the picture's original pixels and the recogniser's
confidence. Contacts are worked out from these lines later
(:mod:`matcher.networks.photo_contacts`), with the bank's phone region, so a change of
region or of the contact rules needs no second OCR pass.

Cost: 2-5 s per image on a loaded 2-core machine, 10-50x the rest of the ads
pipeline, so the family is opt-in (``--signals hashes,local,text``). The
detector at full size is most of that, also on photos with nothing to read,
so a pre-check runs the detector alone on a copy at most
:data:`PRECHECK_SIDE` px long (a quarter of the cost) and the full pass runs
only where it finds a text region (measured: it passed every painted photo
of the text suite, glyphs of 8 px included, and skipped half the bare photos).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import threading
import unicodedata
from typing import Any

import numpy as np

from indexer.images import Picture
from indexer.signals.base import Annotation, Annotator, register_annotator

MODEL_FILES = {
    "Det.model_path": "PP-OCRv6_det_small.onnx",
    "Rec.model_path": "PP-OCRv6_rec_small.onnx",
    "Cls.model_path": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
# Lines read with a lower recogniser confidence are dropped: below it the
# strings are mostly texture read as letters (measured on the text suite).
MIN_CONFIDENCE = 0.6
# Threads of one engine: the indexer runs one engine per worker process.
THREADS_ENV = "REUNITE_OCR_THREADS"
# Shortest line kept, in characters (a single glyph is mostly noise).
MIN_CHARS = 2
# Long side of the pre-check's detector pass (None: no pre-check).
PRECHECK_SIDE: int | None = 480


def available() -> bool:
    """True when the ``rapidocr`` wheel (extra ``text``) is installed."""
    return importlib.util.find_spec("rapidocr") is not None


def model_paths() -> dict[str, str]:
    """The ONNX files inside the installed ``rapidocr`` wheel; FileNotFoundError when one is missing."""
    folder = importlib.resources.files("rapidocr") / "models"
    out: dict[str, str] = {}
    for key, name in MODEL_FILES.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"OCR model {name} is not in the installed rapidocr wheel")
        out[key] = str(path)
    return out


class TextReader(Annotator):
    """Text lines of a picture with boxes and confidences (PP-OCRv6 small via rapidocr)."""

    name = "ocr"
    family = "text"
    # Ad photos are at most 1000-1600 px; a 14-px glyph in a 1600-px photo stays 11 px at 1280.
    decode_side = 1280
    needs_color = True

    def __init__(self, precheck_side: int | None = PRECHECK_SIDE) -> None:
        self.precheck_side = precheck_side
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def engine(self, which: str = "full") -> Any:
        """This process's OCR engine (``full``, or the detector-only ``precheck``), built on first use."""
        with self._lock:
            if which not in self._engines:
                from rapidocr import RapidOCR

                threads = int(os.environ.get(THREADS_ENV, "0") or 0)
                params: dict[str, Any] = {
                    **model_paths(),
                    "Global.log_level": "error",
                    # The angle classifier only turns upside-down lines: ads paint upright text.
                    "Global.use_cls": False,
                    "Global.text_score": MIN_CONFIDENCE,
                }
                if which == "precheck":
                    params.update({"Global.use_rec": False, "Det.limit_type": "max",
                                   "Det.limit_side_len": self.precheck_side})
                if threads > 0:
                    params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
                self._engines[which] = RapidOCR(params=params)
            return self._engines[which]

    def has_text_region(self, bgr: np.ndarray) -> bool:
        """The pre-check: does the detector, on a small copy, find any text region at all?"""
        if self.precheck_side is None:
            return True
        found = self.engine("precheck")(bgr)
        return found is not None and found.boxes is not None and len(found.boxes) > 0

    def annotate(self, picture: Picture) -> list[Annotation]:
        bgr = np.ascontiguousarray(picture.rgb[:, :, ::-1])
        if not self.has_text_region(bgr):
            return []
        result = self.engine()(bgr)
        if result is None or result.txts is None or result.boxes is None:
            return []
        sx = picture.original_size[0] / picture.size[0]
        sy = picture.original_size[1] / picture.size[1]
        out: list[Annotation] = []
        for text, score, poly in zip(result.txts, result.scores, result.boxes, strict=True):
            # Control and format characters (bidi overrides, zero-width) never reach the catalog.
            text = "".join(c for c in str(text) if unicodedata.category(c)[0] != "C").strip()
            if len(text) < MIN_CHARS or float(score) < MIN_CONFIDENCE:
                continue
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            box = (int(np.floor(pts[:, 0].min() * sx)), int(np.floor(pts[:, 1].min() * sy)),
                   int(np.ceil(pts[:, 0].max() * sx)), int(np.ceil(pts[:, 1].max() * sy)))
            out.append(Annotation(self.name, text, round(float(score), 4), box))
        # Reading order (top to bottom, then left to right): deterministic whatever the detector's order.
        out.sort(key=lambda a: (a.box[1], a.box[0], a.text))
        return out


OCR = register_annotator(TextReader()) if available() else None
